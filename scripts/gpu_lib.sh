# Shell helpers of the GPU checks (scripts/gpu_check.sh,
# scripts/gpu_check_recurrence.sh), sourced from the repository root. They
# run on the device tool's GPU machines: no network, torch preinstalled.
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

# Installs the wheels carried in .whl/ (packages the machine lacks, e.g.
# expecttest, flashrnn) into /tmp/site and puts it on PYTHONPATH, as the
# device README says. Prints what it installed, or why nothing.
gpu_install_wheels() {
  local wheels=(.whl/*.whl)
  if [ ! -e "${wheels[0]}" ]; then
    echo "no wheels in .whl/ (carry it: carry=[\".whl\"])"
    return 0
  fi
  if "$py" -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}"; then
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    echo "installed into /tmp/site: ${wheels[*]##*/}"
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
