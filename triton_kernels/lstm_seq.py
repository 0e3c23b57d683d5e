"""Triton steps of the op ``lstm_seq`` (one LSTM layer over a sequence).

The sequence machinery (input projection, the loop over steps, weight
gradients) is the shared Python driver of ``seqkernels.reference.lstm_seq``;
this module provides its steps, :class:`TritonSteps`, with the contract of
``TorchSteps`` there (and of ``LstmSeqSteps`` in
``csrc/include/seqkernels/lstm_seq_host.h``). Each step is one kernel launch
that fuses the recurrent matrix product with the pointwise cell:

* forward: a program owns a tile of ``BLOCK_B`` batch rows by ``BLOCK_H``
  hidden units; for each of the 4 gates it accumulates
  ``h_in[b, :] @ w_hh[gate*H + j, :]`` over K in blocks of ``BLOCK_K``,
  adds ``xg_s``, and runs the cell on the tile.
* backward: the same tiling over ``[B, H]``; the product
  ``grad_gates_next[b, :] @ w_hh[:, j]`` runs over the 4H rows of ``w_hh``
  in blocks, then the carry/lengths logic and the pointwise backward.

Products use ``tl.dot`` (float32 accumulation; TF32 for float32 inputs only
where ``torch.backends.cudnn.allow_tf32`` allows it, as cuDNN's LSTM does).
float64 always, and bfloat16 under the interpreter (whose ``tl.dot`` is wrong
for it), use a broadcast multiply and sum in the accumulation dtype instead.
"""

import functools
from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from seqkernels.reference import lstm_seq as _driver

from .lstm_cell import cell_backward, cell_forward, device_guard, tl_acc_dtype


# ---------------------------------------------------------------------------
# Device code
# ---------------------------------------------------------------------------

@triton.jit
def _mac(a, b, acc, USE_DOT: tl.constexpr, PRECISION: tl.constexpr):
    """acc + a @ b for tiles a [M, K], b [K, N] and acc [M, N]."""
    if USE_DOT:
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    else:
        a = a.to(acc.dtype)
        b = b.to(acc.dtype)
        acc += tl.sum(a[:, :, None] * b[None, :, :], axis=1)
    return acc


