"""seqkernels.LSTM against torch.nn.LSTM holding the same weights: outputs,
final states and gradients of input, states and every parameter, for every
backend this machine runs."""

import pytest
import torch

from conftest import HAS_CUDA, backend_params
import recurrent_harness
from lstm_harness import compare_lstm

CONFIGS = {
    **recurrent_harness.CONFIGS,
    "proj_size": (
        dict(input_size=5, hidden_size=7, proj_size=3, num_layers=2),
        dict(T=5, B=3, with_hx=True)),
    "packed_unsorted": (
        dict(input_size=5, hidden_size=6, bidirectional=True),
        dict(T=6, B=4, lengths=[3, 6, 1, 4], enforce_sorted=False,
             with_hx=True)),
    "packed_projection_batch_first": (
        dict(input_size=5, hidden_size=6, proj_size=2, batch_first=True,
             bidirectional=True),
        dict(T=5, B=3, lengths=[2, 5, 4], enforce_sorted=False)),
}



@pytest.mark.parametrize("backend,device,dtype,config",
                         backend_params(CONFIGS, with_dtypes=True))
def test_lstm_matches_torch(backend, device, dtype, config):
    ctor, run = CONFIGS[config]
    compare_lstm(backend, device, dtype, ctor, **run)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_long_recurrence_gpu(backend):
    """T = 256 steps (k = 3 in the tolerance rule): rounding compounds."""
    compare_lstm(backend, torch.device("cuda"), torch.bfloat16,
                 dict(input_size=64, hidden_size=96), T=256, B=8)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_tf32_when_cudnn_allows_it(backend):
    """With ``cudnn.allow_tf32`` on (torch's default, which the suite turns
    off), the recurrence stays full float32: only our run sees the switch,
    and it is held to the bound of cuDNN in full float32 (TF32's 10-bit
    mantissa would miss that bound by orders of magnitude)."""
    compare_lstm(backend, torch.device("cuda"), torch.float32,
                 dict(input_size=64, hidden_size=96, num_layers=2), T=64, B=8,
                 ours_context=torch.backends.cudnn.flags(enabled=True,
                                                         allow_tf32=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16],
                         ids=["float32", "bfloat16"])
def test_long_recurrence_cpu(dtype):
    compare_lstm("cpu", torch.device("cpu"), dtype,
                 dict(input_size=32, hidden_size=48), T=256, B=4)
