"""Timing and measurement, in one place.

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

Modes (``runner``)
    ``fwd``      the forward; with autograd recording (a training forward,
                 which saves what the backward needs) unless the case is an
                 inference case, which runs under ``torch.no_grad``.
    ``fwd+bwd``  forward, then backward from random output gradients.
    ``bwd``      the backward alone. The forward runs once, outside the clock,
                 and each repetition calls ``backward(retain_graph=True)`` on
                 that graph. We chose this over "time(fwd+bwd) - time(fwd)":
                 a difference of two medians carries the noise of both, can
                 come out negative for short workloads, and hides a forward
                 that is slower in training mode. The cost: the graph must
                 support a second backward. Every hand-written backward here
                 reads its saved tensors without freeing them, which is all
                 retain_graph asks; torch.compile's donated buffers do not
                 allow it, so lstm.py turns them off for its compiled
                 provider. Gradients are reset to None before each
                 repetition so no accumulation kernel is timed.

Peak memory
    CUDA: ``torch.cuda.max_memory_allocated`` over one call of the runner,
    after ``reset_peak_memory_stats``: everything allocated at the peak,
    inputs and weights included. CPU: NaN (no allocator statistics).

Ceilings (measured in the same run, reported beside every figure)
    CUDA: a bf16 GEMM (8192^3 by default) in TFLOP/s, and a device-to-device
    ``copy_`` of a 1 GiB tensor in GB/s, counting read plus write bytes.
    CPU: a float32 GEMM in TFLOP/s (tiny numbers: GFLOP/s / 1000), the
    faster of MKL (torch.matmul) and oneDNN (nn.LSTM's library; twice MKL's
    rate on the AMD CPU we measured), and a memcpy-like ``copy_`` of a
    tensor larger than the last-level cache.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

REPO_ROOT = Path(__file__).resolve().parent.parent
MODES = ("fwd", "bwd", "fwd+bwd")
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
        return cls(warmup_ms=10.0, rep_ms=50.0, cpu_min_run_s=1.0,
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


def _clear(tensors: Sequence[Tensor]) -> None:
    for t in tensors:
        t.grad = None


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
        _clear(grad_to_none)
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
            _clear(leaves)
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
    _clear(grad_to_none)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


# --------------------------------------------------------------------------
# What is timed: a case and its runners


@dataclass
class Job:
    """One (configuration, provider, dtype) of a kernel family's plan."""
    config: object
    provider: str
    dtype: torch.dtype
    skip: str = ""          # why this job does not run, if it does not


def recurrent_dtypes(device: torch.device):
    """(ours, the anchors') dtypes of the recurrent rows: ours in bfloat16
    on the GPU, beside cuDNN in bfloat16 and in float16 (its fastest);
    float32 on the CPU."""
    if device.type == "cuda":
        return torch.bfloat16, (torch.bfloat16, torch.float16)
    return torch.float32, (torch.float32,)


def seqkernels_jobs(config: object, device: torch.device, prefix: str,
                    dtype: torch.dtype, extra: Sequence[str] = ()) -> list[Job]:
    """A job per seqkernels backend the device can serve (plus ``extra``
    backends), named ``prefix + backend``; a backend this build or machine
    lacks is listed as skipped, with the reason."""
    from seqkernels import _backend
    backends = (["cuda", "triton", "auto"] if device.type == "cuda"
                else ["cpu", "auto"]) + list(extra)
    jobs = []
    for b in backends:
        skip = ""
        if b == "cuda" and not _backend.CUDA_BUILT:
            skip = "the extension was built without CUDA kernels"
        if b == "triton" and not _backend.TRITON_INSTALLED:
            skip = "triton is not installed"
        jobs.append(Job(config, prefix + b, dtype, skip))
    return jobs


@dataclass(frozen=True)
class Pairing:
    """A target row of TARGETS.md: which of our timings is set beside which
    anchor's (report.target_table draws the table from these)."""
    target: str                 # id in TARGETS.md
    workload: str
    mode: str
    ours_config: str
    anchor_config: str
    anchor_provider: Optional[str]   # None: the same provider as ours
    target_text: str
    threshold: Optional[float]       # met when anchor/ours >= threshold
    metric: str = "time"             # "time"; "copy": ours GB/s / copy
    #                                  ceiling >= threshold; "memory": ours
    #                                  peak / io_mem_mb <= threshold


