"""Additive (Bahdanau) attention in PyTorch, with the forward/backward split
of the fused kernels. This oracle materializes the [B, Tq, Tk, H] tensor of
tanh values; the kernels never do.

Shapes: q [B, Tq, H] and k [B, Tk, H] are the projected queries and keys,
value [B, Tk, Dv], v and bias [H], attn_mask broadcast to [B, Tq, Tk] (bool:
True where allowed; float: added). Scores s_ij = v . tanh(q_i + k_j + bias),
weights = softmax_j(s), context_i = sum_j weights_ij value_j. Outputs:
context [B, Tq, Dv], weights [B, Tq, Tk] (empty unless need_weights), and
stats [B, Tq, 2] in the accumulation dtype: each row's maximum score m and
sum l of exp(s - m), from which the backward recomputes the weights as
exp(s - m) / l (see attention_common.probs_from_stats). A row with no
allowed key gives weights 0, context 0, stats (-inf, 0).
"""

from typing import Optional

import torch
from torch import Tensor

from .attention_common import apply_mask, probs_from_stats, softmax_stats
from .._common import acc_dtype


def _tanh_and_scores(q, k, v, bias, attn_mask):
    acc = acc_dtype(q.dtype)
    pre = q.to(acc).unsqueeze(2) + k.to(acc).unsqueeze(1)
    if bias is not None:
        pre = pre + bias.to(acc)
    t = torch.tanh(pre)
    return t, apply_mask(t @ v.to(acc), attn_mask, False)


def additive_attention(q: Tensor, k: Tensor, value: Tensor, v: Tensor,
                       bias: Optional[Tensor], attn_mask: Optional[Tensor],
                       need_weights: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Forward of the op ``additive_attention``: (context, weights, stats)."""
    _, s = _tanh_and_scores(q, k, v, bias, attn_mask)
    p, stats = softmax_stats(s)
    context = (p @ value.to(p.dtype)).to(q.dtype)
    weights = p.to(q.dtype) if need_weights else q.new_empty(0)
    return context, weights, stats


def additive_attention_backward(
        grad_context: Tensor, grad_weights: Optional[Tensor], q: Tensor,
        k: Tensor, value: Tensor, v: Tensor, bias: Optional[Tensor],
        attn_mask: Optional[Tensor], context: Tensor, stats: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward: (grad_q, grad_k, grad_value, grad_v, grad_bias); grad_bias
    is empty without a bias."""
    acc = stats.dtype
    t, s = _tanh_and_scores(q, k, v, bias, attn_mask)
    p = probs_from_stats(s, stats)
    dctx = grad_context.to(acc)
    dp = dctx @ value.to(acc).transpose(-1, -2)
    if grad_weights is not None:
        dp = dp + grad_weights.to(acc)
    # delta from P and dP, as torch's softmax backward takes it (every
    # backend does): each row of dS then sums to zero up to rounding.
    delta = (p * dp).sum(-1, keepdim=True)
    ds = p * (dp - delta)                              # [B, Tq, Tk]
    dpre = ds.unsqueeze(-1) * v.to(acc) * (1 - t * t)  # [B, Tq, Tk, H]
    grad_q = dpre.sum(2)
    grad_k = dpre.sum(1)
    grad_v = torch.einsum("bij,bijh->h", ds, t)
    grad_value = p.transpose(-1, -2) @ dctx
    grad_bias = grad_q.sum((0, 1)) if bias is not None else q.new_empty(0)
    return (grad_q.to(q.dtype), grad_k.to(k.dtype), grad_value.to(value.dtype),
            grad_v.to(v.dtype), grad_bias.to(q.dtype))
