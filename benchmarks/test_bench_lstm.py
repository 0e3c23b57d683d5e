"""pytest-benchmark suite for the LSTM providers: small configurations (tiny
on CPU), every provider the machine runs, fwd and fwd+bwd.

    pytest benchmarks --benchmark-only [-k seq] [--benchmark-compare]

The clock is read on the host, so each timed call ends with a CUDA
synchronize (``harness.synchronized``). Each case is checked once against
the float32 PyTorch reference before it is timed; a wrong result fails the
test instead of producing a number. The main job (run.py) is the one that
measures the target rows: this suite is for quick comparisons between
commits.
"""

import pytest
import torch

from benchmarks import check, harness, lstm

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if DEVICE.type == "cuda":
    SEQ = lstm.Config("bench-seq", B=16, I=256, H=256, T=64,
                      modes=("fwd", "fwd+bwd"))
    CELL = lstm.Config("bench-cell", kind="cell", B=1024, I=512, H=512)
    POINTWISE = lstm.Config("bench-pointwise", kind="pointwise", B=1024,
                            H=512)
else:
    SEQ = lstm.Config("bench-seq", B=4, I=32, H=32, T=16,
                      modes=("fwd", "fwd+bwd"))
    CELL = lstm.Config("bench-cell", kind="cell", B=64, I=64, H=64)
    POINTWISE = lstm.Config("bench-pointwise", kind="pointwise", B=64, H=64)


def _jobs():
    params = []
    # torch.compile is left out: its compile time dwarfs these sizes.
    for job in lstm.plan(DEVICE, [SEQ, CELL, POINTWISE], compile=False):
        if job.provider == "torch-compile-loop":
            continue
        dtype = str(job.dtype).replace("torch.", "")
        marks = [pytest.mark.skip(reason=job.skip)] if job.skip else []
        for mode in job.config.modes:
            params.append(pytest.param(
                job, mode, marks=marks,
                id=f"{job.config.kind}-{job.provider}-{dtype}-{mode}"))
    return params


@pytest.mark.parametrize("job,mode", _jobs())
def test_lstm(benchmark, job, mode):
    cfg = job.config
    case = lstm.build(job, DEVICE)
    result = check.check(case, lstm.reference(job, DEVICE), job.dtype,
                         cfg.train)
    assert result.ok, f"{job.provider}: {result.detail}"

    fn, leaves = harness.runner(case, mode)
    timed = harness.synchronized(fn, DEVICE)

    def call():
        for leaf in leaves:
            leaf.grad = None
        timed()

    call()  # warm-up
    benchmark.group = f"lstm {cfg.kind} {cfg.shape} {mode}"
    benchmark.extra_info.update(
        provider=job.provider, dtype=str(job.dtype), mode=mode,
        config=cfg.shape, flops=lstm.flops(cfg, mode),
        bytes=lstm.pointwise_bytes(cfg, mode, job.dtype))
    benchmark(call)
