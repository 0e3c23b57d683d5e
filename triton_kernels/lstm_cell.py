"""Triton kernels of the op ``lstm_cell``: the fused pointwise LSTM cell.

Same contract as ``seqkernels/reference/lstm_cell.py``: pre-activations and
gates are ``[B, 4H]`` in torch.nn.LSTM's gate order (i, f, g, o), states are
``[B, H]``. Each op is one kernel launch over all ``(b, j)``; the math runs in
the accumulation dtype (float32 for half, bfloat16 and float32; float64 for
float64).

The jit helpers here (activations, the cell forward and backward, the launch
helpers) are shared with ``lstm_seq.py``, whose steps fuse the same math with
the recurrent matrix product.
"""

import contextlib

import torch
import triton
import triton.language as tl
from torch import Tensor

# Elements of [B, H] per program of the pointwise kernels.
_BLOCK = 1024


# ---------------------------------------------------------------------------
# Host helpers (shared with lstm_seq.py)
# ---------------------------------------------------------------------------

def acc_torch_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half and bfloat16, else the dtype itself."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def tl_acc_dtype(dtype: torch.dtype):
    """The Triton dtype the kernels compute in for a storage dtype."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def device_guard(t: Tensor):
    """Launch on ``t``'s GPU (Triton launches on the current device)."""
    if t.is_cuda:
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------
# Device helpers (shared with lstm_seq.py)
# ---------------------------------------------------------------------------

@triton.jit
def sigmoid(x):
    # exp of a non-positive argument only: no overflow, and small results
    # keep their relative precision.
    e = tl.exp(-tl.abs(x))
    r = 1.0 / (1.0 + e)
    return tl.where(x >= 0, r, e * r)


@triton.jit
def tanh(x):
    # tanh(|x|) = (1 - e) / (1 + e) with e = exp(-2|x|) <= 1; odd symmetry.
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x >= 0, t, -t)


@triton.jit
def cell_forward(pre_i, pre_f, pre_g, pre_o, c_prev):
    """Activated gates, new cell state and cell output of one cell."""
    i = sigmoid(pre_i)
    f = sigmoid(pre_f)
    g = tanh(pre_g)
    o = sigmoid(pre_o)
    c = f * c_prev + i * g
    h = o * tanh(c)
    return i, f, g, o, c, h


@triton.jit
def cell_backward(i, f, g, o, c_prev, c, dh, dc):
    """Gradients of the four pre-activations and of c_prev of one cell."""
    tanh_c = tanh(c)
    dc_total = dc + dh * o * (1.0 - tanh_c * tanh_c)
    d_i = dc_total * g * i * (1.0 - i)
    d_f = dc_total * c_prev * f * (1.0 - f)
    d_g = dc_total * i * (1.0 - g * g)
    d_o = dh * tanh_c * o * (1.0 - o)
    return d_i, d_f, d_g, d_o, dc_total * f


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------

