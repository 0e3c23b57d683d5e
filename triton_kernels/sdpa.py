"""Triton kernels of the op ``sdpa``: fused scaled dot-product attention.

Contract: ``seqkernels/reference/sdpa.py``. q [B, Hq, Tq, D], k [B, Hk, Tk, D],
v [B, Hk, Tk, Dv] (query head h reads kv head h // (Hq // Hk)), attn_mask
broadcast to [B, Hq, Tq, Tk] (read through its strides, 0 included), out
[B, Hq, Tq, Dv] in q's dtype, lse [B, Hq, Tq] in the accumulation dtype.

Kernels (flash style):

* forward, one program per (query block, batch*head[, Dv chunk]): the loop
  runs over key blocks (only up to the diagonal when causal) with an online
  softmax; dropout zeroes kept probabilities after the normalizer is
  taken, and 1 / (1 - p) is applied at the end. Saves lse.
* backward: ``delta = rowsum(dO * O)`` first; then a dK/dV kernel, one
  program per (key block, batch*kv head[, column chunk]), that loops over
  the group's query heads and their query blocks and recomputes P^T from
  lse (the group sum happens in registers, in a fixed order: no atomics);
  then a dQ kernel, one program per (query block, batch*head[, column
  chunk]), that loops over key blocks.

Dropout regenerates the mask of ``triton_kernels/dropout.py`` from
``rng = [seed, offset]`` (read by the kernels) for element
((b*Hq + h)*Tq + i)*Tk + j.

Head dims are padded to a power of two >= 16 and masked, so any D and
Dv != D work. Products use ``tl.dot`` with float32 accumulation (TF32 for
float32 inputs only where ``torch.backends.cuda.matmul.allow_tf32``).
In hoisted mode (half types, TF32) the program's own q (forward, dQ) or
k and v (dK/dV) stay in registers as whole padded tiles. In chunked mode
(float64 and, under the interpreter, bfloat16 with broadcast products;
float32 with exact products on the GPU with ``tl.dot``) the head dims are
reduced chunk by chunk from memory (``mm_ptrs``) and the output columns
are split over the grid, so no tile grows with the head dim.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

from seqkernels._common import acc_dtype, device_guard

from .attention_common import (b_rows_tile, batch_head, dot_precision,
                               f64_scalar, finite_or_zero, key_end, load_tile,
                               mask_arg, masked_scores, mm_nt, mm_ptrs, mm_reg,
                               mode, on_gpu, online_softmax_step, pad_dim,
                               rng_arg, rowdot, softmax_epilogue, span,
                               split_scalar, store_tile, tl_acc_dtype)
from . import tuning
from .dropout import dropout_key, dropout_keep


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------

@triton.jit
def _sdpa_fwd_kernel(
        q_ptr, k_ptr, v_ptr, mask_ptr, rng_ptr, out_ptr, lse_ptr,
        Hq, Tq, Tk, D, Dv, GROUP,
        sq_b, sq_h, sq_t, sq_d, sk_b, sk_h, sk_t, sk_d,
        sv_b, sv_h, sv_t, sv_d, sm_b, sm_h, sm_q, sm_k,
        so_b, so_h, so_t, so_d,
        scale_hi, scale_lo, drop_p, rescale_hi, rescale_lo,
        MASK_KIND: tl.constexpr, IS_CAUSAL: tl.constexpr,
        HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr,
        HOIST: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_CV: tl.constexpr):
    # Program: query rows [pid_m*BM, +BM) of head h, output columns
    # [pid_c*BLOCK_CV, +BLOCK_CV) of Dv (one chunk covering Dv with tl.dot).
    # BLOCK_D: the whole padded D with tl.dot, else the reduction chunk.
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    pid_c = tl.program_id(2)
    b, h = batch_head(bh, Hq)
    hk = h // GROUP
    q_base = q_ptr + b * sq_b + h * sq_h
    k_base = k_ptr + b * sk_b + hk * sk_h
    v_base = v_ptr + b * sv_b + hk * sv_h
    m_base = mask_ptr + b * sm_b + h * sm_h

    rows, row_ok = span(pid_m.to(tl.int64) * BLOCK_M, BLOCK_M, Tq)
    cv, cv_ok = span(pid_c * BLOCK_CV, BLOCK_CV, Dv)
    rd, d_ok = span(0, BLOCK_D, D)
    scale = f64_scalar(scale_hi, scale_lo, ACC)
    if HAS_DROPOUT:
        key = dropout_key(rng_ptr)
        drop_rows = ((b * Hq + h) * Tq + rows) * Tk  # element index of (i, 0)
    q = rows  # placeholder in chunked mode (mm_nt reads q in chunks)
    if HOIST:
        q = load_tile(q_base, rows, row_ok, sq_t, rd, d_ok, sq_d)

    m_i = tl.full([BLOCK_M], float("-inf"), ACC)
    l_i = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, BLOCK_CV], ACC)
    for n0 in range(0, key_end(pid_m, BLOCK_M, Tk, IS_CAUSAL), BLOCK_N):
        cols, col_ok = span(n0, BLOCK_N, Tk)
        s, _ = mm_nt(q, q_base, rows, row_ok, sq_t, sq_d, k_base, cols,
                     col_ok, sk_t, sk_d, rd, d_ok, D, ACC, USE_DOT, HOIST,
                     PRECISION, BLOCK_D)
        s = masked_scores(s * scale, rows[:, None], cols[None, :], m_base,
                          sm_q, sm_k, Tq, Tk, MASK_KIND, IS_CAUSAL)
        p, alpha, m_i, l_i = online_softmax_step(s, m_i, l_i)
        if HAS_DROPOUT:
            keep = dropout_keep(key, drop_rows[:, None] + cols[None, :],
                                drop_p)
            p = tl.where(keep, p, 0.0)
        vt = load_tile(v_base, cols, col_ok, sv_t, cv, cv_ok, sv_d)
        acc = mm_reg(p, vt, acc * alpha[:, None], USE_DOT, PRECISION)

    lse, inv = softmax_epilogue(m_i, l_i)
    if HAS_DROPOUT:
        inv = inv * f64_scalar(rescale_hi, rescale_lo, ACC)
    store_tile(out_ptr + b * so_b + h * so_h, rows, row_ok, so_t, cv, cv_ok,
               so_d, acc * inv[:, None])
    # One column chunk writes the log-sum-exp. A branch, not a scalar in the
    # mask: the interpreter of triton >= 3.9 rejects a mask that mixes a
    # block with a program-id comparison.
    if pid_c == 0:
        tl.store(lse_ptr + bh.to(tl.int64) * Tq + rows, lse, mask=row_ok)


@triton.jit
def _sdpa_bwd_dkdv_kernel(
        q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, mask_ptr, rng_ptr,
        dk_ptr, dv_ptr,
        Hq, Hk, Tq, Tk, D, Dv, GROUP,
        sq_b, sq_h, sq_t, sq_d, sk_b, sk_h, sk_t, sk_d,
        sv_b, sv_h, sv_t, sv_d, sdo_b, sdo_h, sdo_t, sdo_d,
        sm_b, sm_h, sm_q, sm_k,
        sdk_b, sdk_h, sdk_t, sdk_d, sdv_b, sdv_h, sdv_t, sdv_d,
        scale_hi, scale_lo, drop_p, rescale_hi, rescale_lo,
        MASK_KIND: tl.constexpr, IS_CAUSAL: tl.constexpr,
        HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr,
        HOIST: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
        BLOCK_CK: tl.constexpr, BLOCK_CV: tl.constexpr):
    # Program: keys [pid_n*BN, +BN) of kv head hk; dK columns
    # [pid_c*BLOCK_CK, +BLOCK_CK) and dV columns [pid_c*BLOCK_CV, +BLOCK_CV).
    # Works in the transposed frame: tiles are [keys, queries].
    pid_n = tl.program_id(0)
    bhk = tl.program_id(1)
    pid_c = tl.program_id(2)
    b, hk = batch_head(bhk, Hk)
    k_base = k_ptr + b * sk_b + hk * sk_h
    v_base = v_ptr + b * sv_b + hk * sv_h

    cols, col_ok = span(pid_n.to(tl.int64) * BLOCK_N, BLOCK_N, Tk)  # keys
    ck, ck_ok = span(pid_c * BLOCK_CK, BLOCK_CK, D)
    cv, cv_ok = span(pid_c * BLOCK_CV, BLOCK_CV, Dv)
    scale = f64_scalar(scale_hi, scale_lo, ACC)
    if HAS_DROPOUT:
        key = dropout_key(rng_ptr)
        rescale = f64_scalar(rescale_hi, rescale_lo, ACC)
    k = cols  # placeholder in chunked mode (mm_nt reads k in chunks)
    if HOIST:
        # k [BN, D] and v [BN, Dv] stay in registers (BLOCK_CK/CV cover them).
        k = load_tile(k_base, cols, col_ok, sk_t, ck, ck_ok, sk_d)
        v = load_tile(v_base, cols, col_ok, sv_t, cv, cv_ok, sv_d)

    acc_dk = tl.zeros([BLOCK_N, BLOCK_CK], ACC)
    acc_dv = tl.zeros([BLOCK_N, BLOCK_CV], ACC)
    m_start = 0
    if IS_CAUSAL:
        # Query i sees key j iff j <= i: skip blocks whose rows all precede
        # the first key of this block.
        m_start = ((pid_n * BLOCK_N) // BLOCK_M) * BLOCK_M
    for g in range(0, GROUP):
        h = hk * GROUP + g
        bh = b * Hq + h
        q_base = q_ptr + b * sq_b + h * sq_h
        do_base = do_ptr + b * sdo_b + h * sdo_h
        m_base = mask_ptr + b * sm_b + h * sm_h
        for m0 in range(m_start, Tq, BLOCK_M):
            rows = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
            row_ok = rows < Tq
            st, qt = mm_nt(k, k_base, cols, col_ok, sk_t, sk_d, q_base, rows,
                           row_ok, sq_t, sq_d, ck, ck_ok, D, ACC, USE_DOT,
                           HOIST, PRECISION, BLOCK_D)
            st = masked_scores(st * scale, rows[None, :], cols[:, None],
                               m_base, sm_q, sm_k, Tq, Tk, MASK_KIND,
                               IS_CAUSAL)
            lse = tl.load(lse_ptr + bh * Tq + rows, mask=row_ok, other=0.0)
            pt = tl.exp(st - finite_or_zero(lse)[None, :])  # P^T [BN, BM]
            do = load_tile(do_base, rows, row_ok, sdo_t, cv, cv_ok, sdo_d)
            if HOIST:
                dpt = tl.dot(v, tl.trans(do), input_precision=PRECISION)
            else:
                dpt = mm_ptrs(tl.zeros([BLOCK_N, BLOCK_M], ACC), v_base, cols,
                              sv_t, sv_d, col_ok, do_base, rows, sdo_t, sdo_d,
                              row_ok, Dv, USE_DOT, PRECISION, BLOCK_DV)
            if HAS_DROPOUT:
                keep = dropout_keep(key, (bh * Tq + rows[None, :]) * Tk
                                    + cols[:, None], drop_p)
                acc_dv = mm_reg(tl.where(keep, pt * rescale, 0.0), do, acc_dv,
                                USE_DOT, PRECISION)
                dpt = tl.where(keep, dpt * rescale, 0.0)
            else:
                acc_dv = mm_reg(pt, do, acc_dv, USE_DOT, PRECISION)
            delta = tl.load(delta_ptr + bh * Tq + rows, mask=row_ok, other=0.0)
            dst = pt * (dpt - delta[None, :])
            qc = b_rows_tile(qt, q_base, rows, row_ok, sq_t, ck, ck_ok, sq_d,
                             HOIST)
            acc_dk = mm_reg(dst, qc, acc_dk, USE_DOT, PRECISION)

    store_tile(dk_ptr + b * sdk_b + hk * sdk_h, cols, col_ok, sdk_t, ck, ck_ok,
               sdk_d, acc_dk * scale)
    store_tile(dv_ptr + b * sdv_b + hk * sdv_h, cols, col_ok, sdv_t, cv, cv_ok,
               sdv_d, acc_dv)


@triton.jit
def _sdpa_bwd_dq_kernel(
        q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, mask_ptr, rng_ptr,
        dq_ptr,
        Hq, Tq, Tk, D, Dv, GROUP,
        sq_b, sq_h, sq_t, sq_d, sk_b, sk_h, sk_t, sk_d,
        sv_b, sv_h, sv_t, sv_d, sdo_b, sdo_h, sdo_t, sdo_d,
        sm_b, sm_h, sm_q, sm_k, sdq_b, sdq_h, sdq_t, sdq_d,
        scale_hi, scale_lo, drop_p, rescale_hi, rescale_lo,
        MASK_KIND: tl.constexpr, IS_CAUSAL: tl.constexpr,
        HAS_DROPOUT: tl.constexpr, USE_DOT: tl.constexpr,
        HOIST: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr, BLOCK_DV: tl.constexpr,
        BLOCK_CK: tl.constexpr):
    # Program: query rows [pid_m*BM, +BM) of head h, dQ columns
    # [pid_c*BLOCK_CK, +BLOCK_CK).
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    pid_c = tl.program_id(2)
    b, h = batch_head(bh, Hq)
    hk = h // GROUP
    q_base = q_ptr + b * sq_b + h * sq_h
    k_base = k_ptr + b * sk_b + hk * sk_h
    v_base = v_ptr + b * sv_b + hk * sv_h
    do_base = do_ptr + b * sdo_b + h * sdo_h
    m_base = mask_ptr + b * sm_b + h * sm_h

    rows, row_ok = span(pid_m.to(tl.int64) * BLOCK_M, BLOCK_M, Tq)
    ck, ck_ok = span(pid_c * BLOCK_CK, BLOCK_CK, D)
    rdv, dv_ok = span(0, BLOCK_DV, Dv)
    scale = f64_scalar(scale_hi, scale_lo, ACC)
    if HAS_DROPOUT:
        key = dropout_key(rng_ptr)
        rescale = f64_scalar(rescale_hi, rescale_lo, ACC)
        drop_rows = (bh * Tq + rows) * Tk
    q = rows  # placeholders in chunked mode (mm_nt reads q, dO in chunks)
    do = rows
    if HOIST:
        q = load_tile(q_base, rows, row_ok, sq_t, ck, ck_ok, sq_d)
        do = load_tile(do_base, rows, row_ok, sdo_t, rdv, dv_ok, sdo_d)
    lse = finite_or_zero(tl.load(lse_ptr + bh * Tq + rows, mask=row_ok,
                                 other=0.0))
    delta = tl.load(delta_ptr + bh * Tq + rows, mask=row_ok, other=0.0)

    acc = tl.zeros([BLOCK_M, BLOCK_CK], ACC)
    for n0 in range(0, key_end(pid_m, BLOCK_M, Tk, IS_CAUSAL), BLOCK_N):
        cols, col_ok = span(n0, BLOCK_N, Tk)
        s, kt = mm_nt(q, q_base, rows, row_ok, sq_t, sq_d, k_base, cols,
                      col_ok, sk_t, sk_d, ck, ck_ok, D, ACC, USE_DOT, HOIST,
                      PRECISION, BLOCK_D)
        dp, _ = mm_nt(do, do_base, rows, row_ok, sdo_t, sdo_d, v_base, cols,
                      col_ok, sv_t, sv_d, rdv, dv_ok, Dv, ACC, USE_DOT, HOIST,
                      PRECISION, BLOCK_DV)
        s = masked_scores(s * scale, rows[:, None], cols[None, :], m_base,
                          sm_q, sm_k, Tq, Tk, MASK_KIND, IS_CAUSAL)
        p = tl.exp(s - lse[:, None])
        if HAS_DROPOUT:
            keep = dropout_keep(key, drop_rows[:, None] + cols[None, :],
                                drop_p)
            dp = tl.where(keep, dp * rescale, 0.0)
        ds = p * (dp - delta[:, None])
        kc = b_rows_tile(kt, k_base, cols, col_ok, sk_t, ck, ck_ok, sk_d,
                         HOIST)
        acc = mm_reg(ds, kc, acc, USE_DOT, PRECISION)

    store_tile(dq_ptr + b * sdq_b + h * sdq_h, rows, row_ok, sdq_t, ck, ck_ok,
               sdq_d, acc * scale)


# ---------------------------------------------------------------------------
# Launch configuration
# ---------------------------------------------------------------------------

def _gpu_tiles(kernel: str, dtype: torch.dtype, dp: int,
               dvp: int) -> tuple[int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages) of a hoisted-mode kernel on
    the GPU, by the wider padded head dim."""
    wide = min(256, max(64, dp, dvp))
    return _GPU_TILES[kernel, dtype == torch.float32, wide]


