"""The ``attention_scores`` op: the attention probabilities
softmax(q k^T * scale + mask), fused (a pass for the log-sum-exp, then the
probabilities written once). Semantics:
``seqkernels/reference/attention_scores.py``."""

import torch

from ..reference import attention_scores as reference
from ._variants import register_family


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


register_family(
    "attention_scores",
    fake=(_fake, _fake_backward),
    setup_context=_setup_context,
    backward=_backward,
    reference=(reference.attention_scores,
               reference.attention_scores_backward),
    triton_module="seqkernels.triton_kernels.attention_scores",
)
