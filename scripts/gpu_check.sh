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
#   GPU_CHECK_TUNED_S      then tests/test_attention.py -k triton with
#                          SEQKERNELS_TRITON_TUNE=1 (default 300; appended
#                          to tests.log), on
#   GPU_CHECK_WORKERS      pytest-xdist workers (default 8)
#   GPU_CHECK_SANITIZE     the sanitizer case scripts (default: both) and
#   GPU_CHECK_SANITIZER_TOOLS  its tools (default: memcheck racecheck)
#   GPU_CHECK_SANITIZER_S  each compute-sanitizer run (default 600; they
#                          run side by side). The attention cases run under
#                          each tool a second time with
#                          SEQKERNELS_ATTENTION=tensor_core (the opt-in
#                          tensor-core sdpa forward and backward and the
#                          tensor-core forward of the attention
#                          probabilities).
#   GPU_CHECK_BENCH_ARGS   arguments of benchmarks/run.py (default --full;
#                          "skip": no benchmarks)
#   GPU_CHECK_BENCH_S      the benchmarks, a hard stop (default 3600; give
#                          run.py a --time-limit well inside it)
#   GPU_CHECK_BUILD_S      the build (default 600)
# A Python package the machine lacks (expecttest, for opcheck) is installed
# from wheels in .whl/, if that folder is there (into /tmp/site, on
# PYTHONPATH). The helpers are scripts/gpu_lib.sh's.
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
source scripts/gpu_lib.sh
build_s="${GPU_CHECK_BUILD_S:-600}"
test_s="${GPU_CHECK_TEST_S:-1200}"
tuned_s="${GPU_CHECK_TUNED_S:-300}"
sanitizer_s="${GPU_CHECK_SANITIZER_S:-600}"
bench_s="${GPU_CHECK_BENCH_S:-3600}"
read -r -a test_args <<<"${GPU_CHECK_TESTS:-tests}"
read -r -a sanitize <<<"${GPU_CHECK_SANITIZE:-scripts/sanitize_cases.py scripts/sanitize_attention_cases.py}"
read -r -a tools <<<"${GPU_CHECK_SANITIZER_TOOLS:-memcheck racecheck}"
read -r -a bench_args <<<"${GPU_CHECK_BENCH_ARGS:---full}"

gpu_install_wheels

gpu_stamp "build (sm_90a)"
gpu_build_or_stop "$out/build.log" "$build_s"

# The sanitizer runs go beside the tests: none of them is timed, and the
# GPU has room for all. The benchmarks run after, alone.
gpu_stamp "tests (budget ${test_s} s) beside compute-sanitizer"
sanitizer_pids=()
i=0
for cases in "${sanitize[@]}"; do
  for tool in "${tools[@]}"; do
    i=$((i + 1))
    gpu_sanitize "$out/sanitizer.$i.log" "$sanitizer_s" "$tool" "$cases" &
    sanitizer_pids+=($!)
  done
done
for tool in "${tools[@]}"; do
  i=$((i + 1))
  SEQKERNELS_ATTENTION=tensor_core gpu_sanitize "$out/sanitizer.$i.log" \
    "$sanitizer_s" "$tool" scripts/sanitize_attention_cases.py &
  sanitizer_pids+=($!)
done

gpu_pytest "$out/tests.log" "$test_s" "${test_args[@]}" \
  -n "${GPU_CHECK_WORKERS:-8}"
tests=$?
tests_summary="$(gpu_test_summary "$out/tests.log")"
gpu_stamp "tests done: $(gpu_status $tests); the Triton attention tests with SEQKERNELS_TRITON_TUNE=1 (budget ${tuned_s} s)"
# The autotuned launches (triton_kernels/tuning.py), appended to tests.log.
SEQKERNELS_TRITON_TUNE=1 gpu_pytest "$out/tuned.log" "$tuned_s" \
  tests/test_attention.py -k triton -n "${GPU_CHECK_WORKERS:-8}"
tuned=$?
{ echo; echo "== SEQKERNELS_TRITON_TUNE=1 tests/test_attention.py -k triton"; cat "$out/tuned.log"; } >>"$out/tests.log"
tuned_summary="$(gpu_test_summary "$out/tuned.log")"
rm -f "$out/tuned.log"
gpu_stamp "tuned tests done: $(gpu_status $tuned); waiting for the sanitizer"
wait "${sanitizer_pids[@]}"
cat "$out"/sanitizer.*.log >"$out/sanitizer.log" && rm "$out"/sanitizer.*.log
gpu_sanitizer_status "$out/sanitizer.log"
sanitizer=$?

gpu_stamp "benchmarks: ${bench_args[*]}"
bench=0
if [ "${bench_args[*]}" != skip ]; then
  gpu_bench "$out/bench.log" "$bench_s" "$out/bench" "${bench_args[@]}"
  bench=$?
  cp "$out/bench/results.csv" "$out/bench/table.md" "$out/" 2>/dev/null
  tar -cf "$out/plots.tar" -C "$out/bench" . 2>/dev/null
  rm -rf "$out/bench"
fi

{
  gpu_report_head "GPU check"
  echo "- build (sm_90a): ok"
  echo "- tests: $(gpu_status $tests): $tests_summary"
  echo "- Triton attention tests with SEQKERNELS_TRITON_TUNE=1: $(gpu_status $tuned): $tuned_summary"
  echo "- compute-sanitizer (${tools[*]} over ${sanitize[*]}, and the attention cases with SEQKERNELS_ATTENTION=tensor_core): $(gpu_status $sanitizer)"
  echo "- benchmarks (${bench_args[*]}): $(gpu_status $bench)"
  echo "- wall time: $(( $(date +%s) - gpu_start )) s"
  echo
  gpu_failed_tests "$out/tests.log"
  grep -E "^== |ERROR SUMMARY" "$out/sanitizer.log" | head -20
  echo
  gpu_target_table "$out/table.md"
} >"$out/report.md"
gpu_report_print "$out"
