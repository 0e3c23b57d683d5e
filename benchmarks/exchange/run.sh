#!/usr/bin/env bash
# Builds the exchange micro-benchmark (exchange.cu) for sm_90a and runs it.
# The build prints ptxas' resource report (registers, stack frame, spills).
#
#   bash benchmarks/exchange/run.sh [--build-only] [exchange options]
#
# e.g. `--blocks 16,66,132 --clusters 8,16 --csv exchange.csv`; the options
# are listed in the header of exchange.cu. EXCHANGE_BUILD names the build
# folder (default build/exchange, git-ignored); NVCC the compiler (default
# nvcc).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${EXCHANGE_BUILD:-$here/../../build/exchange}"
mkdir -p "$build"
"${NVCC:-nvcc}" -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a \
  -Xptxas -v -o "$build/exchange" "$here/exchange.cu"
if [ "${1:-}" = "--build-only" ]; then
  echo "built $build/exchange"
  exit 0
fi
"$build/exchange" "$@"
