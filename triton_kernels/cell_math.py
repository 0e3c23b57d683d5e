"""Pointwise math of every recurrent cell in Triton, and host helpers shared
by the Triton kernels of ``recurrent.py`` (sequence steps), ``persistent.py``
(whole recurrences) and ``cells.py`` (the fused cell ops).

The same equations as ``csrc/include/seqkernels/cell_math.h`` and the
reference (``seqkernels/reference/*_cell.py``). A cell is chosen by the
constexpr ``CELL`` (``LSTM``, ``GRU``, ``RNN``) and, for the RNN, ``ACT``
(``TANH``, ``RELU``, ``IDENTITY``); Triton compiles only the chosen branch.

Per hidden unit a cell sees up to four gates: ``x*`` the input side of the
pre-activations (x W_ih^T + b_ih), ``a*`` the recurrent side (h W_hh^T +
b_hh). Saved for the backward (``sv0..sv3``, accumulation dtype):

* LSTM (gates i, f, g, o): the activated gates;
* GRU (gates r, z, n): r, z, n and the recurrent side of n (W_hn h + b_hn);
* RNN (one gate): the output h (``sv0`` only).
"""

import functools

import torch
import triton
import triton.language as tl

# Values of the constexprs CELL and ACT (jit code reads globals only as
# constexprs; the host passes CellDesc.kind_id / act_id of
# seqkernels/cell_table.py, whose order these follow).
LSTM = tl.constexpr(0)
GRU = tl.constexpr(1)
RNN = tl.constexpr(2)

TANH = tl.constexpr(0)
RELU = tl.constexpr(1)
IDENTITY = tl.constexpr(2)



# ---------------------------------------------------------------------------
# Host helpers
# ---------------------------------------------------------------------------

def tl_acc_dtype(dtype: torch.dtype):
    """The Triton dtype the kernels compute in for a storage dtype."""
    return tl.float64 if dtype == torch.float64 else tl.float32


