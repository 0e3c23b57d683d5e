"""seqkernels.MultiheadAttention against torch.nn.MultiheadAttention with
the same weights, seqkernels.AdditiveAttention against plain PyTorch, the
module contracts, torch.compile, and bad input."""

import copy
import math

import pytest
import torch

import seqkernels
import seqkernels.functional as SF
from conftest import backend_params, compare_fn, seed
MHA_CASES = {
    "plain": (dict(), dict()),
    "batch_first_kpm": (dict(batch_first=True), dict(kpm=True)),
    "kdim_vdim_bool_mask": (dict(kdim=5, vdim=3), dict(mask="bool")),
    "bias_kv_zero_attn": (dict(add_bias_kv=True, add_zero_attn=True),
                          dict(kpm=True, mask="float")),
    "per_head_weights": (dict(), dict(average=False, mask="bool3d")),
    "no_weights": (dict(), dict(need_weights=False, kpm=True)),
    "causal_hint": (dict(), dict(causal=True, need_weights=False)),
    "unbatched": (dict(), dict(unbatched=True)),
    # One of torch's own module samples (common_modules): head dim 1 and
    # inputs uniform in [-9, 9], so the scores reach the hundreds.
    "torch_sample_large_scores": (
        dict(embed_dim=3, num_heads=3, add_bias_kv=True, add_zero_attn=True),
        dict(unbatched=True, uniform=9.0)),
}



@pytest.mark.parametrize("backend,device,dtype,case",
                         backend_params(MHA_CASES, with_dtypes=True))
def test_multihead_attention_matches_torch(backend, device, dtype, case):
    ctor, opts = MHA_CASES[case]
    ctor = dict(dict(embed_dim=8, num_heads=2), **ctor)
    E, H, L, S, N = ctor["embed_dim"], ctor["num_heads"], 5, 6, 3
    torch.manual_seed(seed())
    ref = torch.nn.MultiheadAttention(dtype=torch.float64, **ctor).eval()
    tor = torch.nn.MultiheadAttention(device=device, dtype=dtype,
                                      **ctor).eval()
    ours = seqkernels.MultiheadAttention(device=device, dtype=dtype,
                                         backend=backend, **ctor).eval()
    tor.load_state_dict(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(seed(1))
    unbatched = opts.get("unbatched", False)
    bf = ctor.get("batch_first", False)

    def shape(T, D):
        if unbatched:
            return (T, D)
        return (N, T, D) if bf else (T, N, D)

    def draw(*size):
        if "uniform" in opts:
            a = opts["uniform"]
            return torch.rand(size, generator=g, dtype=torch.float64) * 2 * a - a
        return torch.randn(size, generator=g, dtype=torch.float64)

    inputs = [draw(*shape(L, E)), draw(*shape(S, ctor.get("kdim", E))),
              draw(*shape(S, ctor.get("vdim", E)))]
    kpm = None
    if opts.get("kpm"):
        kpm = torch.zeros(N, S, dtype=torch.bool)
        kpm[1, 3:] = True
    mask = None
    if opts.get("mask") == "bool":
        mask = torch.rand(L, S, generator=g) > 0.7
        mask[:, 0] = False
    elif opts.get("mask") == "float":
        mask = torch.randn(L, S, generator=g, dtype=torch.float64)
    elif opts.get("mask") == "bool3d":
        mask = torch.rand(N * H, L, S, generator=g) > 0.7
        mask[..., 0] = False
    causal = opts.get("causal", False)
    if causal:
        mask = torch.ones(L, S, dtype=torch.bool).triu(1)
    need = opts.get("need_weights", True)
    average = opts.get("average", True)

    def run(model):
        def go(q, k, v):
            dev, dt = q.device, q.dtype
            m = None if mask is None else (
                mask.to(dev) if mask.dtype == torch.bool else mask.to(dev, dt))
            out, w = model(q, k, v, key_padding_mask=None if kpm is None
                           else kpm.to(dev), need_weights=need, attn_mask=m,
                           average_attn_weights=average, is_causal=causal)
            return [out, w] if need else [out]
        return go

    params = {n: p for n, p in ref.named_parameters()}
    assert set(params) == {n for n, _ in ours.named_parameters()}
    compare_fn(run(ours), run(tor), run(ref), inputs, dtype, device)


@pytest.mark.parametrize("backend,device,dtype,case",
                         backend_params(["sequence", "one_step"],
                                        with_dtypes=True))
def test_additive_attention_module(backend, device, dtype, case):
    torch.manual_seed(seed())
    Dq, Dk, Hh, B, Tq, Tk = 6, 5, 7, 2, 4, 9
    ref = seqkernels.AdditiveAttention(Dq, Dk, Hh, dtype=torch.float64,
                                       backend="reference")
    with torch.no_grad():
        ref.bias.normal_()
    ours = seqkernels.AdditiveAttention(Dq, Dk, Hh, device=device, dtype=dtype,
                                        backend=backend)
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(seed(2))
    qshape = (B, Dq) if case == "one_step" else (B, Tq, Dq)
    inputs = [torch.randn(qshape, generator=g, dtype=torch.float64),
              torch.randn(B, Tk, Dk, generator=g, dtype=torch.float64)]
    kpm = torch.zeros(B, Tk, dtype=torch.bool)
    kpm[0, 5:] = True

    def naive(query, key):
        w_q, w_k, v, b = (t.to(query.device, query.dtype) for t in
                          (ref.w_query, ref.w_key, ref.v, ref.bias))
        q = query if query.dim() == 3 else query.unsqueeze(1)
        s = torch.tanh((q @ w_q.t()).unsqueeze(2) + (key @ w_k.t()).unsqueeze(1)
                       + b) @ v
        s = s.masked_fill(kpm.to(query.device).unsqueeze(1), -math.inf)
        w = s.softmax(-1)
        c = w @ key
        return [c.squeeze(1), w.squeeze(1)] if query.dim() == 2 else [c, w]

    def run(model):
        def go(query, key):
            c, w = model(query, key, key_padding_mask=kpm.to(query.device),
                         need_weights=True)
            return [c, w]
        return go

    ours_params = dict(ours.named_parameters())
    assert set(ours_params) == {"w_query", "w_key", "v", "bias"}
    # Gradients flow to the module's own parameters, not to naive's copies,
    # so the comparison covers inputs; parameters are checked below.
    compare_fn(run(ours), naive, run(ref), inputs, dtype, device)
    c, _ = ours(inputs[0].to(device, dtype), inputs[1].to(device, dtype))
    grads = torch.autograd.grad(c.float().sum(), list(ours_params.values()))
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)