# Hoisted mode on the GPU: (kernel, float32 (TF32), wider padded head dim)
# -> (BLOCK_M, BLOCK_N, num_warps, num_stages). In "dkdv" BLOCK_N is the
# program's keys and BLOCK_M the inner query block. Chosen offline from
# ptxas register, spill and shared-memory counts for sm_90 (compiled
# without a GPU, not timed): no spills, or a few hundred bytes at most
# with masks and dropout, and shared memory within the 163 KiB of sm_80.
_GPU_TILES = {
    ("fwd", False, 64): (64, 32, 4, 3), ("fwd", False, 128): (64, 32, 8, 2),
    ("fwd", False, 256): (64, 32, 8, 2),
    ("fwd", True, 64): (64, 32, 4, 3), ("fwd", True, 128): (64, 32, 8, 2),
    ("fwd", True, 256): (64, 16, 4, 2),
    ("dkdv", False, 64): (32, 64, 8, 2), ("dkdv", False, 128): (32, 32, 4, 2),
    ("dkdv", False, 256): (64, 32, 8, 2),
    ("dkdv", True, 64): (64, 32, 8, 2), ("dkdv", True, 128): (32, 32, 4, 2),
    ("dkdv", True, 256): (32, 32, 4, 2),
    ("dq", False, 64): (64, 32, 8, 2), ("dq", False, 128): (64, 32, 8, 2),
    ("dq", False, 256): (64, 32, 8, 2),
    ("dq", True, 64): (64, 32, 8, 2), ("dq", True, 128): (64, 32, 8, 2),
    ("dq", True, 256): (32, 32, 4, 2),
}
# Chunked mode with tl.dot (float32 "ieee" on the GPU), chosen the same way.
_CHUNKED_TILES = {"fwd": (64, 32, 8, 2), "dkdv": (64, 32, 8, 2),
                  "dq": (64, 32, 8, 2)}

