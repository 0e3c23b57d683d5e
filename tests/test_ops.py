"""The registered ops themselves: gradcheck of every hand-written backward
in float64, torch.library.opcheck (schema, fake, autograd registration),
and bitwise determinism, for every backend this machine runs."""

import pytest
import torch

import seqkernels  # noqa: F401
from conftest import CPU, backend_params
from seqkernels.ops._variants import op

SEQ_CASES = {
    "plain": dict(T=4, B=3, I=3, H=4, P=None, bias=True, lengths=None),
    "lengths": dict(T=5, B=3, I=3, H=4, P=None, bias=True, lengths=[2, 5, 1]),
    "projection": dict(T=4, B=2, I=3, H=4, P=2, bias=False, lengths=None),
    "projection_lengths": dict(T=4, B=3, I=2, H=3, P=2, bias=True,
                               lengths=[4, 1, 3]),
}


def seq_args(device, dtype, T, B, I, H, P, bias, lengths, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(
            device, dtype).requires_grad_()

    Pd = P or H
    return (r(T, B, I), r(B, Pd), r(B, H), r(4 * H, I), r(4 * H, Pd),
            r(4 * H) if bias else None, r(Pd, H) if P else None,
            torch.tensor(lengths, device=device) if lengths else None)


def cell_args(device, dtype, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(
            device, dtype).requires_grad_()

    return (r(3, 20), r(3, 20), r(3, 5), r(20) if bias else None)



@pytest.mark.parametrize("backend,device,case", backend_params(SEQ_CASES))
def test_lstm_seq_gradcheck(backend, device, case):
    args = seq_args(device, torch.float64, **SEQ_CASES[case])
    fn = op("lstm_seq", backend)

    def first_three(*a):
        return fn(*a)[:3]

    assert torch.autograd.gradcheck(first_three, args, atol=1e-8)


@pytest.mark.parametrize("backend,device,case",
                         backend_params(["bias", "no_bias"]))
def test_lstm_cell_gradcheck(backend, device, case):
    args = cell_args(device, torch.float64, bias=case == "bias")
    fn = op("lstm_cell", backend)
    assert torch.autograd.gradcheck(lambda *a: fn(*a)[:2], args, atol=1e-8)


@pytest.mark.parametrize("backend,device,case", backend_params(SEQ_CASES))
def test_lstm_seq_opcheck(backend, device, case):
    args = seq_args(device, torch.float32, **SEQ_CASES[case])
    torch.library.opcheck(op("lstm_seq", backend), args)


@pytest.mark.parametrize("backend,device,case", backend_params(["cell"]))
def test_lstm_cell_opcheck(backend, device, case):
    torch.library.opcheck(op("lstm_cell", backend),
                          cell_args(device, torch.float32))


@pytest.mark.parametrize("name", ["lstm_seq", "lstm_cell"])
def test_opcheck_cpu_bfloat16(name):
    """The cpu backend in bfloat16: the fakes give what its kernels return
    (the saved values in float32, the gradients in bfloat16)."""
    args = (seq_args(CPU, torch.bfloat16, **SEQ_CASES["projection_lengths"])
            if name == "lstm_seq" else cell_args(CPU, torch.bfloat16))
    torch.library.opcheck(op(name, "cpu"), args)


@pytest.mark.parametrize("backend,device,case",
                         backend_params(["lengths", "projection_lengths"]))
def test_lstm_seq_deterministic(backend, device, case):
    """The same inputs give bitwise the same outputs and gradients."""
    def run():
        args = seq_args(device, torch.float32, **SEQ_CASES[case], seed=3)
        out = op("lstm_seq", backend)(*args)
        loss = sum((t.float() * (i + 1)).sum() for i, t in enumerate(out[:3]))
        leaves = [a for a in args if a is not None and a.requires_grad]
        return list(out[:3]) + list(torch.autograd.grad(loss, leaves))

    for a, b in zip(run(), run()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend,device,case", backend_params(["plain"]))
def test_autograd_kernel_records_a_graph_only_where_asked(backend, device,
                                                          case):
    """The ops' own Autograd kernel (ops/_variants.py): a node where an
    input requires grad and grad mode is on, none otherwise."""
    args = seq_args(device, torch.float32, **SEQ_CASES[case])
    fn = op("lstm_seq", backend)
    assert fn(*args)[0].grad_fn is not None
    with torch.no_grad():
        assert all(t.grad_fn is None for t in fn(*args))
    detached = [a.detach() if a is not None else None for a in args]
    assert all(t.grad_fn is None for t in fn(*detached))


def test_autograd_kernel_refuses_keyword_only_arguments():
    # The kernel passes the dispatcher's positional arguments on, with the
    # trailing defaults it left out: right only for schemas without
    # keyword-only arguments.
    from seqkernels.ops._variants import _autograd_kernel
    with pytest.raises(TypeError, match="positional arguments only"):
        _autograd_kernel(torch.ops.aten.add.Tensor, None, None)
