"""The attention ops themselves, for every backend this machine runs:
gradcheck of each hand-written backward in float64, torch.library.opcheck,
dropout (the same mask on every backend, its statistics, forward/backward
consistency) and bitwise determinism."""

import pytest
import torch

import seqkernels  # noqa: F401
from conftest import CPU, backend_params
from seqkernels.ops._variants import op



def _r(g, device, dtype, *shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(
        device, dtype).requires_grad_()


# (B, Hq, Hk, Tq, Tk, D, Dv, mask, causal, dropout)
SDPA_OP_CASES = {
    "plain": (1, 2, 2, 3, 4, 3, 2, None, False, 0.0),
    "gqa_causal": (1, 4, 2, 4, 3, 2, 3, None, True, 0.0),
    "bool_mask": (2, 1, 1, 3, 4, 2, 2, "bool", False, 0.0),
    "float_mask": (1, 2, 2, 3, 4, 2, 2, "float", False, 0.0),
    "dropout": (1, 2, 1, 3, 5, 2, 2, None, False, 0.4),
}


def sdpa_op_args(device, dtype, case, seed=0):
    B, Hq, Hk, Tq, Tk, D, Dv, mask, causal, p = SDPA_OP_CASES[case]
    g = torch.Generator().manual_seed(seed)
    q, k, v = (_r(g, device, dtype, B, Hq, Tq, D),
               _r(g, device, dtype, B, Hk, Tk, D),
               _r(g, device, dtype, B, Hk, Tk, Dv))
    m = None
    if mask == "bool":
        m = torch.rand(B, 1, 1, Tk, generator=g) > 0.4
        m[..., 0] = True
        m[0, 0, 0, :] = False  # a fully masked batch element
        m = m.expand(B, Hq, Tq, Tk).to(device)
    elif mask == "float":
        m = torch.randn(1, Hq, Tq, Tk, generator=g, dtype=torch.float64
                        ).to(device, dtype).expand(B, Hq, Tq, Tk)
    rng = torch.tensor([1234567, 89], device=device) if p else None
    return (q, k, v, m, p, causal, 0.7, rng)


@pytest.mark.parametrize("backend,device,case", backend_params(SDPA_OP_CASES))
def test_sdpa_gradcheck(backend, device, case):
    args = sdpa_op_args(device, torch.float64, case)
    fn = op("sdpa", backend)
    assert torch.autograd.gradcheck(lambda q, k, v: fn(q, k, v, *args[3:])[0],
                                    args[:3], atol=1e-8)


@pytest.mark.parametrize("backend,device,case",
                         backend_params(["plain", "gqa_causal", "bool_mask"]))
def test_attention_scores_gradcheck(backend, device, case):
    q, k, _, m, _, causal, scale, _ = sdpa_op_args(device, torch.float64, case)
    fn = op("attention_scores", backend)
    assert torch.autograd.gradcheck(lambda q, k: fn(q, k, m, causal, scale),
                                    (q, k), atol=1e-8)


def additive_op_args(device, dtype, bias=True, mask=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, Tq, Tk, H, Dv = 2, 3, 4, 5, 2
    args = [_r(g, device, dtype, B, Tq, H), _r(g, device, dtype, B, Tk, H),
            _r(g, device, dtype, B, Tk, Dv), _r(g, device, dtype, H),
            _r(g, device, dtype, H) if bias else None]
    m = None
    if mask:
        m = torch.ones(B, 1, Tk, dtype=torch.bool)
        m[1, 0, 2:] = False
        m = m.expand(B, Tq, Tk).to(device)
    return args, m


@pytest.mark.parametrize("backend,device,case",
                         backend_params(["bias_weights", "no_bias"]))
def test_additive_attention_gradcheck(backend, device, case):
    bias = case == "bias_weights"
    args, m = additive_op_args(device, torch.float64, bias=bias)
    fn = op("additive_attention", backend)

    def f(*a):
        c, w, _ = fn(*a, m, True)
        return c, w

    inputs = [a for a in args if a is not None]
    if not bias:
        f_nb = f
        f = lambda q, k, val, v: f_nb(q, k, val, v, None)  # noqa: E731
    assert torch.autograd.gradcheck(f, inputs, atol=1e-8)


@pytest.mark.parametrize("backend,device,case",
                         backend_params(["plain", "bool_mask", "dropout"]))
def test_sdpa_opcheck(backend, device, case):
    torch.library.opcheck(op("sdpa", backend),
                          sdpa_op_args(device, torch.float32, case))


@pytest.mark.parametrize("backend,device,case", backend_params(["gqa_causal"]))
def test_attention_scores_opcheck(backend, device, case):
    q, k, _, m, _, causal, scale, _ = sdpa_op_args(device, torch.float32, case)
    torch.library.opcheck(op("attention_scores", backend),
                          (q, k, m, causal, scale))


@pytest.mark.parametrize("backend,device,case", backend_params(["weights"]))
def test_additive_attention_opcheck(backend, device, case):
    args, m = additive_op_args(device, torch.float32)
    torch.library.opcheck(op("additive_attention", backend),
                          (*args, m, True))


@pytest.mark.parametrize("name", ["sdpa", "attention_scores",
                                  "additive_attention"])
def test_opcheck_cpu_bfloat16(name):
    """The cpu backend in bfloat16: the fakes give what its kernels return
    (lse and stats in float32, everything else in bfloat16); an expanded
    float mask and an expanded bool mask."""
    if name == "additive_attention":
        args, m = additive_op_args(CPU, torch.bfloat16)
        args = (*args, m, True)
    else:
        q, k, v, m, p, causal, scale, rng = sdpa_op_args(CPU, torch.bfloat16,
                                                         "float_mask")
        args = ((q, k, v, m, p, causal, scale, rng) if name == "sdpa"
                else (q, k, m, causal, scale))
    torch.library.opcheck(op(name, "cpu"), args)


@pytest.mark.parametrize("backend,device,case", backend_params(["dropout"]))
def test_dropout_mask_is_the_reference_mask(backend, device, case):
    """Every backend draws the mask of seqkernels/reference/dropout.py, so
    its dropout output equals the reference's."""
    args = sdpa_op_args(device, torch.float64, case)
    ours, _ = op("sdpa", backend)(*args)
    ref, _ = op("sdpa", "reference")(*args)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    no_drop, _ = op("sdpa", "reference")(*args[:4], 0.0, *args[5:7], None)
    assert not torch.allclose(ours, no_drop)


def test_dropout_statistics():
    from seqkernels.reference.dropout import keep_mask
    for p in (0.1, 0.5, 0.9):
        kept = keep_mask(torch.tensor([42, 7]), (64, 128, 128), p,
                         torch.device("cpu"))
        assert abs(kept.float().mean().item() - (1 - p)) < 0.005
    a = keep_mask(torch.tensor([42, 7]), (1000,), 0.5, torch.device("cpu"))
    b = keep_mask(torch.tensor([42, 8]), (1000,), 0.5, torch.device("cpu"))
    assert (a != b).float().mean() > 0.4  # another offset, another mask


def test_dropout_expectation_matches_no_dropout():
    """Averaged over many masks, dropout's output is the plain output."""
    args = list(sdpa_op_args(torch.device("cpu"), torch.float64, "dropout"))
    plain, _ = op("sdpa", "reference")(*args[:4], 0.0, *args[5:7], None)
    total = torch.zeros_like(plain)
    n = 2000
    for i in range(n):
        args[7] = torch.tensor([i, 3])
        total += op("sdpa", "reference")(*args)[0]
    torch.testing.assert_close(total / n, plain, atol=0.06, rtol=0)


@pytest.mark.parametrize("backend,device,case",
                         backend_params(["gqa_causal", "dropout"]))
def test_sdpa_deterministic(backend, device, case):
    def run():
        args = sdpa_op_args(device, torch.float32, case, seed=5)
        out, _ = op("sdpa", backend)(*args)
        return [out] + list(torch.autograd.grad(out.sum() * 3, args[:3]))

    for a, b in zip(run(), run()):
        assert torch.equal(a, b)