# The tuning spaces of hoisted mode in float16 and bfloat16 (SEQKERNELS_
# TRITON_TUNE=1, triton_kernels/tuning.py): (kernel, wider padded head dim)
# -> candidates beside the table's entry, (BLOCK_M, BLOCK_N, num_warps,
# num_stages). Chosen from ptxas counts for sm_90 of 18 shapes each (BLOCK_M
# and BLOCK_N of 32, 64, 128, 4 or 8 warps, compiled without a GPU): at most
# six of the largest tiles that spill at most 128 bytes without a mask and
# at most 1 KiB with a mask and dropout. float32 (TF32) keeps its table.
_TUNING_SPACE = {
    ("fwd", 64): ((128, 64, 8, 2), (64, 128, 8, 2), (128, 32, 8, 2),
                  (32, 128, 8, 2), (64, 64, 8, 2)),
    ("fwd", 128): ((64, 64, 8, 2), (32, 128, 8, 2), (128, 32, 8, 2),
                   (32, 64, 8, 2), (64, 32, 4, 2)),
    ("fwd", 256): ((32, 64, 8, 2), (32, 32, 8, 2)),
    ("dkdv", 64): ((64, 128, 8, 2), (64, 64, 8, 2), (32, 128, 8, 2),
                   (128, 32, 8, 2), (64, 32, 8, 2)),
    ("dkdv", 128): ((32, 64, 8, 2), (64, 32, 8, 2), (32, 32, 8, 2)),
    ("dkdv", 256): ((32, 32, 8, 2),),
    ("dq", 64): ((128, 64, 8, 2), (128, 32, 8, 2), (64, 64, 8, 2),
                 (64, 32, 4, 2), (32, 64, 8, 2)),
    ("dq", 128): ((32, 32, 8, 2),),
    ("dq", 256): (),
}
# The kernels' arguments that key the tuners' caches.
_TUNING_KEY = ("D", "Dv", "GROUP", "MASK_KIND", "IS_CAUSAL", "HAS_DROPOUT")


