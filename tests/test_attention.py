"""The attention functions against PyTorch, for every backend this machine
runs: scaled_dot_product_attention against torch's SDPA, attention_scores
against softmax(q k^T), additive_attention against a plain PyTorch
implementation; outputs and all gradients, with the tolerance rule."""

import math

import pytest
import torch
import torch.nn.functional as TF

import seqkernels.functional as SF
from attention_cases import (ADDITIVE_CASES, LARGE_SCORES_SCALE, SDPA_CASES,
                             large_scores_inputs, sdpa_inputs,
                             softmax_scores)
from conftest import assert_matches, backend_params, compare_fn, seed
from seqkernels.reference import sdpa as ref_sdpa  # noqa: F401



def _torch_mask(mask, like):
    return mask if mask is None or mask.dtype == torch.bool else mask.to(like)


@pytest.mark.parametrize("backend,device,dtype,case",
                         backend_params(SDPA_CASES, with_dtypes=True))
def test_sdpa_matches_torch(backend, device, dtype, case):
    q, k, v, mask, causal, gqa = sdpa_inputs(case, seed())

    def with_mask(fn):
        def run(q, k, v):
            m = None if mask is None else _torch_mask(mask.to(q.device), q.dtype)
            return [fn(q, k, v, m)]
        return run

    ours = with_mask(lambda q, k, v, m: SF.scaled_dot_product_attention(
        q, k, v, m, is_causal=causal, enable_gqa=gqa, backend=backend))
    theirs = with_mask(lambda q, k, v, m: TF.scaled_dot_product_attention(
        q, k, v, m, is_causal=causal, enable_gqa=gqa))
    # float64 oracle: the reference backend, whose agreement with torch in
    # float64 is checked below (it also defines fully masked rows as 0).
    ref64 = with_mask(lambda q, k, v, m: SF.scaled_dot_product_attention(
        q, k, v, m, is_causal=causal, enable_gqa=gqa, backend="reference"))
    compare_fn(ours, theirs, ref64, [q, k, v], dtype, device)


@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_sdpa_reference_is_torch_in_float64(case):
    q, k, v, mask, causal, gqa = sdpa_inputs(case)
    ours = SF.scaled_dot_product_attention(q, k, v, mask, is_causal=causal,
                                           enable_gqa=gqa, backend="reference")
    theirs = TF.scaled_dot_product_attention(q, k, v, mask, is_causal=causal,
                                             enable_gqa=gqa)
    rows = ~theirs.isnan().any(-1)
    torch.testing.assert_close(ours[rows], theirs[rows], atol=1e-12, rtol=0)
    # torch gives NaN or zeros for a row with every key masked; we give zeros.
    assert (ours[~rows] == 0).all()


@pytest.mark.parametrize("backend,device,dtype,case",
                         backend_params(SDPA_CASES, with_dtypes=True))
def test_attention_scores_matches_torch(backend, device, dtype, case):
    q, k, _, mask, causal, gqa = sdpa_inputs(case, seed())

    def run(fn):
        def go(q, k):
            m = None if mask is None else _torch_mask(mask.to(q.device), q.dtype)
            return [fn(q, k, m)]
        return go

    ours = run(lambda q, k, m: SF.attention_scores(
        q, k, m, is_causal=causal, enable_gqa=gqa, backend=backend))
    theirs = run(lambda q, k, m: softmax_scores(q, k, m, causal, gqa))
    ref64 = run(lambda q, k, m: SF.attention_scores(
        q, k, m, is_causal=causal, enable_gqa=gqa, backend="reference"))
    compare_fn(ours, theirs, ref64, [q, k], dtype, device)


@pytest.mark.parametrize("backend,device,dtype,causal",
                         backend_params(["full", "causal"], with_dtypes=True))
def test_attention_scores_of_large_scores(backend, device, dtype, causal):
    """Rows of scores near +-200 that differ by a few units, exact in every
    dtype tested (small integers in q and k, one key feature 40 for every
    key, scale 1/4): each probability must then be as accurate as torch's
    softmax, exp(s - max) / sum. exp(s - lse) misses that bound by 5x or
    more: lse is rounded at its own magnitude, an error that exp turns
    into |lse| * eps relative in every probability of the row."""
    q, k = large_scores_inputs()
    causal = causal == "causal"
    # The probabilities only: their gradients along the shared key feature
    # are sums that cancel to rounding noise, in torch's as in ours.
    qd, kd = q.to(device, dtype), k.to(device, dtype)
    p = SF.attention_scores(qd, kd, is_causal=causal,
                            scale=LARGE_SCORES_SCALE, backend=backend)
    assert_matches("probabilities", p,
                   softmax_scores(qd, kd, None, causal, False,
                                  LARGE_SCORES_SCALE),
                   softmax_scores(q, k, None, causal, False,
                                  LARGE_SCORES_SCALE), dtype)


