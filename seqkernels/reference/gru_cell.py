"""Pointwise GRU cell in PyTorch: the same math as the GruCell of
csrc/include/seqkernels/cell_math.h, on whole tensors, and the op
``gru_cell``.

torch.nn.GRU's equations and gate order (r, z, n)::

    r  = sigmoid(xr + hr)        x* = x W_i*^T + b_i*,  h* = h W_h*^T + b_h*
    z  = sigmoid(xz + hz)
    n  = tanh(xn + r * hn)       (b_hn stays inside, multiplied by r)
    h' = (1 - z) * n + z * h

Layouts: ``xg``, ``hg`` (input and recurrent side of the pre-activations)
are ``[B, 3H]``; saved values ``[B, 4H]`` = (r, z, n, hn); states ``[B, H]``.
"""

from typing import Optional

import torch
from torch import Tensor

from .._common import acc_dtype


def cell_forward(xg: Tensor, hg: Tensor,
                 h_prev: Tensor) -> tuple[Tensor, Tensor]:
    """Saved values [B, 4H] and the new h [B, H]."""
    xr, xz, xn = xg.chunk(3, dim=-1)
    hr, hz, hn = hg.chunk(3, dim=-1)
    r = (xr + hr).sigmoid()
    z = (xz + hz).sigmoid()
    n = (xn + r * hn).tanh()
    h = n + z * (h_prev - n)
    return torch.cat([r, z, n, hn], dim=-1), h


def cell_backward(saved: Tensor, h_prev: Tensor,
                  dh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of the input-side pre-activations [B, 3H], of the
    recurrent side [B, 3H], and of h_prev through the pointwise path
    (z * h) [B, H]."""
    r, z, n, hn = saved.chunk(4, dim=-1)
    dn_pre = dh * (1 - z) * (1 - n * n)
    dr_pre = dn_pre * hn * r * (1 - r)
    dz_pre = dh * (h_prev - n) * z * (1 - z)
    return (torch.cat([dr_pre, dz_pre, dn_pre], dim=-1),
            torch.cat([dr_pre, dz_pre, dn_pre * r], dim=-1), dh * z)


def gru_cell(x_proj: Tensor, h_proj: Tensor, h: Tensor,
             b_ih: Optional[Tensor],
             b_hh: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Forward of the op ``gru_cell``: ``x_proj = x W_ih^T``, ``h_proj = h
    W_hh^T`` ([B, 3H], no biases), ``h [B, H]``; returns (h_new, saved)."""
    acc = acc_dtype(x_proj.dtype)
    xg, hg = x_proj.to(acc), h_proj.to(acc)
    if b_ih is not None:
        xg = xg + b_ih.to(acc)
    if b_hh is not None:
        hg = hg + b_hh.to(acc)
    saved, h_new = cell_forward(xg, hg, h.to(acc))
    return h_new.to(h.dtype), saved


def gru_cell_backward(grad_h: Tensor, h: Tensor,
                      saved: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Backward of ``gru_cell``: returns (grad_x_proj, grad_h_proj,
    grad_h_prev), the last through the pointwise path only."""
    acc = saved.dtype
    dxg, dhg, dh_prev = cell_backward(saved, h.to(acc), grad_h.to(acc))
    return dxg.to(h.dtype), dhg.to(h.dtype), dh_prev.to(h.dtype)
