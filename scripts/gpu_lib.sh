# Shell helpers of the GPU checks (scripts/gpu_check.sh,
# scripts/gpu_check_recurrence.sh, scripts/gpu_check_attention.sh), sourced
# from the repository root. They run on the device tool's GPU machines: no
# network, torch preinstalled.
#
#   PYTHON   the python that holds torch (default python3)

py="${PYTHON:-python3}"
gpu_start=$(date +%s)

# The text of a phase's exit status.
gpu_status() {
  case "$1" in
    0) echo "ok" ;;
    124) echo "CUT at its time budget (exit 124)" ;;
    *) echo "FAILED (exit $1)" ;;
  esac
}

# A line of progress, with the seconds since the script started.
gpu_stamp() { echo "[$(( $(date +%s) - gpu_start )) s] $*"; }

# The commit the tree holds: SEQKERNELS_COMMIT where set (the machine's copy
# of .git can be stale), else git's.
gpu_commit() {
  echo "${SEQKERNELS_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
}

gpu_versions() {
  echo "GPU: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  "$py" -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "triton", triton.__version__)'
}

# gpu_report_head TITLE: a report's title, then the run's commit, date, GPU
# and versions as list items.
gpu_report_head() {
  echo "# $1"
  echo
  echo "- commit: $(gpu_commit)"
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  gpu_versions | sed 's/^/- /'
}

# gpu_report_print OUT: OUT/report.md, a warning added to it first where
# OUT holds more files than the device tool brings back (8).
gpu_report_print() {
  local files
  files=$(find "$1" -type f | wc -l)
  [ "$files" -gt 8 ] && echo "WARNING: $files files in $1; the device tool brings back 8" >>"$1/report.md"
  cat "$1/report.md"
}

# Installs the wheels carried in .whl/ (packages the machine lacks, e.g.
# expecttest, flashrnn) into /tmp/site and puts it on PYTHONPATH, as the
# device README says. Prints what it installed, or why nothing.
gpu_install_wheels() {
  local found=(.whl/*.whl)
  if [ ! -e "${found[0]}" ]; then
    echo "no wheels in .whl/ (carry it: carry=[\".whl\"])"
    return 0
  fi
  if "$py" -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/site "${found[@]}"; then
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    echo "installed into /tmp/site: ${found[*]##*/}"
  else
    echo "FAILED to install the wheels of .whl/"
    return 1
  fi
}

# gpu_build LOG BUDGET: builds seqkernels for sm_90a only into $py (about
# 90 s on the 16 cores), then appends its build_info to LOG.
gpu_build() {
  SEQKERNELS_CUDA=1 SEQKERNELS_CUDA_ARCHS=90a MAX_JOBS="${MAX_JOBS:-16}" \
    timeout -k 10 "$2" "$py" -m pip install --no-build-isolation --no-deps \
    -e . >"$1" 2>&1 || return
  "$py" -c "import torch, seqkernels; print(seqkernels.build_info())" \
    >>"$1" 2>&1
}

# gpu_build_or_stop LOG BUDGET: gpu_build; where it fails, LOG's end and
# the end of the script (exit 1), since nothing after the build can run.
gpu_build_or_stop() {
  gpu_build "$1" "$2"
  local rc=$?
  [ $rc -eq 0 ] && return 0
  tail -40 "$1"
  echo "build $(gpu_status $rc): see ${1##*/}"
  exit 1
}

# gpu_split_present PRESENT MISSING FILE...: the FILEs that are in the tree
# into the array named PRESENT, the others into the one named MISSING.
gpu_split_present() {
  local -n present_="$1" missing_="$2"
  local f
  shift 2
  present_=()
  missing_=()
  for f in "$@"; do
    if [ -e "$f" ]; then present_+=("$f"); else missing_+=("$f"); fi
  done
}

# gpu_pytest LOG BUDGET ARGS...: pytest on CUDA, each result printed with
# its test id as it comes (-v), so a run cut at its budget still names its
# failures; a hung test costs one worker (pytest-timeout, where installed).
# Returns pytest's status, or 124 when the budget ran out.
gpu_pytest() {
  local log="$1" budget="$2" per_test=() t0 rc
  shift 2
  "$py" -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 180)
  t0=$(date +%s)
  timeout -s INT -k 30 "$budget" "$py" -m pytest "$@" -v -p no:cacheprovider \
    --durations=15 -rfE "${per_test[@]}" >"$log" 2>&1
  rc=$?
  # pytest exits 2 when interrupted: say "cut" when the budget ran out.
  if [ $rc -eq 2 ] && [ $(( $(date +%s) - t0 )) -ge "$budget" ]; then
    rc=124
  fi
  return $rc
}

