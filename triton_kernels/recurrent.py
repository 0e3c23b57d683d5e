"""Triton steps of the recurrent sequence ops (``lstm_seq``, ``gru_seq``,
``rnn_seq``).

The sequence machinery (input projection, the loop over steps, weight
gradients) is the shared Python driver, ``seqkernels.sequence_driver``;
this module provides its steps, :class:`TritonSteps`, with the contract of
``SeqSteps`` there (and in ``csrc/include/seqkernels/recurrent_host.h``).
One pair of kernels serves every cell: the cell is a constexpr (``CELL``, and ``ACT`` for the RNN), and
its pointwise math comes from ``cell_math.py``. Each step is one kernel
launch that fuses the recurrent matrix product with the pointwise cell:

* forward: a program owns a tile of ``BLOCK_B`` batch rows by ``BLOCK_H``
  hidden units; for each of the G gates (4 LSTM, 3 GRU, 1 RNN) it
  accumulates ``h_in[b, :] @ w_hh[gate*H + j, :]`` over K in blocks of
  ``BLOCK_K``, adds the recurrent bias (GRU), and runs the cell on the tile.
* backward: the same tiling over ``[B, H]``; the product
  ``grad_hg_next[b, :] @ w_hh[:, j]`` runs over the G*H rows of ``w_hh`` in
  blocks, then the carry/lengths logic and the pointwise backward.

Products use ``tl.dot`` with float32 accumulation and exact products
(``input_precision="ieee"``): float32 stays full float32 whatever the TF32
switches say, as in the CUDA kernels (an error is never larger than the
caller's dtype asks; TF32 buys little in a latency-bound recurrence).
float64 always, and bfloat16 under the interpreter (whose ``tl.dot`` is wrong
for it), use a broadcast multiply and sum in the accumulation dtype instead.

A whole layer's recurrence in one launch (the persistent kernels, for
``SEQKERNELS_RECURRENCE=persistent``) is in ``persistent.py``.
"""

from typing import Optional

import torch
import triton
import triton.language as tl
from torch import Tensor

from seqkernels import sequence_driver
from seqkernels._common import device_guard, next_pow2
from seqkernels.cell_table import CellDesc
from seqkernels.sequence_driver import BackwardStep, ForwardStep

from . import persistent
from .cell_math import (GRU, LSTM, RNN, cell_backward, cell_forward,
                        load_gates, num_sms, store_gates, tl_acc_dtype)


# ---------------------------------------------------------------------------
# Device code
# ---------------------------------------------------------------------------

@triton.jit
def _mac(a, b, acc, USE_DOT: tl.constexpr):
    """acc + a @ b for tiles a [M, K], b [K, N] and acc [M, N]. In the
    backward, a (the gate gradients) is float32 against a narrower b (w_hh):
    the product then runs in float32."""
    if USE_DOT:
        acc = tl.dot(a, b.to(a.dtype), acc, input_precision="ieee")
    else:
        a = a.to(acc.dtype)
        b = b.to(acc.dtype)
        acc += tl.sum(a[:, :, None] * b[None, :, :], axis=1)
    return acc


