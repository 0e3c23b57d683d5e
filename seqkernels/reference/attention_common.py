"""Scores and softmax shared by the attention references.

Conventions of every attention op: a boolean mask is True where attention is
allowed (as torch's SDPA), a float mask is added to the scaled scores;
``is_causal`` lets query i see keys j <= i (top-left aligned when Tq != Tk,
as torch). A row with no allowed key has probabilities 0, output 0 and
log-sum-exp -inf (no NaN).
"""

from typing import Optional

import torch
from torch import Tensor

from .._common import acc_dtype


def expand_kv(t: Tensor, heads: int) -> Tensor:
    """Repeat key/value heads [B, Hk, T, D] for grouped-query attention."""
    return t if t.shape[1] == heads else t.repeat_interleave(
        heads // t.shape[1], dim=1)


def reduce_kv(grad: Tensor, kv_heads: int) -> Tensor:
    """Sum the gradient of repeated heads back onto [B, Hk, T, D]."""
    B, H, T, D = grad.shape
    return grad if H == kv_heads else grad.view(
        B, kv_heads, H // kv_heads, T, D).sum(2)


def apply_mask(s: Tensor, attn_mask: Optional[Tensor], is_causal: bool) -> Tensor:
    """Masked scores: -inf where not allowed, the float mask added."""
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            s = s.masked_fill(~attn_mask, float("-inf"))
        else:
            s = s + attn_mask.to(s.dtype)
    if is_causal:
        Tq, Tk = s.shape[-2:]
        future = torch.ones(Tq, Tk, dtype=torch.bool, device=s.device).triu(1)
        s = s.masked_fill(future, float("-inf"))
    return s


def dot_scores(q: Tensor, k: Tensor, attn_mask: Optional[Tensor],
               is_causal: bool, scale: float) -> Tensor:
    """Masked, scaled q k^T in the accumulation dtype, [B, Hq, Tq, Tk]."""
    acc = acc_dtype(q.dtype)
    k = expand_kv(k, q.shape[1])
    s = (q.to(acc) @ k.to(acc).transpose(-1, -2)) * scale
    return apply_mask(s, attn_mask, is_causal)


def softmax_stats(s: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over the last dim and the row statistics [..., 2] it came
    from: the maximum m and the sum l of exp(s - m) (-inf and 0 for a row
    with no allowed key, whose probabilities are 0)."""
    m = s.amax(-1, keepdim=True)
    e = torch.exp(s - torch.where(torch.isneginf(m), 0.0, m))
    l = e.sum(-1, keepdim=True)
    return torch.where(l > 0, e / l, 0.0), torch.cat([m, l], -1)


def probs_from_stats(s: Tensor, stats: Tensor) -> Tensor:
    """exp(s - m) / l, as torch.softmax takes it, never exp(s - lse): lse =
    m + log(l) is rounded at the magnitude of m, which exp turns into a
    relative error of |m| * eps in every probability of the row, where s - m
    is exact near the maximum."""
    m, l = stats[..., :1], stats[..., 1:]
    e = torch.exp(s - torch.where(torch.isneginf(m), 0.0, m))
    return torch.where(l > 0, e / l, 0.0)


def softmax_lse(s: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax over the last dim and its log-sum-exp; empty rows give 0."""
    p, stats = softmax_stats(s)
    return p, stats[..., 0] + torch.log(stats[..., 1])


def probs_from_lse(s: Tensor, lse: Tensor) -> Tensor:
    empty = torch.isneginf(lse).unsqueeze(-1)
    return torch.where(empty, 0.0, torch.exp(s - lse.unsqueeze(-1)))
