"""pytest-benchmark suite for the LSTM providers: small configurations (tiny
on CPU), every provider the machine runs, fwd and fwd+bwd.

    pytest benchmarks --benchmark-only [-k seq] [--benchmark-compare]

The clock is read on the host, so each timed call ends with a CUDA
synchronize (suite.py). Each case is checked once against
the float32 PyTorch reference before it is timed; a wrong result fails the
test instead of producing a number. The main job (run.py) is the one that
measures the target rows: this suite is for quick comparisons between
commits.
"""

import pytest
import torch

from benchmarks import check, lstm, suite

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


@pytest.mark.parametrize("job,mode", suite.params(
    lstm.plan(DEVICE, [SEQ, CELL, POINTWISE], compile=False),
    lambda job: job.config.kind))
def test_lstm(benchmark, job, mode):
    cfg = job.config
    case = lstm.build(job, DEVICE)
    result = check.check(case, lstm.reference(job, DEVICE), job.dtype,
                         cfg.train)
    assert result.ok, f"{job.provider}: {result.detail}"

    suite.time_case(benchmark, lstm, job, case, mode, DEVICE)