def _space(kernel: str, dtype: torch.dtype, gpu: bool, D: int,
           Dv: int) -> list[tuning.Tiles]:
    """The tuning space of a kernel: its table entry first, then the other
    candidates of _TUNING_SPACE; empty off the GPU and in chunked mode."""
    if not (gpu and mode(dtype, gpu)[1]):
        return []
    dp, dvp = pad_dim(D), pad_dim(Dv)
    table = _gpu_tiles(kernel, dtype, dp, dvp)
    wide = min(256, max(64, dp, dvp))
    others = (() if dtype == torch.float32
              else _TUNING_SPACE[kernel, wide])
    return [table] + [t for t in others if t != table]


def _config(kernel: str, dtype: torch.dtype, gpu: bool, D: int,
            Dv: int) -> dict:
    """Launch keywords of one kernel ("fwd", "dkdv" or "dq").

    Hoisted mode: the head dims are whole padded tiles (one column chunk).
    Chunked mode reduces them in chunks of BLOCK_D / BLOCK_DV and splits
    the output columns in chunks of BLOCK_CK (dK, dQ) / BLOCK_CV (out, dV)
    over the grid; the dK/dV kernel needs BLOCK_CK == BLOCK_CV there.
    """
    dp, dvp = pad_dim(D), pad_dim(Dv)
    dot, hoist = mode(dtype, gpu)
    cfg = dict(USE_DOT=dot, HOIST=hoist, PRECISION=dot_precision(dtype, gpu),
               ACC=tl_acc_dtype(dtype))
    if hoist:
        bm, bn, warps, stages = (_gpu_tiles(kernel, dtype, dp, dvp) if gpu
                                 else (16, 16, 4, 1))
        cfg.update(BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=dp, BLOCK_DV=dvp,
                   BLOCK_CK=dp, BLOCK_CV=dvp, num_warps=warps)
    elif dot and gpu:
        # float32 with exact products: FMA dots on modest tiles.
        bm, bn, warps, stages = _CHUNKED_TILES[kernel]
        chunk = min(64, max(dp, dvp))
        cfg.update(BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=min(32, dp),
                   BLOCK_DV=min(32, dvp), BLOCK_CK=chunk, BLOCK_CV=chunk,
                   num_warps=warps)
    else:
        # Broadcast products (float64; bfloat16 under the interpreter), and
        # the chunked tl.dot path on the CPU: every tile 16 wide.
        bm, bn, stages = 16, 16, 2
        cfg.update(BLOCK_M=16, BLOCK_N=16, BLOCK_D=16, BLOCK_DV=16,
                   BLOCK_CK=16, BLOCK_CV=16, num_warps=4)
    if gpu:
        cfg["num_stages"] = stages
    unused = {"fwd": ("BLOCK_DV", "BLOCK_CK"), "dkdv": (),
              "dq": ("BLOCK_CV",)}[kernel]
    return {k: v for k, v in cfg.items() if k not in unused}


