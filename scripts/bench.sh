#!/usr/bin/env bash
# Sets up and runs the benchmark job on a fresh machine: installs what the
# benchmarks need, builds seqkernels, then runs benchmarks/run.py with this
# script's arguments (e.g. --quick, --full, --out DIR, --configs L1,L2).
#
#   MAX_JOBS=8 bash scripts/bench.sh --out bench-out
#
# Where nvcc is found the CUDA kernels must build (SEQKERNELS_CUDA=1), so a
# GPU run never measures a CPU-only build by mistake; set SEQKERNELS_CUDA=0
# to override.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# torch is installed only if missing: a machine may hold a specific build.
python -c "import torch" 2>/dev/null || python -m pip install torch
# setuptools and wheel: the build below runs without build isolation.
python -m pip install triton numpy tqdm matplotlib pandas pytest \
  pytest-benchmark ninja pybind11 setuptools wheel

if command -v nvcc >/dev/null; then
  export SEQKERNELS_CUDA="${SEQKERNELS_CUDA:-1}"
fi
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
python -m pip install --no-build-isolation --no-deps -e .
python -c "import seqkernels; print('seqkernels build:', seqkernels.build_info())"

python benchmarks/run.py "$@"
