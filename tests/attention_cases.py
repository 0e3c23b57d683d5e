"""Attention configurations shared by the attention tests: odd sizes,
Tq != Tk, causal both ways, masks of every kind (with fully masked rows),
grouped-query attention, value dim != head dim, 3-D input; PyTorch's own
probabilities (softmax_scores) and the rows of large scores; and the cases
of the tensor-core forwards of sdpa and of the probabilities with their
checks (check_sdpa_forward, check_attention_scores_forward)."""

import math

import torch
import torch.nn.functional as TF

from conftest import assert_all_match, seed
from seqkernels.reference.attention_scores import (
    attention_scores as ref_attention_scores)
from seqkernels.reference.sdpa import sdpa as ref_sdpa
from seqkernels.reference.sdpa import sdpa_backward as ref_sdpa_backward

# name: (B, Hq, Hk, Tq, Tk, D, Dv, mask kind, is_causal)
SDPA_CASES = {
    "basic": (2, 2, 2, 16, 16, 16, 16, None, False),
    "odd_sizes": (1, 2, 2, 97, 33, 59, 59, None, False),
    "causal_short_q": (2, 2, 2, 5, 9, 8, 8, None, True),
    "causal_long_q": (2, 2, 2, 9, 5, 8, 8, None, True),
    "bool_mask_broadcast": (2, 2, 2, 6, 7, 8, 8, "bool", False),
    "float_mask": (2, 2, 2, 6, 7, 8, 8, "float", False),
    "gqa": (2, 4, 2, 6, 7, 8, 8, None, False),
    "value_dim": (2, 2, 2, 6, 7, 5, 7, None, False),
    "three_dim": (3, None, None, 6, 7, 8, 8, None, False),
    # More keys than the CPU's one-pass probabilities keep in cache
    # (kInPlaceBytes in csrc/cpu/attention_scores.cpp): its two-pass path.
    "long_keys": (1, 2, 2, 5, 1100, 8, 8, "bool", False),
}


def make_mask(kind, B, H, Tq, Tk, gen):
    """A bool mask (True = allowed) with a fully masked query row and a
    fully masked batch element, broadcast over heads; or a float mask."""
    if kind == "bool":
        mask = torch.rand(B, 1, Tq, Tk, generator=gen) > 0.3
        mask[..., 0] = True               # every row sees a key ...
        mask[0, 0, 1, :] = False          # ... but this one
        return mask
    if kind == "float":
        return torch.randn(1, H, Tq, Tk, generator=gen, dtype=torch.float64)
    return None


def sdpa_inputs(case, seed=0):
    B, Hq, Hk, Tq, Tk, D, Dv, kind, causal = SDPA_CASES[case]
    gen = torch.Generator().manual_seed(seed)
    if Hq is None:  # 3-D (N, L, E)
        q = torch.randn(B, Tq, D, generator=gen, dtype=torch.float64)
        k = torch.randn(B, Tk, D, generator=gen, dtype=torch.float64)
        v = torch.randn(B, Tk, Dv, generator=gen, dtype=torch.float64)
    else:
        q = torch.randn(B, Hq, Tq, D, generator=gen, dtype=torch.float64)
        k = torch.randn(B, Hk, Tk, D, generator=gen, dtype=torch.float64)
        v = torch.randn(B, Hk, Tk, Dv, generator=gen, dtype=torch.float64)
    mask = make_mask(kind, B, Hq or 1, Tq, Tk, gen)
    return q, k, v, mask, causal, (Hq or 1) != (Hk or 1)


