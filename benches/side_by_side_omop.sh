#!/usr/bin/env bash
# Side-by-side OMOP CDM CSV ingest benchmark on one machine, in one run:
#   1. make an OMOP folder of about TARGET_MB with benches/scale_omop.py (Eunomia replicas)
#   2. ehr-risk ingest (2 threads) into a fresh lake: wall time, MB/s, rows/s, peak RSS
#   3. meds_etl's C++ backend with 2 processes (../shared/bench/meds_etl_run.py) on the same folder
#   4. both figures and the ratio, ROUNDS times, alternating (load from other tenants varies)
# Usage: benches/side_by_side_omop.sh [TARGET_MB] [WORKDIR] [ROUNDS]  (defaults: 115, /tmp/ehr-bench, 2)
# meds_etl is installed on first use into .benchdeps/meds-venv (it needs its console script).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_MB=${1:-115}
WORK=${2:-/tmp/ehr-bench}
ROUNDS=${3:-2}
SHARED=../shared
mkdir -p "$WORK"
EXPORT="$WORK/omop-${TARGET_MB}mb"
[ -d "$EXPORT" ] || python3 benches/scale_omop.py --target-mb "$TARGET_MB" --out "$EXPORT" >&2
BYTES=$(cat "$EXPORT"/*.csv | wc -c)
echo "export: $EXPORT, $BYTES bytes" >&2
VENV=.benchdeps/meds-venv
if [ ! -x "$VENV/bin/meds_etl_omop" ]; then
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q "meds_etl[cpp]==0.3.11" "polars<2" >&2
fi
# The dev profile is the optimised one here (see Cargo.toml).
BIN=${BIN:-target/debug/ehr-risk}
[ "$BIN" = target/debug/ehr-risk ] && cargo build -q
for round in $(seq "$ROUNDS"); do
  rm -rf "$WORK/omop-lake"
  /usr/bin/time -f '%e %M' -o "$WORK/omop-time.txt" "$BIN" ingest -q --json --threads 2 \
    --lake "$WORK/omop-lake" "$EXPORT" >"$WORK/omop-report.json"
  "$VENV/bin/python" "$SHARED/bench/meds_etl_run.py" "$EXPORT" --out "$WORK/meds-out" \
    --adapt-omop --backend cpp --num-proc 2 >"$WORK/meds.json"
  python3 - "$WORK/omop-report.json" "$WORK/omop-time.txt" "$WORK/meds.json" "$BYTES" "$round" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); secs, kb = open(sys.argv[2]).read().split()
secs = float(secs); b = int(sys.argv[4])
m = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])
ours = {"engine": "ehr-risk", "seconds": secs, "mb_per_s": round(b / 1e6 / secs, 1),
        "rows_per_s": round(r["totals"]["rows_read"] / secs), "rows_read": r["totals"]["rows_read"],
        "events_written": r["events_written"], "peak_rss_mb": round(int(kb) / 1024, 1)}
peer = {"engine": "meds_etl cpp x2", "seconds": m.get("seconds"), "rows_out": m.get("rows_out"),
        "peak_rss_mb": m.get("peak_tree_rss_mb_sampled")}
print(json.dumps({"round": int(sys.argv[5]), "ours": ours, "meds_etl": peer,
                  "ratio": round(m["seconds"] / secs, 2) if m.get("seconds") else None}))
PY
done
