#!/usr/bin/env bash
# The model quality bar of issue #5: a synthetic cohort of N people (default 100,000), the whole
# pipeline, then every model side by side on the held-out split with the oracle.
# Usage: benches/quality_bar.sh [N] [WORKDIR]   (dev profile = optimised; see docs/BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
W=${2:-/tmp/ehr-risk-quality-$N}
cargo build -q
B=target/debug/ehr-risk
rm -rf "$W"; mkdir -p "$W"
t() { local s=$(date +%s.%N); "$@"; echo "  [$(echo "$(date +%s.%N) - $s" | bc) s] $*" >&2; }
t $B -q synth --patients "$N" --seed 11 --out "$W/input" >/dev/null
t $B -q ingest --lake "$W/lake" "$W/input/hospital_fhir" "$W/input/clinic_omop" "$W/input/synthea_csv" >/dev/null
t $B -q cohort --lake "$W/lake" --out "$W/cohort" >/dev/null
t $B -q features --lake "$W/lake" --cohort "$W/cohort" --out "$W/features" >/dev/null
t $B train --features "$W/features" --cohort "$W/cohort" --out "$W/model" --seed 1
t $B evaluate --model "$W/model" --features "$W/features" --cohort "$W/cohort" \
   --truth "$W/input/truth/risk.parquet" --out "$W/eval" --bootstrap 200 > "$W/eval.txt"
grep -E "output| all " "$W/eval.txt"
