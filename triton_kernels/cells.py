"""Triton kernels of the fused cell ops ``lstm_cell``, ``gru_cell`` and
``rnn_cell``: everything after the two projections, forward and backward.

Same contracts as ``seqkernels/reference/{lstm,gru,rnn}_cell.py``:
pre-activations and their gradients are ``[B, G*H]`` in torch's gate order,
states ``[B, H]``, saved values ``[B, S*H]`` in the accumulation dtype
(float32 for half, bfloat16 and float32; float64 for float64). One kernel
pair serves every cell (the constexpr ``CELL``), with the pointwise math of
``cell_math.py`` that the sequence steps use too; each op is one launch
over all ``(b, j)``.
"""

from typing import Optional

import triton
import triton.language as tl
from torch import Tensor

from seqkernels._common import acc_dtype, device_guard
from seqkernels.cell_table import CellDesc, cell_desc

from .cell_math import (GRU, LSTM, RNN, cell_backward, cell_forward,
                        load_gates, store_gates, tl_acc_dtype)

# Elements of [B, H] per program.
_BLOCK = 1024


@triton.jit
def _elements(N, H, G: tl.constexpr, BLOCK: tl.constexpr):
    """This program's BLOCK consecutive elements (b, j) of the [B, H]
    states: (idx, in bounds, b, j, offset of gate 0 of (b, j) in the
    [B, G*H] rows)."""
    idx = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    b = idx // H
    j = idx - b * H
    return idx, idx < N, b, j, b * (G * H) + j


