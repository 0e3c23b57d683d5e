#!/usr/bin/env bash
# The GPU check of the attention kernels (issue 14), a narrower sibling of
# scripts/gpu_check.sh made to prove and measure the opt-in tensor-core
# sdpa forward and backward and the tensor-core forward of the attention
# probabilities, with the SIMT, Triton and additive-attention kernels
# beside them, in one device-tool call of under 8 minutes on an H100/H200
# machine (no network, torch preinstalled). Prints its summary, the
# benchmark target table last.
#
#   bash scripts/gpu_check_attention.sh OUT_DIR
#
# Phases (each cut at its budget, in seconds, and said so):
#   wheels     .whl/*.whl (expecttest, for opcheck) into /tmp/site, on
#              PYTHONPATH
#   build      seqkernels for sm_90a only           GPU_ATTN_BUILD_S (140)
#   then side by side (nothing there is timed but the Triton tuner's
#   candidates, and the tuned tests check whichever it picks):
#     tests      pytest with SEQKERNELS_ATTENTION=tensor_core
#                                                   GPU_ATTN_TEST_S (150)
#                GPU_ATTN_TESTS  files (default
#                  tests/test_sdpa_tensor_core_cuda.py
#                  tests/test_attention_scores_tensor_core_cuda.py
#                  tests/test_attention.py tests/test_attention_ops.py
#                  tests/test_attention_modules.py; absent ones are left
#                  out, and said)
#                GPU_ATTN_TEST_K  -k expression (default "cuda and not
#                  reference-cuda": the cuda and triton-cuda backends in
#                  every dtype, and the whole of the two *_cuda.py files;
#                  "" for all). Not "not reference": that would also drop
#                  the tests named ..._matches_reference.
#                GPU_ATTN_WORKERS  pytest-xdist workers (default 8)
#     tuned      tests/test_attention.py with SEQKERNELS_TRITON_TUNE=1,
#                appended to tests.log              GPU_ATTN_TUNED_S (150)
#                GPU_ATTN_TUNED_K  -k expression (default "triton-cuda and
#                  not float32": the Triton sdpa, probabilities and
#                  additive attention in float16 and bfloat16, the launches
#                  the tuner serves)
#                GPU_ATTN_TUNED_WORKERS  pytest-xdist workers (default 4)
#     sanitizer  compute-sanitizer GPU_ATTN_SANITIZER_TOOLS (default memcheck
#                racecheck synccheck), side by side, over
#                scripts/sanitize_attention_cases.py with
#                SEQKERNELS_ATTENTION=tensor_core and GPU_ATTN_SANITIZER_ARGS
#                (default --tensor-core: only the cases that run a
#                tensor-core kernel, every template instance of them; the
#                first GPU run's racecheck of all the cases did not finish
#                in 220 s; "" for all)              GPU_ATTN_SANITIZER_S (150)
#   bench      benchmarks/run.py --quick --no-compile over A1/A2 (sdpa at
#              T=4096, head dims 64 and 128, the causal rows last), A3, A4
#              and A5's documents-masked twins of the T=4096 rows (ours
#              masked against ours unmasked; FlexAttention, their other
#              anchor, needs a compile) with seqkernels cuda (SIMT and
#              tensor-core) and triton,
#              torch's flash and cuDNN SDPA, FlexAttention, matmul+softmax,
#              nn.MultiheadAttention and the eager additive attention; a
#              hard stop at GPU_ATTN_BENCH_S (120), run.py's --time-limit at
#              GPU_ATTN_BENCH_LIMIT_S (90): jobs that would start later are
#              recorded as skipped. FlexAttention and the compiled additive
#              attention are recorded as skipped too (--no-compile: their
#              compiles would take the budget). GPU_ATTN_BENCH_ARGS replaces
#              the selection (--only/--configs/--providers) ("skip": none).
# Every phase at its budget: 410 s (140 + 150 + 120), 470 s with the kill
# grace periods (10, 30 and 20 s).
#
# In a copy of the tree (without .git, or with a stale one), set
# SEQKERNELS_COMMIT to the commit it holds. The helpers are
# scripts/gpu_lib.sh's.
#
# OUT_DIR receives 7 files (the device tool brings back 8 at most):
# report.md, build.log, tests.log (the tuned tests at its end),
# sanitizer.log, bench.log, results.csv, table.md.
set -uo pipefail
out="${1:?usage: gpu_check_attention.sh OUT_DIR}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cd "$(dirname "$0")/.." || exit 1
source scripts/gpu_lib.sh
build_s="${GPU_ATTN_BUILD_S:-140}"
test_s="${GPU_ATTN_TEST_S:-150}"
tuned_s="${GPU_ATTN_TUNED_S:-150}"
sanitizer_s="${GPU_ATTN_SANITIZER_S:-150}"
bench_s="${GPU_ATTN_BENCH_S:-120}"
bench_limit_s="${GPU_ATTN_BENCH_LIMIT_S:-90}"
test_k="${GPU_ATTN_TEST_K-cuda and not reference-cuda}"
tuned_k="${GPU_ATTN_TUNED_K-triton-cuda and not float32}"
read -r -a tools <<<"${GPU_ATTN_SANITIZER_TOOLS:-memcheck racecheck synccheck}"
read -r -a sanitizer_args <<<"${GPU_ATTN_SANITIZER_ARGS---tensor-core}"
# "weights-": the MultiheadAttention providers (seqkernels-mha-weights-cuda,
# seqkernels-mha-noweights-triton, ...); "seqkernels-cuda" takes
# seqkernels-cuda-tensor-core too.
read -r -a bench_args <<<"${GPU_ATTN_BENCH_ARGS:---only attention --configs sdpa-hd64-T4096,sdpa-hd128-T4096,A3,A4,sdpa-hd64-T4096-documents,sdpa-hd128-T4096-documents,sdpa-hd64-causal-T4096,sdpa-hd128-causal-T4096 --providers seqkernels-cuda,seqkernels-triton,weights-cuda,weights-triton,torch-sdpa-flash,torch-sdpa-cudnn,torch-flex,torch-matmul-softmax,torch-mha,torch-additive}"
scratch="$(mktemp -d)"