@triton.jit
def _tile(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """This program's tile of [B, H]: batch rows rb, units rj, their bounds
    mb, mj and the tile's mask."""
    rb = tl.program_id(0).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    rj = tl.program_id(1).to(tl.int64) * BLOCK_H + tl.arange(0, BLOCK_H)
    mb = rb < B
    mj = rj < H
    return rb, rj, mb, mj, mb[:, None] & mj[None, :]


@triton.jit
def _zero_off(on, v0, v1, v2, v3):
    """The four gate tiles with 0 outside ``on`` (rows past their length)."""
    return (tl.where(on, v0, 0.0), tl.where(on, v1, 0.0),
            tl.where(on, v2, 0.0), tl.where(on, v3, 0.0))


@triton.jit(do_not_specialize=["s"])
def _seq_fwd_step(
        xg_ptr, h_in_ptr, w_ptr, b_hh_ptr, c_state_ptr, len_ptr, saved_ptr,
        cs_ptr, out_ptr, h_out_ptr,
        s, B, H, K,
        s_xg_b, s_xg_n, s_hi_b, s_hi_k, s_w_n, s_w_k, s_c_b, s_c_j,
        s_sv_b, s_sv_n, s_cs_b, s_cs_j, s_o_b, s_o_j, s_ho_b, s_ho_j,
        CELL: tl.constexpr, ACT: tl.constexpr, G: tl.constexpr,
        S: tl.constexpr, HAS_W: tl.constexpr, HAS_BH: tl.constexpr,
        HAS_LENGTHS: tl.constexpr, HAS_HOUT: tl.constexpr,
        USE_DOT: tl.constexpr, ACC: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr):
    rb, rj, mb, mj, mask = _tile(B, H, BLOCK_B, BLOCK_H)

    # a_g[b, j] = h_in[b, :] . w_hh[g*H + j, :] (+ b_hh[g*H + j]): the
    # recurrent side of gate g.
    a0 = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    a1 = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    a2 = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
    a3 = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)
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
            a0 = _mac(a, tl.load(w_tile, mask=w_mask, other=0.0), a0,
                      USE_DOT)
            if G > 1:
                a1 = _mac(a, tl.load(w_tile + gate_step, mask=w_mask,
                                     other=0.0), a1, USE_DOT)
            if G > 2:
                a2 = _mac(a, tl.load(w_tile + 2 * gate_step, mask=w_mask,
                                     other=0.0), a2, USE_DOT)
            if G > 3:
                a3 = _mac(a, tl.load(w_tile + 3 * gate_step, mask=w_mask,
                                     other=0.0), a3, USE_DOT)
    a0 = a0.to(ACC)
    a1 = a1.to(ACC)
    a2 = a2.to(ACC)
    a3 = a3.to(ACC)
    if HAS_BH:
        a0 += tl.load(b_hh_ptr + rj, mask=mj, other=0.0).to(ACC)[None, :]
        if G > 1:
            a1 += tl.load(b_hh_ptr + H + rj, mask=mj,
                          other=0.0).to(ACC)[None, :]
        if G > 2:
            a2 += tl.load(b_hh_ptr + 2 * H + rj, mask=mj,
                          other=0.0).to(ACC)[None, :]
        if G > 3:
            a3 += tl.load(b_hh_ptr + 3 * H + rj, mask=mj,
                          other=0.0).to(ACC)[None, :]
    # The input side, from the input projection of all steps.
    x0, x1, x2, x3 = load_gates(
        xg_ptr + rb[:, None] * s_xg_b + rj[None, :] * s_xg_n, H * s_xg_n,
        mask, G, ACC)

    c_ptrs = c_state_ptr + rb[:, None] * s_c_b + rj[None, :] * s_c_j
    if CELL == LSTM:
        c_prev = tl.load(c_ptrs, mask=mask, other=0.0).to(ACC)
    else:
        c_prev = x0
    if CELL == GRU:
        # This unit of the previous h (P == H for the GRU).
        h_prev = tl.load(h_in_ptr + rb[:, None] * s_hi_b
                         + rj[None, :] * s_hi_k, mask=mask,
                         other=0.0).to(ACC)
    else:
        h_prev = x0
    sv0, sv1, sv2, sv3, c, h = cell_forward(x0, x1, x2, x3, a0, a1, a2, a3,
                                            h_prev, c_prev, CELL, ACT)

    if HAS_LENGTHS:
        active = tl.load(len_ptr + rb, mask=mb, other=0) > s
        on = active[:, None] & mask  # active row, in bounds
        off = (~active)[:, None] & mask  # inactive row, in bounds
        sv0, sv1, sv2, sv3 = _zero_off(on, sv0, sv1, sv2, sv3)
        c = tl.where(on, c, 0.0)
        h = tl.where(on, h, 0.0)
    else:
        on = mask

    store_gates(saved_ptr + rb[:, None] * s_sv_b + rj[None, :] * s_sv_n,
                 H * s_sv_n, mask, sv0, sv1, sv2, sv3, S)
    if CELL == LSTM:
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
def _seq_bwd_step(
        ggn_ptr, w_ptr, dh_carry_ptr, dh_in_ptr, carry_ptr, saved_ptr,
        h_prev_ptr, c_prev_ptr, cs_ptr, len_ptr, gx_ptr, gh_ptr,
        s, B, H, N,
        s_ggn_b, s_ggn_n, s_w_n, s_w_j, s_dhc_b, s_dhc_j, s_dhi_b, s_dhi_j,
        s_pc_b, s_pc_j, s_sv_b, s_sv_n, s_hp_b, s_hp_j, s_cp_b, s_cp_j,
        s_cs_b, s_cs_j, s_gx_b, s_gx_n, s_gh_b, s_gh_n,
        CELL: tl.constexpr, ACT: tl.constexpr, G: tl.constexpr,
        S: tl.constexpr, HAS_W: tl.constexpr, HAS_NEXT: tl.constexpr,
        HAS_LENGTHS: tl.constexpr, USE_DOT: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
        BLOCK_K: tl.constexpr):
    rb, rj, mb, mj, mask = _tile(B, H, BLOCK_B, BLOCK_H)
    if HAS_LENGTHS:
        length = tl.load(len_ptr + rb, mask=mb, other=0)
    pc_ptrs = carry_ptr + rb[:, None] * s_pc_b + rj[None, :] * s_pc_j

    # The gradient reaching h from step s + 1.
    if HAS_W:
        dhc_ptrs = dh_carry_ptr + rb[:, None] * s_dhc_b + rj[None, :] * s_dhc_j
        later = tl.load(dhc_ptrs, mask=mask, other=0.0).to(ACC)
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
                acc = _mac(a, w, acc, USE_DOT)
            from_next = acc.to(ACC)
            if CELL == GRU:
                # ... plus the pointwise path h' = (1 - z) n + z h.
                from_next += tl.load(pc_ptrs, mask=mask, other=0.0).to(ACC)
            if HAS_LENGTHS:
                later = tl.where((length > s + 1)[:, None], from_next, later)
            else:
                later = from_next
            tl.store(dhc_ptrs, later.to(dh_carry_ptr.dtype.element_ty),
                     mask=mask)
    else:
        later = tl.zeros((BLOCK_B, BLOCK_H), dtype=ACC)

    dh = tl.load(dh_in_ptr + rb[:, None] * s_dhi_b + rj[None, :] * s_dhi_j,
                 mask=mask, other=0.0).to(ACC) + later
    sv0, sv1, sv2, sv3 = load_gates(
        saved_ptr + rb[:, None] * s_sv_b + rj[None, :] * s_sv_n, H * s_sv_n,
        mask, S, ACC)
    if CELL == LSTM:
        dc = tl.load(pc_ptrs, mask=mask, other=0.0).to(ACC)
        c_prev = tl.load(c_prev_ptr + rb[:, None] * s_cp_b
                         + rj[None, :] * s_cp_j, mask=mask, other=0.0).to(ACC)
        c = tl.load(cs_ptr + rb[:, None] * s_cs_b + rj[None, :] * s_cs_j,
                    mask=mask, other=0.0).to(ACC)
    else:
        dc = dh
        c_prev = dh
        c = dh
    if CELL == GRU:
        h_prev = tl.load(h_prev_ptr + rb[:, None] * s_hp_b
                         + rj[None, :] * s_hp_j, mask=mask, other=0.0).to(ACC)
    else:
        h_prev = dh
    d0, d1, d2, d3, dhn, carry_out = cell_backward(
        sv0, sv1, sv2, sv3, h_prev, c_prev, c, dh, dc, CELL, ACT)

    if HAS_LENGTHS:
        on = (length > s)[:, None] & mask
        d0, d1, d2, d3 = _zero_off(on, d0, d1, d2, d3)
        dhn = tl.where(on, dhn, 0.0)
    else:
        on = mask
    store_gates(gx_ptr + rb[:, None] * s_gx_b + rj[None, :] * s_gx_n,
                 H * s_gx_n, mask, d0, d1, d2, d3, G)
    if CELL == GRU:
        # The recurrent side differs in the n gate only.
        store_gates(gh_ptr + rb[:, None] * s_gh_b + rj[None, :] * s_gh_n,
                     H * s_gh_n, mask, d0, d1, dhn, d3, 3)
    if CELL != RNN:  # LSTM: dc_prev; GRU: the pointwise dh_prev
        # Moves on in active rows only.
        tl.store(pc_ptrs, carry_out.to(carry_ptr.dtype.element_ty), mask=on)


