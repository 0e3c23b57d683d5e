"""The ``gru_cell`` op: the fused pointwise GRU cell.

``x_proj [B,3H]`` (x W_ih^T), ``h_proj [B,3H]`` (h W_hh^T), ``h [B,H]``,
``b_ih, b_hh [3H]`` in; ``h_new [B,H]`` out, with torch.nn.GRUCell's
equations (see ``seqkernels/reference/gru_cell.py``). The projections stay
GEMMs in torch; the op fuses everything after them, forward and backward.
"""

from typing import Optional

import torch
from torch import Tensor

from .. import _C, _backend
from ..reference import gru_cell as reference
from .._common import acc_dtype
from ._variants import register_family


def _triton():
    # Imported at the first call: seqkernels imports without triton.
    from ..triton_kernels import cells
    return cells.gru_cell, cells.gru_cell_backward


def _fake(x_proj, h_proj, h, b_ih, b_hh):
    return (h.new_empty(h.shape),
            h.new_empty(h.shape[0], 4 * h.shape[1],
                        dtype=acc_dtype(h.dtype)))


def _fake_backward(grad_h, h, saved):
    B, H = h.shape
    return h.new_empty(B, 3 * H), h.new_empty(B, 3 * H), h.new_empty(B, H)


def _setup_context(ctx, inputs, output):
    _, _, h, b_ih, b_hh = inputs
    _, saved = output
    ctx.save_for_backward(h, saved)
    ctx.has_b_ih = b_ih is not None
    ctx.has_b_hh = b_hh is not None


def _backward(ctx, backward_op, grad_h, _grad_gates):
    h, saved = ctx.saved_tensors
    grad_h = torch.zeros_like(h) if grad_h is None else grad_h
    gx, gh, gh_prev = backward_op(grad_h, h, saved)
    return (gx, gh, gh_prev, gx.sum(0) if ctx.has_b_ih else None,
            gh.sum(0) if ctx.has_b_hh else None)


_OPS = register_family(
    "gru_cell", (_fake, _fake_backward), _setup_context, _backward,
    reference=(reference.gru_cell, reference.gru_cell_backward),
    triton=_triton, check=(_C.check_gru_cell, _C.check_gru_cell_backward))


def gru_cell(x_proj: Tensor, h_proj: Tensor, h: Tensor,
             b_ih: Optional[Tensor] = None, b_hh: Optional[Tensor] = None,
             *, backend: Optional[str] = None) -> Tensor:
    """Fused GRU cell: returns ``h_new``."""
    which = _backend.resolve(backend, x_proj.device)
    h_new, _ = _OPS.op(which)(x_proj, h_proj, h, b_ih, b_hh)
    return h_new
