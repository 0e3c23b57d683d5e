"""The ``rnn_seq`` op: a vanilla (Elman) RNN layer (one direction) over a
whole sequence, ``h' = act(x W_ih^T + h W_hh^T + bias)`` with ``act`` one of
"tanh", "relu" and "identity" (a linear dynamical system).

Shapes (T steps, B batch, I input, H hidden): ``x [T,B,I]``, ``h0 [B,H]``,
``w_ih [H,I]``, ``w_hh [H,H]``, ``bias [H]`` (b_ih + b_hh), ``lengths [B]``
int64 on the device of ``x``, each in ``[1, T]``. Time runs forward; callers
reverse the sequences of a reversed direction.
"""

from typing import Optional

import torch
from torch import Tensor

from .. import _C, _backend
from ..reference import recurrent as reference
from .._common import acc_dtype, no_saved_values, saved_needed
from ..cell_table import check_nonlinearity
from ._variants import register_family


def _triton():
    # Imported at the first call: seqkernels imports without triton.
    from ..triton_kernels import recurrent
    return recurrent.rnn_seq, recurrent.rnn_seq_backward


def _fake(x, h0, w_ih, w_hh, bias, lengths, nonlinearity, keep_saved=True):
    check_nonlinearity(nonlinearity)
    T, B, _ = x.shape
    H = w_ih.shape[0]
    saved = (T, B, H) if keep_saved else (0,)
    return (x.new_empty(T, B, H), x.new_empty(B, H),
            x.new_empty(saved, dtype=acc_dtype(x.dtype)))


def _fake_backward(grad_y, grad_h_n, x, h0, w_ih, w_hh, lengths, y, saved,
                   has_bias, nonlinearity):
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            h0.new_empty(h0.shape), w_ih.new_empty(w_ih.shape),
            w_hh.new_empty(w_hh.shape),
            x.new_empty(w_ih.shape[0] if has_bias else 0))


def _setup_context(ctx, inputs, output):
    x, h0, w_ih, w_hh, bias, lengths, nonlinearity, keep = inputs
    y, _, saved = output
    ctx.keep_saved = keep
    ctx.save_for_backward(x, h0, w_ih, w_hh, lengths, y, saved)
    ctx.has_bias = bias is not None
    ctx.nonlinearity = nonlinearity


def _backward(ctx, backward_op, grad_y, grad_h_n, _grad_gates):
    if not ctx.keep_saved:
        raise no_saved_values("rnn_seq")
    x, h0, w_ih, w_hh, lengths, y, saved = ctx.saved_tensors
    grad_y = torch.zeros_like(y) if grad_y is None else grad_y
    grad_h_n = torch.zeros_like(h0) if grad_h_n is None else grad_h_n
    gx, gh0, gw_ih, gw_hh, gbias = backward_op(
        grad_y, grad_h_n, x, h0, w_ih, w_hh, lengths, y, saved,
        ctx.has_bias, ctx.nonlinearity)
    return (gx, gh0, gw_ih, gw_hh, gbias if ctx.has_bias else None, None,
            None, None)


_OPS = register_family(
    "rnn_seq", (_fake, _fake_backward), _setup_context, _backward,
    reference=(reference.rnn_seq, reference.rnn_seq_backward),
    triton=_triton, check=(_C.check_rnn_seq, _C.check_rnn_seq_backward))


def rnn_seq(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
            bias: Optional[Tensor] = None, lengths: Optional[Tensor] = None,
            nonlinearity: str = "tanh", *,
            backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """One vanilla RNN layer, one direction: returns ``(y [T,B,H],
    h_n [B,H])``. Differentiable in every tensor argument but
    ``lengths``."""
    check_nonlinearity(nonlinearity)
    which = _backend.resolve(backend, x.device)
    y, h_n, _ = _OPS.op(which)(x, h0, w_ih, w_hh, bias, lengths,
                               nonlinearity,
                               saved_needed(x, h0, w_ih, w_hh, bias))
    return y, h_n