# ---------------------------------------------------------------------------
# Launch configuration
# ---------------------------------------------------------------------------

def _config(dtype: torch.dtype, device: torch.device, B: int, H: int):
    """(USE_DOT, BLOCK_B, BLOCK_H, BLOCK_K, num_warps)."""
    on_gpu = device.type == "cuda"
    # float64: no tl.dot (not supported for fp64 on every GPU target); bf16
    # under the interpreter: its tl.dot gives wrong results.
    use_dot = dtype != torch.float64 and (on_gpu or dtype != torch.bfloat16)
    # tl.dot needs every tile dimension >= 16; partial tiles are masked.
    block_b = min(64, max(16, next_pow2(B)))
    if not use_dot:
        # The broadcast product holds a [BLOCK_B, BLOCK_K, BLOCK_H] tile.
        block_b = 16 if on_gpu else block_b
        block_h = 16 if on_gpu else min(64, max(16, next_pow2(H)))
        block_k = 8 if on_gpu else 16
        return use_dot, block_b, block_h, block_k, 4
    block_k = 64 if dtype in (torch.float16, torch.bfloat16) else 32
    block_h = min(64, max(16, next_pow2(H)))
    if on_gpu:
        # The recurrence is latency bound: prefer more, smaller programs
        # while the grid does not fill the GPU.
        sms = num_sms(device)
        while block_h > 16 and (triton.cdiv(B, block_b)
                                * triton.cdiv(H, block_h)) < sms:
            block_h //= 2
    return use_dot, block_b, block_h, block_k, 4


