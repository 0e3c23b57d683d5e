#!/usr/bin/env bash
# Sets up and runs the benchmark job on a fresh machine: a virtual
# environment with the pinned releases of requirements/newest.txt (see
# scripts/env.sh for the choices), the seqkernels build, then
# benchmarks/run.py with this script's arguments (e.g. --quick, --full,
# --out DIR, --configs L1,L2).
#
#   bash scripts/bench.sh --out bench-out
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh test bench
python benchmarks/run.py "$@"
