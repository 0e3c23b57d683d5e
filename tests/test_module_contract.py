"""The torch.nn contract of the drop-in modules: state_dict both ways,
parameter names, torch.compile(fullgraph=True), dropout in training, and
bad input: a clear error naming the argument, or the correct result."""

import math

import pytest
import torch

import seqkernels
from seqkernels import functional as F


def test_state_dict_round_trip():
    kw = dict(input_size=5, hidden_size=6, num_layers=2, bidirectional=True,
              proj_size=3)
    tor = torch.nn.LSTM(**kw)
    ours = seqkernels.LSTM(**kw)
    assert list(ours.state_dict()) == list(tor.state_dict())
    ours.load_state_dict(tor.state_dict())
    back = torch.nn.LSTM(**kw)
    back.load_state_dict(ours.state_dict())
    for a, b in zip(back.parameters(), tor.parameters()):
        assert torch.equal(a, b)
    assert isinstance(ours, torch.nn.RNNBase) and ours.mode == "LSTM"
    cell = seqkernels.LSTMCell(4, 5)
    assert list(cell.state_dict()) == list(torch.nn.LSTMCell(4, 5).state_dict())


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    m = seqkernels.LSTM(4, 6, num_layers=2, bidirectional=True,
                        batch_first=True)
    x = torch.randn(2, 5, 4, requires_grad=True)
    y, (h, c) = m(x)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    yc, (hc, cc) = compiled(x)
    torch.testing.assert_close(yc, y)
    torch.testing.assert_close(hc, h)
    torch.testing.assert_close(cc, c)
    g = torch.autograd.grad(y.sum() + h.sum(), [x, *m.parameters()])
    gc = torch.autograd.grad(yc.sum() + hc.sum(), [x, *m.parameters()])
    for a, b in zip(g, gc):
        torch.testing.assert_close(a, b)


def test_compile_inductor_fullgraph():
    torch.manual_seed(0)
    m = seqkernels.LSTM(4, 6)
    x = torch.randn(5, 2, 4)
    y, _ = m(x)
    yc, _ = torch.compile(m, fullgraph=True)(x)
    torch.testing.assert_close(yc, y)


def test_dropout_between_layers_in_training():
    torch.manual_seed(0)
    m = seqkernels.LSTM(4, 6, num_layers=2, dropout=0.5)
    x = torch.randn(5, 2, 4)
    m.eval()
    y_eval, _ = m(x)
    m.train()
    y_train, _ = m(x)
    assert not torch.allclose(y_eval, y_train)
    m.eval()
    torch.testing.assert_close(m(x)[0], y_eval)


def test_non_contiguous_input_is_correct():
    torch.manual_seed(0)
    m = seqkernels.LSTM(4, 6)
    x = torch.randn(2, 5, 8)[:, :, ::2].transpose(0, 1)
    assert not x.is_contiguous()
    torch.testing.assert_close(m(x)[0], m(x.contiguous())[0])


def test_nan_propagates_like_torch():
    torch.manual_seed(0)
    tor = torch.nn.LSTM(3, 4)
    ours = seqkernels.LSTM(3, 4)
    ours.load_state_dict(tor.state_dict())
    x = torch.randn(4, 2, 3)
    x[1, 0, 0] = math.nan
    x[2, 1, 1] = math.inf
    y_t, _ = tor(x)
    y_o, _ = ours(x)
    assert torch.equal(y_t.isnan(), y_o.isnan())


@pytest.mark.parametrize("call,match", [
    (lambda m: m(torch.randn(2, 3, 4, 5)), "input must be 2-D"),
    (lambda m: m(torch.randn(5, 2, 7)), "w_ih|input_size|shape"),
    (lambda m: m(torch.randn(5, 2, 4), (torch.zeros(1, 3, 6), torch.zeros(1, 2, 6))),
     r"hx\[0\] must have shape"),
    (lambda m: m(torch.randn(5, 2, 4), (torch.zeros(1, 2, 6), torch.zeros(1, 2, 5))),
     r"hx\[1\] must have shape"),
    (lambda m: m(torch.randn(5, 2, 4), (torch.zeros(1, 2, 6, dtype=torch.float64),
                                       torch.zeros(1, 2, 6))),
     r"hx\[0\] must have input's dtype"),
    (lambda m: m(torch.randn(0, 2, 4)), "at least one step"),
    (lambda m: m(torch.randn(5, 0, 4)), "at least one step"),
    (lambda m: m(torch.randint(0, 3, (5, 2, 4))), "floating point"),
])
def test_bad_input_names_the_argument(call, match):
    m = seqkernels.LSTM(4, 6, backend="cpu")
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        call(m)


