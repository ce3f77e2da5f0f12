#!/usr/bin/env bash
# GRU side by side: ../shared/bench/gru_torch.py (Python PyTorch 2.13) and our tch code
# (benches/gru_side_by_side.rs), same architecture, same shapes, same threads, interleaved
# in one run. Needs the full PyTorch wheel for the Python half:
#   python3 -m pip install --target .benchdeps/torch torch==2.13.0     (about 4.7 GB)
# Usage: benches/side_by_side_gru.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
PY="env PYTHONPATH=.benchdeps/torch python3 ../shared/bench/gru_torch.py"
cargo bench --profile dev --bench gru_side_by_side --no-run -q 2>/dev/null
OURS="cargo bench --profile dev --bench gru_side_by_side -q --"
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  $PY train --threads 2 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  pytorch train  ", d["steps_per_s"], "steps/s")'
  $OURS train --threads 2 | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  tch     train  ", round(d["steps_per_s"],3), "steps/s (padded)")'
  $OURS train --threads 2 --sorted | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  tch     train  ", round(d["steps_per_s"],3), "steps/s (length-sorted parts, as the engine trains)")'
  $PY infer --threads 2 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  pytorch infer  ", d["patients_per_s"], "patients/s (padded)")'
  $OURS infer --threads 2 | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  tch     infer  ", round(d["patients_per_s"]), "patients/s (padded)")'
  $OURS infer --threads 2 --sorted | python3 -c 'import json,sys; d=json.load(sys.stdin); print("  tch     infer  ", round(d["patients_per_s"]), "patients/s (length-sorted sub-batches, as the engine scores)")'
done
