"""GRU and vanilla RNN (tanh, relu, identity) on the shared recurrent
machinery: the modules against torch.nn.GRU / RNN / GRUCell / RNNCell
holding the same weights (the identity RNN against an explicit linear
recurrence), every backend this machine runs, outputs, final states and all
gradients; gradcheck and opcheck of every new op; determinism;
torch.compile; the module contract; bad input."""

import doctest
import math

import pytest
import torch

import seqkernels
from conftest import (BACKEND_CASES, CPU, HAS_CUDA, assert_all_match,
                      backend_params, dtypes_for, seed)
import recurrent_harness
from recurrent_harness import LinearRNN, compare_recurrent
from seqkernels import functional as F
from seqkernels.ops._variants import op

CONFIGS = {
    **recurrent_harness.CONFIGS,
    "packed_unsorted": (
        dict(input_size=5, hidden_size=6, bidirectional=True, batch_first=True),
        dict(T=6, B=4, lengths=[3, 6, 1, 4], enforce_sorted=False,
             with_hx=True)),
}

# (oracle class, seqkernels class, extra constructor arguments, configs).
# tanh and relu differ only in the activation, so relu runs a subset; the
# identity RNN's oracle is an explicit loop (recurrent_harness.LinearRNN).
KINDS = {
    "gru": (torch.nn.GRU, seqkernels.GRU, {}, list(CONFIGS)),
    "rnn_tanh": (torch.nn.RNN, seqkernels.RNN, {}, list(CONFIGS)),
    "rnn_relu": (torch.nn.RNN, seqkernels.RNN, dict(nonlinearity="relu"),
                 ["basic", "odd_sizes", "two_layers_bidirectional",
                  "packed_unsorted"]),
    "rnn_identity": (LinearRNN, seqkernels.RNN,
                     dict(nonlinearity="identity"),
                     ["basic", "one_step_one_row", "two_layers_bidirectional",
                      "batch_first_with_hx", "no_bias", "packed_unsorted",
                      "unbatched"]),
}
MODULE_CASES = [(kind, name) for kind, (*_, configs) in KINDS.items()
                for name in configs]


@pytest.mark.parametrize("backend,device,dtype,kind,config",
                         backend_params(MODULE_CASES, with_dtypes=True))
def test_module_matches_torch(backend, device, dtype, kind, config):
    oracle, ours, extra, _ = KINDS[kind]
    ctor, run = CONFIGS[config]
    compare_recurrent(oracle, ours, backend, device, dtype,
                      {**ctor, **extra}, **run)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")
@pytest.mark.parametrize("backend", ["cuda", "triton"])
@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_long_recurrence_gpu(backend, kind):
    """T = 256 steps (k = 3 in the tolerance rule): rounding compounds."""
    oracle, ours, extra, _ = KINDS[kind]
    compare_recurrent(oracle, ours, backend, torch.device("cuda"),
                      torch.bfloat16,
                      dict(input_size=64, hidden_size=96, **extra), T=256,
                      B=8)


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_long_recurrence_cpu_bfloat16(kind):
    """T = 256 steps in bfloat16 on the cpu backend, as on the GPU above."""
    oracle, ours, extra, _ = KINDS[kind]
    compare_recurrent(oracle, ours, "cpu", CPU, torch.bfloat16,
                      dict(input_size=32, hidden_size=48, **extra), T=256,
                      B=4)


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------

class LinearRNNCell(torch.nn.RNNCell):
    """h' = x W_ih^T + b_ih + h W_hh^T + b_hh in plain torch ops: the oracle
    of RNNCell(nonlinearity="identity")."""

    def __init__(self, *args, nonlinearity="identity", **kwargs):
        super().__init__(*args, nonlinearity="tanh", **kwargs)

    def forward(self, input, hx=None):
        if hx is None:
            hx = input.new_zeros(*input.shape[:-1], self.hidden_size)
        h = input @ self.weight_ih.t() + hx @ self.weight_hh.t()
        if self.bias:
            h = h + self.bias_ih + self.bias_hh
        return h