class TutorialBahdanau(torch.nn.Module):
    """The attention of PyTorch's translation tutorial (seq2seq with
    attention): three Linear layers and its own formula."""

    def __init__(self, hidden, key_bias=True, dtype=torch.float64):
        super().__init__()
        self.Wa = torch.nn.Linear(hidden, hidden, dtype=dtype)
        self.Ua = torch.nn.Linear(hidden, hidden, bias=key_bias, dtype=dtype)
        self.Va = torch.nn.Linear(hidden, 1, dtype=dtype)

    def forward(self, query, keys):
        scores = self.Va(torch.tanh(self.Wa(query) + self.Ua(keys)))
        weights = torch.softmax(scores.squeeze(2).unsqueeze(1), dim=-1)
        return [torch.bmm(weights, keys), weights]


@pytest.mark.parametrize("backend,device,dtype,case",
                         backend_params(["biases", "no_key_bias"],
                                        with_dtypes=True))
def test_additive_attention_from_tutorial_linears(backend, device, dtype,
                                                  case):
    torch.manual_seed(seed())
    hidden, B, T = 6, 3, 7
    ref = TutorialBahdanau(hidden, key_bias=case == "biases")
    with torch.no_grad():
        ref.Va.bias.fill_(3.0)  # cancels in the softmax
    tutorial = copy.deepcopy(ref).to(device, dtype)
    ours = seqkernels.AdditiveAttention.from_linear(
        tutorial.Wa, tutorial.Ua, tutorial.Va, backend=backend)
    assert ours.bias is not None and ours.v.shape == (hidden,)
    assert ours.w_query.device == device and ours.w_query.dtype == dtype
    g = torch.Generator().manual_seed(seed(1))
    inputs = [torch.randn(B, 1, hidden, generator=g, dtype=torch.float64),
              torch.randn(B, T, hidden, generator=g, dtype=torch.float64)]

    def run(query, keys):
        return list(ours(query, keys, need_weights=True))

    compare_fn(run, tutorial, ref, inputs, dtype, device)
    # Copies: training the new module leaves the tutorial's layers alone.
    assert ours.w_query.data_ptr() != tutorial.Wa.weight.data_ptr()


