"""Triton kernels of the op ``additive_attention`` (Bahdanau attention),
which never store the [B, Tq, Tk, H] tensor of tanh values.

Contract: ``seqkernels/reference/additive_attention.py``. q [B, Tq, H] and
k [B, Tk, H] (projected), value [B, Tk, Dv], v and bias [H], attn_mask
broadcast to [B, Tq, Tk]; s_ij = v . tanh(q_i + k_j + bias), weights =
softmax_j(s), context = weights @ value; stats [B, Tq, 2] in the
accumulation dtype (each row's maximum m and sum l of exp(s - m)), weights
empty unless ``need_weights``. Probabilities are exp(s - m) / l, never
exp(s - lse), whose rounding of lse at the magnitude of m costs |m| * eps
in every probability of the row.

Forward, one program per (query block, batch[, Dv chunk]): for each key
block the scores of the [BLOCK_M, BLOCK_N] tile are summed over H in chunks
of BLOCK_H from a [BM, BN, BH] broadcast of tanh(q + k + b) times v; then
the online softmax and context += p @ value (``tl.dot``, or a broadcast
product for float64). With ``need_weights`` the masked scores go to a
[B, Tq, Tk] buffer (the weights themselves when their dtype is the
accumulation dtype) that a second kernel turns into exp(s - m) / l: tanh
is evaluated once.

Backward (tanh recomputed, deterministic, no atomics):

1. probabilities: per query block, recompute s, write P = exp(s - m) / l to
   a [B, Tq, Tk] scratch, and delta_i = sum_j P_ij dP_ij with
   dP = dctx @ value^T (+ gw) (``context`` is not read);
2. dvalue = P^T @ dctx, per key block;
3. dS = P * (dctx @ value^T (+ gw) - delta), per tile, over P in place;
4. dq, per (query block, H chunk), looping over key blocks:
   dq = v * sum_j dS (1 - t^2); the same loop sums dS * t for dv and the
   rows of dq for dbias into per-program partials;
5. dk, per (key block, H chunk), looping over query blocks:
   dk = v * sum_i dS (1 - t^2).

The partials of dv and dbias ([B, query blocks, H]) are summed with torch
in a fixed order.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

from seqkernels._common import acc_dtype, device_guard

from .attention_common import (dot_precision, finite_or_zero, load_tile,
                               mask_arg, masked_scores, mm_nt, mm_ptrs, mm_reg,
                               mode, on_gpu, online_softmax_step, pad_dim,
                               softmax_epilogue, span, store_tile, tl_acc_dtype)
from . import tuning
from .cell_math import tanh


# ---------------------------------------------------------------------------
# Device helpers
# ---------------------------------------------------------------------------

@triton.jit
def _query_chunk(q_base, rows, row_ok, sq_t, sq_h, bias_ptr, s_bias, hh,
                 h_ok, HAS_BIAS: tl.constexpr, ACC: tl.constexpr):
    """q[rows, hh] + bias[hh] (the bias folded into the query side)."""
    qc = load_tile(q_base, rows, row_ok, sq_t, hh, h_ok, sq_h).to(ACC)
    if HAS_BIAS:
        qc += tl.load(bias_ptr + hh * s_bias, mask=h_ok,
                      other=0.0).to(ACC)[None, :]
    return qc


@triton.jit
def _additive_scores(q_base, rows, row_ok, sq_t, sq_h, k_base, cols, col_ok,
                     sk_t, sk_h, v_ptr, s_v, bias_ptr, s_bias, H,
                     HAS_BIAS: tl.constexpr, ACC: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_H: tl.constexpr):
    """s[i, j] = sum_h v_h tanh(q_ih + k_jh + b_h) for a [BM, BN] tile,
    over H in chunks of BLOCK_H (padding has v = 0)."""
    s = tl.zeros([BLOCK_M, BLOCK_N], ACC)
    for h0 in range(0, H, BLOCK_H):
        hh, h_ok = span(h0, BLOCK_H, H)
        qc = _query_chunk(q_base, rows, row_ok, sq_t, sq_h, bias_ptr, s_bias,
                          hh, h_ok, HAS_BIAS, ACC)
        kc = load_tile(k_base, cols, col_ok, sk_t, hh, h_ok, sk_h).to(ACC)
        vc = tl.load(v_ptr + hh * s_v, mask=h_ok, other=0.0).to(ACC)
        t = tanh(qc[:, None, :] + kc[None, :, :])
        s += tl.sum(t * vc[None, None, :], axis=2)
    return s


# ---------------------------------------------------------------------------
# Forward kernels
# ---------------------------------------------------------------------------

@triton.jit
def _additive_fwd_kernel(
        q_ptr, k_ptr, value_ptr, v_ptr, bias_ptr, mask_ptr, ctx_ptr, st_ptr,
        s_ptr,
        Tq, Tk, H, Dv,
        sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, sva_b, sva_t, sva_d, s_v, s_bias,
        sm_b, sm_q, sm_k, sc_b, sc_t, sc_d, ss_b, ss_q, ss_k,
        MASK_KIND: tl.constexpr, HAS_BIAS: tl.constexpr,
        STORE_SCORES: tl.constexpr, USE_DOT: tl.constexpr,
        PRECISION: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr,
        BLOCK_CV: tl.constexpr):
    # Program: query rows [pid_m*BM, +BM) of batch b, context columns
    # [pid_c*BLOCK_CV, +BLOCK_CV) (one chunk covering Dv with tl.dot).
    pid_m = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_c = tl.program_id(2)
    q_base = q_ptr + b * sq_b
    k_base = k_ptr + b * sk_b
    va_base = value_ptr + b * sva_b
    m_base = mask_ptr + b * sm_b
    s_base = s_ptr + b * ss_b
    rows, row_ok = span(pid_m.to(tl.int64) * BLOCK_M, BLOCK_M, Tq)
    cv, cv_ok = span(pid_c * BLOCK_CV, BLOCK_CV, Dv)

    m_i = tl.full([BLOCK_M], float("-inf"), ACC)
    l_i = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, BLOCK_CV], ACC)
    for n0 in range(0, Tk, BLOCK_N):
        cols, col_ok = span(n0, BLOCK_N, Tk)
        s = _additive_scores(q_base, rows, row_ok, sq_t, sq_h, k_base, cols,
                             col_ok, sk_t, sk_h, v_ptr, s_v, bias_ptr, s_bias,
                             H, HAS_BIAS, ACC, BLOCK_M, BLOCK_N, BLOCK_H)
        s = masked_scores(s, rows[:, None], cols[None, :], m_base, sm_q, sm_k,
                          Tq, Tk, MASK_KIND, False)
        if STORE_SCORES:
            # Only the first column chunk writes the scores. A branch, not a
            # scalar in the mask: the interpreter of triton >= 3.9 rejects a
            # mask that mixes a block with a program-id comparison.
            if pid_c == 0:
                store_tile(s_base, rows, row_ok, ss_q, cols, col_ok, ss_k, s)
        p, alpha, m_i, l_i = online_softmax_step(s, m_i, l_i)
        vt = load_tile(va_base, cols, col_ok, sva_t, cv, cv_ok, sva_d)
        acc = mm_reg(p, vt, acc * alpha[:, None], USE_DOT, PRECISION)

    _, inv = softmax_epilogue(m_i, l_i)
    store_tile(ctx_ptr + b * sc_b, rows, row_ok, sc_t, cv, cv_ok, sc_d,
               acc * inv[:, None])
    if pid_c == 0:  # one chunk writes the row stats (a branch: see above)
        tl.store(st_ptr + (b * Tq + rows) * 2, m_i, mask=row_ok)
        tl.store(st_ptr + (b * Tq + rows) * 2 + 1, l_i, mask=row_ok)


@triton.jit
def _row_stats(st_ptr, rows, row_ok):
    """(shift, 1 / l) of ``rows`` from stats [*, 2] = (m, l): a row with no
    allowed key (m = -inf, l = 0) shifts by 0 and scales by 0."""
    m = tl.load(st_ptr + rows * 2, mask=row_ok, other=0.0)
    l_i = tl.load(st_ptr + rows * 2 + 1, mask=row_ok, other=0.0)
    _, inv = softmax_epilogue(m, l_i)
    return finite_or_zero(m), inv


@triton.jit
def _probs_from_scores_kernel(s_ptr, st_ptr, w_ptr, Tq, Tk,
                              ss_b, ss_q, ss_k, sw_b, sw_q, sw_k,
                              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # weights = exp(s - m) / l per [BM, BN] tile (s and w may be one buffer:
    # each element is read, then written, by the same program).
    b = tl.program_id(2).to(tl.int64)
    rows, row_ok = span(tl.program_id(0).to(tl.int64) * BLOCK_M, BLOCK_M, Tq)
    cols, col_ok = span(tl.program_id(1).to(tl.int64) * BLOCK_N, BLOCK_N, Tk)
    shift, inv = _row_stats(st_ptr, b * Tq + rows, row_ok)
    # Lanes out of bounds read -inf, not load_tile's 0: exp gives them 0.
    s = tl.load(s_ptr + b * ss_b + rows[:, None] * ss_q + cols[None, :] * ss_k,
                mask=row_ok[:, None] & col_ok[None, :], other=float("-inf"))
    w = tl.exp(s.to(shift.dtype) - shift[:, None]) * inv[:, None]
    store_tile(w_ptr + b * sw_b, rows, row_ok, sw_q, cols, col_ok, sw_k, w)


# ---------------------------------------------------------------------------
# Backward kernels
# ---------------------------------------------------------------------------

@triton.jit
def _additive_bwd_probs_kernel(
        q_ptr, k_ptr, v_ptr, bias_ptr, mask_ptr, st_ptr, gw_ptr, dctx_ptr,
        value_ptr, p_ptr, delta_ptr,
        Tq, Tk, H, Dv,
        sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, s_v, s_bias, sm_b, sm_q, sm_k,
        sg_b, sg_q, sg_k, sd_b, sd_t, sd_d, sva_b, sva_t, sva_d,
        sp_b, sp_q, sp_k,
        MASK_KIND: tl.constexpr, HAS_BIAS: tl.constexpr,
        HAS_GW: tl.constexpr, USE_DOT: tl.constexpr, PRECISION: tl.constexpr,
        ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_H: tl.constexpr, BLOCK_DV: tl.constexpr):
    # Program: query rows [pid_m*BM, +BM) of batch b. Writes P and
    # delta_i = sum_j P_ij dP_ij, dP = dctx value^T (+ gw), as torch's softmax
    # backward takes it: then sum_j dS_ij vanishes up to rounding. The
    # shortcut rowsum(dctx * ctx) carries the forward's rounding of ctx into
    # a per-row offset of dS, which grad_bias and grad_v, sums over every
    # row and key, collect coherently (measured on an H100: 1.5x over the
    # tolerance rule in float32).
    pid_m = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    q_base = q_ptr + b * sq_b
    k_base = k_ptr + b * sk_b
    m_base = mask_ptr + b * sm_b
    d_base = dctx_ptr + b * sd_b
    va_base = value_ptr + b * sva_b
    rows, row_ok = span(pid_m.to(tl.int64) * BLOCK_M, BLOCK_M, Tq)
    shift, inv = _row_stats(st_ptr, b * Tq + rows, row_ok)
    delta = tl.zeros([BLOCK_M], ACC)
    for n0 in range(0, Tk, BLOCK_N):
        cols, col_ok = span(n0, BLOCK_N, Tk)
        ok = row_ok[:, None] & col_ok[None, :]
        s = _additive_scores(q_base, rows, row_ok, sq_t, sq_h, k_base, cols,
                             col_ok, sk_t, sk_h, v_ptr, s_v, bias_ptr, s_bias,
                             H, HAS_BIAS, ACC, BLOCK_M, BLOCK_N, BLOCK_H)
        s = masked_scores(s, rows[:, None], cols[None, :], m_base, sm_q, sm_k,
                          Tq, Tk, MASK_KIND, False)
        p = tl.exp(s - shift[:, None]) * inv[:, None]
        store_tile(p_ptr + b * sp_b, rows, row_ok, sp_q, cols, col_ok, sp_k, p)
        dp = mm_ptrs(tl.zeros([BLOCK_M, BLOCK_N], ACC), d_base, rows, sd_t,
                     sd_d, row_ok, va_base, cols, sva_t, sva_d, col_ok, Dv,
                     USE_DOT, PRECISION, BLOCK_DV)
        if HAS_GW:
            dp += load_tile(gw_ptr + b * sg_b, rows, row_ok, sg_q, cols,
                            col_ok, sg_k).to(ACC)
        delta += tl.sum(tl.where(ok, p * dp, 0.0), 1)
    tl.store(delta_ptr + b * Tq + rows, delta, mask=row_ok)


@triton.jit
def _additive_bwd_dvalue_kernel(
        p_ptr, dctx_ptr, dvalue_ptr, Tq, Tk, Dv,
        sp_b, sp_q, sp_k, sd_b, sd_t, sd_d, so_b, so_t, so_d,
        USE_DOT: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_CV: tl.constexpr):
    # Program: keys [pid_n*BN, +BN) of batch b, columns [pid_c*BCV, +BCV):
    # dvalue = P^T @ dctx, summed over query blocks in order.
    b = tl.program_id(1).to(tl.int64)
    pid_c = tl.program_id(2)
    cols, col_ok = span(tl.program_id(0).to(tl.int64) * BLOCK_N, BLOCK_N, Tk)
    cv, cv_ok = span(pid_c * BLOCK_CV, BLOCK_CV, Dv)
    acc = tl.zeros([BLOCK_N, BLOCK_CV], ACC)
    for m0 in range(0, Tq, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
        row_ok = rows < Tq
        pt = load_tile(p_ptr + b * sp_b, cols, col_ok, sp_k, rows, row_ok,
                       sp_q)
        g = load_tile(dctx_ptr + b * sd_b, rows, row_ok, sd_t, cv, cv_ok, sd_d)
        acc = mm_reg(pt, g, acc, USE_DOT, PRECISION)
    store_tile(dvalue_ptr + b * so_b, cols, col_ok, so_t, cv, cv_ok, so_d, acc)


@triton.jit
def _additive_bwd_ds_kernel(
        p_ptr, dctx_ptr, value_ptr, gw_ptr, delta_ptr, Tq, Tk, Dv,
        sp_b, sp_q, sp_k, sd_b, sd_t, sd_d, sva_b, sva_t, sva_d,
        sg_b, sg_q, sg_k,
        HAS_GW: tl.constexpr, USE_DOT: tl.constexpr, HOIST: tl.constexpr,
        PRECISION: tl.constexpr, ACC: tl.constexpr, BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_DV: tl.constexpr):
    # dS = P * (dctx @ value^T + gw - delta) for one [BM, BN] tile, written
    # over P (each element read, then written, by this program).
    b = tl.program_id(2).to(tl.int64)
    rows, row_ok = span(tl.program_id(0).to(tl.int64) * BLOCK_M, BLOCK_M, Tq)
    cols, col_ok = span(tl.program_id(1).to(tl.int64) * BLOCK_N, BLOCK_N, Tk)
    d_base = dctx_ptr + b * sd_b
    va_base = value_ptr + b * sva_b
    dd, dd_ok = span(0, BLOCK_DV, Dv)
    g = rows  # placeholder in chunked mode (mm_nt reads dctx in chunks)
    if HOIST:
        g = load_tile(d_base, rows, row_ok, sd_t, dd, dd_ok, sd_d)
    dp, _ = mm_nt(g, d_base, rows, row_ok, sd_t, sd_d, va_base, cols, col_ok,
                  sva_t, sva_d, dd, dd_ok, Dv, ACC, USE_DOT, HOIST, PRECISION,
                  BLOCK_DV)
    if HAS_GW:
        dp += load_tile(gw_ptr + b * sg_b, rows, row_ok, sg_q, cols, col_ok,
                        sg_k).to(ACC)
    delta = tl.load(delta_ptr + b * Tq + rows, mask=row_ok, other=0.0)
    p_base = p_ptr + b * sp_b
    p = load_tile(p_base, rows, row_ok, sp_q, cols, col_ok, sp_k)
    store_tile(p_base, rows, row_ok, sp_q, cols, col_ok, sp_k,
               p * (dp - delta[:, None]))


@triton.jit
def _additive_bwd_dq_kernel(
        q_ptr, k_ptr, v_ptr, bias_ptr, ds_ptr, dq_ptr, dv_part_ptr,
        dbias_part_ptr,
        Tq, Tk, H, n_m,
        sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, s_v, s_bias, sds_b, sds_q, sds_k,
        sdq_b, sdq_t, sdq_h,
        HAS_BIAS: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr):
    # Program: query rows [pid_m*BM, +BM) of batch b, H columns
    # [pid_h*BH, +BH); loops over all key blocks. Partials of dv and dbias
    # go to [B, n_m, H] at (b, pid_m).
    pid_m = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    pid_h = tl.program_id(2)
    q_base = q_ptr + b * sq_b
    k_base = k_ptr + b * sk_b
    ds_base = ds_ptr + b * sds_b
    rows, row_ok = span(pid_m.to(tl.int64) * BLOCK_M, BLOCK_M, Tq)
    hh, h_ok = span(pid_h * BLOCK_H, BLOCK_H, H)
    qc = _query_chunk(q_base, rows, row_ok, sq_t, sq_h, bias_ptr, s_bias, hh,
                      h_ok, HAS_BIAS, ACC)
    acc_q = tl.zeros([BLOCK_M, BLOCK_H], ACC)  # sum_j dS (1 - t^2)
    acc_t = tl.zeros([BLOCK_M, BLOCK_H], ACC)  # sum_j dS t
    for n0 in range(0, Tk, BLOCK_N):
        cols, col_ok = span(n0, BLOCK_N, Tk)
        kc = load_tile(k_base, cols, col_ok, sk_t, hh, h_ok, sk_h).to(ACC)
        ds = load_tile(ds_base, rows, row_ok, sds_q, cols, col_ok, sds_k)
        t = tanh(qc[:, None, :] + kc[None, :, :])
        dst = ds[:, :, None]
        acc_q += tl.sum(dst * (1.0 - t * t), axis=1)
        acc_t += tl.sum(dst * t, axis=1)
    vc = tl.load(v_ptr + hh * s_v, mask=h_ok, other=0.0).to(ACC)
    dq = acc_q * vc[None, :]
    store_tile(dq_ptr + b * sdq_b, rows, row_ok, sdq_t, hh, h_ok, sdq_h, dq)
    part = (b * n_m + pid_m) * H + hh
    tl.store(dv_part_ptr + part, tl.sum(acc_t, 0), mask=h_ok)
    if HAS_BIAS:
        tl.store(dbias_part_ptr + part, tl.sum(dq, 0), mask=h_ok)


@triton.jit
def _additive_bwd_dk_kernel(
        q_ptr, k_ptr, v_ptr, bias_ptr, ds_ptr, dk_ptr,
        Tq, Tk, H,
        sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, s_v, s_bias, sds_b, sds_q, sds_k,
        sdk_b, sdk_t, sdk_h,
        HAS_BIAS: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr):
    # Program: keys [pid_n*BN, +BN) of batch b, H columns [pid_h*BH, +BH);
    # loops over all query blocks.
    b = tl.program_id(1).to(tl.int64)
    pid_h = tl.program_id(2)
    q_base = q_ptr + b * sq_b
    ds_base = ds_ptr + b * sds_b
    cols, col_ok = span(tl.program_id(0).to(tl.int64) * BLOCK_N, BLOCK_N, Tk)
    hh, h_ok = span(pid_h * BLOCK_H, BLOCK_H, H)
    kc = load_tile(k_ptr + b * sk_b, cols, col_ok, sk_t, hh, h_ok,
                   sk_h).to(ACC)
    acc = tl.zeros([BLOCK_N, BLOCK_H], ACC)  # sum_i dS (1 - t^2)
    for m0 in range(0, Tq, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
        row_ok = rows < Tq
        qc = _query_chunk(q_base, rows, row_ok, sq_t, sq_h, bias_ptr, s_bias,
                          hh, h_ok, HAS_BIAS, ACC)
        ds = load_tile(ds_base, rows, row_ok, sds_q, cols, col_ok, sds_k)
        t = tanh(qc[:, None, :] + kc[None, :, :])
        acc += tl.sum(ds[:, :, None] * (1.0 - t * t), axis=0)
    vc = tl.load(v_ptr + hh * s_v, mask=h_ok, other=0.0).to(ACC)
    store_tile(dk_ptr + b * sdk_b, cols, col_ok, sdk_t, hh, h_ok, sdk_h,
               acc * vc[None, :])


# ---------------------------------------------------------------------------
# Launch configuration
# ---------------------------------------------------------------------------

def _config(dtype: torch.dtype, gpu: bool, Dv: int) -> dict:
    """Blocks: (BLOCK_M, BLOCK_N, BLOCK_H) of the [BM, BN, BH] tanh tiles;
    BLOCK_CV, the context / dvalue columns per program (all of Dv in
    hoisted mode, else split over the grid); DS_M, the square tile of the
    dS and dvalue kernels, and BLOCK_DV, the dS kernel's Dv reduction chunk
    (all of Dv in hoisted mode)."""
    dvp = pad_dim(Dv)
    dot, hoist = mode(dtype, gpu)
    cfg = dict(USE_DOT=dot, HOIST=hoist, PRECISION=dot_precision(dtype, gpu),
               ACC=tl_acc_dtype(dtype), num_warps=4)
    if gpu:
        # The tanh tile: 8K elements (4K in float64).
        bm, bn, bh = (32, 32, 8) if dtype != torch.float64 else (16, 16, 16)
    else:
        bm, bn, bh = 16, 16, 16
    cfg.update(BLOCK_M=bm, BLOCK_N=bn, BLOCK_H=bh)
    if hoist:
        cfg.update(BLOCK_CV=dvp, BLOCK_DV=dvp,
                   DS_M=(64 if dvp <= 128 else 32) if gpu else 16)
    elif dot and gpu:  # float32 with exact products: FMA dots
        cfg.update(BLOCK_CV=min(dvp, 64), BLOCK_DV=min(dvp, 32), DS_M=32)
    else:
        cfg.update(BLOCK_CV=16, BLOCK_DV=16, DS_M=16)
    return cfg


# The tuning spaces of hoisted mode in float16 and bfloat16 (SEQKERNELS_
# TRITON_TUNE=1, triton_kernels/tuning.py): (kernel, padded value dim; the
# dk kernel does not read the values: 0) -> candidates beside the table's
# entry, (BLOCK_M, BLOCK_N, BLOCK_H, num_warps, num_stages). Chosen from
# ptxas counts for sm_90 of 13 tanh tiles of 4K to 32K elements at 4 and 8
# warps (bfloat16, compiled without a GPU): at most six of the largest
# tiles (BM * BN * BH) that spill at most 128 bytes without a mask and at
# most 1 KiB with a mask, a bias and the weights. Triton's default stages.
_LARGE = ((64, 64, 8, 8, 3), (32, 32, 16, 8, 3), (64, 32, 8, 8, 3),
          (32, 64, 8, 8, 3), (64, 64, 4, 8, 3), (64, 32, 4, 4, 3))
_TUNING_SPACE: dict[tuple[str, int], tuple[tuning.Tiles, ...]] = {
    ("fwd", 64): _LARGE, ("fwd", 128): _LARGE, ("fwd", 256): _LARGE,
    ("probs", 64): _LARGE,
    ("probs", 128): ((32, 32, 16, 8, 3), (64, 32, 8, 8, 3),
                     (32, 64, 8, 8, 3), (64, 64, 4, 8, 3), (32, 64, 4, 4, 3),
                     (16, 32, 16, 4, 3)),
    ("probs", 256): ((32, 32, 16, 8, 3), (32, 64, 8, 8, 3),
                     (16, 32, 16, 4, 3), (32, 32, 8, 8, 3), (64, 32, 4, 8, 3),
                     (32, 64, 4, 8, 3)),
    ("dk", 0): _LARGE,
}
# The tiles the additive kernels' tuners choose.
_TUNING_TILES = ("BLOCK_M", "BLOCK_N", "BLOCK_H")
# The kernels' arguments that key the tuners' caches (each kernel keys on
# those it takes).
_TUNING_KEY = ("H", "Dv", "MASK_KIND", "HAS_BIAS", "STORE_SCORES", "HAS_GW")


def _table_tiles(cfg: dict) -> tuning.Tiles:
    """The table's candidate: its tanh tile, warps and Triton's default
    stages (3, which the table's launches leave implicit)."""
    return (cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_H"], cfg["num_warps"],
            3)


def _space(kernel: str, dtype: torch.dtype, gpu: bool,
           Dv: int) -> list[tuning.Tiles]:
    """The tuning space of a kernel ("fwd", "probs" or "dk"): the table's
    entry first, then the other candidates of _TUNING_SPACE; empty off the
    GPU and outside hoisted mode; float32 (TF32) keeps its table."""
    cfg = _config(dtype, gpu, Dv)
    if not (gpu and cfg["HOIST"]):
        return []
    if dtype == torch.float32:
        return [_table_tiles(cfg)]
    table = _table_tiles(cfg)
    others = _TUNING_SPACE.get((kernel, 0 if kernel == "dk" else
                                min(256, max(64, pad_dim(Dv)))), ())
    return [table] + [t for t in others if t != table]


def _launch(cfg: dict, *chunk: str, use_dot: bool = True) -> dict:
    """The launch keywords of a tanh-tile kernel from ``cfg``: the tile,
    warps, accumulation dtype, the product mode (``use_dot``) and the
    value chunk named in ``chunk``."""
    out = {k: cfg[k] for k in ("BLOCK_M", "BLOCK_N", "BLOCK_H", "ACC",
                               "num_warps", *chunk)}
    if use_dot:
        out.update(USE_DOT=cfg["USE_DOT"], PRECISION=cfg["PRECISION"])
    return out


def _check(q: Tensor, k: Tensor, value: Tensor, v: Tensor,
           bias: Tensor | None) -> None:
    if q.dim() != 3 or k.dim() != 3 or value.dim() != 3:
        raise ValueError("additive_attention: q, k, value must be 3-D")
    H = q.shape[2]
    if (k.shape[0] != q.shape[0] or k.shape[2] != H
            or value.shape[:2] != k.shape[:2]):
        raise ValueError("additive_attention: shapes of q, k, value do not "
                         "match")
    if v.shape != (H,) or (bias is not None and bias.shape != (H,)):
        raise ValueError(f"additive_attention: v and bias must be [{H}]")


# ---------------------------------------------------------------------------
# Op implementations
# ---------------------------------------------------------------------------

def additive_attention(q: Tensor, k: Tensor, value: Tensor, v: Tensor,
                       bias: Tensor | None, attn_mask: Tensor | None,
                       need_weights: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Forward of ``additive_attention``: returns (context, weights,
    stats)."""
    _check(q, k, value, v, bias)
    q, k, value = q.contiguous(), k.contiguous(), value.contiguous()
    B, Tq, H = q.shape
    Tk, Dv = k.shape[1], value.shape[2]
    acc = acc_dtype(q.dtype)
    context = torch.empty(B, Tq, Dv, dtype=q.dtype, device=q.device)
    stats = torch.empty(B, Tq, 2, dtype=acc, device=q.device)
    weights = (torch.empty(B, Tq, Tk, dtype=q.dtype, device=q.device)
               if need_weights else q.new_empty(0))
    if stats.numel() == 0:
        return context, weights, stats
    gpu = on_gpu(q)
    cfg = _config(q.dtype, gpu, Dv)
    mask, ms, kind = mask_arg(attn_mask, (B, Tq, Tk), q)
    store_scores = bool(need_weights) and Tk > 0
    if store_scores:
        # Masked scores, then exp(s - m) / l in place when the weights are
        # in the accumulation dtype already.
        scores = weights if weights.dtype == acc else torch.empty(
            B, Tq, Tk, dtype=acc, device=q.device)
    else:
        scores = stats
    ss = scores.stride() if store_scores else (0, 0, 0)
    bias_t = bias if bias is not None else v
    chunks = triton.cdiv(Dv, cfg["BLOCK_CV"]) if Dv > 0 else 1
    with device_guard(q):
        tuning.launch(
            _additive_fwd_kernel, _launch(cfg, "BLOCK_CV"),
            _space("fwd", q.dtype, gpu, Dv), _TUNING_KEY, (Tq, Tk),
            lambda c: (triton.cdiv(Tq, c["BLOCK_M"]), B, chunks),
            q, k, value, v, bias_t, mask, context, stats, scores,
            Tq, Tk, H, Dv, *q.stride(), *k.stride(), *value.stride(),
            v.stride(0), bias_t.stride(0), *ms, *context.stride(), *ss,
            tiles=_TUNING_TILES, MASK_KIND=kind, HAS_BIAS=bias is not None,
            STORE_SCORES=store_scores)
        if store_scores:
            bm = bn = 64 if gpu else 16
            _probs_from_scores_kernel[(triton.cdiv(Tq, bm),
                                       triton.cdiv(Tk, bn), B)](
                scores, stats, weights, Tq, Tk, *scores.stride(),
                *weights.stride(), BLOCK_M=bm, BLOCK_N=bn)
    return context, weights, stats


def additive_attention_backward(
        grad_context: Tensor, grad_weights: Tensor | None, q: Tensor,
        k: Tensor, value: Tensor, v: Tensor, bias: Tensor | None,
        attn_mask: Tensor | None, context: Tensor, stats: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward of ``additive_attention``: returns (grad_q, grad_k,
    grad_value, grad_v, grad_bias); grad_bias is empty without a bias."""
    _check(q, k, value, v, bias)
    q, k, value = q.contiguous(), k.contiguous(), value.contiguous()
    stats = stats.contiguous()
    B, Tq, H = q.shape
    Tk, Dv = k.shape[1], value.shape[2]
    acc = stats.dtype
    dev = q.device
    grad_q = torch.empty_like(q)
    grad_k = torch.empty_like(k)
    grad_value = torch.empty_like(value)
    gpu = on_gpu(q)
    cfg = _config(q.dtype, gpu, Dv)
    bm, bn, bh = cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_H"]
    n_m = triton.cdiv(Tq, bm)
    dv_part = torch.empty(B, n_m, H, dtype=acc, device=dev)
    dbias_part = (torch.empty(B, n_m, H, dtype=acc, device=dev)
                  if bias is not None else dv_part)
    mask, ms, kind = mask_arg(attn_mask, (B, Tq, Tk), q)
    bias_t = bias if bias is not None else v
    has_gw = grad_weights is not None and grad_weights.numel() > 0
    gw = grad_weights if has_gw else stats
    sg = grad_weights.stride() if has_gw else (0, 0, 0)
    # P, then dS in place: [B, Tq, Tk] in the accumulation dtype.
    p = torch.empty(B, Tq, Tk, dtype=acc, device=dev)
    delta = torch.empty(B, Tq, dtype=acc, device=dev)
    common = dict(ACC=cfg["ACC"], num_warps=cfg["num_warps"])
    dot = dict(USE_DOT=cfg["USE_DOT"], PRECISION=cfg["PRECISION"])
    with device_guard(q):
        if B * Tq > 0:
            tuning.launch(
                _additive_bwd_probs_kernel, _launch(cfg, "BLOCK_DV"),
                _space("probs", q.dtype, gpu, Dv), _TUNING_KEY, (Tq, Tk),
                lambda c: (triton.cdiv(Tq, c["BLOCK_M"]), B),
                q, k, v, bias_t, mask, stats, gw, grad_context, value, p,
                delta, Tq, Tk, H, Dv,
                *q.stride(), *k.stride(), v.stride(0), bias_t.stride(0), *ms,
                *sg, *grad_context.stride(), *value.stride(), *p.stride(),
                tiles=_TUNING_TILES, MASK_KIND=kind,
                HAS_BIAS=bias is not None, HAS_GW=has_gw)
        if grad_value.numel() > 0:
            chunks = triton.cdiv(Dv, cfg["BLOCK_CV"])
            dsm = cfg["DS_M"]
            _additive_bwd_dvalue_kernel[(triton.cdiv(Tk, dsm), B, chunks)](
                p, grad_context, grad_value, Tq, Tk, Dv, *p.stride(),
                *grad_context.stride(), *grad_value.stride(),
                BLOCK_M=dsm, BLOCK_N=dsm, BLOCK_CV=cfg["BLOCK_CV"], **dot,
                **common)
        if p.numel() > 0:
            dsm = cfg["DS_M"]
            _additive_bwd_ds_kernel[(triton.cdiv(Tq, dsm),
                                     triton.cdiv(Tk, dsm), B)](
                p, grad_context, value, gw, delta, Tq, Tk, Dv, *p.stride(),
                *grad_context.stride(), *value.stride(), *sg,
                HAS_GW=has_gw, HOIST=cfg["HOIST"], BLOCK_M=dsm, BLOCK_N=dsm,
                BLOCK_DV=cfg["BLOCK_DV"], **dot, **common)
        if B * Tq * H > 0:
            _additive_bwd_dq_kernel[(n_m, B, triton.cdiv(H, bh))](
                q, k, v, bias_t, p, grad_q, dv_part, dbias_part,
                Tq, Tk, H, n_m,
                *q.stride(), *k.stride(), v.stride(0), bias_t.stride(0),
                *p.stride(), *grad_q.stride(),
                HAS_BIAS=bias is not None, BLOCK_M=bm, BLOCK_N=bn,
                BLOCK_H=bh, **common)
        if B * Tk * H > 0:
            tuning.launch(
                _additive_bwd_dk_kernel, _launch(cfg, use_dot=False),
                _space("dk", q.dtype, gpu, Dv), _TUNING_KEY, (Tq, Tk),
                lambda c: (triton.cdiv(Tk, c["BLOCK_N"]), B,
                           triton.cdiv(H, c["BLOCK_H"])),
                q, k, v, bias_t, p, grad_k,
                Tq, Tk, H,
                *q.stride(), *k.stride(), v.stride(0), bias_t.stride(0),
                *p.stride(), *grad_k.stride(),
                tiles=_TUNING_TILES, HAS_BIAS=bias is not None)
    # Per-program partials summed in a fixed order.
    grad_v = dv_part.sum((0, 1)).to(v.dtype)
    grad_bias = (dbias_part.sum((0, 1)).to(q.dtype) if bias is not None
                 else q.new_empty(0))
    return grad_q, grad_k, grad_value, grad_v, grad_bias
