"""Pointwise LSTM cell in PyTorch: the same math as
csrc/include/seqkernels/cell_math.h, on whole tensors.

Layouts: pre-activations and gates are ``[B, 4H]`` in torch.nn.LSTM's gate
order (i, f, g, o); states are ``[B, H]``.
"""

import torch
from torch import Tensor

from .._common import acc_dtype


def cell_forward(pre: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Activated gates [B, 4H], new cell state and cell output [B, H]."""
    i, f, g, o = pre.chunk(4, dim=-1)
    i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
    c = f * c_prev + i * g
    h = o * c.tanh()
    return torch.cat([i, f, g, o], dim=-1), c, h


def cell_backward(
    gates: Tensor, c_prev: Tensor, c: Tensor, dh: Tensor, dc: Tensor
) -> tuple[Tensor, Tensor]:
    """Gradients of the gate pre-activations [B, 4H] and of c_prev [B, H]."""
    i, f, g, o = gates.chunk(4, dim=-1)
    tanh_c = c.tanh()
    dc_total = dc + dh * o * (1 - tanh_c * tanh_c)
    dpre = torch.cat(
        [
            dc_total * g * i * (1 - i),
            dc_total * c_prev * f * (1 - f),
            dc_total * i * (1 - g * g),
            dh * tanh_c * o * (1 - o),
        ],
        dim=-1,
    )
    return dpre, dc_total * f


def lstm_cell(
    x_proj: Tensor, h_proj: Tensor, c: Tensor, bias: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Forward of the op ``lstm_cell``: returns (h_new, c_new, saved)."""
    acc = acc_dtype(x_proj.dtype)
    pre = x_proj.to(acc) + h_proj.to(acc)
    if bias is not None:
        pre = pre + bias.to(acc)
    gates, c_new, h_new = cell_forward(pre, c.to(acc))
    return h_new.to(c.dtype), c_new.to(c.dtype), gates


def lstm_cell_backward(
    grad_h: Tensor, grad_c: Tensor, c: Tensor, c_new: Tensor, gates: Tensor
) -> tuple[Tensor, Tensor]:
    """Backward of ``lstm_cell``: returns (grad_gates, grad_c_prev)."""
    acc = gates.dtype
    dpre, dc_prev = cell_backward(
        gates, c.to(acc), c_new.to(acc), grad_h.to(acc), grad_c.to(acc)
    )
    return dpre.to(c.dtype), dc_prev.to(c.dtype)