def test_additive_attention_from_linear_names_the_bad_layer():
    Wa, Ua, Va = (torch.nn.Linear(4, 4), torch.nn.Linear(4, 4),
                  torch.nn.Linear(4, 1))
    with pytest.raises(ValueError, match=r"v must be Linear\(4, 1\)"):
        seqkernels.AdditiveAttention.from_linear(Wa, Ua, torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="w_key must map to w_query's 4"):
        seqkernels.AdditiveAttention.from_linear(Wa, torch.nn.Linear(4, 5),
                                                 Va)
    with pytest.raises(ValueError, match="w_key is on cpu in torch.float64"):
        seqkernels.AdditiveAttention.from_linear(Wa, Ua.double(), Va)
    with pytest.raises(TypeError, match="w_query must be a torch.nn.Linear"):
        seqkernels.AdditiveAttention.from_linear(Wa.weight, Ua, Va)


def test_multihead_attention_compiles_fullgraph():
    torch.manual_seed(0)
    m = seqkernels.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(2, 5, 8)
    eager = m(x, x, x, need_weights=True)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")(
        x, x, x, need_weights=True)
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(a, b)


def test_sdpa_compiles_fullgraph_with_backward():
    q = torch.randn(2, 2, 5, 4, requires_grad=True)

    def f(q):
        return SF.scaled_dot_product_attention(q, q, q, is_causal=True)

    out = torch.compile(f, fullgraph=True)(q)
    torch.testing.assert_close(out, f(q))
    (g,) = torch.autograd.grad(out.sum(), q)
    (ge,) = torch.autograd.grad(f(q).sum(), q)
    torch.testing.assert_close(g, ge)


@pytest.mark.parametrize("call,match", [
    (lambda: SF.scaled_dot_product_attention(
        torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3)),
     "at least 3 dims"),
    (lambda: SF.scaled_dot_product_attention(
        torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 3), torch.randn(1, 2, 5, 4)),
     "key .* must match query"),
    (lambda: SF.scaled_dot_product_attention(
        torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 6, 4)),
     "value .* must match key"),
    (lambda: SF.scaled_dot_product_attention(
        torch.randn(1, 4, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)),
     "enable_gqa"),
    (lambda: SF.scaled_dot_product_attention(
        torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4),
        attn_mask=torch.ones(4, 5, dtype=torch.bool)),
     "does not broadcast"),
    (lambda: SF.scaled_dot_product_attention(
        torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4),
        attn_mask=torch.ones(3, 5, dtype=torch.int64)),
     "attn_mask must be bool"),
    (lambda: SF.scaled_dot_product_attention(
        torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4, dtype=torch.float64),
        torch.randn(1, 2, 5, 4)),
     "key must have query's dtype"),
    (lambda: SF.scaled_dot_product_attention(
        torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4),
        attn_mask=torch.ones(3, 5, dtype=torch.bool), is_causal=True),
     "not both"),
    (lambda: SF.scaled_dot_product_attention(
        torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4),
        dropout_p=1.0),
     "dropout_p"),
    (lambda: SF.additive_attention(
        torch.randn(2, 3, 4), torch.randn(2, 5, 6), None, torch.randn(7, 4),
        torch.randn(7, 5), torch.randn(7)),
     "w_key must have shape"),
    (lambda: SF.additive_attention(
        torch.randn(2, 3, 4), torch.randn(2, 5, 6), None, torch.randn(7, 4),
        torch.randn(7, 6), torch.randn(7),
        key_padding_mask=torch.zeros(2, 4, dtype=torch.bool)),
     "key_padding_mask must be bool of shape"),
    (lambda: seqkernels.MultiheadAttention(8, 2)(
        torch.randn(5, 3, 8), torch.randn(6, 3, 8), torch.randn(6, 3, 8),
        key_padding_mask=torch.zeros(3, 5, dtype=torch.bool)),
     "key_padding_mask must be"),
    (lambda: seqkernels.MultiheadAttention(8, 2)(
        torch.randn(5, 3, 8), torch.randn(6, 3, 8), torch.randn(6, 3, 8),
        is_causal=True),
     "needs attn_mask"),
])
def test_attention_bad_input_names_the_argument(call, match):
    with pytest.raises((ValueError, TypeError, RuntimeError), match=match):
        call()
