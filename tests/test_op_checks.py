"""Bad arguments get the same error on every backend: the compiled kernels
raise it from their checks (csrc/recurrent_host.cpp, attention_checks.h),
and the variants written in Python (reference, Triton) run the same checks
through ``_C.check_<op>`` before they launch. Each case calls an op with
one bad argument and compares the message, word for word, with the one of
the compiled variant on the same device."""

import pytest
import torch

from conftest import backend_params
from seqkernels.ops._variants import FAMILIES


def _r(device, *shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype, device=device)


def _lstm_seq(dev, w_hh=(20, 5), lengths_dtype=torch.int64):
    return ("lstm_seq", (_r(dev, 3, 2, 4), _r(dev, 2, 5), _r(dev, 2, 5),
                         _r(dev, 20, 4), _r(dev, *w_hh), None, None,
                         torch.tensor([3, 1], dtype=lengths_dtype,
                                      device=dev)))


def _lstm_seq_backward(dev, saved_dtype=torch.float32):
    _, args = _lstm_seq(dev)
    y, h_n, c_n, saved, cell_states, cell_outputs = FAMILIES[
        "lstm_seq"].forward["reference"](*args)
    x, h0, c0, w_ih, w_hh, _, w_hr, lengths = args
    return ("lstm_seq_backward",
            (torch.ones_like(y), torch.ones_like(h_n), torch.ones_like(c_n),
             x, h0, c0, w_ih, w_hh, w_hr, lengths, y,
             saved.to(saved_dtype), cell_states, cell_outputs, False))


def _attention(dev, H=6):
    return (_r(dev, 2, 3, H), _r(dev, 2, 5, H), _r(dev, 2, 5, 4), _r(dev, H))


# name -> builder of (op, bad arguments) on a device
CASES = {
    "lstm_seq_w_hh": lambda d: _lstm_seq(d, w_hh=(20, 4)),
    "lstm_seq_lengths_dtype": lambda d: _lstm_seq(d, lengths_dtype=torch.int32),
    "lstm_seq_backward_saved_dtype":
        lambda d: _lstm_seq_backward(d, saved_dtype=torch.float64),
    "gru_seq_b_hh": lambda d: ("gru_seq", (
        _r(d, 3, 2, 4), _r(d, 2, 5), _r(d, 15, 4), _r(d, 15, 5), None,
        _r(d, 5), None)),
    "rnn_seq_nonlinearity": lambda d: ("rnn_seq", (
        _r(d, 3, 2, 4), _r(d, 2, 5), _r(d, 5, 4), _r(d, 5, 5), None, None,
        "swish")),
    "lstm_cell_h_proj": lambda d: ("lstm_cell", (
        _r(d, 2, 20), _r(d, 2, 16), _r(d, 2, 5), None)),
    "gru_cell_backward_saved": lambda d: ("gru_cell_backward", (
        _r(d, 2, 5), _r(d, 2, 5), _r(d, 2, 15))),
    "rnn_cell_bias": lambda d: ("rnn_cell", (
        _r(d, 2, 5), _r(d, 2, 5), _r(d, 4), "tanh")),
    "sdpa_rng": lambda d: ("sdpa", (
        _r(d, 1, 2, 3, 4), _r(d, 1, 2, 5, 4), _r(d, 1, 2, 5, 4), None, 0.1,
        False, 0.5, torch.zeros(3, dtype=torch.int64, device=d))),
    "sdpa_mask_shape": lambda d: ("sdpa", (
        _r(d, 1, 2, 3, 4), _r(d, 1, 2, 5, 4), _r(d, 1, 2, 5, 4),
        torch.ones(1, 1, 3, 5, dtype=torch.bool, device=d), 0.0, False, 0.5,
        None)),
    "attention_scores_head_dim": lambda d: ("attention_scores", (
        _r(d, 1, 2, 3, 4), _r(d, 1, 2, 5, 3), None, False, 0.5)),
    "additive_attention_bias": lambda d: ("additive_attention", (
        *_attention(d), _r(d, 7), None, False)),
}


def _op(name, backend):
    if name.endswith("_backward"):
        return FAMILIES[name[:-len("_backward")]].backward[backend]
    return FAMILIES[name].forward[backend]


def _message(name, backend, args):
    with pytest.raises(RuntimeError) as info:
        _op(name, backend)(*args)
    return str(info.value).split("\n")[0]


@pytest.mark.parametrize("backend,device,case", backend_params(CASES))
def test_bad_argument_gets_the_compiled_kernels_message(backend, device,
                                                        case):
    torch.manual_seed(0)
    name, args = CASES[case](device)
    ours = _message(name, backend, args)
    assert ours.startswith("seqkernels: "), ours
    assert ours == _message(name, device.type, args)
