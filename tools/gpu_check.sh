#!/bin/sh
# One command on a GPU machine (make gpu-check): build _C in place with CUDA, run the CUDA and op
# tests, then the GPU benchmark at a short setting. No network: everything comes from the working
# tree (build/stb for stb_image, build/wheels for wheels `make gpu-deps` fetched) and the machine's
# Python, which has numpy and the nvidia-* wheels (cuDNN, cuBLAS, the CUDA runtime) that PyTorch uses.
# Whole run: under 8 minutes on one H200 (the benchmark gets what the build and tests leave).
set -eu
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi unavailable"
# the carried wheels, offline, only for what the machine's Python cannot import already
for pair in setuptools:setuptools tqdm:tqdm pytest:pytest xdist:pytest-xdist scipy_openblas32:scipy-openblas32; do
  module=${pair%%:*}; wheel=${pair#*:}
  if ! $PY -c "import $module" 2>/dev/null; then
    $PY -m pip install -q --no-index --find-links build/wheels "$wheel" || echo "WARNING: could not install $wheel from build/wheels"
  fi
done
export STB_INCLUDE_DIR="${STB_INCLUDE_DIR:-$PWD/build/stb/usr/include/stb}"
AFFECTFER_CUDA=1 $PY setup.py -q build_ext --inplace
$PY -c "import affectfer as af; assert af.cuda.is_available(), 'no CUDA device visible after a CUDA build'; print('devices:', af.cuda.device_count())"
status=0
$PY -m pytest -q -p no:cacheprovider tests/cuda -rs || status=1
xdist=$($PY -c "import xdist" 2>/dev/null && echo "-n 8" || echo "")
$PY -m pytest -q -p no:cacheprovider $xdist tests/ops tests/test_op_table.py || status=1
left=$((480 - ($(date +%s) - start)))
echo "benchmark budget: ${left} s"
timeout $((left > 30 ? left - 15 : 15)) $PY benchmarks/bench_gpu.py --short || status=1
echo "gpu-check finished in $(($(date +%s) - start)) s, status $status"
exit $status