@triton.jit(do_not_specialize=["s"])
def _lstm_seq_fwd_step(
        xg_ptr, h_in_ptr, w_ptr, c_state_ptr, len_ptr, gates_ptr, cs_ptr,
        out_ptr, h_out_ptr,
        s, B, H, K,
        s_xg_b, s_xg_n, s_hi_b, s_hi_k, s_w_n, s_w_k, s_c_b, s_c_j,
        s_g_b, s_g_n, s_cs_b, s_cs_j, s_o_b, s_o_j, s_ho_b, s_ho_j,
        HAS_W: tl.constexpr, HAS_LENGTHS: tl.constexpr,
        HAS_HOUT: tl.constexpr, USE_DOT: tl.constexpr,
        PRECISION: tl.constexpr, ACC: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr):
    rb = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rj = tl.program_id(1).to(tl.int64) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb = rb < B
    mj = rj < H
    mask = mb[:, None] & mj[None, :]

    # pre[b, gH + j] = xg_s[b, gH + j] + h_in[b, :] . w_hh[gH + j, :] where
    # gH = gate * H.
    acc_i = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    acc_f = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    acc_g = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    acc_o = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    if HAS_W:
        rk = tl.arange(0, BLOCK_K)
        a_rows = h_in_ptr + rb[:, None] * s_hi_b
        w_cols = w_ptr + rj[None, :] * s_w_n  # row gate*H + j of w_hh
        gate_step = H * s_w_n
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + rk
            mk = kk < K
            a = tl.load(a_rows + kk[None, :] * s_hi_k,
                        mask=mb[:, None] & mk[None, :], other=0.0)
            w_mask = mk[:, None] & mj[None, :]
            # w tiles are [BLOCK_K, BLOCK_H]: w_hh[gate*H + j, k] at (k, j).
            w_tile = w_cols + kk[:, None] * s_w_k
            acc_i = _mac(a, tl.load(w_tile, mask=w_mask, other=0.0), acc_i,
                         USE_DOT, PRECISION)
            acc_f = _mac(a, tl.load(w_tile + gate_step, mask=w_mask,
                                    other=0.0), acc_f, USE_DOT, PRECISION)
            acc_g = _mac(a, tl.load(w_tile + 2 * gate_step, mask=w_mask,
                                    other=0.0), acc_g, USE_DOT, PRECISION)
            acc_o = _mac(a, tl.load(w_tile + 3 * gate_step, mask=w_mask,
                                    other=0.0), acc_o, USE_DOT, PRECISION)
    xg = xg_ptr + rb[:, None] * s_xg_b + rj[None, :] * s_xg_n
    xg_gate = H * s_xg_n
    pre_i = tl.load(xg, mask=mask, other=0.0).to(ACC) + acc_i.to(ACC)
    pre_f = tl.load(xg + xg_gate, mask=mask, other=0.0).to(ACC) + acc_f.to(ACC)
    pre_g = (tl.load(xg + 2 * xg_gate, mask=mask, other=0.0).to(ACC)
             + acc_g.to(ACC))
    pre_o = (tl.load(xg + 3 * xg_gate, mask=mask, other=0.0).to(ACC)
             + acc_o.to(ACC))

    c_ptrs = c_state_ptr + rb[:, None] * s_c_b + rj[None, :] * s_c_j
    c_prev = tl.load(c_ptrs, mask=mask, other=0.0).to(ACC)
    i, f, g, o, c, h = cell_forward(pre_i, pre_f, pre_g, pre_o, c_prev)

    if HAS_LENGTHS:
        active = tl.load(len_ptr + rb, mask=mb, other=0) > s
        on = active[:, None] & mask  # active row, in bounds
        off = (~active)[:, None] & mask  # inactive row, in bounds
        i = tl.where(on, i, 0.0)
        f = tl.where(on, f, 0.0)
        g = tl.where(on, g, 0.0)
        o = tl.where(on, o, 0.0)
        c = tl.where(on, c, 0.0)
        h = tl.where(on, h, 0.0)
    else:
        on = mask

    gty = gates_ptr.dtype.element_ty
    g_ptrs = gates_ptr + rb[:, None] * s_g_b + rj[None, :] * s_g_n
    g_gate = H * s_g_n
    tl.store(g_ptrs, i.to(gty), mask=mask)
    tl.store(g_ptrs + g_gate, f.to(gty), mask=mask)
    tl.store(g_ptrs + 2 * g_gate, g.to(gty), mask=mask)
    tl.store(g_ptrs + 3 * g_gate, o.to(gty), mask=mask)
    tl.store(cs_ptr + rb[:, None] * s_cs_b + rj[None, :] * s_cs_j,
             c.to(cs_ptr.dtype.element_ty), mask=mask)
    # The cell state moves on in active rows only.
    tl.store(c_ptrs, c.to(c_state_ptr.dtype.element_ty), mask=on)
    h_store = h.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + rb[:, None] * s_o_b + rj[None, :] * s_o_j, h_store,
             mask=mask)
    if HAS_HOUT:
        # h_out is [B, P] with P == H here: the new state where the row is
        # active, else a copy of h_in.
        ho_ptrs = h_out_ptr + rb[:, None] * s_ho_b + rj[None, :] * s_ho_j
        hty = h_out_ptr.dtype.element_ty
        tl.store(ho_ptrs, h.to(hty), mask=on)
        if HAS_LENGTHS:
            kept = tl.load(h_in_ptr + rb[:, None] * s_hi_b
                           + rj[None, :] * s_hi_k, mask=off, other=0.0)
            tl.store(ho_ptrs, kept.to(hty), mask=off)


