"""The ``attention_scores`` op: the attention probabilities
softmax(q k^T * scale + mask), fused (a pass for the log-sum-exp, then the
probabilities written once). Semantics:
``seqkernels/reference/attention_scores.py``."""

from typing import Optional

from torch import Tensor

from .. import _C, _backend
from ..reference import attention_scores as reference
from ._variants import register_family


def _triton():
    # Imported at the first call: seqkernels imports without triton.
    from ..triton_kernels import attention_scores
    return (attention_scores.attention_scores,
            attention_scores.attention_scores_backward)


def _fake(q, k, attn_mask, is_causal, scale):
    return q.new_empty(q.shape[0], q.shape[1], q.shape[2], k.shape[2])


def _fake_backward(grad_p, q, k, p, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape)


def _setup_context(ctx, inputs, output):
    q, k, attn_mask, is_causal, scale = inputs
    ctx.save_for_backward(q, k, output)
    ctx.scale = scale


def _backward(ctx, backward_op, grad_p):
    if grad_p is None:  # P took no part in what was differentiated
        return None, None, None, None, None
    q, k, p = ctx.saved_tensors
    gq, gk = backward_op(grad_p, q, k, p, ctx.scale)
    return gq, gk, None, None, None


_OPS = register_family(
    "attention_scores", (_fake, _fake_backward), _setup_context, _backward,
    reference=(reference.attention_scores,
               reference.attention_scores_backward),
    triton=_triton,
    check=(_C.check_attention_scores, _C.check_attention_scores_backward))


def attention_scores(q: Tensor, k: Tensor, attn_mask: Optional[Tensor],
                     is_causal: bool, scale: float, *,
                     backend: Optional[str] = None) -> Tensor:
    """The probabilities ``softmax(q k^T * scale + mask)`` of ``q
    [B,Hq,Tq,E]`` and ``k [B,Hk,Tk,E]``: ``[B,Hq,Tq,Tk]``. The
    torch-style entry point is ``seqkernels.functional.attention_scores``."""
    which = _backend.resolve(backend, q.device)
    return _OPS.op(which)(q, k, attn_mask, is_causal, scale)
