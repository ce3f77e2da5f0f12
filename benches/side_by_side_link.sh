#!/usr/bin/env bash
# Side-by-side record linkage on the FEBRL sets, on one machine, in one run:
#   1. ../shared/bench/splink_febrl.py (Splink 5, DuckDB, its own FEBRL demo model) on the CSV:
#      seconds, peak RSS, pairwise precision/recall/F1 of its clusters at match probability 0.5
#   2. the same records as a FHIR Patient export (benches/febrl_to_fhir.py), ingested, then
#      `ehr-risk link run --truth`: the linkage's wall time and peak RSS (ingest reported apart),
#      and the same pairwise figures against the same truth
# each with and without the national id, and the ratio of the two times.
# Usage: benches/side_by_side_link.sh [SETS...]   (default: dataset1 dataset2 dataset3)
set -euo pipefail
cd "$(dirname "$0")/.."
SETS=${*:-dataset1 dataset2 dataset3}
WORK=${WORK:-/tmp/ehr-bench-link}
SHARED=../shared
BENCHDEPS=.benchdeps/splink
[ -f "$BENCHDEPS/.ok" ] || { python3 -m pip install -q --target "$BENCHDEPS" splink==5.0.0 pandas >&2 && touch "$BENCHDEPS/.ok"; }
BIN=${BIN:-target/debug/ehr-risk}
[ "$BIN" = target/debug/ehr-risk ] && cargo build -q
[ -d .data/febrl ] || bash scripts/setup.sh
mkdir -p "$WORK"
for set in $SETS; do
  for nid in with without; do
    flag=""; [ $nid = without ] && flag="--no-national-id"
    CSV=.data/febrl/$set.csv
    D="$WORK/$set-$nid"; rm -rf "$D"; mkdir -p "$D"
    PYTHONPATH=$BENCHDEPS python3 "$SHARED/bench/splink_febrl.py" "$CSV" $flag 2>/dev/null >"$D/splink.json"
    python3 benches/febrl_to_fhir.py "$D/export" "$CSV" $flag >/dev/null
    /usr/bin/time -f '%e %M' -o "$D/ingest.txt" "$BIN" -q ingest --lake "$D/lake" "$D/export/Patient.ndjson" >/dev/null
    /usr/bin/time -f '%e %M' -o "$D/link.txt" "$BIN" link run --json --truth "$D/export/truth.csv" "$D/lake" >"$D/ours.json"
    python3 - "$set" "$nid" "$D" <<'PY'
import json, sys
s, nid, d = sys.argv[1], sys.argv[2], sys.argv[3]
sp = json.load(open(f"{d}/splink.json"))
ours = json.load(open(f"{d}/ours.json"))
li, lk = open(f"{d}/ingest.txt").read().split(), open(f"{d}/link.txt").read().split()
q = ours["quality"]
print(json.dumps({"set": s, "national_id": nid == "with", "records": ours["report"]["records"],
    "splink": {"seconds": sp["seconds"], "peak_rss_mb": sp["peak_rss_mb"], "precision": sp["precision"],
               "recall": sp["recall"], "f1": sp["f1"]},
    "ehr_risk": {"link_seconds": float(lk[0]), "peak_rss_mb": round(int(lk[1]) / 1024),
                 "ingest_seconds": float(li[0]), "precision": round(q["precision"], 4),
                 "recall": round(q["recall"], 4), "f1": round(q["f1"], 4)},
    "speedup_link": round(sp["seconds"] / float(lk[0]), 1),
    "speedup_ingest_and_link": round(sp["seconds"] / (float(lk[0]) + float(li[0])), 1)}))
PY
  done
done