@triton.jit(do_not_specialize=["s"])
def _lstm_seq_bwd_step(
        ggn_ptr, w_ptr, dh_carry_ptr, dh_in_ptr, dc_carry_ptr, gates_ptr,
        c_prev_ptr, cs_ptr, len_ptr, gg_ptr,
        s, B, H, N,
        s_ggn_b, s_ggn_n, s_w_n, s_w_j, s_dhc_b, s_dhc_j, s_dhi_b, s_dhi_j,
        s_dcc_b, s_dcc_j, s_g_b, s_g_n, s_cp_b, s_cp_j, s_cs_b, s_cs_j,
        s_gg_b, s_gg_n,
        HAS_W: tl.constexpr, HAS_NEXT: tl.constexpr,
        HAS_LENGTHS: tl.constexpr, USE_DOT: tl.constexpr,
        PRECISION: tl.constexpr, ACC: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr):
    rb = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rj = tl.program_id(1).to(tl.int64) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb = rb < B
    mj = rj < H
    mask = mb[:, None] & mj[None, :]
    if HAS_LENGTHS:
        length = tl.load(len_ptr + rb, mask=mb, other=0)

    # The gradient reaching h from step s + 1.
    if HAS_W:
        dhc_ptrs = dh_carry_ptr + rb[:, None] * s_dhc_b + rj[None, :] * s_dhc_j
        carry = tl.load(dhc_ptrs, mask=mask, other=0.0).to(ACC)
        if HAS_NEXT:
            acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
            rn = tl.arange(0, BLOCK_K)
            a_rows = ggn_ptr + rb[:, None] * s_ggn_b
            w_cols = w_ptr + rj[None, :] * s_w_j
            for n0 in range(0, N, BLOCK_K):
                nn = n0 + rn
                mn = nn < N
                a = tl.load(a_rows + nn[None, :] * s_ggn_n,
                            mask=mb[:, None] & mn[None, :], other=0.0)
                w = tl.load(w_cols + nn[:, None] * s_w_n,
                            mask=mn[:, None] & mj[None, :], other=0.0)
                acc = _mac(a, w, acc, USE_DOT, PRECISION)
            from_next = acc.to(ACC)
            if HAS_LENGTHS:
                carry = tl.where((length > s + 1)[:, None], from_next, carry)
            else:
                carry = from_next
            tl.store(dhc_ptrs, carry.to(dh_carry_ptr.dtype.element_ty),
                     mask=mask)
    else:
        carry = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)

    dh = tl.load(dh_in_ptr + rb[:, None] * s_dhi_b + rj[None, :] * s_dhi_j,
                 mask=mask, other=0.0).to(ACC) + carry
    dcc_ptrs = dc_carry_ptr + rb[:, None] * s_dcc_b + rj[None, :] * s_dcc_j
    dc = tl.load(dcc_ptrs, mask=mask, other=0.0).to(ACC)
    g_ptrs = gates_ptr + rb[:, None] * s_g_b + rj[None, :] * s_g_n
    g_gate = H * s_g_n
    i = tl.load(g_ptrs, mask=mask, other=0.0).to(ACC)
    f = tl.load(g_ptrs + g_gate, mask=mask, other=0.0).to(ACC)
    g = tl.load(g_ptrs + 2 * g_gate, mask=mask, other=0.0).to(ACC)
    o = tl.load(g_ptrs + 3 * g_gate, mask=mask, other=0.0).to(ACC)
    c_prev = tl.load(c_prev_ptr + rb[:, None] * s_cp_b + rj[None, :] * s_cp_j,
                     mask=mask, other=0.0).to(ACC)
    c = tl.load(cs_ptr + rb[:, None] * s_cs_b + rj[None, :] * s_cs_j,
                mask=mask, other=0.0).to(ACC)
    d_i, d_f, d_g, d_o, dc_prev = cell_backward(i, f, g, o, c_prev, c, dh, dc)

    if HAS_LENGTHS:
        on = (length > s)[:, None] & mask
        d_i = tl.where(on, d_i, 0.0)
        d_f = tl.where(on, d_f, 0.0)
        d_g = tl.where(on, d_g, 0.0)
        d_o = tl.where(on, d_o, 0.0)
    else:
        on = mask
    gty = gg_ptr.dtype.element_ty
    gg_ptrs = gg_ptr + rb[:, None] * s_gg_b + rj[None, :] * s_gg_n
    gg_gate = H * s_gg_n
    tl.store(gg_ptrs, d_i.to(gty), mask=mask)
    tl.store(gg_ptrs + gg_gate, d_f.to(gty), mask=mask)
    tl.store(gg_ptrs + 2 * gg_gate, d_g.to(gty), mask=mask)
    tl.store(gg_ptrs + 3 * gg_gate, d_o.to(gty), mask=mask)
    # The cell-state gradient moves on in active rows only.
    tl.store(dcc_ptrs, dc_prev.to(dc_carry_ptr.dtype.element_ty), mask=on)