CELL_KINDS = {
    "gru": (torch.nn.GRUCell, seqkernels.GRUCell, {},
            ["batched", "unbatched", "no_hx", "no_bias", "odd"]),
    "rnn_tanh": (torch.nn.RNNCell, seqkernels.RNNCell, {},
                 ["batched", "unbatched", "no_hx", "no_bias", "odd"]),
    "rnn_relu": (torch.nn.RNNCell, seqkernels.RNNCell,
                 dict(nonlinearity="relu"), ["batched", "odd"]),
    "rnn_identity": (LinearRNNCell, seqkernels.RNNCell,
                     dict(nonlinearity="identity"),
                     ["batched", "unbatched", "no_bias"]),
}
CELL_CASES = [(kind, shape) for kind, (*_, shapes) in CELL_KINDS.items()
              for shape in shapes]



@pytest.mark.parametrize("backend,device,dtype,kind,shape",
                         backend_params(CELL_CASES, with_dtypes=True))
def test_cell_matches_torch(backend, device, dtype, kind, shape):
    oracle, ours_cls, extra, _ = CELL_KINDS[kind]
    torch.manual_seed(seed())
    I, H, B = (13, 59, 3) if shape == "odd" else (5, 7, 4)
    bias = shape != "no_bias"
    ref = oracle(I, H, bias=bias, dtype=torch.float64, **extra)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(2.0)
    tor = oracle(I, H, bias=bias, device=device, dtype=dtype, **extra)
    ours = ours_cls(I, H, bias=bias, device=device, dtype=dtype,
                    backend=backend, **extra)
    tor.load_state_dict(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    unbatched = shape == "unbatched"
    x64 = torch.randn((I,) if unbatched else (B, I), dtype=torch.float64)
    hshape = (H,) if unbatched else (B, H)
    hx64 = None if shape == "no_hx" else torch.randn(hshape,
                                                     dtype=torch.float64)
    g64 = torch.randn(hshape, dtype=torch.float64)

    def run(model, dt, dev):
        x = x64.to(dev, dt).requires_grad_()
        leaves = [x]
        hx = None
        if hx64 is not None:
            hx = hx64.to(dev, dt).requires_grad_()
            leaves.append(hx)
        h = model(x, hx)
        loss = (h * g64.to(dev, dt)).sum()
        return [h, *torch.autograd.grad(loss,
                                        leaves + list(model.parameters()))]

    assert_all_match([(f"result {i}", o, t, r) for i, (r, t, o) in enumerate(
        zip(run(ref, torch.float64, "cpu"), run(tor, dtype, device),
            run(ours, dtype, device)))], dtype)


# ---------------------------------------------------------------------------
# The ops: gradcheck, opcheck, determinism
# ---------------------------------------------------------------------------

def _randn(device, dtype, seed):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(
            device, dtype).requires_grad_()

    return r


def gru_seq_args(device, dtype, T=3, B=3, I=2, H=3, bias=True,
                 lengths=None, seed=0):
    r = _randn(device, dtype, seed)
    return (r(T, B, I), r(B, H), r(3 * H, I), r(3 * H, H),
            r(3 * H) if bias else None, r(3 * H) if bias else None,
            torch.tensor(lengths, device=device) if lengths else None)


def rnn_seq_args(device, dtype, nonlinearity, T=3, B=3, I=2, H=3, bias=True,
                 lengths=None, seed=0):
    r = _randn(device, dtype, seed)
    return (r(T, B, I), r(B, H), r(H, I), r(H, H), r(H) if bias else None,
            torch.tensor(lengths, device=device) if lengths else None,
            nonlinearity)


def gru_cell_args(device, dtype, bias=True, seed=0):
    r = _randn(device, dtype, seed)
    return (r(3, 12), r(3, 12), r(3, 4), r(12) if bias else None,
            r(12) if bias else None)


def rnn_cell_args(device, dtype, nonlinearity, bias=True, seed=0):
    r = _randn(device, dtype, seed)
    return (r(3, 5), r(3, 5), r(5) if bias else None, nonlinearity)


# name -> (op, args(device, dtype, seed), outputs that are differentiable)
OP_CASES = {
    "gru_seq": ("gru_seq", lambda d, t, s=0: gru_seq_args(d, t, seed=s), 2),
    "gru_seq_lengths": ("gru_seq", lambda d, t, s=0: gru_seq_args(
        d, t, lengths=[2, 3, 1], seed=s), 2),
    "gru_seq_no_bias": ("gru_seq", lambda d, t, s=0: gru_seq_args(
        d, t, bias=False, lengths=[3, 1, 2], seed=s), 2),
    "rnn_seq_tanh": ("rnn_seq", lambda d, t, s=0: rnn_seq_args(
        d, t, "tanh", lengths=[2, 3, 1], seed=s), 2),
    "rnn_seq_relu": ("rnn_seq", lambda d, t, s=0: rnn_seq_args(
        d, t, "relu", seed=s), 2),
    "rnn_seq_identity": ("rnn_seq", lambda d, t, s=0: rnn_seq_args(
        d, t, "identity", bias=False, lengths=[1, 3, 2], seed=s), 2),
    "gru_cell": ("gru_cell", lambda d, t, s=0: gru_cell_args(d, t, seed=s), 1),
    "gru_cell_no_bias": ("gru_cell", lambda d, t, s=0: gru_cell_args(
        d, t, bias=False, seed=s), 1),
    "rnn_cell_tanh": ("rnn_cell", lambda d, t, s=0: rnn_cell_args(
        d, t, "tanh", seed=s), 1),
    "rnn_cell_relu": ("rnn_cell", lambda d, t, s=0: rnn_cell_args(
        d, t, "relu", seed=s), 1),
    "rnn_cell_identity": ("rnn_cell", lambda d, t, s=0: rnn_cell_args(
        d, t, "identity", bias=False, seed=s), 1),
}



@pytest.mark.parametrize("backend,device,case", backend_params(OP_CASES))
def test_gradcheck(backend, device, case):
    name, make_args, n_out = OP_CASES[case]
    args = make_args(device, torch.float64)
    fn = op(name, backend)
    # The Triton interpreter is slow: one random direction (fast mode)
    # instead of the full Jacobian.
    fast = backend == "triton" and device.type == "cpu"
    assert torch.autograd.gradcheck(lambda *a: fn(*a)[:n_out], args,
                                    atol=1e-8, fast_mode=fast)


@pytest.mark.parametrize("backend,device,case", backend_params(
    ["gru_seq_lengths", "rnn_seq_tanh", "gru_cell", "rnn_cell_relu"]))
def test_opcheck(backend, device, case):
    name, make_args, _ = OP_CASES[case]
    torch.library.opcheck(op(name, backend), make_args(device, torch.float32))


@pytest.mark.parametrize("case", ["gru_seq_lengths", "rnn_seq_tanh",
                                  "gru_cell", "rnn_cell_relu"])
def test_opcheck_cpu_bfloat16(case):
    """The cpu backend in bfloat16: the fakes give what its kernels return
    (the saved values in float32, the gradients in bfloat16)."""
    name, make_args, _ = OP_CASES[case]
    torch.library.opcheck(op(name, "cpu"), make_args(CPU, torch.bfloat16))


@pytest.mark.parametrize("backend,device,case", backend_params(
    ["gru_seq_lengths", "rnn_seq_tanh"]))
def test_deterministic(backend, device, case):
    """The same inputs give bitwise the same outputs and gradients."""
    name, make_args, n_out = OP_CASES[case]

    def run():
        args = make_args(device, torch.float32, 3)
        out = op(name, backend)(*args)
        loss = sum((t.float() * (i + 1)).sum()
                   for i, t in enumerate(out[:n_out]))
        leaves = [a for a in args
                  if isinstance(a, torch.Tensor) and a.requires_grad]
        return list(out[:n_out]) + list(torch.autograd.grad(loss, leaves))

    for a, b in zip(run(), run()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------
# The identity RNN: a linear dynamical system
# ---------------------------------------------------------------------------

def test_identity_rnn_is_the_explicit_linear_recurrence():
    torch.manual_seed(0)
    m = seqkernels.RNN(3, 4, nonlinearity="identity", dtype=torch.float64)
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    h0 = torch.randn(1, 2, 4, dtype=torch.float64)
    y, h_n = m(x, h0)
    h = h0[0]
    for t in range(7):
        h = (x[t] @ m.weight_ih_l0.t() + m.bias_ih_l0 + h @ m.weight_hh_l0.t()
             + m.bias_hh_l0)
        torch.testing.assert_close(y[t], h, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_n[0], h, rtol=1e-12, atol=1e-12)


def test_rnn_docstring_ar_example():
    """The companion-matrix AR(d) example of seqkernels.RNN runs and holds."""
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(seqkernels.RNN, "seqkernels.RNN",
                            globs={"__name__": "doctest"}):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted >= 5 and results.failed == 0


# ---------------------------------------------------------------------------
# The torch.nn contract
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("torch_cls,ours_cls,kw", [
    (torch.nn.GRU, seqkernels.GRU, {}),
    (torch.nn.RNN, seqkernels.RNN, dict(nonlinearity="relu")),
])
def test_state_dict_round_trip(torch_cls, ours_cls, kw):
    kw = dict(input_size=5, hidden_size=6, num_layers=2, bidirectional=True,
              **kw)
    tor = torch_cls(**kw)
    ours = ours_cls(**kw)
    assert list(ours.state_dict()) == list(tor.state_dict())
    ours.load_state_dict(tor.state_dict())
    back = torch_cls(**kw)
    back.load_state_dict(ours.state_dict())
    for a, b in zip(back.parameters(), tor.parameters()):
        assert torch.equal(a, b)
    assert isinstance(ours, torch.nn.RNNBase) and ours.mode == tor.mode


def test_rnn_constructor_follows_torch():
    # Positional arguments as torch.nn.RNN: nonlinearity is the fourth.
    m = seqkernels.RNN(3, 4, 2, "relu", False)
    assert (m.mode, m.nonlinearity, m.num_layers, m.bias) == (
        "RNN_RELU", "relu", 2, False)
    ident = seqkernels.RNN(3, 4, nonlinearity="identity")
    assert ident.mode == "RNN_TANH" and ident.nonlinearity == "identity"
    assert "nonlinearity='identity'" in repr(ident)
    assert list(ident.state_dict()) == list(torch.nn.RNN(3, 4).state_dict())
    assert seqkernels.RNNCell(3, 4, nonlinearity="identity").nonlinearity \
        == "identity"
    assert isinstance(seqkernels.GRUCell(3, 4), torch.nn.GRUCell)


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = seqkernels.GRU(4, 5, bidirectional=True,
                                      batch_first=True)
            self.rnn = seqkernels.RNN(10, 3, num_layers=2,
                                      nonlinearity="identity",
                                      batch_first=True)
            self.gru_cell = seqkernels.GRUCell(3, 3)
            self.rnn_cell = seqkernels.RNNCell(3, 3, nonlinearity="relu")

        def forward(self, x):
            y, h = self.gru(x)
            y, h = self.rnn(y)
            c = self.gru_cell(y[:, -1], h[-1])
            return y, self.rnn_cell(c, c)

    m = Model()
    x = torch.randn(2, 5, 4, requires_grad=True)
    y, c = m(x)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    yc, cc = compiled(x)
    torch.testing.assert_close(yc, y)
    torch.testing.assert_close(cc, c)
    g = torch.autograd.grad(y.sum() + c.sum(), [x, *m.parameters()])
    gc = torch.autograd.grad(yc.sum() + cc.sum(), [x, *m.parameters()])
    for a, b in zip(g, gc):
        torch.testing.assert_close(a, b)


def test_compile_inductor_fullgraph():
    torch.manual_seed(0)
    gru = seqkernels.GRU(4, 6)
    rnn = seqkernels.RNN(6, 3, nonlinearity="relu")

    def f(x):
        return rnn(gru(x)[0])[0]

    x = torch.randn(5, 2, 4)
    torch.testing.assert_close(torch.compile(f, fullgraph=True)(x), f(x))


def _cpu_dropout_cases():
    for param in BACKEND_CASES:
        backend, device = param.values
        if device is None or device.type != "cpu":
            continue  # see the docstring below
        for dtype in dtypes_for(backend, device):
            for kind in ("lstm", "gru", "rnn_tanh"):
                yield pytest.param(backend, device, dtype, kind,
                                   marks=param.marks,
                                   id=f"{param.id}-{str(dtype)[6:]}-{kind}")


@pytest.mark.parametrize("backend,device,dtype,kind",
                         list(_cpu_dropout_cases()))
def test_dropout_between_layers_matches_torch_in_training(backend, device,
                                                          dtype, kind):
    """Dropout between layers in training, against torch.nn in training
    from the same seed: torch's native RNN and seqkernels
    (seqkernels.functional, every backend) draw the masks with torch's dropout
    in the same order, so outputs and gradients must agree. CPU tensors
    only: on the GPU torch runs cuDNN, which draws its masks its own way,
    and the masks of seqkernels come from the same code on every device."""
    oracle, ours = ((torch.nn.LSTM, seqkernels.LSTM) if kind == "lstm"
                    else KINDS[kind][:2])
    compare_recurrent(oracle, ours, backend, device, dtype,
                      dict(input_size=5, hidden_size=6, num_layers=2,
                           dropout=0.4, bidirectional=True),
                      T=5, B=3, dropout_in_training=True)


@pytest.mark.parametrize("cls", [seqkernels.GRU, seqkernels.RNN])
def test_nan_propagates_like_torch(cls):
    torch.manual_seed(0)
    ours = cls(3, 4)
    tor = getattr(torch.nn, cls.__name__)(3, 4)
    tor.load_state_dict(ours.state_dict())
    x = torch.randn(4, 2, 3)
    x[1, 0, 0] = math.nan
    assert torch.equal(tor(x)[0].isnan(), ours(x)[0].isnan())


@pytest.mark.parametrize("call,match", [
    (lambda: seqkernels.GRU(4, 6)(torch.randn(2, 3, 4, 5)), "input must be 2-D"),
    (lambda: seqkernels.GRU(4, 6)(torch.randn(5, 2, 7)), "w_ih|shape"),
    (lambda: seqkernels.GRU(4, 6)(torch.randn(5, 2, 4), torch.zeros(1, 3, 6)),
     r"hx must have shape"),
    (lambda: seqkernels.RNN(4, 6)(torch.randn(5, 4), torch.zeros(1, 1, 6)),
     "for unbatched input, hx must hold 2-D"),
    (lambda: seqkernels.GRU(4, 6)(torch.randn(5, 2, 4),
                                  torch.zeros(1, 2, 6, dtype=torch.float64)),
     "hx must have input's dtype"),
    (lambda: op("gru_seq", "cpu")(
        *(torch.zeros(s, dtype=torch.int64)
          for s in ((5, 2, 4), (2, 6), (18, 4), (18, 6))), None, None, None),
     "the cpu backend supports float32, float64, float16 and bfloat16; x is "
     "Long"),
    (lambda: seqkernels.RNN(4, 6)(torch.randint(0, 3, (5, 2, 4))),
     "floating point"),
    (lambda: seqkernels.GRU(4, 6, proj_size=2), "proj_size"),
    (lambda: seqkernels.RNN(4, 6, nonlinearity="sigmoid"),
     "unknown nonlinearity 'sigmoid'"),
    (lambda: seqkernels.RNNCell(4, 6, nonlinearity="gelu"),
     "unknown nonlinearity 'gelu'"),
    (lambda: seqkernels.GRUCell(4, 6)(torch.randn(2, 3, 4)), "input must be 1-D"),
    (lambda: seqkernels.GRUCell(4, 6)(torch.randn(2, 4), torch.zeros(3, 6)),
     r"hx must have shape"),
    (lambda: F.rnn(torch.randn(3, 2, 4), None,
                   [(torch.randn(6, 4), torch.randn(6, 6), None, None)],
                   num_layers=1, nonlinearity="elu"), "nonlinearity must be"),
    (lambda: F.gru(torch.randn(4, 2, 4), None,
                   [(torch.randn(18, 4), torch.randn(18, 6), None, None)],
                   num_layers=1, lengths=torch.tensor([3, 5])), r"in \[1, 4\]"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        call()


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_op_checks_name_the_argument(backend):
    x = torch.randn(3, 2, 4)
    gru = op("gru_seq", backend)
    # The C++ checks, which the reference variant runs too (_C.check_*).
    with pytest.raises(RuntimeError, match="w_hh must have shape"):
        gru(x, torch.zeros(2, 5), torch.randn(15, 4), torch.randn(15, 4),
            None, None, None)
    with pytest.raises(RuntimeError, match="b_hh must have shape"):
        gru(x, torch.zeros(2, 5), torch.randn(15, 4), torch.randn(15, 5),
            None, torch.randn(5), None)
    with pytest.raises(RuntimeError, match="w_ih must be \\[3 \\* hidden"):
        gru(x, torch.zeros(2, 5), torch.randn(16, 4), torch.randn(15, 5),
            None, None, None)
    with pytest.raises((RuntimeError, ValueError),
                       match="nonlinearity must be 'tanh', 'relu' or "
                             "'identity', got 'swish'"):
        op("rnn_seq", backend)(x, torch.zeros(2, 5), torch.randn(5, 4),
                               torch.randn(5, 5), None, None, "swish")
