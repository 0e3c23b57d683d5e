"""Autocast (seqkernels/ops/_autocast.py): under torch.autocast every
forward op runs in the autocast dtype, as if its floating-point arguments
had been cast to it, on every backend; gradients reach float32 parameters
in float32; float64 is never cast; torch.compile sees the same rule; a
GradScaler training step works.

The comparisons are exact: the rule is a cast before the op, so a module
under autocast must give bit for bit what a copy of it cast to the autocast
dtype gives on the cast input (and its parameters' gradients are that
copy's, cast up). The parameters are first rounded to the autocast dtype:
a module may combine float32 parameters before its op (the LSTM's b_ih +
b_hh), which then rounds once where the copy rounds each; with parameters
exact in the dtype, the float32 sum is exact and both round it alike."""

import copy

import pytest
import torch

import seqkernels
from conftest import BACKEND_CASES, HAS_CUDA
from seqkernels.ops._variants import FAMILIES

LOW = (torch.bfloat16, torch.float16)


def _cpu_cases():
    """(backend, device, dtype) on the CPU: both dtypes, but bfloat16 only
    for the Triton interpreter (slow; the rule does not depend on the
    dtype)."""
    return [pytest.param(*p.values, dtype, marks=p.marks,
                         id=f"{p.id}-{str(dtype)[6:]}")
            for p in BACKEND_CASES
            if p.values[1] is not None and p.values[1].type == "cpu"
            for dtype in LOW
            if p.id != "triton-interpreter" or dtype == torch.bfloat16]


def _modules(backend):
    """(name, module, input builder) of every module family."""
    def seq(T=5, B=3, size=6):
        return (torch.randn(T, B, size),)

    def cell(B=3, size=6):
        return (torch.randn(B, size),)

    def attention():
        x = torch.randn(5, 3, 8)
        pad = torch.zeros(3, 5, dtype=torch.bool)
        pad[0, 3:] = True
        return (x, x, x), {"key_padding_mask": pad}

    def additive():
        return (torch.randn(3, 6), torch.randn(3, 5, 7)), {
            "need_weights": True}

    kw = {"backend": backend}
    return [
        ("lstm", seqkernels.LSTM(6, 8, num_layers=2, **kw), seq),
        ("gru", seqkernels.GRU(6, 8, bidirectional=True, **kw), seq),
        ("rnn", seqkernels.RNN(6, 8, nonlinearity="relu", **kw), seq),
        ("lstm_cell", seqkernels.LSTMCell(6, 8, **kw), cell),
        ("gru_cell", seqkernels.GRUCell(6, 8, **kw), cell),
        ("rnn_cell", seqkernels.RNNCell(6, 8, **kw), cell),
        ("mha", seqkernels.MultiheadAttention(8, 2, **kw), attention),
        ("mha_no_weights", seqkernels.MultiheadAttention(8, 2, **kw),
         lambda: (attention()[0], {"need_weights": False,
                                   "attn_mask": torch.zeros(5, 5)})),
        ("additive", seqkernels.AdditiveAttention(
            query_size=6, key_size=7, hidden_size=4, **kw), additive),
    ]


def _call(module, built):
    args, kwargs = built if isinstance(built[-1], dict) else (built, {})
    return module(*args, **kwargs)


