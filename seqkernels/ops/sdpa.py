"""The ``sdpa`` op: fused scaled dot-product attention (flash style: online
softmax; the forward saves the log-sum-exp, the backward recomputes).
Shapes and semantics: ``seqkernels/reference/sdpa.py``."""

import torch

from ..reference import sdpa as reference
from ..reference.lstm_cell import acc_dtype
from ._variants import register_family


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


register_family(
    "sdpa",
    fake=(_fake, _fake_backward),
    setup_context=_setup_context,
    backward=_backward,
    reference=(reference.sdpa, reference.sdpa_backward),
    triton_module="seqkernels.triton_kernels.sdpa",
)
