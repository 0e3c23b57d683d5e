"""Where and with what a run was measured: device, library versions, the
commit, date and host, written into every row of the CSV."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(root: Path = REPO_ROOT) -> str:
    """Short commit of ``root``, with "-dirty" if the work tree (tracked or
    untracked files) differs from it; "unknown" outside a git checkout.
    $SEQKERNELS_COMMIT, where set, wins: a copy of the tree (as on the GPU
    machines) may carry a stale .git or none."""
    if os.environ.get("SEQKERNELS_COMMIT"):
        return os.environ["SEQKERNELS_COMMIT"]

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True,
                              text=True, check=True, timeout=30).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def environment(device: torch.device) -> dict[str, str]:
    """Where and with what a run was measured: the CSV's record columns."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"{_cpu_name()} ({torch.get_num_threads()} threads)"
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = "none"
    cudnn = torch.backends.cudnn.version() if device.type == "cuda" else None
    return {
        "device": name,
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": (torch.version.cuda or "none")
        + (f" cudnn {cudnn}" if cudnn else ""),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc)
        .strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": platform.node() or os.environ.get("HOSTNAME", ""),
    }