def _tensors(out):
    """The output's tensors, in order (nested tuples flattened)."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out if o is not None for t in _tensors(o)]


def _cast(built, dtype):
    def cast(v):
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.to(dtype)
        if isinstance(v, tuple):
            return tuple(cast(x) for x in v)
        if isinstance(v, dict):
            return {k: cast(x) for k, x in v.items()}
        return v
    return cast(built)


def test_every_forward_op_has_the_rule_on_both_device_types():
    for name, variants in FAMILIES.items():
        for op in set(variants.forward.values()):
            for key in ("AutocastCPU", "AutocastCUDA"):
                assert torch._C._dispatch_has_kernel_for_dispatch_key(
                    op.default.name(), key), (name, op, key)
        for op in set(variants.backward.values()):
            assert not torch._C._dispatch_has_kernel_for_dispatch_key(
                op.default.name(), "AutocastCPU"), op


@pytest.mark.parametrize("backend,device,dtype", _cpu_cases())
def test_module_runs_as_its_cast_copy(backend, device, dtype):
    torch.manual_seed(0)
    for name, module, make in _modules(backend):
        built = make()
        with torch.no_grad():
            for p in module.parameters():
                p.copy_(p.to(dtype))
        low = copy.deepcopy(module).to(dtype)
        with torch.autocast("cpu", dtype=dtype):
            out = _tensors(_call(module, built))
        expect = _tensors(_call(low, _cast(built, dtype)))
        assert [t.dtype for t in out] == [dtype] * len(expect), name
        for o, e in zip(out, expect):
            assert torch.equal(o, e), name
        # Gradients: through the cast, in float32, the copy's cast up.
        sum(t.float().sum() for t in out).backward()
        sum(t.float().sum() for t in expect).backward()
        for (pname, p), q in zip(module.named_parameters(),
                                 low.parameters()):
            assert p.grad.dtype == torch.float32, (name, pname)
            assert torch.equal(p.grad, q.grad.float()), (name, pname)


def test_float64_and_other_devices_are_not_cast():
    lstm = seqkernels.LSTM(6, 8, backend="cpu").double()
    x = torch.randn(5, 3, 6, dtype=torch.float64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, (h, c) = lstm(x)
    assert {y.dtype, h.dtype, c.dtype} == {torch.float64}
    # CUDA autocast does not touch CPU tensors.
    float32 = seqkernels.GRU(6, 8, backend="cpu")
    with torch.autocast("cuda", dtype=torch.float16, enabled=HAS_CUDA):
        y, h = float32(torch.randn(5, 3, 6))
    assert y.dtype == h.dtype == torch.float32


def test_states_of_another_float_dtype_are_taken():
    """As torch.nn under autocast: h0 in float32 with a bfloat16 input
    (or the reverse) is cast, not refused."""
    lstm = seqkernels.LSTM(6, 8, backend="reference")
    x = torch.randn(5, 3, 6, dtype=torch.bfloat16)
    hx = (torch.zeros(1, 3, 8), torch.zeros(1, 3, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, (h, c) = lstm(x, hx)
    assert {y.dtype, h.dtype, c.dtype} == {torch.bfloat16}
    with pytest.raises(ValueError, match="must have input's dtype"):
        lstm(x, hx)


def test_compiled_module_follows_the_rule():
    torch.manual_seed(0)
    gru = seqkernels.GRU(6, 8, backend="reference")
    x = torch.randn(5, 3, 6)
    compiled = torch.compile(gru, fullgraph=True, backend="aot_eager")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, h = compiled(x)
        y_eager, h_eager = gru(x)
    assert y.dtype == h.dtype == torch.bfloat16
    assert torch.equal(y, y_eager) and torch.equal(h, h_eager)


def test_grad_scaler_step_matches_the_unscaled_step():
    """float16 autocast with torch.amp.GradScaler: the step it takes is the
    one without scaling (the scale is a power of two: exact)."""
    torch.manual_seed(0)
    model = seqkernels.LSTM(6, 8, backend="reference")
    twin = copy.deepcopy(model)
    x = torch.randn(5, 3, 6)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    for m, scale in ((model, scaler), (twin, None)):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        with torch.autocast("cpu", dtype=torch.float16):
            loss = m(x)[0].float().pow(2).mean()
        if scale is None:
            loss.backward()
            opt.step()
        else:
            scale.scale(loss).backward()
            scale.step(opt)
            scale.update()
    assert scaler.get_scale() == 2.0 ** 10   # no inf/NaN: the step was taken
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device on this machine")
@pytest.mark.parametrize("dtype", LOW, ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("backend", ["cuda", "triton", "reference"])
def test_cuda_policy(backend, dtype):
    torch.manual_seed(0)
    for name, module, make in _modules(backend):
        module = module.cuda()
        built = _cast(make(), torch.float32)
        built = tuple(b.cuda() if isinstance(b, torch.Tensor) else b
                      for b in built) if not isinstance(built[-1], dict) \
            else (tuple(b.cuda() for b in built[0]),
                  {k: v.cuda() if isinstance(v, torch.Tensor) else v
                   for k, v in built[1].items()})
        with torch.autocast("cuda", dtype=dtype):
            out = _tensors(_call(module, built))
        assert {t.dtype for t in out} == {dtype}, name