def additive_inputs(case, seed=0):
    B, Tq, Tk, Dq, Dk, Dv, H, bias, padding, need = ADDITIVE_CASES[case]
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64)

    kpm = None
    if padding:
        lengths = torch.randint(1, Tk + 1, (B,), generator=g)
        kpm = torch.arange(Tk) >= lengths[:, None]
    tensors = [r(B, Tq, Dq), r(B, Tk, Dk), r(B, Tk, Dv), r(H, Dq), r(H, Dk),
               r(H)] + ([r(H)] if bias else [])
    return tensors, kpm, need


def naive_additive(query, key, value, w_query, w_key, v, bias=None, kpm=None):
    """Plain PyTorch: materializes the (B, Tq, Tk, H) tensor."""
    pre = (query @ w_query.t()).unsqueeze(2) + (key @ w_key.t()).unsqueeze(1)
    if bias is not None:
        pre = pre + bias
    s = torch.tanh(pre) @ v
    if kpm is not None:
        s = s.masked_fill(kpm.unsqueeze(1), -math.inf)
    w = torch.softmax(s, -1)
    return w @ value, w


@pytest.mark.parametrize("backend,device,dtype,case",
                         backend_params(ADDITIVE_CASES, with_dtypes=True))
def test_additive_attention_matches_torch(backend, device, dtype, case):
    tensors, kpm, need = additive_inputs(case, seed())

    def ours_with(which):
        def go(query, key, value, w_query, w_key, v, bias=None):
            m = None if kpm is None else kpm.to(query.device)
            c, w = SF.additive_attention(query, key, value, w_query, w_key, v,
                                         bias, key_padding_mask=m,
                                         need_weights=need, backend=which)
            return [c, w] if need else [c]
        return go

    def theirs(*args):
        m = None if kpm is None else kpm.to(args[0].device)
        c, w = naive_additive(*args, kpm=m)
        return [c, w] if need else [c]

    compare_fn(ours_with(backend), theirs, ours_with("reference"), tensors,
               dtype, device)


@pytest.mark.parametrize("case", list(ADDITIVE_CASES))
def test_additive_reference_is_plain_torch_in_float64(case):
    tensors, kpm, _ = additive_inputs(case)
    c1, w1 = SF.additive_attention(*tensors[:6], tensors[6] if len(tensors) > 6
                                   else None, key_padding_mask=kpm,
                                   need_weights=True, backend="reference")
    c2, w2 = naive_additive(*tensors, kpm=kpm)
    torch.testing.assert_close(c1, c2, atol=1e-12, rtol=0)
    torch.testing.assert_close(w1, w2, atol=1e-12, rtol=0)


@pytest.mark.parametrize("masked", [False, True])
def test_additive_backward_one_item_per_row_is_the_two_passes(masked):
    """The cpu backward of a few query rows (a decoder step: both passes in
    one item per batch row, the tanh values kept) gives the two-pass
    results bit for bit: the op's gradient of 8 projected query rows,
    alone and as the first 8 rows of 9 (which take the two passes)."""
    from seqkernels.ops.additive_attention import additive_attention
    seed(0)
    B, Tk, Dv, H = 3, 21, 5, 7
    k, value = torch.randn(B, Tk, H), torch.randn(B, Tk, Dv)
    v, bias = torch.randn(H), torch.randn(H)
    mask = (torch.rand(B, 1, Tk) < 0.3).expand(B, 9, Tk) if masked else None
    q9, g9 = torch.randn(B, 9, H), torch.randn(B, 9, Dv)
    grads = []
    for rows in (8, 9):
        q = q9[:, :rows].clone().requires_grad_()
        m = None if mask is None else mask[:, :rows].contiguous()
        context = additive_attention(q, k, value, v, bias, m, False,
                                     backend="cpu")[0]
        context.backward(g9[:, :rows])
        grads.append(q.grad[:, :8])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
