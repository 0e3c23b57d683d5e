"""The ``sdpa`` op: fused scaled dot-product attention (flash style: online
softmax; the forward saves the log-sum-exp, the backward recomputes).
Shapes and semantics: ``seqkernels/reference/sdpa.py``."""

from typing import Optional

import torch
from torch import Tensor

from .. import _C, _backend
from ..reference import sdpa as reference
from .._common import acc_dtype
from ._variants import register_family


def _triton():
    # Imported at the first call: seqkernels imports without triton.
    from ..triton_kernels import sdpa
    return sdpa.sdpa, sdpa.sdpa_backward


def _fake(q, k, v, attn_mask, dropout_p, is_causal, scale, rng):
    B, H, T, _ = q.shape
    return (q.new_empty(B, H, T, v.shape[-1]),
            q.new_empty(B, H, T, dtype=acc_dtype(q.dtype)))


def _fake_backward(grad_out, q, k, v, out, lse, attn_mask, dropout_p,
                   is_causal, scale, rng):
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape))


def _setup_context(ctx, inputs, output):
    q, k, v, attn_mask, dropout_p, is_causal, scale, rng = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, attn_mask, rng)
    ctx.args = (dropout_p, is_causal, scale)


def _backward(ctx, backward_op, grad_out, _grad_lse):
    q, k, v, out, lse, attn_mask, rng = ctx.saved_tensors
    dropout_p, is_causal, scale = ctx.args
    if grad_out is None:
        grad_out = torch.zeros_like(out)
    gq, gk, gv = backward_op(grad_out, q, k, v, out, lse, attn_mask,
                             dropout_p, is_causal, scale, rng)
    return gq, gk, gv, None, None, None, None, None


_OPS = register_family(
    "sdpa", (_fake, _fake_backward), _setup_context, _backward,
    reference=(reference.sdpa, reference.sdpa_backward),
    triton=_triton, check=(_C.check_sdpa, _C.check_sdpa_backward))


def sdpa(q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor],
         dropout_p: float, is_causal: bool, scale: float,
         rng: Optional[Tensor], *, backend: Optional[str] = None) -> Tensor:
    """Fused attention of ``q [B,Hq,Tq,E]``, ``k [B,Hk,Tk,E]``,
    ``v [B,Hk,Tk,Ev]``: returns ``out [B,Hq,Tq,Ev]``. ``attn_mask``
    ``[B,Hq|1,Tq,Tk]`` (bool: True attends; float: added), ``rng`` two int64
    seeds of the dropout mask (None without dropout). The torch-signature
    entry point is ``seqkernels.functional.scaled_dot_product_attention``."""
    which = _backend.resolve(backend, q.device)
    out, _ = _OPS.op(which)(q, k, v, attn_mask, dropout_p, is_causal, scale,
                            rng)
    return out
