"""The ``rnn_cell`` op: the fused pointwise vanilla RNN cell.

``x_proj [B,H]`` (x W_ih^T), ``h_proj [B,H]`` (h W_hh^T), ``bias [H]``
(b_ih + b_hh) and the nonlinearity ("tanh", "relu" or "identity") in;
``h_new = act(x_proj + h_proj + bias)`` out.
"""

from typing import Optional

from torch import Tensor

from .. import _C, _backend
from ..reference import rnn_cell as reference
from .._common import acc_dtype
from ..cell_table import check_nonlinearity
from ._variants import register_family


def _triton():
    # Imported at the first call: seqkernels imports without triton.
    from ..triton_kernels import cells
    return cells.rnn_cell, cells.rnn_cell_backward


def _fake(x_proj, h_proj, bias, nonlinearity):
    check_nonlinearity(nonlinearity)
    return (x_proj.new_empty(x_proj.shape),
            x_proj.new_empty(x_proj.shape, dtype=acc_dtype(x_proj.dtype)))


def _fake_backward(grad_h, saved, nonlinearity):
    return grad_h.new_empty(grad_h.shape)


def _setup_context(ctx, inputs, output):
    _, _, bias, nonlinearity = inputs
    _, saved = output
    ctx.save_for_backward(saved)
    ctx.has_bias = bias is not None
    ctx.nonlinearity = nonlinearity


def _backward(ctx, backward_op, grad_h, _grad_gates):
    (saved,) = ctx.saved_tensors
    if grad_h is None:
        grad_h = saved.new_zeros(saved.shape)
    grad_pre = backward_op(grad_h, saved, ctx.nonlinearity)
    return (grad_pre, grad_pre, grad_pre.sum(0) if ctx.has_bias else None,
            None)


_OPS = register_family(
    "rnn_cell", (_fake, _fake_backward), _setup_context, _backward,
    reference=(reference.rnn_cell, reference.rnn_cell_backward),
    triton=_triton, check=(_C.check_rnn_cell, _C.check_rnn_cell_backward))


def rnn_cell(x_proj: Tensor, h_proj: Tensor, bias: Optional[Tensor] = None,
             nonlinearity: str = "tanh", *,
             backend: Optional[str] = None) -> Tensor:
    """Fused vanilla RNN cell: returns ``h_new``."""
    check_nonlinearity(nonlinearity)
    which = _backend.resolve(backend, x_proj.device)
    h_new, _ = _OPS.op(which)(x_proj, h_proj, bias, nonlinearity)
    return h_new