def softmax_scores(q, k, mask, causal, gqa, scale=None):
    """PyTorch's own probabilities, torch.softmax(q k^T * scale + mask), in
    q's dtype; without ``scale``, q k^T / sqrt(D). A bool mask is True
    where allowed; under ``causal``, j > i is masked."""
    if gqa:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    s = q @ k.transpose(-1, -2)
    s = s / math.sqrt(q.shape[-1]) if scale is None else s * scale
    if mask is not None:
        s = s.masked_fill(~mask, -math.inf) if mask.dtype == torch.bool else s + mask
    if causal:
        Tq, Tk = s.shape[-2:]
        s = s.masked_fill(torch.ones(Tq, Tk, dtype=torch.bool,
                                     device=s.device).triu(1), -math.inf)
    return torch.softmax(s, -1)


# The scale of large_scores_inputs' rows.
LARGE_SCORES_SCALE = 0.25


def large_scores_inputs():
    """q, k [2, 2, 9, 16] (float64) whose scores (scale 1/4) lie near +-200
    and differ by a few units, exact in every dtype tested: small integers
    in q and k, one key feature 40 for every key."""
    g = torch.Generator().manual_seed(seed())
    q, k = (torch.randint(-2, 3, (2, 2, 9, 16), generator=g)
            .to(torch.float64) for _ in range(2))
    q[..., 0] = torch.randint(-20, 21, (2, 2, 9), generator=g).to(q.dtype)
    k[..., 0] = 40.0
    return q, k


# name: (B, Tq, Tk, Dq, Dk, Dv, H, bias, key padding, need_weights)
ADDITIVE_CASES = {
    "basic": (2, 5, 7, 6, 4, 3, 8, True, False, True),
    "no_bias_no_weights": (2, 5, 7, 6, 4, 3, 8, False, False, False),
    "padding": (3, 4, 9, 5, 5, 5, 6, True, True, True),
    "odd_sizes": (1, 13, 29, 7, 11, 5, 59, True, True, True),
}


# The tensor-core sdpa's cases, forward and backward
# (tests/test_sdpa_tensor_core_*.py)
# name: (B, Hq, Hk, Tq, Tk, D, Dv, mask kind, is_causal, dropout_p). Tq and
# Tk cross the kernels' tiles (64 query rows and 64 keys in the forward;
# 64 rows by 32 keys in the dQ kernel, 64 keys by 16 rows in the dK/dV
# kernel); D, Dv are padded to 64 or 128.
TENSOR_CORE_CASES = {
    "odd_sizes": (1, 1, 1, 70, 97, 59, 37, None, False, 0.0),
    "wide_heads": (1, 1, 1, 20, 70, 72, 128, None, False, 0.0),
    "causal_long_q": (1, 1, 1, 80, 40, 24, 40, None, True, 0.0),
    "causal_short_q": (1, 1, 1, 20, 90, 16, 16, None, True, 0.0),
    "bool_mask": (2, 2, 2, 9, 70, 8, 8, "bool", False, 0.0),
    "float_mask": (1, 2, 2, 9, 33, 40, 24, "float", False, 0.0),
    "gqa": (1, 4, 2, 10, 21, 32, 16, None, False, 0.0),
    "dropout": (1, 2, 1, 20, 75, 16, 24, None, True, 0.3),
    # Causal over several tiles both ways; keys 128, 129 follow every row.
    "causal_tiles": (1, 1, 1, 100, 130, 24, 40, None, True, 0.0),
    # D padded to 128, Dv to 64; GQA with a bool mask.
    "wide_keys_gqa_mask": (1, 2, 1, 33, 50, 100, 20, "bool", False, 0.0),
    # Five key tiles of the forward, nine of the dQ kernel, the last partial:
    # each stage of their double buffers refilled while the other is read;
    # 16-byte copies (cp.async) with Dv zero-filled from 40 to 64.
    "many_tiles": (1, 2, 1, 40, 260, 64, 40, None, False, 0.0),
}


