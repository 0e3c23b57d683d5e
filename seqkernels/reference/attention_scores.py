"""Attention probabilities softmax(q k^T * scale + mask) in PyTorch, with the
forward/backward split of the fused kernels. Shapes as in ``sdpa``; the
probabilities are [B, Hq, Tq, Tk] in q's dtype."""

from typing import Optional

from torch import Tensor

from .attention_common import dot_scores, expand_kv, reduce_kv, softmax_lse
from .._common import acc_dtype


def attention_scores(q: Tensor, k: Tensor, attn_mask: Optional[Tensor],
                     is_causal: bool, scale: float) -> Tensor:
    """Forward of the op ``attention_scores``: the probabilities."""
    p, _ = softmax_lse(dot_scores(q, k, attn_mask, is_causal, scale))
    return p.to(q.dtype)


def attention_scores_backward(grad_p: Tensor, q: Tensor, k: Tensor, p: Tensor,
                              scale: float) -> tuple[Tensor, Tensor]:
    """Backward of ``attention_scores``: returns (grad_q, grad_k). Masked
    entries have p = 0 and so no gradient: the mask is not needed."""
    acc = acc_dtype(q.dtype)
    p = p.to(acc)
    gp = grad_p.to(acc)
    ds = p * (gp - (gp * p).sum(-1, keepdim=True))
    grad_q = (ds @ expand_kv(k, q.shape[1]).to(acc)) * scale
    grad_k = (ds.transpose(-1, -2) @ q.to(acc)) * scale
    return grad_q.to(q.dtype), reduce_kv(grad_k, k.shape[1]).to(k.dtype)
