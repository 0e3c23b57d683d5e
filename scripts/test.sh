#!/usr/bin/env bash
# Sets up and runs the test suite on a fresh machine: a virtual environment
# with the pinned releases of requirements/newest.txt (see scripts/env.sh for
# the choices) and the examples' requirements (their --quick runs are tests:
# tests/test_examples.py), the seqkernels build, then pytest over every
# test. Extra arguments go to pytest.
#
#   bash scripts/test.sh                        # the newest torch and triton
#   SEQKERNELS_STACK=gpu-machine bash scripts/test.sh   # the GPU machines'
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh test examples
python -m pytest tests -q -n "${PYTEST_WORKERS:-2}" "$@"
