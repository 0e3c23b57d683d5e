"""The ``lstm_cell`` op: the fused pointwise LSTM cell.

``x_proj [B,4H]`` (x W_ih^T) and ``h_proj [B,4H]`` (h W_hh^T) and ``bias
[4H]`` in; ``h_new, c_new [B,H]`` out. The projections stay GEMMs in torch;
the op fuses everything after them, forward and backward.
"""

from typing import Optional

import torch
from torch import Tensor

from .. import _C, _backend
from ..reference import lstm_cell as reference
from .._common import acc_dtype
from ._variants import register_family


def _triton():
    # Imported at the first call: seqkernels imports without triton.
    from ..triton_kernels import cells
    return cells.lstm_cell, cells.lstm_cell_backward


def _fake(x_proj, h_proj, c, bias):
    return (c.new_empty(c.shape), c.new_empty(c.shape),
            x_proj.new_empty(x_proj.shape, dtype=acc_dtype(x_proj.dtype)))


def _fake_backward(grad_h, grad_c, c, c_new, saved):
    return saved.new_empty(saved.shape, dtype=c.dtype), c.new_empty(c.shape)


def _setup_context(ctx, inputs, output):
    _, _, c, bias = inputs
    _, c_new, saved = output
    ctx.save_for_backward(c, c_new, saved)
    ctx.has_bias = bias is not None


def _backward(ctx, backward_op, grad_h, grad_c, _grad_gates):
    c, c_new, saved = ctx.saved_tensors
    grad_h = torch.zeros_like(c) if grad_h is None else grad_h
    grad_c = torch.zeros_like(c) if grad_c is None else grad_c
    grad_gates, grad_c_prev = backward_op(grad_h, grad_c, c, c_new, saved)
    grad_bias = grad_gates.sum(0) if ctx.has_bias else None
    return grad_gates, grad_gates, grad_c_prev, grad_bias


_OPS = register_family(
    "lstm_cell", (_fake, _fake_backward), _setup_context, _backward,
    reference=(reference.lstm_cell, reference.lstm_cell_backward),
    triton=_triton, check=(_C.check_lstm_cell, _C.check_lstm_cell_backward))


def lstm_cell(x_proj: Tensor, h_proj: Tensor, c: Tensor,
              bias: Optional[Tensor] = None, *,
              backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """Fused LSTM cell: returns ``(h_new, c_new)``."""
    which = _backend.resolve(backend, x_proj.device)
    h_new, c_new, _ = _OPS.op(which)(x_proj, h_proj, c, bias)
    return h_new, c_new