def _check(q: Tensor, k: Tensor, v: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("sdpa: q, k and v must be 4-D [B, H, T, D]")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"sdpa: query heads ({q.shape[1]}) must be a "
                         f"multiple of key/value heads ({k.shape[1]})")
    if k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        raise ValueError("sdpa: shapes of q, k, v do not match")


def _scalars(scale: float, dropout_p: float) -> dict:
    scale_hi, scale_lo = split_scalar(float(scale))
    rescale = 1.0 / (1.0 - dropout_p) if dropout_p not in (0.0, 1.0) else 1.0
    rescale_hi, rescale_lo = split_scalar(rescale)
    return dict(scale_hi=scale_hi, scale_lo=scale_lo,
                drop_p=float(dropout_p), rescale_hi=rescale_hi,
                rescale_lo=rescale_lo)


# ---------------------------------------------------------------------------
# Op implementations
# ---------------------------------------------------------------------------

def sdpa(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None,
         dropout_p: float, is_causal: bool, scale: float,
         rng: Tensor | None) -> tuple[Tensor, Tensor]:
    """Forward of ``sdpa``: returns (out, lse)."""
    _check(q, k, v)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    B, Hq, Tq, D = q.shape
    Hk, Tk, Dv = k.shape[1], k.shape[2], v.shape[3]
    acc = acc_dtype(q.dtype)
    out = torch.empty(B, Hq, Tq, Dv, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, Hq, Tq, dtype=acc, device=q.device)
    if lse.numel() == 0:
        return out, lse
    cfg = _config("fwd", q.dtype, on_gpu(q), D, Dv)
    mask, ms, kind = mask_arg(attn_mask, (B, Hq, Tq, Tk), q)
    rng_t = rng_arg(dropout_p, rng, q)
    chunks = triton.cdiv(Dv, cfg["BLOCK_CV"]) if Dv > 0 else 1
    with device_guard(q):
        tuning.launch(
            _sdpa_fwd_kernel, cfg, _space("fwd", q.dtype, on_gpu(q), D, Dv),
            _TUNING_KEY, (Tq, Tk),
            lambda c: (triton.cdiv(Tq, c["BLOCK_M"]), B * Hq, chunks),
            q, k, v, mask, rng_t, out, lse,
            Hq, Tq, Tk, D, Dv, Hq // Hk,
            *q.stride(), *k.stride(), *v.stride(), *ms, *out.stride(),
            **_scalars(scale, dropout_p),
            MASK_KIND=kind, IS_CAUSAL=bool(is_causal),
            HAS_DROPOUT=dropout_p != 0.0)
    return out, lse


