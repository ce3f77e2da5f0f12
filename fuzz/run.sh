#!/usr/bin/env bash
# Build the fuzz targets and run each for a number of executions (default 10 million), one
# after the other, with seed corpora made from the repository's fixtures (and ../shared/data
# where present). Logs and the summary line of each run go to fuzz/logs/; a crash leaves its
# input in fuzz/artifacts/<target>/ and makes this script exit 1.
#   fuzz/run.sh [EXECUTIONS] [TARGET...]
# Not part of CI. Build: stable rustc with libFuzzer's coverage flags on this project's crates
# only (fuzz/sancov-rustc.sh); the dependencies come from the main build's target/ (hard
# links), so build the project first (`cargo build`). `cargo +nightly fuzz run <target>` runs
# the same targets through cargo-fuzz (instrumenting every dependency: more than an hour here).
set -euo pipefail
cd "$(dirname "$0")"
RUNS=${1:-10000000}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(time_parser unit_parser fhir_lines fhir_bundle csv_rows)
ROOT=$(cd .. && pwd)
SHARED="$ROOT/../shared/data"

# The fuzz build's own target dir, seeded from the main build's dependencies by hard links
# (the project's crate itself is rebuilt here, instrumented: its links are removed first).
if [ ! -d target/debug/deps ] && [ -d ../target/debug/deps ]; then
  echo "fuzz: linking the main build's dependencies into fuzz/target" >&2
  mkdir -p target
  cp -al ../target/debug target/debug
  rm -rf target/debug/deps/*ehr_risk* target/debug/.fingerprint/ehr-risk-* \
    target/debug/build/ehr-risk-* target/debug/incremental target/debug/ehr-risk*
fi
RUSTC_WRAPPER="$PWD/sancov-rustc.sh" cargo build --locked --bins
BIN=target/debug
# The targets link libtorch (through the crate), which cargo's runner would put on the path.
export LD_LIBRARY_PATH="${LIBTORCH:-$ROOT/.libtorch/torch}/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

seed() { # seed TARGET NAME < bytes
  mkdir -p "corpus/$1"
  cat >"corpus/$1/seed-$2"
}
n=0
for s in 2012 2012-09 2013-05-17 "2013-05-17 00:00:00" 2021-08-22T20:26:50-07:00 \
  2021-08-23T03:26:50.5+0100 2021-03-14T02:30:00 2020-02-29T23:59:59Z 1850-01-01; do
  n=$((n + 1)); printf '%s' "$s" | seed time_parser "$n"
done
n=0
for s in '120|mmHg' '6.3|mmol/L' '53|mmol/mol' '98.6|[degF]' '1e308|' '-0|mg/dL' '7|%'; do
  n=$((n + 1)); { printf "$(printf '\\x%02x' $((n * 7)))"; printf '%s' "$s"; } | seed unit_parser "$n"
done
n=0
for f in "$ROOT"/tests/data/mini/fhir/*.ndjson "$SHARED"/smart-bulk-fhir-10-patients/*.ndjson; do
  [ -f "$f" ] || continue
  n=$((n + 1)); (head -c 16000 "$f" || true) | head -n 4 | seed fhir_lines "$n"
done
n=0
for f in "$ROOT"/tests/data/mini/fhir/*.json "$SHARED"/fhir-r4-examples/*.json; do
  [ -f "$f" ] || continue
  [ "$(stat -c %s "$f")" -le 60000 ] || continue
  n=$((n + 1)); seed fhir_bundle "$n" <"$f"
  [ $n -lt 200 ] || break
done
for d in synthea:"$ROOT"/tests/data/mini/synthea omop:"$ROOT"/tests/data/mini/omop \
  mimic3:"$ROOT"/tests/data/mimic3 mimic:"$SHARED"/mimic-iv-demo-raw/hosp; do
  fmt=${d%%:*}
  for f in "${d#*:}"/*.csv "${d#*:}"/*.csv.gz; do
    [ -f "$f" ] || continue
    t=$(basename "$f"); t=${t%.gz}; t=${t%.csv}; t=${t,,}
    { printf '%s/%s\n' "$fmt" "$t"; (zcat -f "$f" 2>/dev/null || true) | head -n 25; } | seed csv_rows "$fmt-$t"
  done
done

mkdir -p logs artifacts
status=0
for t in "${TARGETS[@]}"; do
  max=4096
  case $t in fhir_bundle) max=65536 ;; fhir_lines | csv_rows) max=16384 ;; esac
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "fuzz: $t, $RUNS executions" >&2
  start=$(date +%s)
  if "$BIN/$t" "corpus/$t" -runs="$RUNS" -max_len=$max -seed=1 -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" >"logs/$t.log" 2>&1; then
    result=ok
  else
    result="CRASH (see logs/$t.log, artifacts/$t/)"
    status=1
  fi
  secs=$(($(date +%s) - start))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*' || echo '?')
  line="$(date -u +%F) $t executions=$execs seconds=$secs coverage=$cov corpus=$(ls "corpus/$t" | wc -l) $result"
  echo "$line" | tee -a logs/summary.txt
done
exit $status
