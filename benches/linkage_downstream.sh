#!/usr/bin/env bash
# What identity resolution does to the models: one synthetic population whose sites keep their
# own MRNs (synth --identities sites), ingested twice, linked and joined by identifier only
# (--no-link), then cohort -> features -> train -> evaluate on each. Prints the linkage's
# quality against truth/identity.csv, subjects, and each lake's held-out evaluation (the
# network's AUROC and censoring-aware observed/expected per output).
# Usage: benches/linkage_downstream.sh [PEOPLE] [WORKDIR]   (defaults: 10000, /tmp/ehr-bench-linkage)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}
W=${2:-/tmp/ehr-bench-linkage}
BIN=${BIN:-target/debug/ehr-risk}
[ "$BIN" = target/debug/ehr-risk ] && cargo build -q
rm -rf "$W"; mkdir -p "$W"
$BIN -q synth --patients "$N" --seed 11 --identities sites --national-id-rate 0.5 --out "$W/input"
for mode in linked identifier-only; do
  D="$W/$mode"; flag=""; [ $mode = identifier-only ] && flag="--no-link"
  $BIN -q ingest $flag --lake "$D/lake" "$W/input/hospital_fhir" "$W/input/clinic_omop" "$W/input/synthea_csv"
  $BIN -q cohort --lake "$D/lake" --task mi_stroke --out "$D/cohort"
  $BIN -q features --lake "$D/lake" --cohort "$D/cohort" --out "$D/features"
  $BIN -q train --features "$D/features" --cohort "$D/cohort" --out "$D/model" --seed 11 --epochs 8 >/dev/null
  $BIN -q evaluate --model "$D/model" --features "$D/features" --cohort "$D/cohort" --out "$D/evaluation" >/dev/null
done
$BIN link run --json --truth "$W/input/truth/identity.csv" "$W/linked/lake" >"$W/link.json"
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
q = json.load(open(f"{w}/link.json"))
print(json.dumps({"linkage": q["quality"], "persons": q["report"]["persons"], "identities": q["report"]["identities"]}))
for mode in ("linked", "identifier-only"):
    out = {"mode": mode}
    for x in json.load(open(f"{w}/{mode}/evaluation/evaluation.json")):
        g = x["models"]["gru"]["all"]
        ca = x["censoring_aware"].get("gru", {})
        auroc = g.get("auroc") or {}
        out[x["outcome"]] = {"n": g.get("n"), "events": g.get("events"),
                             "auroc": round(auroc["value"], 4) if auroc.get("value") is not None else None,
                             "ipcw_auroc": round(ca["auroc"], 4) if ca.get("auroc") is not None else None,
                             "observed_over_expected": round(ca["observed_over_expected"], 3) if ca.get("observed_over_expected") is not None else None}
    print(json.dumps(out))
PY