# ---------------------------------------------------------------------------
# Launch configuration
# ---------------------------------------------------------------------------

def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


@functools.lru_cache(maxsize=None)
def _num_sms_of(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    index = device.index if device.index is not None \
        else torch.cuda.current_device()
    return _num_sms_of(index)


def _config(dtype: torch.dtype, device: torch.device, B: int, H: int):
    """(USE_DOT, PRECISION, BLOCK_B, BLOCK_H, BLOCK_K, num_warps)."""
    on_gpu = device.type == "cuda"
    # float64: no tl.dot (not supported for fp64 on every GPU target); bf16
    # under the interpreter: its tl.dot gives wrong results.
    use_dot = dtype != torch.float64 and (on_gpu or dtype != torch.bfloat16)
    precision = "ieee"
    if (on_gpu and dtype == torch.float32 and torch.version.hip is None
            and torch.backends.cudnn.allow_tf32):
        precision = "tf32"
    # tl.dot needs every tile dimension >= 16; partial tiles are masked.
    block_b = min(64, max(16, _next_pow2(B)))
    if not use_dot:
        # The broadcast product holds a [BLOCK_B, BLOCK_K, BLOCK_H] tile.
        block_b = 16 if on_gpu else block_b
        block_h = 16 if on_gpu else min(64, max(16, _next_pow2(H)))
        block_k = 8 if on_gpu else 16
        return use_dot, precision, block_b, block_h, block_k, 4
    block_k = 64 if dtype in (torch.float16, torch.bfloat16) else 32
    block_h = min(64, max(16, _next_pow2(H)))
    if on_gpu:
        # The recurrence is latency bound: prefer more, smaller programs
        # while the grid does not fill the GPU.
        sms = _num_sms(device)
        while block_h > 16 and (triton.cdiv(B, block_b)
                                * triton.cdiv(H, block_h)) < sms:
            block_h //= 2
    return use_dot, precision, block_b, block_h, block_k, 4


def _strides(t: Optional[Tensor]) -> tuple[int, int]:
    return (t.stride(0), t.stride(1)) if t is not None else (0, 0)


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------

class TritonSteps:
    """The steps of the sequence driver, one Triton kernel each."""

    @staticmethod
    def forward(s: int, xg_s: Tensor, h_in: Tensor, w_hh: Optional[Tensor],
                c_state: Tensor, lengths: Optional[Tensor], gates_s: Tensor,
                cs_s: Tensor, out_s: Tensor, h_out: Optional[Tensor]) -> None:
        B, H = c_state.shape
        K = h_in.shape[1]
        if B == 0 or H == 0:
            return
        use_dot, precision, bb, bh, bk, warps = _config(
            h_in.dtype, h_in.device, B, H)
        grid = (triton.cdiv(B, bb), triton.cdiv(H, bh))
        with device_guard(c_state):
            _lstm_seq_fwd_step[grid](
                xg_s, h_in, w_hh if w_hh is not None else h_in, c_state,
                lengths if lengths is not None else c_state, gates_s, cs_s,
                out_s, h_out if h_out is not None else out_s,
                s, B, H, K,
                *_strides(xg_s), *_strides(h_in), *_strides(w_hh),
                *_strides(c_state), *_strides(gates_s), *_strides(cs_s),
                *_strides(out_s), *_strides(h_out),
                HAS_W=w_hh is not None and K > 0,
                HAS_LENGTHS=lengths is not None,
                HAS_HOUT=h_out is not None, USE_DOT=use_dot,
                PRECISION=precision, ACC=tl_acc_dtype(h_in.dtype),
                BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, num_warps=warps)

    @staticmethod
    def backward(s: int, grad_gates_next: Optional[Tensor],
                 w_hh: Optional[Tensor], dh_carry: Optional[Tensor],
                 dh_in: Tensor, dc_carry: Tensor, gates_s: Tensor,
                 c_prev: Tensor, cs_s: Tensor, lengths: Optional[Tensor],
                 grad_gates_s: Tensor) -> None:
        B, H = dc_carry.shape
        if B == 0 or H == 0:
            return
        has_w = w_hh is not None
        has_next = has_w and grad_gates_next is not None
        dtype = grad_gates_next.dtype if has_next else dh_in.dtype
        use_dot, precision, bb, bh, bk, warps = _config(
            dtype, dc_carry.device, B, H)
        grid = (triton.cdiv(B, bb), triton.cdiv(H, bh))
        N = w_hh.shape[0] if has_w else 0
        with device_guard(dc_carry):
            _lstm_seq_bwd_step[grid](
                grad_gates_next if has_next else dc_carry,
                w_hh if has_w else dc_carry,
                dh_carry if has_w else dc_carry, dh_in, dc_carry, gates_s,
                c_prev, cs_s, lengths if lengths is not None else dc_carry,
                grad_gates_s,
                s, B, H, N,
                *_strides(grad_gates_next if has_next else None),
                *_strides(w_hh if has_w else None),
                *_strides(dh_carry if has_w else None), *_strides(dh_in),
                *_strides(dc_carry), *_strides(gates_s), *_strides(c_prev),
                *_strides(cs_s), *_strides(grad_gates_s),
                HAS_W=has_w, HAS_NEXT=has_next and N > 0,
                HAS_LENGTHS=lengths is not None, USE_DOT=use_dot,
                PRECISION=precision, ACC=tl_acc_dtype(dc_carry.dtype),
                BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, num_warps=warps)


# ---------------------------------------------------------------------------
# Op implementations
# ---------------------------------------------------------------------------

def lstm_seq(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
             bias: Optional[Tensor], w_hr: Optional[Tensor],
             lengths: Optional[Tensor]):
    """Forward of ``lstm_seq``: returns (y, h_n, c_n, gates, cs, ms)."""
    with device_guard(x):
        return _driver.forward(x, h0, c0, w_ih, w_hh, bias, w_hr, lengths,
                               steps=TritonSteps)


def lstm_seq_backward(grad_y: Tensor, grad_h_n: Tensor, grad_c_n: Tensor,
                      x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor,
                      w_hh: Tensor, w_hr: Optional[Tensor],
                      lengths: Optional[Tensor], y: Tensor, gates: Tensor,
                      cs: Tensor, ms: Tensor, has_bias: bool):
    """Backward of ``lstm_seq``: returns (grad_x, grad_h0, grad_c0,
    grad_w_ih, grad_w_hh, grad_bias, grad_w_hr)."""
    with device_guard(x):
        return _driver.backward(grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih,
                                w_hh, w_hr, lengths, y, gates, cs, ms,
                                has_bias, steps=TritonSteps)