def test_bad_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        seqkernels.LSTM(4, 6, backend="fast")(torch.randn(3, 2, 4))
    with pytest.raises(ValueError, match="backend='cuda' needs CUDA tensors"):
        seqkernels.LSTM(4, 6, backend="cuda")(torch.randn(3, 2, 4))


def test_backend_from_environment(monkeypatch):
    monkeypatch.setenv("SEQKERNELS_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="'nonsense'"):
        seqkernels.LSTM(4, 6)(torch.randn(3, 2, 4))
    monkeypatch.setenv("SEQKERNELS_BACKEND", "reference")
    m = seqkernels.LSTM(4, 6)
    tor = torch.nn.LSTM(4, 6)
    tor.load_state_dict(m.state_dict())
    x = torch.randn(3, 2, 4)
    torch.testing.assert_close(m(x)[0], tor(x)[0])


@pytest.mark.parametrize("lengths,match", [
    (torch.tensor([3, 0]), r"in \[1, 4\]"),
    (torch.tensor([3, 5]), r"in \[1, 4\]"),
    (torch.tensor([3, 2, 1]), "one per batch element"),
    (torch.tensor([3.0, 2.0]), "integer"),
])
def test_bad_lengths(lengths, match):
    w = [(torch.randn(24, 4), torch.randn(24, 6), None, None, None)]
    with pytest.raises(ValueError, match=match):
        F.lstm(torch.randn(4, 2, 4), None, w, num_layers=1, lengths=lengths)


def test_bad_cell_input():
    cell = seqkernels.LSTMCell(4, 6)
    with pytest.raises(ValueError, match="input must be 1-D"):
        cell(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"hx\[1\] must have shape"):
        cell(torch.randn(2, 4), (torch.zeros(2, 6), torch.zeros(3, 6)))


def test_op_checks_name_the_argument():
    x = torch.randn(3, 2, 4)
    with pytest.raises(RuntimeError, match="w_hh must have shape"):
        torch.ops.seqkernels.lstm_seq(x, torch.zeros(2, 5), torch.zeros(2, 5),
                                      torch.randn(20, 4), torch.randn(20, 4),
                                      None, None, None)
    with pytest.raises(RuntimeError, match="lengths must be int64"):
        torch.ops.seqkernels.lstm_seq(x, torch.zeros(2, 5), torch.zeros(2, 5),
                                      torch.randn(20, 4), torch.randn(20, 5),
                                      None, None, torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("kind,used", [
    ("LSTM", "h_n"), ("LSTM", "c_n"), ("LSTM", "output"), ("GRU", "h_n"),
    ("RNN", "output")])
def test_gradient_through_one_output(kind, used, backend):
    """Outputs left out of the loss reach the backward as None (the
    autograd engine does not fill zeros for them): the gradients are those
    of torch.nn all the same."""
    torch.manual_seed(0)
    tor = getattr(torch.nn, kind)(3, 4, num_layers=2, dtype=torch.float64)
    ours = getattr(seqkernels, kind)(3, 4, num_layers=2, dtype=torch.float64,
                                     backend=backend)
    ours.load_state_dict(tor.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)

    def grads(m):
        xi = x.clone().requires_grad_()
        out, state = m(xi)
        picked = {"output": out, "h_n": state[0] if kind == "LSTM" else state,
                  "c_n": state[1] if kind == "LSTM" else None}[used]
        picked.pow(2).sum().backward()
        return [xi.grad] + [p.grad for p in m.parameters()]

    for ours_g, tor_g in zip(grads(ours), grads(tor)):
        torch.testing.assert_close(ours_g, tor_g)
