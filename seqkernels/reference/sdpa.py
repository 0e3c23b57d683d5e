"""Scaled dot-product attention in PyTorch, with the forward/backward split
of the fused kernels: the forward saves the log-sum-exp, the backward
recomputes the probabilities from it.

Shapes: q [B, Hq, Tq, D], k [B, Hk, Tk, D], v [B, Hk, Tk, Dv] (Hq a multiple
of Hk: grouped-query attention), attn_mask broadcast to [B, Hq, Tq, Tk],
out [B, Hq, Tq, Dv], lse [B, Hq, Tq] in the accumulation dtype.
Dropout: ``rng = [seed, offset]`` (int64) names the mask of
``seqkernels/reference/dropout.py``; kept probabilities are scaled by
1 / (1 - dropout_p).
"""

from typing import Optional

from torch import Tensor

from .attention_common import (dot_scores, expand_kv, probs_from_lse,
                               reduce_kv, softmax_lse)
from .dropout import keep_mask


def _dropped(p: Tensor, dropout_p: float, rng: Optional[Tensor]) -> Tensor:
    if dropout_p == 0.0:
        return p
    keep = keep_mask(rng, tuple(p.shape), dropout_p, p.device)
    return p * keep / (1.0 - dropout_p)


def sdpa(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor],
         dropout_p: float, is_causal: bool, scale: float,
         rng: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Forward of the op ``sdpa``: returns (out, lse)."""
    s = dot_scores(q, k, attn_mask, is_causal, scale)
    p, lse = softmax_lse(s)
    out = _dropped(p, dropout_p, rng) @ expand_kv(v, q.shape[1]).to(p.dtype)
    return out.to(q.dtype), lse


def sdpa_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor,
                  out: Tensor, lse: Tensor, attn_mask: Optional[Tensor],
                  dropout_p: float, is_causal: bool, scale: float,
                  rng: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Backward of ``sdpa``: returns (grad_q, grad_k, grad_v)."""
    acc = lse.dtype
    Hq, Hk = q.shape[1], k.shape[1]
    p = probs_from_lse(dot_scores(q, k, attn_mask, is_causal, scale), lse)
    dout = grad_out.to(acc)
    ve = expand_kv(v, Hq).to(acc)
    grad_v = _dropped(p, dropout_p, rng).transpose(-1, -2) @ dout
    dp = _dropped(dout @ ve.transpose(-1, -2), dropout_p, rng)
    delta = (dout * out.to(acc)).sum(-1, keepdim=True)
    ds = p * (dp - delta)
    grad_q = (ds @ expand_kv(k, Hq).to(acc)) * scale
    grad_k = (ds.transpose(-1, -2) @ q.to(acc)) * scale
    return (grad_q.to(q.dtype), reduce_kv(grad_k, Hk).to(k.dtype),
            reduce_kv(grad_v, Hk).to(v.dtype))