@dataclass
class Case:
    """One provider on one configuration, ready to run.

    ``forward()`` returns the outputs, always in the same order for every
    provider of a kernel (so check.py can compare them); ``leaves`` are the
    tensors that require grad, by name (the same names across providers).
    """
    forward: Callable[[], Sequence[Tensor]]
    leaves: dict[str, Tensor] = field(default_factory=dict)
    inference: bool = False
    note: str = ""


def random_grads(outputs: Sequence[Tensor],
                 generator: Optional[torch.Generator] = None) -> list[Tensor]:
    """Random (never zero) output gradients, one per differentiable output."""
    grads = []
    for out in outputs:
        if out.requires_grad:
            g = torch.randn(out.shape, generator=generator, dtype=torch.float32,
                            device="cpu")
            grads.append(g.to(device=out.device, dtype=out.dtype))
    return grads


def _differentiable(outputs: Sequence[Tensor]) -> list[Tensor]:
    return [o for o in outputs if o.requires_grad]


def runner(case: Case, mode: str) -> tuple[Callable[[], None], list[Tensor]]:
    """``(fn, grad_to_none)`` that runs ``case`` in ``mode``."""
    leaves = list(case.leaves.values())
    if mode == "fwd":
        if case.inference:
            def fwd():
                with torch.no_grad():
                    case.forward()
            return fwd, []

        def fwd_train():
            case.forward()
        return fwd_train, leaves
    if case.inference:
        raise ValueError(f"mode {mode!r} needs a training case")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    outputs = _differentiable(case.forward())
    if not outputs:
        raise ValueError("the case's outputs do not require grad")
    grads = random_grads(outputs)
    if mode == "fwd+bwd":
        del outputs

        def fwd_bwd():
            torch.autograd.backward(_differentiable(case.forward()), grads)
        return fwd_bwd, leaves

    def bwd():  # the forward ran once, above; its graph is kept
        torch.autograd.backward(outputs, grads, retain_graph=True)
    return bwd, leaves


def measure(case: Case, mode: str, device: torch.device,
            settings: Settings = Settings()) -> Timing:
    """Time ``case`` in ``mode`` and read its peak memory."""
    fn, leaves = runner(case, mode)
    timing = bench(fn, device, settings, grad_to_none=leaves)
    timing.peak_mem_mb = peak_memory_mb(fn, device, grad_to_none=leaves)
    _clear(leaves)
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


# --------------------------------------------------------------------------
# Ceilings


@dataclass
class Ceilings:
    gemm_tflops: float
    gemm_desc: str
    gemm_ms: float
    copy_gbps: float
    copy_desc: str
    copy_ms: float


def measure_ceilings(device: torch.device, settings: Settings = Settings(),
                     gemm_n: Optional[int] = None,
                     copy_mb: Optional[int] = None) -> Ceilings:
    """The GEMM rate and the copy bandwidth of ``device``, measured now.

    Defaults: CUDA bf16 8192^3 and a 1 GiB copy; CPU float32 1024^3 and a
    256 MiB copy (larger than any last-level cache of a CPU we run on).
    """
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    n = gemm_n or (8192 if cuda else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = bench(lambda: torch.matmul(a, b), device, settings)
    library = "cuBLAS" if cuda else "MKL"
    if not cuda and torch.backends.mkldnn.is_available():
        # torch.matmul goes to MKL, which on some CPUs (AMD) takes a slower
        # path than oneDNN, the library behind nn.LSTM on CPU: the ceiling
        # is the faster of the two.
        am, bm = a.to_mkldnn(), b.to_mkldnn()
        t2 = bench(lambda: torch._C._nn.mkldnn_linear(am, bm), device,
                   settings)
        if t2.median_ms < t.median_ms:
            t, library = t2, "oneDNN"
        del am, bm
    gemm = tflops(2.0 * n ** 3, t.median_ms)
    del a, b
    size = (copy_mb or (1024 if cuda else 256)) * 2**20
    src = torch.randn(size // 4, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    c = bench(lambda: dst.copy_(src), device, settings)
    copy = gbps(2.0 * size, c.median_ms)
    del src, dst
    if cuda:
        torch.cuda.empty_cache()
    name = "bf16" if cuda else "fp32"
    return Ceilings(gemm, f"{name} GEMM {n}^3 ({library})", t.median_ms, copy,
                    f"copy_ {size // 2**20} MiB (read+write)", c.median_ms)


# --------------------------------------------------------------------------
# Environment record


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
