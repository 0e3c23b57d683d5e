#!/usr/bin/env bash
# The GPU check, made for the H100/H200 machines (no network, torch
# preinstalled): builds for sm_90a only, runs the whole test suite on CUDA
# while compute-sanitizer (memcheck, racecheck) runs every CUDA kernel, then
# runs the benchmarks alone on the GPU, and writes a short report with its
# raw files into the folder given. Prints the summary table last.
#
#   bash scripts/gpu_check.sh OUT_DIR
#
# Time budgets (seconds; each phase is cut at its budget and says so):
#   GPU_CHECK_TESTS        what pytest runs (default: tests)
#   GPU_CHECK_TEST_S       the test suite (default 1200), on
#   GPU_CHECK_WORKERS      pytest-xdist workers (default 8)
#   GPU_CHECK_SANITIZE     the sanitizer case scripts (default: both) and
#   GPU_CHECK_SANITIZER_TOOLS  its tools (default: memcheck racecheck)
#   GPU_CHECK_SANITIZER_S  each compute-sanitizer run (default 600; the four
#                          run side by side)
#   GPU_CHECK_BENCH_ARGS   arguments of benchmarks/run.py (default --full;
#                          "skip": no benchmarks)
#   GPU_CHECK_BENCH_S      the benchmarks, a hard stop (default 3600; give
#                          run.py a --time-limit well inside it)
# A Python package the machine lacks (expecttest, for opcheck) is installed
# from wheels in .whl/, if that folder is there.
#
# In a copy of the tree (without .git, or with a stale one), set
# SEQKERNELS_COMMIT to the commit it holds.
#
# OUT_DIR receives at most 8 files (the device tool brings back no more):
# report.md, build.log, tests.log, sanitizer.log, bench.log, results.csv,
# table.md, plots.tar.
set -uo pipefail
out="${1:?usage: gpu_check.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
test_s="${GPU_CHECK_TEST_S:-1200}"
sanitizer_s="${GPU_CHECK_SANITIZER_S:-600}"
bench_s="${GPU_CHECK_BENCH_S:-3600}"
read -r -a test_args <<<"${GPU_CHECK_TESTS:-tests}"
read -r -a sanitize <<<"${GPU_CHECK_SANITIZE:-scripts/sanitize_cases.py scripts/sanitize_attention_cases.py}"
read -r -a tools <<<"${GPU_CHECK_SANITIZER_TOOLS:-memcheck racecheck}"
read -r -a bench_args <<<"${GPU_CHECK_BENCH_ARGS:---full}"

status() {
  case "$1" in
    0) echo "ok" ;;
    124) echo "CUT at its time budget (exit 124)" ;;
    *) echo "FAILED (exit $1)" ;;
  esac
}
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*"; }

if [ -d .whl ] && ! "$py" -c "import expecttest" 2>/dev/null; then
  "$py" -m pip install -q --no-index --no-deps .whl/*.whl
fi

stamp "build (sm_90a)"
export SEQKERNELS_CUDA=1 SEQKERNELS_CUDA_ARCHS=90a MAX_JOBS="${MAX_JOBS:-16}"
"$py" -m pip install --no-build-isolation --no-deps -e . >"$out/build.log" 2>&1
build=$?
if [ $build -ne 0 ]; then
  tail -40 "$out/build.log"
  echo "build FAILED: see build.log"
  exit 1
fi
"$py" -c "import torch, seqkernels; print(seqkernels.build_info())" \
  >>"$out/build.log" 2>&1

# The four sanitizer runs go beside the tests: none of them is timed, and
# the GPU has room for all. The benchmarks run after, alone.
stamp "tests (budget ${test_s} s) beside compute-sanitizer"
sanitizer_pids=()
i=0
for cases in "${sanitize[@]}"; do
  for tool in "${tools[@]}"; do
    i=$((i + 1))
    (
      echo "== compute-sanitizer --tool $tool $cases"
      timeout -k 10 "$sanitizer_s" compute-sanitizer --tool "$tool" \
        --error-exitcode 1 "$py" "$cases" 2>&1
      echo "== exit $? ($tool $cases)"
    ) >"$out/sanitizer.$i.log" 2>&1 &
    sanitizer_pids+=($!)
  done
done

# A hung test (a kernel that never returns) costs one worker, not the run.
per_test=()
"$py" -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 180)
t0=$(date +%s)
# -v: each result is printed with its test id as it comes, so a
# run cut at its budget (which loses pytest's closing summary) still names
# its failures.
timeout -s INT -k 30 "$test_s" "$py" -m pytest "${test_args[@]}" -v \
  -n "${GPU_CHECK_WORKERS:-8}" -p no:cacheprovider --durations=25 -rfE \
  "${per_test[@]}" >"$out/tests.log" 2>&1
tests=$?
# pytest exits 2 when interrupted: say "cut" when the budget ran out.
if [ $tests -eq 2 ] && [ $(( $(date +%s) - t0 )) -ge "$test_s" ]; then
  tests=124
fi
stamp "tests done: $(status $tests); waiting for the sanitizer"
wait "${sanitizer_pids[@]}"
cat "$out"/sanitizer.*.log >"$out/sanitizer.log" && rm "$out"/sanitizer.*.log
sanitizer=0
grep -q "^== exit [^0]" "$out/sanitizer.log" && sanitizer=1

stamp "benchmarks: ${bench_args[*]}"
bench=0
if [ "${bench_args[*]}" != skip ]; then
  timeout -s INT -k 20 "$bench_s" "$py" benchmarks/run.py "${bench_args[@]}" \
    --out "$out/bench" >"$out/bench.log" 2>&1
  bench=$?
  # A run stopped at the hard limit keeps its CSV rows (written job by job):
  # draw the table from them.
  if [ ! -f "$out/bench/table.md" ] && [ -f "$out/bench/results.csv" ]; then
    "$py" benchmarks/report.py "$out/bench/results.csv" >>"$out/bench.log" 2>&1
  fi
  cp "$out/bench/results.csv" "$out/bench/table.md" "$out/" 2>/dev/null
  tar -cf "$out/plots.tar" -C "$out/bench" . 2>/dev/null
  rm -rf "$out/bench"
fi

{
  echo "# GPU check"
  echo
  echo "- commit: ${SEQKERNELS_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  echo "- versions: $("$py" -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)')"
  echo "- build (sm_90a): $(status $build)"
  echo "- tests: $(status $tests): $(grep -E '(passed|failed|error)' "$out/tests.log" | tail -1)"
  echo "- compute-sanitizer (${tools[*]} over ${sanitize[*]}): $(status $sanitizer)"
  echo "- benchmarks (${bench_args[*]}): $(status $bench)"
  echo "- wall time: $(( $(date +%s) - start )) s"
  echo
  grep -E "(^| )(FAILED|ERROR) tests/" "$out/tests.log" | sed -e 's/^\[gw[0-9]*\] \[ *[0-9]*%\] //' -e 's/ - .*//' -e 's/ *$//' \
    | sort -u | head -40
  grep -E "^== |ERROR SUMMARY" "$out/sanitizer.log" | head -20
  echo
  sed -n '/^## Targets/,/^## All measurements/p' "$out/table.md" 2>/dev/null \
    | grep -v "^## All" || echo "(no benchmark table: see bench.log)"
} >"$out/report.md"
cat "$out/report.md"