def _or(t: Optional[Tensor], stand_in: Tensor) -> Tensor:
    return t if t is not None else stand_in


def _strides(t: Optional[Tensor]) -> tuple[int, int]:
    return (t.stride(0), t.stride(1)) if t is not None else (0, 0)


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------

class TritonSteps:
    """The steps of the sequence driver, one Triton kernel each, for every
    cell; and the whole-recurrence kernels of ``persistent.py``, which the
    driver offers a layer when ``SEQKERNELS_RECURRENCE=persistent`` and
    which take it where ``persistent_plan`` says they serve it."""

    forward_seq = staticmethod(persistent.forward_seq)
    backward_seq = staticmethod(persistent.backward_seq)
    persistent_plan = staticmethod(persistent.persistent_plan)

    # Not yet: writing the saved values over the pre-activations (as the CPU
    # steps do) wants a GPU run to show that no program reads a tile that
    # another one has overwritten.
    saved_over_xg = False

    @staticmethod
    def forward(cell: CellDesc, step: ForwardStep) -> None:
        B, H = step.out.shape
        K = step.h_in.shape[1]
        if B == 0 or H == 0:
            return
        use_dot, bb, bh, bk, warps = _config(
            step.h_in.dtype, step.h_in.device, B, H)
        grid = (triton.cdiv(B, bb), triton.cdiv(H, bh))
        # Absent tensors are passed as a tensor the kernel never reads (its
        # HAS_* constexpr is off), with zero strides.
        out = step.out
        with device_guard(out):
            _seq_fwd_step[grid](
                step.xg, step.h_in, _or(step.w_hh, step.h_in),
                _or(step.b_hh, step.h_in), _or(step.c_state, out),
                _or(step.lengths, out), step.saved, _or(step.cell_state, out),
                out, _or(step.h_out, out),
                step.s, B, H, K,
                *_strides(step.xg), *_strides(step.h_in),
                *_strides(step.w_hh), *_strides(step.c_state),
                *_strides(step.saved), *_strides(step.cell_state),
                *_strides(out), *_strides(step.h_out),
                CELL=cell.kind_id, ACT=cell.act_id,
                G=cell.gates, S=cell.saved,
                HAS_W=step.w_hh is not None and K > 0,
                HAS_BH=step.b_hh is not None,
                HAS_LENGTHS=step.lengths is not None,
                HAS_HOUT=step.h_out is not None, USE_DOT=use_dot,
                ACC=tl_acc_dtype(step.h_in.dtype),
                BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, num_warps=warps)

    @staticmethod
    def backward(cell: CellDesc, step: BackwardStep) -> None:
        dh_in = step.dh_in
        B, H = dh_in.shape
        if B == 0 or H == 0:
            return
        has_w = step.w_hh is not None
        has_next = has_w and step.grad_hg_next is not None
        next_ = step.grad_hg_next if has_next else None
        dh_carry = step.dh_carry if has_w else None
        dtype = next_.dtype if has_next else dh_in.dtype
        use_dot, bb, bh, bk, warps = _config(dtype, dh_in.device, B, H)
        grid = (triton.cdiv(B, bb), triton.cdiv(H, bh))
        N = step.w_hh.shape[0] if has_w else 0
        with device_guard(dh_in):
            _seq_bwd_step[grid](
                _or(next_, dh_in), _or(step.w_hh, dh_in),
                _or(dh_carry, dh_in), dh_in, _or(step.carry, dh_in),
                step.saved, _or(step.h_prev, dh_in), _or(step.c_prev, dh_in),
                _or(step.cell_state, dh_in), _or(step.lengths, dh_in),
                step.grad_xg, step.grad_hg,
                step.s, B, H, N,
                *_strides(next_), *_strides(step.w_hh), *_strides(dh_carry),
                *_strides(dh_in), *_strides(step.carry),
                *_strides(step.saved), *_strides(step.h_prev),
                *_strides(step.c_prev), *_strides(step.cell_state),
                *_strides(step.grad_xg), *_strides(step.grad_hg),
                CELL=cell.kind_id, ACT=cell.act_id,
                G=cell.gates, S=cell.saved,
                HAS_W=has_w, HAS_NEXT=has_next and N > 0,
                HAS_LENGTHS=step.lengths is not None, USE_DOT=use_dot,
                ACC=tl_acc_dtype(step.saved.dtype),
                BLOCK_B=bb, BLOCK_H=bh, BLOCK_K=bk, num_warps=warps)


# ---------------------------------------------------------------------------
# Op implementations
# ---------------------------------------------------------------------------

def _on_triton_steps(driver_op):
    """``driver_op`` of seqkernels.sequence_driver (arguments and results as
    the op's schema in csrc/ops.cpp) on :class:`TritonSteps`, launched on
    the device of its first argument."""
    def run(*args):
        with device_guard(args[0]):
            return driver_op(*args, steps=TritonSteps)
    run.__name__ = driver_op.__name__
    return run


lstm_seq = _on_triton_steps(sequence_driver.lstm_seq)
lstm_seq_backward = _on_triton_steps(sequence_driver.lstm_seq_backward)
gru_seq = _on_triton_steps(sequence_driver.gru_seq)
gru_seq_backward = _on_triton_steps(sequence_driver.gru_seq_backward)
rnn_seq = _on_triton_steps(sequence_driver.rnn_seq)
rnn_seq_backward = _on_triton_steps(sequence_driver.rnn_seq_backward)