@triton.jit
def _lstm_cell_fwd_kernel(x_ptr, hp_ptr, bias_ptr, c_ptr, h_out_ptr,
                          c_out_ptr, gates_ptr, N, H,
                          HAS_BIAS: tl.constexpr, ACC: tl.constexpr,
                          BLOCK: tl.constexpr):
    # One program: BLOCK consecutive elements (b, j) of the [B, H] states.
    pid = tl.program_id(0).to(tl.int64)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    mask = idx < N
    b = idx // H
    j = idx - b * H
    g0 = b * (4 * H) + j  # gate i of (b, j) in the [B, 4H] rows
    pre_i = (tl.load(x_ptr + g0, mask=mask, other=0.0).to(ACC)
             + tl.load(hp_ptr + g0, mask=mask, other=0.0).to(ACC))
    pre_f = (tl.load(x_ptr + g0 + H, mask=mask, other=0.0).to(ACC)
             + tl.load(hp_ptr + g0 + H, mask=mask, other=0.0).to(ACC))
    pre_g = (tl.load(x_ptr + g0 + 2 * H, mask=mask, other=0.0).to(ACC)
             + tl.load(hp_ptr + g0 + 2 * H, mask=mask, other=0.0).to(ACC))
    pre_o = (tl.load(x_ptr + g0 + 3 * H, mask=mask, other=0.0).to(ACC)
             + tl.load(hp_ptr + g0 + 3 * H, mask=mask, other=0.0).to(ACC))
    if HAS_BIAS:
        pre_i += tl.load(bias_ptr + j, mask=mask, other=0.0).to(ACC)
        pre_f += tl.load(bias_ptr + j + H, mask=mask, other=0.0).to(ACC)
        pre_g += tl.load(bias_ptr + j + 2 * H, mask=mask, other=0.0).to(ACC)
        pre_o += tl.load(bias_ptr + j + 3 * H, mask=mask, other=0.0).to(ACC)
    c_prev = tl.load(c_ptr + idx, mask=mask, other=0.0).to(ACC)
    i, f, g, o, c, h = cell_forward(pre_i, pre_f, pre_g, pre_o, c_prev)
    gty = gates_ptr.dtype.element_ty
    tl.store(gates_ptr + g0, i.to(gty), mask=mask)
    tl.store(gates_ptr + g0 + H, f.to(gty), mask=mask)
    tl.store(gates_ptr + g0 + 2 * H, g.to(gty), mask=mask)
    tl.store(gates_ptr + g0 + 3 * H, o.to(gty), mask=mask)
    tl.store(c_out_ptr + idx, c.to(c_out_ptr.dtype.element_ty), mask=mask)
    tl.store(h_out_ptr + idx, h.to(h_out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _lstm_cell_bwd_kernel(dh_ptr, dc_ptr, c_ptr, c_new_ptr, gates_ptr,
                          dgates_ptr, dc_prev_ptr, N, H, ACC: tl.constexpr,
                          BLOCK: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    mask = idx < N
    b = idx // H
    j = idx - b * H
    g0 = b * (4 * H) + j
    i = tl.load(gates_ptr + g0, mask=mask, other=0.0).to(ACC)
    f = tl.load(gates_ptr + g0 + H, mask=mask, other=0.0).to(ACC)
    g = tl.load(gates_ptr + g0 + 2 * H, mask=mask, other=0.0).to(ACC)
    o = tl.load(gates_ptr + g0 + 3 * H, mask=mask, other=0.0).to(ACC)
    c_prev = tl.load(c_ptr + idx, mask=mask, other=0.0).to(ACC)
    c = tl.load(c_new_ptr + idx, mask=mask, other=0.0).to(ACC)
    dh = tl.load(dh_ptr + idx, mask=mask, other=0.0).to(ACC)
    dc = tl.load(dc_ptr + idx, mask=mask, other=0.0).to(ACC)
    d_i, d_f, d_g, d_o, dc_prev = cell_backward(i, f, g, o, c_prev, c, dh,
                                                dc)
    dty = dgates_ptr.dtype.element_ty
    tl.store(dgates_ptr + g0, d_i.to(dty), mask=mask)
    tl.store(dgates_ptr + g0 + H, d_f.to(dty), mask=mask)
    tl.store(dgates_ptr + g0 + 2 * H, d_g.to(dty), mask=mask)
    tl.store(dgates_ptr + g0 + 3 * H, d_o.to(dty), mask=mask)
    tl.store(dc_prev_ptr + idx, dc_prev.to(dc_prev_ptr.dtype.element_ty),
             mask=mask)


# ---------------------------------------------------------------------------
# Op implementations
# ---------------------------------------------------------------------------

def lstm_cell(x_proj: Tensor, h_proj: Tensor, c: Tensor,
              bias: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Forward of ``lstm_cell``: returns (h_new, c_new, gates)."""
    x_proj = x_proj.contiguous()
    h_proj = h_proj.contiguous()
    c = c.contiguous()
    bias = bias.contiguous() if bias is not None else None
    B, H = c.shape
    acc = acc_torch_dtype(x_proj.dtype)
    h_new = torch.empty_like(c, memory_format=torch.contiguous_format)
    c_new = torch.empty_like(c, memory_format=torch.contiguous_format)
    gates = torch.empty(x_proj.shape, dtype=acc, device=x_proj.device)
    N = B * H
    if N > 0:
        with device_guard(c):
            _lstm_cell_fwd_kernel[(triton.cdiv(N, _BLOCK),)](
                x_proj, h_proj, bias if bias is not None else x_proj, c,
                h_new, c_new, gates, N, H, HAS_BIAS=bias is not None,
                ACC=tl_acc_dtype(acc), BLOCK=_BLOCK)
    return h_new, c_new, gates


def lstm_cell_backward(grad_h: Tensor, grad_c: Tensor, c: Tensor,
                       c_new: Tensor, gates: Tensor) -> tuple[Tensor, Tensor]:
    """Backward of ``lstm_cell``: returns (grad_gates, grad_c_prev)."""
    grad_h = grad_h.contiguous()
    grad_c = grad_c.contiguous()
    c = c.contiguous()
    c_new = c_new.contiguous()
    gates = gates.contiguous()
    B, H = c.shape
    grad_gates = torch.empty(gates.shape, dtype=c.dtype, device=c.device)
    grad_c_prev = torch.empty_like(c, memory_format=torch.contiguous_format)
    N = B * H
    if N > 0:
        with device_guard(c):
            _lstm_cell_bwd_kernel[(triton.cdiv(N, _BLOCK),)](
                grad_h, grad_c, c, c_new, gates, grad_gates, grad_c_prev, N,
                H, ACC=tl_acc_dtype(gates.dtype), BLOCK=_BLOCK)
    return grad_gates, grad_c_prev
