"""The ``additive_attention`` op: fused Bahdanau attention that never stores
the [B, Tq, Tk, H] tensor. Semantics:
``seqkernels/reference/additive_attention.py``."""

from typing import Optional

import torch
from torch import Tensor

from .. import _C, _backend
from ..reference import additive_attention as reference
from .._common import acc_dtype
from ._variants import register_family


def _triton():
    # Imported at the first call: seqkernels imports without triton.
    from ..triton_kernels import additive_attention
    return (additive_attention.additive_attention,
            additive_attention.additive_attention_backward)


def _fake(q, k, value, v, bias, attn_mask, need_weights):
    B, Tq, _ = q.shape
    Tk = k.shape[1]
    return (q.new_empty(B, Tq, value.shape[-1]),
            q.new_empty(B, Tq, Tk) if need_weights else q.new_empty(0),
            q.new_empty(B, Tq, 2, dtype=acc_dtype(q.dtype)))


def _fake_backward(grad_context, grad_weights, q, k, value, v, bias,
                   attn_mask, context, stats):
    return (q.new_empty(q.shape), k.new_empty(k.shape),
            value.new_empty(value.shape), v.new_empty(v.shape),
            q.new_empty(bias.shape) if bias is not None else q.new_empty(0))


def _setup_context(ctx, inputs, output):
    q, k, value, v, bias, attn_mask, need_weights = inputs
    context, _, stats = output
    ctx.save_for_backward(q, k, value, v, bias, attn_mask, context, stats)
    ctx.need_weights = need_weights


def _backward(ctx, backward_op, grad_context, grad_weights, _grad_stats):
    q, k, value, v, bias, attn_mask, context, stats = ctx.saved_tensors
    if grad_context is None:
        grad_context = torch.zeros_like(context)
    if not ctx.need_weights:
        grad_weights = None
    gq, gk, gvalue, gv, gbias = backward_op(
        grad_context, grad_weights, q, k, value, v, bias, attn_mask, context,
        stats)
    return (gq, gk, gvalue, gv, gbias if bias is not None else None, None,
            None)


_OPS = register_family(
    "additive_attention", (_fake, _fake_backward), _setup_context, _backward,
    reference=(reference.additive_attention,
               reference.additive_attention_backward),
    triton=_triton,
    check=(_C.check_additive_attention, _C.check_additive_attention_backward))


def additive_attention(q: Tensor, k: Tensor, value: Tensor, v: Tensor,
                       bias: Optional[Tensor], attn_mask: Optional[Tensor],
                       need_weights: bool, *, backend: Optional[str] = None
                       ) -> tuple[Tensor, Tensor]:
    """Bahdanau attention over projected queries ``q [B,Tq,H]`` and keys
    ``k [B,Tk,H]``: returns ``(context [B,Tq,Dv], weights [B,Tq,Tk] or
    empty)``. ``attn_mask [B,Tq,Tk]``: bool True attends, float is added.
    The module-style entry point is
    ``seqkernels.functional.additive_attention``."""
    which = _backend.resolve(backend, q.device)
    context, weights, _ = _OPS.op(which)(q, k, value, v, bias, attn_mask,
                                         need_weights)
    return context, weights
