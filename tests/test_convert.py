"""seqkernels.convert: a model mixing every convertible module kind gives
the same outputs and gradients before and after conversion, in both
directions; parameters, buffers, modes and hooks carry over; what cannot be
carried is refused with a clear error."""

import pytest
import torch

import seqkernels
from conftest import BACKEND_CASES

TWINS = {
    torch.nn.LSTM: seqkernels.LSTM,
    torch.nn.GRU: seqkernels.GRU,
    torch.nn.RNN: seqkernels.RNN,
    torch.nn.LSTMCell: seqkernels.LSTMCell,
    torch.nn.GRUCell: seqkernels.GRUCell,
    torch.nn.RNNCell: seqkernels.RNNCell,
    torch.nn.MultiheadAttention: seqkernels.MultiheadAttention,
}


class Mixed(torch.nn.Module):
    """Every convertible kind, nested in containers, plus modules that stay
    (Linear, LayerNorm) and a module used at two places."""

    def __init__(self, attention=True, dtype=torch.float64):
        super().__init__()
        kw = dict(dtype=dtype)
        self.encoder = torch.nn.Sequential(torch.nn.Linear(3, 4, **kw))
        self.lstm = torch.nn.LSTM(4, 5, num_layers=2, bidirectional=True,
                                  batch_first=True, **kw)
        self.rnns = torch.nn.ModuleDict({
            "gru": torch.nn.GRU(10, 6, batch_first=True, **kw),
            "relu": torch.nn.RNN(6, 6, nonlinearity="relu", batch_first=True,
                                 **kw),
        })
        self.attention = (torch.nn.MultiheadAttention(6, 2, batch_first=True,
                                                      **kw)
                          if attention else None)
        self.norm = torch.nn.LayerNorm(6, **kw)
        self.cells = torch.nn.ModuleList([
            torch.nn.LSTMCell(6, 6, **kw), torch.nn.GRUCell(6, 6, **kw),
            torch.nn.RNNCell(6, 6, **kw)])
        self.shared = self.cells[1]  # the same module at a second place

    def forward(self, x):
        y, _ = self.lstm(self.encoder(x))
        y, h = self.rnns["gru"](y)
        y, h = self.rnns["relu"](y, h)
        if self.attention is not None:
            y = y + self.attention(y, y, y)[0]
        y = self.norm(y)
        h, c = self.cells[0](y[:, -1])
        g = self.shared(y[:, 0], h)
        return y, self.cells[2](g, c)


def _outputs_and_grads(model, x):
    x = x.detach().clone().requires_grad_()
    outs = model(x)
    gen = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum()
               for o in outs)
    grads = torch.autograd.grad(loss, [x, *model.parameters()])
    return [o.detach() for o in outs] + list(grads)


def _assert_same(a, b):
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        torch.testing.assert_close(u, v, rtol=1e-10, atol=1e-10,
                                   msg=lambda m: f"result {i}: {m}")


def _module_types(model):
    return {name: type(m) for name, m in model.named_modules()}


@pytest.mark.parametrize("backend,attention", [
    ("reference", True),  # every kind, attention included
    ("cpu", False),
    pytest.param("triton", False, marks=next(
        p for p in BACKEND_CASES if p.id == "triton-interpreter").marks),
])
def test_round_trip_same_outputs_and_gradients(backend, attention):
    torch.manual_seed(0)
    model = Mixed(attention).eval()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    before = _outputs_and_grads(model, x)
    torch_types = _module_types(model)
    params = dict(model.named_parameters())

    converted = seqkernels.convert(model, backend=backend)
    assert converted is model
    for name, m in converted.named_modules():
        old = torch_types[name]
        assert type(m) is TWINS.get(old, old), name
        if old in TWINS:
            assert m.backend == backend
    assert converted.shared is converted.cells[1]
    # The very same parameters, in the same order under the same names.
    assert list(converted.named_parameters()) == list(params.items())
    assert all(a is b for a, b in zip(converted.parameters(),
                                      params.values()))
    _assert_same(_outputs_and_grads(converted, x), before)

    back = seqkernels.convert(converted, to="torch")
    assert _module_types(back) == torch_types
    assert not any(hasattr(m, "backend") for m in back.modules())
    _assert_same(_outputs_and_grads(back, x), before)


def test_training_mode_dtype_device_and_optimizer():
    torch.manual_seed(0)
    model = Mixed(attention=False, dtype=torch.float32).train()
    model.cells.eval()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seqkernels.convert(model, backend="cpu")
    assert model.lstm.training and not model.cells[0].training
    for p in model.parameters():
        assert p.dtype == torch.float32 and p.device.type == "cpu"
    before = model.lstm.weight_ih_l0.detach().clone()
    y, h = model(torch.randn(2, 5, 3))
    (y.sum() + h.sum()).backward()
    opt.step()  # the optimizer holds the twins' parameters
    assert not torch.equal(model.lstm.weight_ih_l0, before)