@triton.jit
def _cell_fwd_kernel(x_ptr, hp_ptr, bx_ptr, bh_ptr, h_ptr, c_ptr, h_out_ptr,
                     c_out_ptr, saved_ptr, N, H,
                     CELL: tl.constexpr, ACT: tl.constexpr, G: tl.constexpr,
                     S: tl.constexpr, HAS_BX: tl.constexpr,
                     HAS_BH: tl.constexpr, ACC: tl.constexpr,
                     BLOCK: tl.constexpr):
    idx, mask, b, j, g0 = _elements(N, H, G, BLOCK)
    x0, x1, x2, x3 = load_gates(x_ptr + g0, H, mask, G, ACC)
    a0, a1, a2, a3 = load_gates(hp_ptr + g0, H, mask, G, ACC)
    if HAS_BX:
        b0, b1, b2, b3 = load_gates(bx_ptr + j, H, mask, G, ACC)
        x0, x1, x2, x3 = x0 + b0, x1 + b1, x2 + b2, x3 + b3
    if HAS_BH:
        b0, b1, b2, b3 = load_gates(bh_ptr + j, H, mask, G, ACC)
        a0, a1, a2, a3 = a0 + b0, a1 + b1, a2 + b2, a3 + b3
    if CELL == LSTM:
        c_prev = tl.load(c_ptr + idx, mask=mask, other=0.0).to(ACC)
    else:
        c_prev = x0
    if CELL == GRU:
        h_prev = tl.load(h_ptr + idx, mask=mask, other=0.0).to(ACC)
    else:
        h_prev = x0
    sv0, sv1, sv2, sv3, c, h = cell_forward(x0, x1, x2, x3, a0, a1, a2, a3,
                                            h_prev, c_prev, CELL, ACT)
    store_gates(saved_ptr + b * (S * H) + j, H, mask, sv0, sv1, sv2, sv3, S)
    if CELL == LSTM:
        tl.store(c_out_ptr + idx, c.to(c_out_ptr.dtype.element_ty),
                 mask=mask)
    tl.store(h_out_ptr + idx, h.to(h_out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _cell_bwd_kernel(dh_ptr, dc_ptr, saved_ptr, h_ptr, c_ptr, c_new_ptr,
                     gx_ptr, gh_ptr, g_carry_ptr, N, H,
                     CELL: tl.constexpr, ACT: tl.constexpr, G: tl.constexpr,
                     S: tl.constexpr, ACC: tl.constexpr,
                     BLOCK: tl.constexpr):
    idx, mask, b, j, g0 = _elements(N, H, G, BLOCK)
    s0 = b * (S * H) + j
    dh = tl.load(dh_ptr + idx, mask=mask, other=0.0).to(ACC)
    sv0, sv1, sv2, sv3 = load_gates(saved_ptr + s0, H, mask, S, ACC)
    if CELL == LSTM:
        dc = tl.load(dc_ptr + idx, mask=mask, other=0.0).to(ACC)
        c_prev = tl.load(c_ptr + idx, mask=mask, other=0.0).to(ACC)
        c = tl.load(c_new_ptr + idx, mask=mask, other=0.0).to(ACC)
    else:
        dc = dh
        c_prev = dh
        c = dh
    if CELL == GRU:
        h_prev = tl.load(h_ptr + idx, mask=mask, other=0.0).to(ACC)
    else:
        h_prev = dh
    d0, d1, d2, d3, dhn, carry = cell_backward(sv0, sv1, sv2, sv3, h_prev,
                                              c_prev, c, dh, dc, CELL, ACT)
    store_gates(gx_ptr + g0, H, mask, d0, d1, d2, d3, G)
    if CELL == GRU:
        store_gates(gh_ptr + g0, H, mask, d0, d1, dhn, d3, 3)
    if CELL != RNN:
        tl.store(g_carry_ptr + idx, carry.to(g_carry_ptr.dtype.element_ty),
                 mask=mask)


def _forward(cell: CellDesc, x_proj: Tensor, h_proj: Tensor,
             b_x: Optional[Tensor], b_h: Optional[Tensor],
             h: Optional[Tensor], c: Optional[Tensor]):
    """Runs the forward kernel; returns (h_new, c_new or None, saved)."""
    x_proj = x_proj.contiguous()
    h_proj = h_proj.contiguous()
    b_x = b_x.contiguous() if b_x is not None else None
    b_h = b_h.contiguous() if b_h is not None else None
    h = h.contiguous() if h is not None else None
    c = c.contiguous() if c is not None else None
    G, S = cell.gates, cell.saved
    B, H = x_proj.shape[0], x_proj.shape[1] // G
    acc = acc_dtype(x_proj.dtype)
    h_new = x_proj.new_empty(B, H)
    c_new = x_proj.new_empty(B, H) if cell.has_c else None
    saved = x_proj.new_empty(B, S * H, dtype=acc)
    N = B * H
    if N > 0:
        with device_guard(x_proj):
            _cell_fwd_kernel[(triton.cdiv(N, _BLOCK),)](
                x_proj, h_proj, b_x if b_x is not None else x_proj,
                b_h if b_h is not None else x_proj,
                h if h is not None else x_proj,
                c if c is not None else x_proj, h_new,
                c_new if c_new is not None else h_new, saved, N, H,
                CELL=cell.kind_id, ACT=cell.act_id, G=G, S=S,
                HAS_BX=b_x is not None, HAS_BH=b_h is not None,
                ACC=tl_acc_dtype(acc), BLOCK=_BLOCK)
    return h_new, c_new, saved


def _backward(cell: CellDesc, grad_h: Tensor, grad_c: Optional[Tensor],
              saved: Tensor, h: Optional[Tensor], c: Optional[Tensor],
              c_new: Optional[Tensor]):
    """Runs the backward kernel; returns (grad_xg, grad_hg or None,
    grad_carry or None)."""
    grad_h = grad_h.contiguous()
    saved = saved.contiguous()
    grad_c, h, c, c_new = (t.contiguous() if t is not None else None
                           for t in (grad_c, h, c, c_new))
    G, S = cell.gates, cell.saved
    B, H = grad_h.shape
    grad_xg = grad_h.new_empty(B, G * H)
    grad_hg = grad_h.new_empty(B, G * H) if cell.split_grad else None
    grad_carry = (grad_h.new_empty(B, H) if cell.has_c or cell.direct_h
                  else None)
    N = B * H
    if N > 0:
        placeholder = grad_h
        with device_guard(grad_h):
            _cell_bwd_kernel[(triton.cdiv(N, _BLOCK),)](
                grad_h, grad_c if grad_c is not None else placeholder, saved,
                h if h is not None else placeholder,
                c if c is not None else placeholder,
                c_new if c_new is not None else placeholder, grad_xg,
                grad_hg if grad_hg is not None else grad_xg,
                grad_carry if grad_carry is not None else grad_xg, N, H,
                CELL=cell.kind_id, ACT=cell.act_id, G=G, S=S,
                ACC=tl_acc_dtype(saved.dtype), BLOCK=_BLOCK)
    return grad_xg, grad_hg, grad_carry


# ---------------------------------------------------------------------------
# Op implementations
# ---------------------------------------------------------------------------

def lstm_cell(x_proj: Tensor, h_proj: Tensor, c: Tensor,
              bias: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Forward of ``lstm_cell``: returns (h_new, c_new, saved)."""
    return _forward(cell_desc("lstm"), x_proj, h_proj, bias, None, None, c)


def lstm_cell_backward(grad_h: Tensor, grad_c: Tensor, c: Tensor,
                       c_new: Tensor, saved: Tensor) -> tuple[Tensor, Tensor]:
    """Backward of ``lstm_cell``: returns (grad_gates, grad_c_prev)."""
    grad_gates, _, grad_c_prev = _backward(cell_desc("lstm"), grad_h, grad_c,
                                           saved, None, c, c_new)
    return grad_gates, grad_c_prev


def gru_cell(x_proj: Tensor, h_proj: Tensor, h: Tensor,
             b_ih: Optional[Tensor],
             b_hh: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Forward of ``gru_cell``: returns (h_new, saved)."""
    h_new, _, saved = _forward(cell_desc("gru"), x_proj, h_proj, b_ih, b_hh,
                               h, None)
    return h_new, saved


def gru_cell_backward(grad_h: Tensor, h: Tensor,
                      saved: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Backward of ``gru_cell``: returns (grad_x_proj, grad_h_proj,
    grad_h_prev)."""
    return _backward(cell_desc("gru"), grad_h, None, saved, h, None,
                     None)


def rnn_cell(x_proj: Tensor, h_proj: Tensor, bias: Optional[Tensor],
             nonlinearity: str) -> tuple[Tensor, Tensor]:
    """Forward of ``rnn_cell``: returns (h_new, saved)."""
    h_new, _, saved = _forward(cell_desc("rnn", nonlinearity), x_proj,
                               h_proj, bias, None, None, None)
    return h_new, saved


def rnn_cell_backward(grad_h: Tensor, saved: Tensor,
                      nonlinearity: str) -> Tensor:
    """Backward of ``rnn_cell``: the gradient of the pre-activation."""
    grad_pre, _, _ = _backward(cell_desc("rnn", nonlinearity), grad_h, None,
                               saved, None, None, None)
    return grad_pre
