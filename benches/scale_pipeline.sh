#!/usr/bin/env bash
# Scale run of the pipeline on the synthetic cohort: synth -> ingest -> cohort -> features ->
# train -> score (each subject's latest prediction time, no explanations), each step timed with
# its peak RSS. Usage: benches/scale_pipeline.sh [PATIENTS] [WORKDIR] [SHARDS]
# (defaults 1000000, /tmp/ehr-scale, 512). Needs about 40 GB of free disk for 1 M people.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
WORK=${2:-/tmp/ehr-scale}
SHARDS=${3:-512}
BIN=${BIN:-target/debug/ehr-risk}
[ "$BIN" = target/debug/ehr-risk ] && cargo build -q
rm -rf "$WORK" && mkdir -p "$WORK"
step() {
  local name=$1; shift
  /usr/bin/time -f "$name %e s wall, %U s user, %S s sys, peak RSS %M KB" -o "$WORK/$name.time" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  cat "$WORK/$name.time"
}
step synth "$BIN" synth -q --patients "$N" --seed 1 --out "$WORK/in"
du -sh "$WORK/in"
step ingest "$BIN" ingest -q --shards "$SHARDS" --lake "$WORK/lake" "$WORK/in/hospital_fhir" "$WORK/in/clinic_omop" "$WORK/in/synthea_csv"
rm -rf "$WORK/in"
step cohort "$BIN" cohort -q --lake "$WORK/lake" --out "$WORK/cohort"
step features "$BIN" features -q --lake "$WORK/lake" --cohort "$WORK/cohort" --out "$WORK/features"
cat "$WORK/features/manifest.json" | head -12
du -sh "$WORK/lake" "$WORK/cohort" "$WORK/features"
step train "$BIN" train -q --features "$WORK/features" --cohort "$WORK/cohort" --out "$WORK/model" --seed 1
step score "$BIN" score --latest --explain none --model "$WORK/model" --features "$WORK/features" --out "$WORK/scores"
grep -E "scored|subjects" "$WORK/score.err"
