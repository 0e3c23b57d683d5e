# Sourced by scripts/test.sh and scripts/bench.sh: puts the Python that the
# job runs first on PATH, with the packages of requirements/<stack>.txt and
# of the extra requirement files named as arguments, then builds seqkernels
# into it (CPU kernels always, CUDA kernels where nvcc is found).
#
#   SEQKERNELS_STACK  requirements/<stack>.txt to install (default "newest",
#                     the releases a new user gets; "gpu-machine", those of
#                     the GPU machines) into the virtual environment
#                     .venv/<stack>, made on first use and kept up to date
#                     with the file.
#   SEQKERNELS_VENV=0 use the python on PATH as it is instead (a machine
#                     that holds a specific torch build, e.g. a GPU machine
#                     without network): only missing tools are installed,
#                     never torch.
#   MAX_JOBS          parallel compile jobs (default: the number of CPUs)
#
# Where nvcc is found the CUDA kernels must build (SEQKERNELS_CUDA=1), so a
# GPU run never measures or tests a CPU-only build by mistake; set
# SEQKERNELS_CUDA=0 to build without them.

stack="${SEQKERNELS_STACK:-newest}"
if [ ! -f "requirements/$stack.txt" ]; then
  echo "SEQKERNELS_STACK=$stack: no file requirements/$stack.txt" >&2
  exit 2
fi
reqs=()
for extra in "$@"; do reqs+=(-r "requirements/$extra.txt"); done

if [ "${SEQKERNELS_VENV:-1}" = "0" ]; then
  if ! python -c "import torch" 2>/dev/null; then
    echo "SEQKERNELS_VENV=0 needs a python with torch on PATH" >&2
    exit 2
  fi
  python -m pip install "${reqs[@]}"
else
  venv=".venv/$stack"
  if [ ! -x "$venv/bin/python" ]; then
    echo "Making the virtual environment $venv (requirements/$stack.txt)"
    python3 -m venv "$venv"
  fi
  export PATH="$PWD/$venv/bin:$PATH" VIRTUAL_ENV="$PWD/$venv"
  # Installs only what is missing or pinned differently: quick when up to date.
  python -m pip install -r "requirements/$stack.txt" "${reqs[@]}"
fi
python -c "import torch, triton; print('torch', torch.__version__, \
'triton', triton.__version__)"

if command -v nvcc >/dev/null; then
  export SEQKERNELS_CUDA="${SEQKERNELS_CUDA:-1}"
fi
MAX_JOBS="${MAX_JOBS:-$(nproc)}" python -m pip install --no-build-isolation \
  --no-deps -e .
python -c "import seqkernels; print('seqkernels build:', seqkernels.build_info())"
