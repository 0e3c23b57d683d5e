#!/usr/bin/env bash
# The GPU check of the persistent recurrence (issue 12), a narrower sibling
# of scripts/gpu_check.sh made to prove and measure it in one device-tool
# call of under 8 minutes on an H100/H200 machine (no network, torch
# preinstalled). Prints its summary, the benchmark target table last.
#
#   bash scripts/gpu_check_recurrence.sh OUT_DIR
#
# Phases (each cut at its budget, in seconds, and said so):
#   wheels     .whl/*.whl (flashrnn, expecttest) into /tmp/site, on
#              PYTHONPATH
#   build      seqkernels for sm_90a only           GPU_REC_BUILD_S (150)
#     beside it, and on until the benchmarks: FlashRNN's first call at the
#     F1 shape, which builds its CUDA kernels (scripts/flashrnn_warmup.py;
#     needs no seqkernels)                         GPU_REC_FLASHRNN_S (300)
#   then side by side, nothing timed:
#     tests      pytest with SEQKERNELS_RECURRENCE=persistent
#                                                   GPU_REC_TEST_S (120)
#                GPU_REC_TESTS  files (default tests/test_persistent_cuda.py
#                  tests/test_persistent_triton.py tests/test_lstm.py
#                  tests/test_gru_rnn.py; absent ones are left out, and said)
#                GPU_REC_TEST_K  -k expression (default "(cuda or gpu) and
#                  not float32 and not reference-cuda": the CUDA and Triton
#                  backends in the dtypes the persistent kernels serve,
#                  without the reference backend's cases ("not reference"
#                  would drop test_cuda_persistent_kernels_match_reference,
#                  200 of test_persistent_cuda.py's 250); "" for all)
#                GPU_REC_WORKERS  pytest-xdist workers (default 8)
#     sanitizer  compute-sanitizer GPU_REC_SANITIZER_TOOLS (default memcheck
#                racecheck synccheck), side by side, over
#                scripts/sanitize_persistent_cases.py
#                                                   GPU_REC_SANITIZER_S (120)
#     the exchange micro-benchmark's build (benchmarks/exchange/run.sh)
#   exchange   the exchange micro-benchmark alone (the FlashRNN call may
#              still be compiling on the CPU)       GPU_REC_EXCHANGE_S (30)
#              GPU_REC_EXCHANGE_ARGS (default --blocks 8,16,66,132
#              --clusters 8,16)
#   bench      benchmarks/run.py --quick --no-compile over L1, L2 (and F1),
#              L7, L4, L3 with cuDNN (fp16, bf16), seqkernels per-step and
#              persistent (cuda, triton) and FlashRNN; a hard stop at
#              GPU_REC_BENCH_S (140), run.py's --time-limit at
#              GPU_REC_BENCH_LIMIT_S (115): jobs that would start later are
#              recorded as skipped. GPU_REC_BENCH_ARGS replaces the
#              selection (--configs/--providers/--only) ("skip": none).
# Every phase at its budget: about 450 s, 480 s with the kill grace periods
# (an estimate of the usual run, from the build and benchmark times of the
# earlier GPU runs: under 400 s). Where FlashRNN's first call
# failed or ran out of time, its benchmark rows are skipped with that reason
# (SEQKERNELS_BENCH_FLASHRNN_SKIP); without .whl/flashrnn-*.whl they say it
# is not installed.
#
# In a copy of the tree (without .git, or with a stale one), set
# SEQKERNELS_COMMIT to the commit it holds. The helpers are
# scripts/gpu_lib.sh's.
#
# OUT_DIR receives 8 files (the device tool brings back no more): report.md,
# build.log (seqkernels and the exchange program), tests.log, sanitizer.log,
# exchange.csv, bench.log (the FlashRNN call, then run.py), results.csv,
# table.md.
set -uo pipefail
out="${1:?usage: gpu_check_recurrence.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.."
source scripts/gpu_lib.sh
build_s="${GPU_REC_BUILD_S:-150}"
flashrnn_s="${GPU_REC_FLASHRNN_S:-300}"
test_s="${GPU_REC_TEST_S:-120}"
sanitizer_s="${GPU_REC_SANITIZER_S:-120}"
exchange_s="${GPU_REC_EXCHANGE_S:-30}"
bench_s="${GPU_REC_BENCH_S:-140}"
bench_limit_s="${GPU_REC_BENCH_LIMIT_S:-115}"
test_k="${GPU_REC_TEST_K-(cuda or gpu) and not float32 and not reference-cuda}"
read -r -a tools <<<"${GPU_REC_SANITIZER_TOOLS:-memcheck racecheck synccheck}"
read -r -a exchange_args <<<"${GPU_REC_EXCHANGE_ARGS:---blocks 8,16,66,132 --clusters 8,16}"
read -r -a bench_args <<<"${GPU_REC_BENCH_ARGS:---only lstm,gru_rnn --configs L1,L2,L7,L4,L3 --providers torch-nn,seqkernels-cuda,seqkernels-triton,flashrnn}"
scratch="$(mktemp -d)"
# FlashRNN's kernels go where the warm-up and the benchmarks both look.
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/torch_extensions}"

gpu_install_wheels >"$scratch/wheels.log" 2>&1
wheels="$(tr '\n' ' ' <"$scratch/wheels.log")"
gpu_stamp "wheels: $wheels"

