#!/usr/bin/env bash
# The GPU check, made for the H200 machine (no network, torch preinstalled):
# builds for sm_90a only, runs the whole test suite on CUDA, runs
# compute-sanitizer (memcheck, racecheck) over every CUDA kernel, runs the
# full benchmark set, and writes a short report with its raw files into the
# folder given. Prints the summary table last. About ten minutes.
#
#   bash scripts/gpu_check.sh OUT_DIR
#
# OUT_DIR receives at most 8 files (the device tool brings back no more):
# report.md, build.log, tests.log, sanitizer.log, bench.log, results.csv,
# table.md, plots.tar.
set -uo pipefail
out="${1:?usage: gpu_check.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."

status() { if [ "$1" -eq 0 ]; then echo "ok"; else echo "FAILED (exit $1)"; fi; }

export SEQKERNELS_CUDA=1 SEQKERNELS_CUDA_ARCHS=90a MAX_JOBS="${MAX_JOBS:-16}"
start=$(date +%s)
python -m pip install --no-build-isolation --no-deps -e . >"$out/build.log" 2>&1
build=$?
if [ $build -ne 0 ]; then
  tail -40 "$out/build.log"
  echo "build FAILED: see build.log"
  exit 1
fi

python -m pytest tests -q -n 4 -p no:cacheprovider >"$out/tests.log" 2>&1
tests=$?

: >"$out/sanitizer.log"
sanitizer=0
for cases in scripts/sanitize_cases.py scripts/sanitize_attention_cases.py; do
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool $cases" >>"$out/sanitizer.log"
    compute-sanitizer --tool "$tool" --error-exitcode 1 \
      python "$cases" >>"$out/sanitizer.log" 2>&1 || sanitizer=$?
  done
done

python benchmarks/run.py --full --time-limit 300 --out "$out/bench" >"$out/bench.log" 2>&1
bench=$?
cp "$out/bench/results.csv" "$out/bench/table.md" "$out/" 2>/dev/null
tar -cf "$out/plots.tar" -C "$out/bench" . 2>/dev/null
rm -rf "$out/bench"

{
  echo "# GPU check"
  echo
  echo "- commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)"
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  echo "- versions: $(python -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)')"
  echo "- build (sm_90a): $(status $build)"
  echo "- tests: $(status $tests): $(tail -1 "$out/tests.log")"
  echo "- compute-sanitizer memcheck+racecheck: $(status $sanitizer)"
  echo "- benchmarks: $(status $bench)"
  echo "- wall time: $(( $(date +%s) - start )) s"
  echo
  grep -E "^(FAILED|ERROR)" "$out/tests.log" | head -30
  grep -E "ERROR SUMMARY|Error|error" "$out/sanitizer.log" | head -10
  echo
  cat "$out/table.md" 2>/dev/null || echo "(no benchmark table: see bench.log)"
} >"$out/report.md"
cat "$out/report.md"
