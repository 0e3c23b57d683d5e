"""What the pytest-benchmark suites (test_bench_lstm.py,
test_bench_attention.py) share: their parameters and the timed call.

The clock is read on the host, so each timed call ends with a CUDA
synchronize (``harness.synchronized``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import pytest
import torch

from .cases import Case, clear_grads, runner
from .harness import synchronized
from .plan import Job, dtype_name


def params(jobs: Sequence[Job], label: Callable[[Job], str]) -> list:
    """A ``(job, mode)`` parameter per mode of every job, with the id
    ``<label(job)>-<provider>-<dtype>-<mode>``; a job with a skip reason is
    a skipped test. The torch.compile providers are left out: their compile
    time dwarfs these sizes."""
    out = []
    for job in jobs:
        if "compile" in job.provider:
            continue
        marks = [pytest.mark.skip(reason=job.skip)] if job.skip else []
        for mode in job.config.modes:
            out.append(pytest.param(
                job, mode, marks=marks,
                id=f"{label(job)}-{job.provider}-{dtype_name(job.dtype)}-"
                   f"{mode}"))
    return out


def time_case(benchmark, kernel, job: Job, case: Case, mode: str,
              device: torch.device) -> None:
    """Time ``case`` in ``mode`` with pytest-benchmark, after a warm-up,
    grouped by the kernel family's configuration and mode; ``kernel`` is
    the family's module (lstm or attention)."""
    cfg = job.config
    fn, leaves = runner(case, mode)
    timed = synchronized(fn, device)

    def call():
        clear_grads(leaves)
        timed()

    call()  # warm-up
    benchmark.group = f"{kernel.KERNEL} {cfg.kind} {cfg.shape} {mode}"
    benchmark.extra_info.update(
        provider=job.provider, dtype=str(job.dtype), mode=mode,
        config=cfg.shape, flops=kernel.flops(cfg, mode),
        bytes=kernel.pointwise_bytes(cfg, mode, job.dtype))
    benchmark(call)
