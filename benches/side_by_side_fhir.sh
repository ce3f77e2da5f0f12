#!/usr/bin/env bash
# Side-by-side FHIR NDJSON ingest benchmark on one machine, in one run:
#   1. make a ~1 GB Bulk export with ../shared/bench/scale_fhir.py (SMART seed + Synthea bundles)
#   2. ehr-risk ingest (release build) into a fresh lake: wall time, MB/s, events/s, peak RSS
#   3. ../shared/bench/fhir_pandas.py on the same folder (its own JSON line)
# Usage: benches/side_by_side_fhir.sh [COPIES] [WORKDIR]    (defaults: 1000 MB, /tmp/ehr-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET_MB=${1:-1000}
WORK=${2:-/tmp/ehr-bench}
SHARED=../shared
mkdir -p "$WORK"
EXPORT="$WORK/fhir-${TARGET_MB}mb"
if [ ! -d "$EXPORT" ]; then
  python3 "$SHARED/bench/scale_fhir.py" --target-mb "$TARGET_MB" --bundles "$SHARED/data/synthea-ca59-csv-fhir/fhir" --out "$EXPORT" >&2
fi
BYTES=$(cat "$EXPORT"/*.ndjson | wc -c)
echo "export: $EXPORT, $BYTES bytes" >&2
# The dev profile is the optimised one here (see Cargo.toml); pass BIN=target/release/ehr-risk
# to measure a release build instead.
BIN=${BIN:-target/debug/ehr-risk}
[ "$BIN" = target/debug/ehr-risk ] && cargo build -q
rm -rf "$WORK/lake"
# --no-link: scale_fhir.py makes its volume by copying 28 patients 85 times under new ids with
# the same names and birth dates, which identity resolution rightly takes for 61 people (and
# then removes a million duplicate events); this measures reading, not linkage (see the
# linkage benchmarks). The exit status is kept: the run must not fail.
/usr/bin/time -f '%e %M' -o "$WORK/time.txt" "$BIN" ingest -q --json --no-link --lake "$WORK/lake" "$EXPORT" >"$WORK/report.json"
read -r SECS KB <"$WORK/time.txt"
python3 - "$WORK/report.json" "$SECS" "$KB" "$BYTES" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); secs = float(sys.argv[2]); kb = int(sys.argv[3]); b = int(sys.argv[4])
print(json.dumps({"engine": "ehr-risk", "seconds": secs, "mb_per_s": round(b / 1e6 / secs, 1),
                  "events_per_s": round(r["events_written"] / secs), "events_written": r["events_written"],
                  "rows_read": r["totals"]["rows_read"], "peak_rss_mb": round(kb / 1024, 1)}))
PY
BENCHDEPS=.benchdeps
[ -f "$BENCHDEPS/.ok" ] || { python3 -m pip install -q --target "$BENCHDEPS" pandas pyarrow >&2 && touch "$BENCHDEPS/.ok"; }
PYTHONPATH=$BENCHDEPS python3 "$SHARED/bench/fhir_pandas.py" "$EXPORT" --out "$WORK/pandas.parquet" || \
  echo "fhir_pandas.py needs pandas + pyarrow (pip install pandas pyarrow)" >&2