gpu_stamp "build (sm_90a, budget ${build_s} s) beside FlashRNN's first call (budget ${flashrnn_s} s)"
timeout -k 10 "$flashrnn_s" env MAX_JOBS="${GPU_REC_FLASHRNN_JOBS:-6}" \
  "$py" scripts/flashrnn_warmup.py >"$scratch/flashrnn.log" 2>&1 &
flashrnn_pid=$!
gpu_build_or_stop "$out/build.log" "$build_s"

declare -a tests missing
read -r -a wanted <<<"${GPU_REC_TESTS:-tests/test_persistent_cuda.py tests/test_persistent_triton.py tests/test_lstm.py tests/test_gru_rnn.py}"
gpu_split_present tests missing "${wanted[@]}"
gpu_stamp "tests (budget ${test_s} s) beside compute-sanitizer (${tools[*]}, ${sanitizer_s} s each)"
sanitizer_pids=()
for tool in "${tools[@]}"; do
  SEQKERNELS_RECURRENCE=persistent gpu_sanitize "$scratch/sanitizer.$tool.log" \
    "$sanitizer_s" "$tool" scripts/sanitize_persistent_cases.py &
  sanitizer_pids+=($!)
done
bash benchmarks/exchange/run.sh --build-only >"$scratch/exchange-build.log" 2>&1
exchange_build=$?
k_args=()
[ -n "$test_k" ] && k_args=(-k "$test_k")
if [ ${#tests[@]} -gt 0 ]; then
  SEQKERNELS_RECURRENCE=persistent gpu_pytest "$out/tests.log" "$test_s" \
    "${tests[@]}" "${k_args[@]}" -n "${GPU_REC_WORKERS:-8}"
  test_rc=$?
else
  echo "none of the test files is in the tree: ${missing[*]}" >"$out/tests.log"
  test_rc=1
fi
gpu_stamp "tests done: $(gpu_status $test_rc); waiting for the sanitizer"
wait "${sanitizer_pids[@]}"
cat "$scratch"/sanitizer.*.log >"$out/sanitizer.log"
gpu_sanitizer_status "$out/sanitizer.log"
sanitizer=$?

{
  echo "== exchange micro-benchmark build"
  cat "$scratch/exchange-build.log"
} >>"$out/build.log"
exchange=$exchange_build
if [ $exchange_build -eq 0 ]; then
  gpu_stamp "exchange micro-benchmark (budget ${exchange_s} s)"
  timeout -k 5 "$exchange_s" build/exchange/exchange "${exchange_args[@]}" \
    --csv "$out/exchange.csv" >"$scratch/exchange.md" 2>&1
  exchange=$?
else
  echo "exchange program: build FAILED (see build.log)" >"$scratch/exchange.md"
fi

gpu_stamp "waiting for FlashRNN's first call"
wait "$flashrnn_pid"
flashrnn=$?
flashrnn_line="$(tail -1 "$scratch/flashrnn.log")"
case $flashrnn in
  0) ;;
  3) export SEQKERNELS_BENCH_FLASHRNN_SKIP="${flashrnn_line#*cannot run: }" ;;
  124|137) export SEQKERNELS_BENCH_FLASHRNN_SKIP="FlashRNN's first call (its CUDA kernel build) did not finish in ${flashrnn_s} s (GPU_REC_FLASHRNN_S)" ;;
  139) export SEQKERNELS_BENCH_FLASHRNN_SKIP="FlashRNN's first call crashed (SIGSEGV; on this image a C++ exception from an extension built here is a SIGSEGV, and FlashRNN's autotuning catches failing kernel variants as exceptions)" ;;
  *) export SEQKERNELS_BENCH_FLASHRNN_SKIP="FlashRNN's first call failed (exit $flashrnn): ${flashrnn_line#*FAILED }" ;;
esac
{
  echo "== FlashRNN's first call (scripts/flashrnn_warmup.py): exit $flashrnn"
  cat "$scratch/flashrnn.log"
  echo
} >"$out/bench.log"

gpu_quick_bench "$out" "$bench_s" "$bench_limit_s" "${bench_args[@]}"
bench=$?

{
  gpu_report_head "GPU check: persistent recurrence (issue 12)"
  echo "- wheels: $wheels"
  echo "- build (sm_90a): ok"
  echo "- tests (SEQKERNELS_RECURRENCE=persistent; ${tests[*]}; -k '${test_k}'): $(gpu_status $test_rc): $(gpu_test_summary "$out/tests.log")"
  [ ${#missing[@]} -gt 0 ] && echo "- test files not in the tree (left out): ${missing[*]}"
  echo "- compute-sanitizer (${tools[*]} over scripts/sanitize_persistent_cases.py): $(gpu_status $sanitizer)"
  echo "- FlashRNN's first call: $([ $flashrnn -eq 3 ] && echo "not run" || gpu_status $flashrnn): $flashrnn_line"
  echo "- exchange micro-benchmark: $(gpu_status $exchange)"
  echo "- benchmarks (${bench_args[*]}): $(gpu_status $bench)"
  echo "- wall time: $(( $(date +%s) - gpu_start )) s"
  echo
  gpu_failed_tests "$out/tests.log"
  grep -E "^== |ERROR SUMMARY" "$out/sanitizer.log" | head -20
  echo
  echo "## Exchange of h between blocks"
  echo
  cat "$scratch/exchange.md"
  echo
  gpu_target_table "$out/table.md"
} >"$out/report.md"
rm -rf "$scratch"
gpu_report_print "$out"