@functools.cache
def _num_sms_of(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def num_sms(device: torch.device) -> int:
    """The SM count of a GPU (1 for the CPU), which sizes the grids of the
    recurrent kernels."""
    if device.type != "cuda":
        return 1
    index = device.index if device.index is not None \
        else torch.cuda.current_device()
    return _num_sms_of(index)


# ---------------------------------------------------------------------------
# Gate blocks: a cell sees up to four gates of H units, gate g at an offset
# of g * step from gate 0 in a [B, G*H] (or [B, S*H]) tensor.
# ---------------------------------------------------------------------------

@triton.jit
def load_gates(ptrs, step, mask, N: tl.constexpr, ACC: tl.constexpr):
    """Gates 0..N-1 (N <= 4) of a [B, gates*H] tensor, gate g at ``ptrs + g *
    step``, in ACC; the gates from N on are placeholders (gate 0)."""
    v0 = tl.load(ptrs, mask=mask, other=0.0).to(ACC)
    v1 = v0
    v2 = v0
    v3 = v0
    if N > 1:
        v1 = tl.load(ptrs + step, mask=mask, other=0.0).to(ACC)
    if N > 2:
        v2 = tl.load(ptrs + 2 * step, mask=mask, other=0.0).to(ACC)
    if N > 3:
        v3 = tl.load(ptrs + 3 * step, mask=mask, other=0.0).to(ACC)
    return v0, v1, v2, v3


@triton.jit
def store_gates(ptrs, step, mask, v0, v1, v2, v3, N: tl.constexpr):
    """Stores v0..v{N-1} as gates 0..N-1 (see ``load_gates``)."""
    ty = ptrs.dtype.element_ty
    tl.store(ptrs, v0.to(ty), mask=mask)
    if N > 1:
        tl.store(ptrs + step, v1.to(ty), mask=mask)
    if N > 2:
        tl.store(ptrs + 2 * step, v2.to(ty), mask=mask)
    if N > 3:
        tl.store(ptrs + 3 * step, v3.to(ty), mask=mask)


# ---------------------------------------------------------------------------
# Activations
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
    # Near 0, 1 - e cancels: at |x| = 1e-3 it keeps only 16 bits of a
    # float32's 24. So float32 takes the odd series to x^11 below |x| = 0.25
    # (truncation under 1e-10 relative), as cpu_math.h's tanh does; float64
    # loses at most eps / (2|x|) there, far inside what float64 paths need.
    a = tl.abs(x)
    e = tl.exp(-2.0 * a)
    t = (1.0 - e) / (1.0 + e)
    y = tl.where(x >= 0, t, -t)
    if x.dtype == tl.float32:
        z = x * x
        p = -1382.0 / 155925.0
        p = p * z + 62.0 / 2835.0
        p = p * z - 17.0 / 315.0
        p = p * z + 2.0 / 15.0
        p = p * z - 1.0 / 3.0
        y = tl.where(a < 0.25, x + x * z * p, y)
    return y


@triton.jit
def activate(x, ACT: tl.constexpr):
    if ACT == TANH:
        y = tanh(x)
    elif ACT == RELU:
        y = tl.where(x < 0, 0.0, x)  # NaN passes, as torch.relu
    else:
        y = x
    return y


@triton.jit
def activate_grad(y, ACT: tl.constexpr):
    """The activation's derivative from its output ``y``."""
    if ACT == TANH:
        d = 1.0 - y * y
    elif ACT == RELU:
        d = tl.where(y <= 0, 0.0, 1.0)  # torch's threshold_backward
    else:
        d = tl.full(y.shape, 1.0, y.dtype)
    return d


# ---------------------------------------------------------------------------
# Cells
# ---------------------------------------------------------------------------

@triton.jit
def cell_forward(x0, x1, x2, x3, a0, a1, a2, a3, h_prev, c_prev,
                 CELL: tl.constexpr, ACT: tl.constexpr):
    """One step of the cell: returns (sv0, sv1, sv2, sv3, c, h). Unused
    inputs and outputs of a cell are placeholders."""
    if CELL == LSTM:
        sv0 = sigmoid(x0 + a0)
        sv1 = sigmoid(x1 + a1)
        sv2 = tanh(x2 + a2)
        sv3 = sigmoid(x3 + a3)
        c = sv1 * c_prev + sv0 * sv2
        h = sv3 * tanh(c)
    elif CELL == GRU:
        sv0 = sigmoid(x0 + a0)
        sv1 = sigmoid(x1 + a1)
        sv2 = tanh(x2 + sv0 * a2)
        sv3 = a2
        h = sv2 + sv1 * (h_prev - sv2)
        c = h
    else:
        h = activate(x0 + a0, ACT)
        sv0 = h
        sv1 = h
        sv2 = h
        sv3 = h
        c = h
    return sv0, sv1, sv2, sv3, c, h


@triton.jit
def cell_backward(sv0, sv1, sv2, sv3, h_prev, c_prev, c, dh, carry,
                  CELL: tl.constexpr, ACT: tl.constexpr):
    """Backward of one step. ``dh``: the whole gradient reaching h;
    ``carry``: LSTM, the gradient reaching c from later steps.

    Returns (d0, d1, d2, d3, dhn, carry_out): the gradients of the input-side
    pre-activations; dhn, the recurrent side's gradient of the GRU's n gate
    (the other recurrent-side gradients equal the input side's); carry_out,
    LSTM: the gradient of c_prev, GRU: the gradient of h_prev through the
    pointwise path h' = (1 - z) n + z h.
    """
    if CELL == LSTM:
        tanh_c = tanh(c)
        dc_total = carry + dh * sv3 * (1.0 - tanh_c * tanh_c)
        d0 = dc_total * sv2 * sv0 * (1.0 - sv0)
        d1 = dc_total * c_prev * sv1 * (1.0 - sv1)
        d2 = dc_total * sv0 * (1.0 - sv2 * sv2)
        d3 = dh * tanh_c * sv3 * (1.0 - sv3)
        dhn = d2
        carry_out = dc_total * sv1
    elif CELL == GRU:
        d2 = dh * (1.0 - sv1) * (1.0 - sv2 * sv2)
        d0 = d2 * sv3 * sv0 * (1.0 - sv0)
        d1 = dh * (h_prev - sv2) * sv1 * (1.0 - sv1)
        d3 = d2
        dhn = d2 * sv0
        carry_out = dh * sv1
    else:
        d0 = dh * activate_grad(sv0, ACT)
        d1 = d0
        d2 = d0
        d3 = d0
        dhn = d0
        carry_out = d0
    return d0, d1, d2, d3, dhn, carry_out
