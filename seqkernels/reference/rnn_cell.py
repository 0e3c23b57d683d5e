"""Pointwise vanilla (Elman) RNN cell in PyTorch: the same math as the
RnnCell of csrc/include/seqkernels/cell_math.h, and the op ``rnn_cell``.

``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)`` with ``act`` one of "tanh",
"relu" (torch.nn.RNN's two) and "identity" (a linear dynamical system).
The saved value is ``h'`` itself in the accumulation dtype: the derivative
of each activation is a function of its output.
"""

from typing import Optional

import torch
from torch import Tensor

from .._common import acc_dtype
from ..cell_table import check_nonlinearity


def activate(pre: Tensor, nonlinearity: str) -> Tensor:
    if nonlinearity == "tanh":
        return pre.tanh()
    if nonlinearity == "relu":
        return pre.relu()
    return pre


def activate_backward(h: Tensor, dh: Tensor, nonlinearity: str) -> Tensor:
    """Gradient of the pre-activation from the output ``h``."""
    if nonlinearity == "tanh":
        return dh * (1 - h * h)
    if nonlinearity == "relu":
        return torch.where(h <= 0, 0, dh)  # torch's threshold_backward
    return dh


def rnn_cell(x_proj: Tensor, h_proj: Tensor, bias: Optional[Tensor],
             nonlinearity: str) -> tuple[Tensor, Tensor]:
    """Forward of the op ``rnn_cell``: ``x_proj = x W_ih^T``, ``h_proj = h
    W_hh^T`` ([B, H]), ``bias = b_ih + b_hh``; returns (h_new, saved)."""
    check_nonlinearity(nonlinearity)
    acc = acc_dtype(x_proj.dtype)
    pre = x_proj.to(acc) + h_proj.to(acc)
    if bias is not None:
        pre = pre + bias.to(acc)
    h = activate(pre, nonlinearity)
    # A copy even where the dtypes agree: the op's outputs must not alias.
    return h.to(x_proj.dtype, copy=True), h


def rnn_cell_backward(grad_h: Tensor, saved: Tensor,
                      nonlinearity: str) -> Tensor:
    """Backward of ``rnn_cell``: the gradient of the pre-activation."""
    check_nonlinearity(nonlinearity)
    grad_pre = activate_backward(saved, grad_h.to(saved.dtype), nonlinearity)
    return grad_pre.to(grad_h.dtype, copy=True)  # never an alias of grad_h