gpu_install_wheels >"$scratch/wheels.log" 2>&1
wheels="$(tr '\n' ' ' <"$scratch/wheels.log")"
gpu_stamp "wheels: $wheels"

gpu_stamp "build (sm_90a, budget ${build_s} s)"
gpu_build_or_stop "$out/build.log" "$build_s"

declare -a tests missing
read -r -a wanted <<<"${GPU_ATTN_TESTS:-tests/test_sdpa_tensor_core_cuda.py tests/test_attention_scores_tensor_core_cuda.py tests/test_attention.py tests/test_attention_ops.py tests/test_attention_modules.py}"
gpu_split_present tests missing "${wanted[@]}"
gpu_stamp "tests (budget ${test_s} s) beside the tuned Triton tests (${tuned_s} s) and compute-sanitizer (${tools[*]}, ${sanitizer_s} s each)"
sanitizer_pids=()
for tool in "${tools[@]}"; do
  SEQKERNELS_ATTENTION=tensor_core gpu_sanitize "$scratch/sanitizer.$tool.log" \
    "$sanitizer_s" "$tool" scripts/sanitize_attention_cases.py \
    "${sanitizer_args[@]}" &
  sanitizer_pids+=($!)
done
SEQKERNELS_TRITON_TUNE=1 gpu_pytest "$scratch/tuned.log" "$tuned_s" \
  tests/test_attention.py -k "$tuned_k" -n "${GPU_ATTN_TUNED_WORKERS:-4}" &
tuned_pid=$!
if [ ${#tests[@]} -gt 0 ]; then
  SEQKERNELS_ATTENTION=tensor_core gpu_pytest "$out/tests.log" "$test_s" \
    "${tests[@]}" -k "$test_k" -n "${GPU_ATTN_WORKERS:-8}"
  test_rc=$?
else
  echo "none of the test files is in the tree: ${missing[*]}" >"$out/tests.log"
  test_rc=1
fi
tests_summary="$(gpu_test_summary "$out/tests.log")"
gpu_stamp "tests done: $(gpu_status $test_rc); waiting for the tuned tests and the sanitizer"
wait "$tuned_pid"
tuned=$?
tuned_summary="$(gpu_test_summary "$scratch/tuned.log")"
{
  echo
  echo "== SEQKERNELS_TRITON_TUNE=1 tests/test_attention.py -k '$tuned_k'"
  cat "$scratch/tuned.log"
} >>"$out/tests.log"
wait "${sanitizer_pids[@]}"
cat "$scratch"/sanitizer.*.log >"$out/sanitizer.log"
gpu_sanitizer_status "$out/sanitizer.log"
sanitizer=$?

gpu_quick_bench "$out" "$bench_s" "$bench_limit_s" "${bench_args[@]}"
bench=$?

{
  gpu_report_head "GPU check: attention kernels (issue 14)"
  echo "- wheels: $wheels"
  echo "- build (sm_90a): ok"
  echo "- tests (SEQKERNELS_ATTENTION=tensor_core; ${tests[*]}; -k '${test_k}'): $(gpu_status $test_rc): $tests_summary"
  [ ${#missing[@]} -gt 0 ] && echo "- test files not in the tree (left out): ${missing[*]}"
  echo "- Triton attention tests with SEQKERNELS_TRITON_TUNE=1 (tests/test_attention.py; -k '${tuned_k}'): $(gpu_status $tuned): $tuned_summary"
  echo "- compute-sanitizer (${tools[*]} over scripts/sanitize_attention_cases.py${sanitizer_args[*]:+ ${sanitizer_args[*]}}; SEQKERNELS_ATTENTION=tensor_core): $(gpu_status $sanitizer)"
  echo "- benchmarks (${bench_args[*]}): $(gpu_status $bench)"
  echo "- wall time: $(( $(date +%s) - gpu_start )) s"
  echo
  gpu_failed_tests "$out/tests.log"
  grep -E "^== |ERROR SUMMARY|^tensor-core kernels" "$out/sanitizer.log" | head -20
  echo
  gpu_target_table "$out/table.md"
} >"$out/report.md"
rm -rf "$scratch"
gpu_report_print "$out"