# The closing count of a gpu_pytest log ("12 passed, 3 skipped in 40 s").
gpu_test_summary() {
  grep -E '(passed|failed|error|skipped|no tests ran)' "$1" | tail -1 \
    | sed -e 's/^=* *//' -e 's/ *=*$//'
}

# The failed test ids of a gpu_pytest log, one a line.
gpu_failed_tests() {
  grep -E "(^| )(FAILED|ERROR) tests/" "$1" \
    | sed -e 's/^\[gw[0-9]*\] \[ *[0-9]*%\] //' -e 's/ - .*//' -e 's/ *$//' \
    | sort -u | head -40
}

# gpu_sanitize LOG BUDGET TOOL SCRIPT [ARGS...]: one compute-sanitizer run
# of a case script, its output in LOG, closed by "== exit N (TOOL SCRIPT)".
gpu_sanitize() {
  local log="$1" budget="$2" tool="$3" script="$4"
  shift 4
  {
    echo "== ${SEQKERNELS_ATTENTION:+SEQKERNELS_ATTENTION=$SEQKERNELS_ATTENTION }compute-sanitizer --tool $tool $script $*"
    timeout -k 10 "$budget" compute-sanitizer --tool "$tool" \
      --error-exitcode 1 "$py" "$script" "$@" 2>&1
    echo "== exit $? ($tool $script${SEQKERNELS_ATTENTION:+ SEQKERNELS_ATTENTION=$SEQKERNELS_ATTENTION})"
  } >"$log" 2>&1
}

# gpu_sanitizer_status LOG: the status of the gpu_sanitize runs gathered in
# LOG, for gpu_status: 1 where one failed (or none ran), else 124 where one
# ran out of time, else 0.
gpu_sanitizer_status() {
  local codes
  codes="$(sed -n 's/^== exit \([0-9]*\) .*/\1/p' "$1")"
  grep -qvxE "0|124" <<<"$codes" && return 1
  grep -qx 124 <<<"$codes" && return 124
  return 0
}

# gpu_bench LOG BUDGET DIR ARGS...: benchmarks/run.py ARGS --out DIR, its
# output appended to LOG, stopped hard at BUDGET seconds (give run.py a
# --time-limit well inside it). A run stopped there keeps its CSV rows
# (written job by job): the table is drawn from them. Returns run.py's
# status, or 124 when the budget ran out.
gpu_bench() {
  local log="$1" budget="$2" dir="$3" rc
  shift 3
  timeout -s INT -k 20 "$budget" "$py" benchmarks/run.py "$@" --out "$dir" \
    >>"$log" 2>&1
  rc=$?
  if [ ! -f "$dir/table.md" ] && [ -f "$dir/results.csv" ]; then
    "$py" benchmarks/report.py "$dir/results.csv" >>"$log" 2>&1
  fi
  return $rc
}

# gpu_quick_bench OUT BUDGET LIMIT ARGS...: gpu_bench of run.py --quick
# --no-compile --time-limit LIMIT ARGS (none where ARGS is "skip"), its
# output appended to OUT/bench.log, its results.csv and table.md copied
# into OUT (its plots left out: the device tool brings back 8 files).
# Returns as gpu_bench.
gpu_quick_bench() {
  local out="$1" budget="$2" limit="$3" rc
  shift 3
  [ "$*" = skip ] && return 0
  gpu_stamp "benchmarks (budget ${budget} s): $*"
  gpu_bench "$out/bench.log" "$budget" "$out/bench" --quick --no-compile \
    --time-limit "$limit" "$@"
  rc=$?
  cp "$out/bench/results.csv" "$out/bench/table.md" "$out/" 2>/dev/null
  rm -rf "$out/bench"
  return $rc
}

# gpu_target_table TABLE: the target rows of a table.md of run.py, or a
# line saying there is none.
gpu_target_table() {
  sed -n '/^## Targets/,/^## All measurements/p' "$1" 2>/dev/null \
    | grep -v "^## All" || echo "(no benchmark table: see bench.log)"
}
