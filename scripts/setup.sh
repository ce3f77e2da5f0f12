#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine with Rust and Python/pip:
#  - libtorch 2.13.0 (CPU) from PyPI's torch wheel into .libtorch/ (see docs/LIBTORCH.md upstream recipe)
#  - Python packages the tests use (the `meds` validator, pyarrow).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.libtorch
if ! grep -qs "__version__ = '2.13.0" "$DEST/torch/version.py"; then
  echo "setup: installing libtorch 2.13.0 (CPU) into $DEST" >&2
  rm -rf "$DEST"
  python3 -m pip install --quiet --no-cache-dir --no-deps --target "$DEST" \
      torch==2.13.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
  rm -f "$DEST"/torch/lib/{libtorch_cuda.so,libtorch_cuda_linalg.so,libc10_cuda.so,libtorch_nvshmem.so,libcaffe2_nvrtc.so,libtorch_python.so}
  cargo clean -p torch-sys 2>/dev/null || true
fi
PYDEPS=".pydeps"
if ! [ -f "$PYDEPS/.ok" ]; then
  echo "setup: installing Python test helpers into $PYDEPS" >&2
  python3 -m pip install --quiet --no-cache-dir --target "$PYDEPS" "meds==0.4.*" pyarrow >&2
  touch "$PYDEPS/.ok"
fi
