"""The CPU recurrent kernels take their matrix products from oneDNN (torch's
mkldnn::_linear_pointwise op) in float32 where torch has oneDNN enabled, and
from ATen's mm where it is disabled (torch.backends.mkldnn) or the dtype is
float64. Both routes against torch.nn under the tolerance rule, and a check
that each route is the one taken."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import seqkernels
from conftest import CPU
from recurrent_harness import compare_recurrent

MODULES = {
    "lstm": (torch.nn.LSTM, seqkernels.LSTM, {}),
    "lstm_proj": (torch.nn.LSTM, seqkernels.LSTM, dict(proj_size=3)),
    "gru": (torch.nn.GRU, seqkernels.GRU, {}),
    "rnn_relu": (torch.nn.RNN, seqkernels.RNN, dict(nonlinearity="relu")),
}
ONEDNN = "mkldnn::_linear_pointwise"
needs_onednn = pytest.mark.skipif(
    not torch.backends.mkldnn.is_available(),
    reason="this torch is built without oneDNN")


def _ops_run(fn):
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("onednn", [
    pytest.param(True, marks=needs_onednn, id="onednn"),
    pytest.param(False, id="aten-mm")])
@pytest.mark.parametrize("kind", list(MODULES))
def test_both_routes_match_torch(kind, onednn):
    oracle, ours, extra = MODULES[kind]
    ctor = dict(input_size=7, hidden_size=9, num_layers=2,
                bidirectional=True, **extra)
    with torch.backends.mkldnn.flags(enabled=onednn):
        compare_recurrent(oracle, ours, "cpu", CPU, torch.float32, ctor,
                          T=6, B=3, lengths=[6, 2, 4], enforce_sorted=False,
                          with_hx=True)


@needs_onednn
@pytest.mark.parametrize("dtype,onednn,expected", [
    (torch.float32, True, True),
    (torch.float32, False, False),
    (torch.float64, True, False)], ids=["float32", "disabled", "float64"])
def test_route_taken(dtype, onednn, expected):
    m = seqkernels.LSTM(4, 5, backend="cpu", dtype=dtype)
    x = torch.randn(3, 2, 4, dtype=dtype, requires_grad=True)

    def forward_backward():
        m(x)[0].sum().backward()

    with torch.backends.mkldnn.flags(enabled=onednn):
        assert (ONEDNN in _ops_run(forward_backward)) == expected
