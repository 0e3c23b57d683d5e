#!/usr/bin/env bash
# Sets up (scripts/env.sh, with requirements/examples.txt), then runs every
# example of examples/ in full, on the GPU where there is one. Each prints
# its one-line result last and writes its PNG into examples/ (or into the
# folder given as the first argument).
#
#   bash scripts/examples.sh [OUT]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh test examples   # test.txt: the build tools
out="${1:-examples}"
for example in autoregressive dates climate; do
  echo "== examples/$example.py"
  python "examples/$example.py" --out "$out"
done
