"""The ``lstm_seq`` op: an LSTM layer (one direction) over a whole sequence.

Shapes (T steps, B batch, I input, H hidden, P = proj_size or H):
``x [T,B,I]``, ``h0 [B,P]``, ``c0 [B,H]``, ``w_ih [4H,I]``, ``w_hh [4H,P]``,
``bias [4H]`` (b_ih + b_hh), ``w_hr [P,H]``, ``lengths [B]`` int64 on the
device of ``x``, each in ``[1, T]``. Time runs forward; callers reverse the
sequences of a reversed direction.
"""

from typing import Optional

import torch
from torch import Tensor

from .. import _C, _backend
from ..reference import recurrent as reference
from .._common import acc_dtype, no_saved_values, saved_needed
from ._variants import register_family


def _triton():
    # Imported at the first call: seqkernels imports without triton.
    from ..triton_kernels import recurrent
    return recurrent.lstm_seq, recurrent.lstm_seq_backward


def _fake(x, h0, c0, w_ih, w_hh, bias, w_hr, lengths, keep_saved=True):
    T, B, _ = x.shape
    H, P = w_ih.shape[0] // 4, h0.shape[1]
    acc = acc_dtype(x.dtype)
    if not keep_saved:
        return (x.new_empty(T, B, P), x.new_empty(B, P), x.new_empty(B, H),
                x.new_empty(0, dtype=acc), x.new_empty(0, dtype=acc),
                x.new_empty(0))
    return (x.new_empty(T, B, P), x.new_empty(B, P), x.new_empty(B, H),
            x.new_empty(T, B, 4 * H, dtype=acc), x.new_empty(T, B, H, dtype=acc),
            x.new_empty(T, B, H) if w_hr is not None else x.new_empty(0))


def _fake_backward(grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih, w_hh, w_hr,
                   lengths, y, saved, cell_states, cell_outputs, has_bias):
    H = w_ih.shape[0] // 4
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            h0.new_empty(h0.shape), c0.new_empty(c0.shape),
            w_ih.new_empty(w_ih.shape), w_hh.new_empty(w_hh.shape),
            x.new_empty(4 * H) if has_bias else x.new_empty(0),
            w_hr.new_empty(w_hr.shape) if w_hr is not None else x.new_empty(0))


def _setup_context(ctx, inputs, output):
    x, h0, c0, w_ih, w_hh, bias, w_hr, lengths, keep = inputs
    y, _, _, saved, cell_states, cell_outputs = output
    ctx.keep_saved = keep
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, w_hr, lengths, y, saved, cell_states,
                          cell_outputs)
    ctx.has_bias = bias is not None


def _backward(ctx, backward_op, grad_y, grad_h_n, grad_c_n, *_unused):
    if not ctx.keep_saved:
        raise no_saved_values("lstm_seq")
    x, h0, c0, w_ih, w_hh, w_hr, lengths, y, saved, cell_states, cell_outputs = ctx.saved_tensors
    grad_y = torch.zeros_like(y) if grad_y is None else grad_y
    grad_h_n = torch.zeros_like(h0) if grad_h_n is None else grad_h_n
    grad_c_n = torch.zeros_like(c0) if grad_c_n is None else grad_c_n
    gx, gh0, gc0, gw_ih, gw_hh, gbias, gw_hr = backward_op(
        grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih, w_hh, w_hr, lengths, y,
        saved, cell_states, cell_outputs, ctx.has_bias)
    return (gx, gh0, gc0, gw_ih, gw_hh, gbias if ctx.has_bias else None,
            gw_hr if w_hr is not None else None, None, None)


_OPS = register_family(
    "lstm_seq", (_fake, _fake_backward), _setup_context, _backward,
    reference=(reference.lstm_seq, reference.lstm_seq_backward),
    triton=_triton, check=(_C.check_lstm_seq, _C.check_lstm_seq_backward))


def lstm_seq(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
             bias: Optional[Tensor] = None, w_hr: Optional[Tensor] = None,
             lengths: Optional[Tensor] = None, *,
             backend: Optional[str] = None) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer, one direction: returns ``(y [T,B,P], h_n, c_n)``.

    Differentiable in every tensor argument but ``lengths``; the backward is
    the hand-written ``lstm_seq_backward`` op of the same backend.
    """
    which = _backend.resolve(backend, x.device)
    y, h_n, c_n, *_ = _OPS.op(which)(
        x, h0, c0, w_ih, w_hh, bias, w_hr, lengths,
        saved_needed(x, h0, c0, w_ih, w_hh, bias, w_hr))
    return y, h_n, c_n
