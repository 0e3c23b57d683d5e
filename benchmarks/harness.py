"""Timing and peak memory, in one place.

Clocks
    CUDA: ``triton.testing.do_bench`` after a synchronize. It warms up, then
    times each repetition with CUDA events and writes a 256 MB buffer before
    each one, so every repetition starts with a cold L2. We ask it for the
    median and the 20% / 80% quantiles.

    CPU: ``torch.utils.benchmark.Timer.blocked_autorange`` with all of
    torch's threads (Timer's default is one thread, which would handicap
    every provider that uses more). A call that takes longer than the
    minimum run time gives blocked_autorange a single sample, so more single
    calls are added until ``cpu_min_reps`` samples exist (within a time cap);
    the median and the 20% / 80% quantiles are taken over the samples, as on
    CUDA, so the two devices' columns mean the same thing.

Peak memory
    CUDA: ``torch.cuda.max_memory_allocated`` over one call of the runner
    (cases.py), after ``reset_peak_memory_stats``: everything allocated at
    the peak, inputs and weights included. CPU: NaN (no allocator
    statistics).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from .cases import Case, clear_grads, runner

QUANTILES = (0.5, 0.2, 0.8)


@dataclass
class Settings:
    """How long to measure. ``quick`` trades precision for time."""
    warmup_ms: float = 25.0          # CUDA: do_bench warm-up time
    rep_ms: float = 100.0            # CUDA: do_bench measurement time
    cpu_min_run_s: float = 0.5       # CPU: blocked_autorange min_run_time
    cpu_min_reps: int = 5            # CPU: at least this many samples ...
    cpu_max_s: float = 20.0          # ... unless they would take longer

    @classmethod
    def quick(cls) -> "Settings":
        # On the CPU the quick run's ~110 measurements each last at least
        # cpu_min_run_s: half a second keeps the run (the C1 grid's 24 cells
        # among them, 36 with its infer mode) near two minutes on two cores; a fast call still gets
        # hundreds of repetitions, a slow one its cpu_min_reps.
        return cls(warmup_ms=10.0, rep_ms=50.0, cpu_min_run_s=0.5,
                   cpu_min_reps=5, cpu_max_s=8.0)


@dataclass
class Timing:
    median_ms: float
    p20_ms: float
    p80_ms: float
    reps: int
    peak_mem_mb: float = math.nan


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synchronized(fn: Callable[[], object],
                 device: torch.device) -> Callable[[], None]:
    """``fn`` followed by a device synchronize: for clocks that read the host
    time (pytest-benchmark), so the clock stops after the GPU's work."""
    if device.type != "cuda":
        return fn

    def run():
        fn()
        torch.cuda.synchronize(device)
    return run


def _quantiles(times_ms: Sequence[float]) -> tuple[float, float, float]:
    t = torch.tensor(list(times_ms), dtype=torch.float64)
    q = torch.quantile(t, torch.tensor(QUANTILES, dtype=torch.float64))
    return float(q[0]), float(q[1]), float(q[2])


def bench(fn: Callable[[], object], device: torch.device,
          settings: Settings = Settings(),
          grad_to_none: Sequence[Tensor] = ()) -> Timing:
    """Median and 20% / 80% quantiles of ``fn``'s time in milliseconds.

    ``grad_to_none``: tensors whose ``.grad`` is reset before each
    repetition (outside the timed region on CUDA; on CPU the reset is a few
    attribute writes inside it).
    """
    if device.type == "cuda":
        import triton.testing
        clear_grads(grad_to_none)
        fn()
        torch.cuda.synchronize(device)
        med, p20, p80 = triton.testing.do_bench(
            fn, warmup=settings.warmup_ms, rep=settings.rep_ms,
            grad_to_none=list(grad_to_none) or None, quantiles=list(QUANTILES))
        # do_bench does not say how many repetitions it ran; estimate it.
        reps = max(1, int(settings.rep_ms / max(med, 1e-6)))
        return Timing(med, p20, p80, reps)

    from torch.utils.benchmark import Timer
    if grad_to_none:
        leaves = list(grad_to_none)

        def call():
            clear_grads(leaves)
            fn()
    else:
        call = fn
    call()  # warm-up (allocator, lazy initialization, compiled code)
    timer = Timer(stmt="call()", globals={"call": call},
                  num_threads=torch.get_num_threads())
    start = time.perf_counter()
    measurement = timer.blocked_autorange(min_run_time=settings.cpu_min_run_s)
    times = [t * 1e3 for t in measurement.times]
    while (len(times) < settings.cpu_min_reps
           and time.perf_counter() - start < settings.cpu_max_s):
        times.extend(t * 1e3 for t in timer.timeit(1).times)
    med, p20, p80 = _quantiles(times)
    return Timing(med, p20, p80, len(times))


def peak_memory_mb(fn: Callable[[], object], device: torch.device,
                   grad_to_none: Sequence[Tensor] = ()) -> float:
    """Peak allocated MB during one call of ``fn`` (NaN on CPU)."""
    if device.type != "cuda":
        return math.nan
    clear_grads(grad_to_none)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def measure(case: Case, mode: str, device: torch.device,
            settings: Settings = Settings()) -> Timing:
    """Time ``case`` in ``mode`` and read its peak memory."""
    fn, leaves = runner(case, mode)
    timing = bench(fn, device, settings, grad_to_none=leaves)
    timing.peak_mem_mb = peak_memory_mb(fn, device, grad_to_none=leaves)
    clear_grads(leaves)
    return timing


def tflops(flops: float, ms: float) -> float:
    """Achieved TFLOP/s of ``flops`` floating-point operations in ``ms``."""
    if not ms or math.isnan(ms) or not flops:
        return math.nan
    return flops / (ms * 1e-3) / 1e12


def gbps(nbytes: float, ms: float) -> float:
    """Achieved GB/s (1e9 bytes per second) of ``nbytes`` moved in ``ms``."""
    if not ms or math.isnan(ms) or not nbytes:
        return math.nan
    return nbytes / (ms * 1e-3) / 1e9