def sdpa_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor,
                  out: Tensor, lse: Tensor, attn_mask: Tensor | None,
                  dropout_p: float, is_causal: bool, scale: float,
                  rng: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Backward of ``sdpa``: returns (grad_q, grad_k, grad_v)."""
    _check(q, k, v)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    grad_out = grad_out.contiguous()
    lse = lse.contiguous()
    B, Hq, Tq, D = q.shape
    Hk, Tk, Dv = k.shape[1], k.shape[2], v.shape[3]
    grad_q = torch.empty_like(q)
    grad_k = torch.empty_like(k)
    grad_v = torch.empty_like(v)
    gpu = on_gpu(q)
    mask, ms, kind = mask_arg(attn_mask, (B, Hq, Tq, Tk), q)
    rng_t = rng_arg(dropout_p, rng, q)
    scalars = _scalars(scale, dropout_p)
    flags = dict(MASK_KIND=kind, IS_CAUSAL=bool(is_causal),
                 HAS_DROPOUT=dropout_p != 0.0)
    delta = rowdot(grad_out, out, lse.dtype)  # [B, Hq, Tq]
    with device_guard(q):
        if grad_k.numel() > 0 or grad_v.numel() > 0:
            cfg = _config("dkdv", q.dtype, gpu, D, Dv)
            chunks = (1 if cfg["HOIST"]
                      else triton.cdiv(max(D, Dv, 1), cfg["BLOCK_CK"]))
            tuning.launch(
                _sdpa_bwd_dkdv_kernel, cfg,
                _space("dkdv", q.dtype, gpu, D, Dv), _TUNING_KEY, (Tq, Tk),
                lambda c: (triton.cdiv(Tk, c["BLOCK_N"]), B * Hk, chunks),
                q, k, v, grad_out, lse, delta, mask, rng_t, grad_k, grad_v,
                Hq, Hk, Tq, Tk, D, Dv, Hq // Hk,
                *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(),
                *ms, *grad_k.stride(), *grad_v.stride(),
                **scalars, **flags)
        if grad_q.numel() > 0:
            cfg = _config("dq", q.dtype, gpu, D, Dv)
            chunks = triton.cdiv(D, cfg["BLOCK_CK"])
            tuning.launch(
                _sdpa_bwd_dq_kernel, cfg, _space("dq", q.dtype, gpu, D, Dv),
                _TUNING_KEY, (Tq, Tk),
                lambda c: (triton.cdiv(Tq, c["BLOCK_M"]), B * Hq, chunks),
                q, k, v, grad_out, lse, delta, mask, rng_t, grad_q,
                Hq, Tq, Tk, D, Dv, Hq // Hk,
                *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(),
                *ms, *grad_q.stride(),
                **scalars, **flags)
    return grad_q, grad_k, grad_v