def test_convert_the_root_module():
    gru = torch.nn.GRU(3, 4)
    twin = seqkernels.convert(gru, backend="cpu")
    assert type(twin) is seqkernels.GRU and twin.weight_hh_l0 is gru.weight_hh_l0
    assert type(seqkernels.convert(twin, to="torch")) is torch.nn.GRU
    # Modules that are already converted (or never convertible) stay.
    assert seqkernels.convert(twin, backend="cpu") is twin


def test_converting_again_changes_the_backend():
    torch.manual_seed(0)
    model = Mixed(dtype=torch.float64).eval()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    before = _outputs_and_grads(model, x)
    seqkernels.convert(model, backend="cpu")
    model, report = seqkernels.convert(model, backend="reference",
                                       return_report=True)
    ours = [m for m in model.modules() if hasattr(m, "backend")]
    assert len(ours) == 7 and all(m.backend == "reference" for m in ours)
    assert {e.action for e in report.entries} == {"backend"}
    assert sorted(e.name for e in report.entries) == sorted(
        name for name, m in model.named_modules() if m in ours)
    _assert_same(_outputs_and_grads(model, x), before)
    _, report = seqkernels.convert(model, backend="reference",
                                   return_report=True)
    assert {e.action for e in report.entries} == {"left"}


class MyLSTM(torch.nn.LSTM):
    """A user's subclass: convert leaves it."""


def test_report_lists_what_was_replaced_changed_and_left(capsys):
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.GRU(3, 4),
                                MyLSTM(3, 4), seqkernels.AdditiveAttention(
                                    3, 3, 2))
    model[1].register_forward_hook(lambda *args: None)
    converted, report = seqkernels.convert(model, backend="cpu",
                                           return_report=True)
    assert converted is model
    assert [(e.name, e.action) for e in report.entries] == [
        ("1", "replaced"), ("2", "left"), ("3", "backend")]
    assert report.entries[0].detail == "torch.nn.GRU -> seqkernels.GRU"
    assert "a subclass of torch.nn.LSTM" in report.entries[1].detail
    assert report.entries[2].detail == (
        "seqkernels.AdditiveAttention: None -> 'cpu'")
    assert capsys.readouterr().out == ""  # quiet unless verbose

    assert seqkernels.convert(model, to="torch", verbose=True) is model
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "seqkernels.convert(to='torch'): 1 replaced, 1 left"
    assert printed[1].split() == ["replaced", "1", "seqkernels.GRU", "->",
                                  "torch.nn.GRU"]
    assert printed[2].split()[:3] == ["left", "3",
                                      "seqkernels.AdditiveAttention:"]
    assert str(seqkernels.convert(torch.nn.Linear(2, 2),
                                  return_report=True)[1]) == (
        "seqkernels.convert(to='seqkernels', backend='auto'): "
        "nothing to convert")


def test_hooks_carry_over_and_handles_still_remove_them():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.GRU(3, 4))
    gru = model[0]
    calls = []
    handles = [
        gru.register_forward_pre_hook(lambda m, args: calls.append("pre")),
        gru.register_forward_hook(
            lambda m, args, out: (out[0] * 2, out[1])),  # changes the output
        gru.register_full_backward_hook(
            lambda m, gin, gout: calls.append("backward")),
        gru.register_state_dict_post_hook(
            lambda m, sd, prefix, local: calls.append("state_dict")),
    ]
    x = torch.randn(5, 2, 3, requires_grad=True)
    y_torch = model(x)[0]
    seqkernels.convert(model, backend="cpu")
    assert type(model[0]) is seqkernels.GRU
    calls.clear()
    y = model(x)[0]
    torch.testing.assert_close(y, y_torch)  # the forward hook still doubles
    y.sum().backward()
    model.state_dict()
    assert calls == ["pre", "backward", "state_dict"]
    for h in handles:
        h.remove()
    calls.clear()
    y = model(x)[0]
    y.sum().backward()
    torch.testing.assert_close(y * 2, y_torch)
    assert calls == []


def test_refuses_what_it_cannot_carry():
    gru = torch.nn.GRU(3, 4)
    gru.register_backward_hook(lambda m, gin, gout: None)
    with pytest.raises(ValueError, match="old-style backward hooks"):
        seqkernels.convert(torch.nn.Sequential(gru))

    lstm = torch.nn.LSTM(3, 4)
    torch.nn.utils.parametrize.register_parametrization(
        lstm, "weight_hh_l0", torch.nn.Identity())
    with pytest.raises(ValueError, match="parametrizations"):
        seqkernels.convert(torch.nn.Sequential(lstm))

    for m in (seqkernels.RNN(3, 4, nonlinearity="identity"),
              seqkernels.RNNCell(3, 4, nonlinearity="identity")):
        with pytest.raises(ValueError, match="nonlinearity='identity'"):
            seqkernels.convert(torch.nn.Sequential(m), to="torch")

    with pytest.raises(ValueError, match="to must be"):
        seqkernels.convert(gru, to="onnx")
    with pytest.raises(ValueError, match="backend must be one of"):
        seqkernels.convert(torch.nn.LSTM(3, 4), backend="fast")
