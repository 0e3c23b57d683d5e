"""The ``gru_seq`` op: a GRU layer (one direction) over a whole sequence,
with torch.nn.GRU's equations (see ``seqkernels/reference/gru_cell.py``).

Shapes (T steps, B batch, I input, H hidden): ``x [T,B,I]``, ``h0 [B,H]``,
``w_ih [3H,I]``, ``w_hh [3H,H]``, ``b_ih, b_hh [3H]`` (kept apart: the
recurrent bias of the n gate is multiplied by r), ``lengths [B]`` int64 on
the device of ``x``, each in ``[1, T]``. Time runs forward; callers reverse
the sequences of a reversed direction.
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
    return recurrent.gru_seq, recurrent.gru_seq_backward


def _fake(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, keep_saved=True):
    T, B, _ = x.shape
    H = w_ih.shape[0] // 3
    saved = (T, B, 4 * H) if keep_saved else (0,)
    return (x.new_empty(T, B, H), x.new_empty(B, H),
            x.new_empty(saved, dtype=acc_dtype(x.dtype)))


def _fake_backward(grad_y, grad_h_n, x, h0, w_ih, w_hh, lengths, y, saved,
                   has_bias):
    n = w_ih.shape[0] if has_bias else 0
    return (torch.empty_like(x, memory_format=torch.contiguous_format),
            h0.new_empty(h0.shape), w_ih.new_empty(w_ih.shape),
            w_hh.new_empty(w_hh.shape), x.new_empty(n), x.new_empty(n))


def _setup_context(ctx, inputs, output):
    x, h0, w_ih, w_hh, b_ih, b_hh, lengths, keep = inputs
    y, _, saved = output
    ctx.keep_saved = keep
    ctx.save_for_backward(x, h0, w_ih, w_hh, lengths, y, saved)
    ctx.has_b_ih = b_ih is not None
    ctx.has_b_hh = b_hh is not None


def _backward(ctx, backward_op, grad_y, grad_h_n, _grad_gates):
    if not ctx.keep_saved:
        raise no_saved_values("gru_seq")
    x, h0, w_ih, w_hh, lengths, y, saved = ctx.saved_tensors
    grad_y = torch.zeros_like(y) if grad_y is None else grad_y
    grad_h_n = torch.zeros_like(h0) if grad_h_n is None else grad_h_n
    gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh = backward_op(
        grad_y, grad_h_n, x, h0, w_ih, w_hh, lengths, y, saved,
        ctx.has_b_ih or ctx.has_b_hh)
    return (gx, gh0, gw_ih, gw_hh, gb_ih if ctx.has_b_ih else None,
            gb_hh if ctx.has_b_hh else None, None, None)


_OPS = register_family(
    "gru_seq", (_fake, _fake_backward), _setup_context, _backward,
    reference=(reference.gru_seq, reference.gru_seq_backward),
    triton=_triton, check=(_C.check_gru_seq, _C.check_gru_seq_backward))


def gru_seq(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
            b_ih: Optional[Tensor] = None, b_hh: Optional[Tensor] = None,
            lengths: Optional[Tensor] = None, *,
            backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """One GRU layer, one direction: returns ``(y [T,B,H], h_n [B,H])``.

    Differentiable in every tensor argument but ``lengths``; the backward is
    the hand-written ``gru_seq_backward`` op of the same backend.
    """
    which = _backend.resolve(backend, x.device)
    y, h_n, _ = _OPS.op(which)(x, h0, w_ih, w_hh, b_ih, b_hh, lengths,
                               saved_needed(x, h0, w_ih, w_hh, b_ih, b_hh))
    return y, h_n
