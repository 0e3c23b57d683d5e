"""pytest-benchmark suite for the attention providers: one small
configuration of each kind (tiny on CPU), every provider the machine runs
but torch.compile, fwd and fwd+bwd.

    pytest benchmarks --benchmark-only [-k sdpa] [--benchmark-compare]

As in test_bench_lstm.py: the clock is read on the host, so each timed call
ends with a CUDA synchronize, and each case is checked once against the
float32 PyTorch reference before it is timed (a wrong result fails the
test). A seqkernels kernel that is not registered for this device (the
dispatcher's NotImplementedError) is a skip whose reason says so; run.py is
where such a gap counts as a failure.
"""

import pytest
import torch

from benchmarks import attention, check, suite

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
MODES = ("fwd", "fwd+bwd")
if DEVICE.type == "cuda":
    CONFIGS = [
        attention.Config("bench-sdpa", "sdpa", B=4, Tq=1024, heads=16, D=64,
                         modes=MODES),
        attention.Config("bench-sdpa-causal", "sdpa", B=4, Tq=1024,
                         heads=16, D=64, causal=True, modes=MODES),
        attention.Config("bench-scores", "scores", B=4, Tq=1024, heads=16,
                         D=64, modes=MODES),
        attention.Config("bench-mha-weights", "mha-weights", B=4, Tq=1024,
                         heads=16, D=64, modes=MODES),
        attention.Config("bench-mha-noweights", "mha-noweights", B=4,
                         Tq=1024, heads=16, D=64, modes=MODES),
        attention.Config("bench-additive", "additive", B=8, Tq=128, H=128,
                         D=128, modes=MODES),
    ]
else:
    CONFIGS = [
        attention.Config("bench-sdpa", "sdpa", B=2, Tq=32, heads=2, D=16,
                         modes=MODES, sanity=True),
        attention.Config("bench-sdpa-causal", "sdpa", B=2, Tq=32, heads=2,
                         D=16, causal=True, modes=MODES, sanity=True),
        attention.Config("bench-scores", "scores", B=2, Tq=32, heads=2, D=16,
                         modes=MODES, sanity=True),
        attention.Config("bench-mha-weights", "mha-weights", B=2, Tq=16,
                         heads=2, D=8, modes=MODES, sanity=True),
        attention.Config("bench-mha-noweights", "mha-noweights", B=2, Tq=16,
                         heads=2, D=8, modes=MODES, sanity=True),
        attention.Config("bench-additive", "additive", B=2, Tq=8, H=8, D=8,
                         modes=MODES, sanity=True),
    ]


@pytest.mark.parametrize("job,mode", suite.params(
    attention.plan(DEVICE, CONFIGS, compile=False),
    lambda job: job.config.name[len("bench-"):]))
def test_attention(benchmark, job, mode):
    cfg = job.config
    case = attention.build(job, DEVICE)
    try:
        result = check.check(case, attention.reference(job, DEVICE),
                             job.dtype, cfg.train)
    except NotImplementedError as exc:
        if not job.provider.startswith("seqkernels-"):
            raise
        first = " ".join(str(exc).split()).split(". ", 1)[0]
        pytest.skip(f"{job.provider}: not available on {DEVICE.type}: "
                    f"{first}")
    assert result.ok, f"{job.provider}: {result.detail}"

    suite.time_case(benchmark, attention, job, case, mode, DEVICE)