def _tensor_core_inputs(case):
    B, Hq, Hk, Tq, Tk, D, Dv, kind, causal, p = TENSOR_CORE_CASES[case]
    gen = torch.Generator().manual_seed(seed())
    q = torch.randn(B, Hq, Tq, D, generator=gen, dtype=torch.float64)
    k = torch.randn(B, Hk, Tk, D, generator=gen, dtype=torch.float64)
    v = torch.randn(B, Hk, Tk, Dv, generator=gen, dtype=torch.float64)
    mask = make_mask(kind, B, Hq, Tq, Tk, gen)
    if mask is not None:
        mask = mask.expand(B, Hq, Tq, Tk)  # the op takes it broadcast
    rng = torch.tensor([20261207, 3]) if p else None
    return q, k, v, mask, causal, p, 1 / math.sqrt(D), rng


def _cast(t, dtype):
    return t if t is None or t.dtype == torch.bool else t.to(dtype)


def check_sdpa_forward(fn, case, dtype, device):
    """fn(q, k, v, mask, dropout_p, is_causal, scale, rng) -> (out, lse),
    the op sdpa's forward, on ``device`` in ``dtype`` against the float64
    reference by the tolerance rule, out and lse."""
    q, k, v, mask, causal, p, scale, rng = _tensor_core_inputs(case)
    qd, kd, vd, md = (_cast(t, dtype) for t in (q, k, v, mask))
    out, lse = fn(*(None if t is None else t.to(device)
                    for t in (qd, kd, vd, md)), p, causal, scale,
                  None if rng is None else rng.to(device))
    out, lse = out.cpu(), lse.cpu()
    out64, lse64 = ref_sdpa(q, k, v, mask, p, causal, scale, rng)
    # PyTorch's own error in dtype: its SDPA, or with dropout (whose mask
    # torch draws otherwise) the reference's formulas run in dtype; the
    # reference in dtype for lse, which torch does not return.
    out_d, lse_d = ref_sdpa(qd, kd, vd, md, p, causal, scale, rng)
    if not p:
        out_d = TF.scaled_dot_product_attention(
            qd, kd, vd, md, is_causal=causal, scale=scale,
            enable_gqa=q.shape[1] != k.shape[1])
    assert out.dtype == dtype and lse.dtype == torch.float32
    # A row with no allowed key: out 0 and lse -inf, as the reference; the
    # other rows' lse by the rule.
    empty = torch.isneginf(lse64)
    assert torch.equal(torch.isneginf(lse), empty)
    assert (out[empty] == 0).all()
    full = ~empty
    assert_all_match([("out", out, out_d, out64),
                      ("lse", lse[full], lse_d[full], lse64[full])], dtype)
    if mask is not None and mask.dtype == torch.bool:
        assert empty.any(), "the case has a fully masked row"


def check_sdpa_backward(fwd, bwd, case, dtype, device):
    """fwd as check_sdpa_forward's fn; bwd(grad_out, q, k, v, out, lse,
    mask, dropout_p, is_causal, scale, rng) -> (grad_q, grad_k, grad_v), the
    op sdpa_backward, run on ``device`` in ``dtype`` from fwd's out and lse,
    against the float64 reference's gradients by the tolerance rule."""
    q, k, v, mask, causal, p, scale, rng = _tensor_core_inputs(case)
    gen = torch.Generator().manual_seed(seed(1))
    go = torch.randn(*q.shape[:3], v.shape[-1], generator=gen,
                     dtype=torch.float64)
    qd, kd, vd, md, god = (_cast(t, dtype) for t in (q, k, v, mask, go))

    def on(t):
        return None if t is None else t.to(device)

    args = (on(md), p, causal, scale, on(rng))
    out, lse = fwd(on(qd), on(kd), on(vd), *args)
    grads = [g.cpu() for g in bwd(on(god), on(qd), on(kd), on(vd), out, lse,
                                  *args)]
    out64, lse64 = ref_sdpa(q, k, v, mask, p, causal, scale, rng)
    grads64 = ref_sdpa_backward(go, q, k, v, out64, lse64, mask, p, causal,
                                scale, rng)
    # PyTorch's own error in dtype: its SDPA's gradients, or with dropout
    # (whose mask torch draws otherwise) the reference's formulas in dtype.
    if p:
        out_d, lse_d = ref_sdpa(qd, kd, vd, md, p, causal, scale, rng)
        grads_d = ref_sdpa_backward(god, qd, kd, vd, out_d, lse_d, md, p,
                                    causal, scale, rng)
    else:
        leaves = [t.clone().requires_grad_() for t in (qd, kd, vd)]
        out_d = TF.scaled_dot_product_attention(
            *leaves, md, is_causal=causal, scale=scale,
            enable_gqa=q.shape[1] != k.shape[1])
        grads_d = torch.autograd.grad(out_d, leaves, god)
    assert all(g.dtype == dtype for g in grads)
    # A row with no allowed key: a zero grad_q row, as the reference.
    empty = torch.isneginf(lse64)
    assert (grads[0][empty] == 0).all()
    assert_all_match([(name, g, g_d, g64) for name, g, g_d, g64 in
                      zip(("grad_q", "grad_k", "grad_v"), grads, grads_d,
                          grads64)], dtype)
