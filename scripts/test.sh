#!/usr/bin/env bash
# Sets up and runs the test suite on a fresh machine: installs what the tests
# need, builds seqkernels (CPU kernels always, CUDA kernels where nvcc is),
# then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# torch is installed only if missing: a machine may hold a specific build.
python -c "import torch" 2>/dev/null || python -m pip install torch
python -m pip install numpy triton pytest pytest-xdist expecttest tqdm ninja pybind11 \
  setuptools wheel
MAX_JOBS="${MAX_JOBS:-2}" python -m pip install --no-build-isolation --no-deps -e .
python -c "import seqkernels; print('seqkernels build:', seqkernels.build_info())"
python -m pytest tests -q "$@"
