#!/usr/bin/env bash
# RUSTC_WRAPPER for fuzz/run.sh: libFuzzer's coverage instrumentation (the flags cargo-fuzz
# passes with `-s none`) on the project's own crates only. The dependencies (polars, arrow,
# libtorch's bindings) are compiled as the main build compiles them and reused from it.
rustc="$1"
shift
case " $* " in
*" --crate-name ehr_risk "* | *" --crate-name ehr_risk_fuzz "* | \
  *" --crate-name time_parser "* | *" --crate-name unit_parser "* | \
  *" --crate-name fhir_lines "* | *" --crate-name fhir_bundle "* | *" --crate-name csv_rows "*)
  exec "$rustc" "$@" --cfg fuzzing -Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares
  ;;
*) exec "$rustc" "$@" ;;
esac