# The tensor-core probabilities' cases (tests/test_attention_scores_tensor_
# core_*.py) name: (B, Hq, Hk, Tq, Tk, D, mask kind, is_causal). Tq and Tk
# cross the 64-row and 64-key tiles; D is padded to 64 or 128; Tk % 8 == 0
# takes the 16-byte stores, other Tk the element stores; under is_causal
# the tiles past a block's last row are the zero tiles.
SCORES_TENSOR_CORE_CASES = {
    "odd_sizes": (1, 1, 1, 70, 97, 59, None, False),
    "wide_head": (1, 1, 1, 20, 70, 100, None, False),
    "aligned_causal": (1, 2, 1, 70, 136, 64, None, True),
    "causal_long_q": (1, 1, 1, 80, 40, 24, None, True),
    "causal_short_q": (1, 1, 1, 20, 90, 16, None, True),
    "bool_mask": (2, 2, 2, 9, 72, 8, "bool", False),
    "float_mask": (1, 2, 2, 9, 33, 40, "float", False),
    "gqa_causal_mask": (1, 4, 2, 10, 21, 32, "bool", True),
    "single": (1, 1, 1, 1, 1, 1, None, False),
}


def check_attention_scores_forward(fn, case, dtype, device):
    """fn(q, k, mask, is_causal, scale) -> probs, the op attention_scores's
    forward, on ``device`` in ``dtype`` against the float64 reference by
    the tolerance rule, PyTorch's softmax in ``dtype`` giving its error."""
    B, Hq, Hk, Tq, Tk, D, kind, causal = SCORES_TENSOR_CORE_CASES[case]
    gen = torch.Generator().manual_seed(seed())
    q = torch.randn(B, Hq, Tq, D, generator=gen, dtype=torch.float64)
    k = torch.randn(B, Hk, Tk, D, generator=gen, dtype=torch.float64)
    mask = make_mask(kind, B, Hq, Tq, Tk, gen)
    if mask is not None:
        mask = mask.expand(B, Hq, Tq, Tk)  # the op takes it broadcast
    scale = 1 / math.sqrt(D)
    qd, kd, md = (_cast(t, dtype) for t in (q, k, mask))
    probs = fn(qd.to(device), kd.to(device),
               None if md is None else md.to(device), causal, scale).cpu()
    assert probs.dtype == dtype
    ref64 = ref_attention_scores(q, k, mask, causal, scale)
    torch_d = softmax_scores(qd, kd, md, causal, Hq != Hk, scale)
    # A row with no allowed key: 0, as the reference (torch gives NaN).
    empty = ~(ref64 != 0).any(-1)
    assert (probs[empty] == 0).all()
    assert_all_match([("probs", probs, torch_d, ref64)], dtype)
    if kind == "bool":
        assert empty.any(), "the case has a fully masked row"
