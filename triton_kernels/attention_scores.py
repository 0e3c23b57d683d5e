"""Triton kernels of the op ``attention_scores``: the probabilities
P = softmax(q k^T * scale + mask) themselves, fused.

Contract: ``seqkernels/reference/attention_scores.py``. Shapes as in
``sdpa`` (q [B, Hq, Tq, D], k [B, Hk, Tk, D], GQA by h // (Hq // Hk), mask
broadcast to [B, Hq, Tq, Tk]); P is [B, Hq, Tq, Tk] in q's dtype.

* forward, one program per (query block, batch*head): pass 1 runs the
  online softmax over the key blocks for the row log-sum-exp; pass 2
  recomputes the scores and writes P = exp(s - lse) once. Under a causal
  mask the key blocks past the diagonal are written as zeros without
  computing them.
* backward: r = rowsum(dP * P) first (masked entries have P = 0: no mask
  needed); dS = P * (dP - r); a dQ kernel (query blocks, loop over keys)
  computes scale * dS K, and a dK kernel (key blocks of one kv head, loop
  over the group's query heads and query blocks, summed in registers in a
  fixed order) computes scale * dS^T Q.

Products, precision and the hoisted / chunked modes as in ``sdpa.py``
(see ``attention_common.py``).
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

from seqkernels._common import acc_dtype, device_guard

from .attention_common import (batch_head, dot_precision, f64_scalar,
                               finite_or_zero, key_end, load_tile, mask_arg,
                               masked_scores, mm_nt, mm_reg, mode, on_gpu,
                               online_softmax_step, pad_dim, rowdot,
                               softmax_epilogue, span, split_scalar,
                               store_tile, tl_acc_dtype)
from . import tuning


# ---------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------

@triton.jit
def _scores_tile(q, q_base, rows, row_ok, k_base, m_base, n0, rd, d_ok, scale,
                 Tq, Tk, D, sq_t, sq_d, sk_t, sk_d, sm_q, sm_k,
                 MASK_KIND: tl.constexpr, IS_CAUSAL: tl.constexpr,
                 ACC: tl.constexpr, USE_DOT: tl.constexpr,
                 HOIST: tl.constexpr, PRECISION: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """(cols, col_ok, s): the masked, scaled scores of key block n0, the
    same tile in both passes of the forward."""
    cols, col_ok = span(n0, BLOCK_N, Tk)
    s, _ = mm_nt(q, q_base, rows, row_ok, sq_t, sq_d, k_base, cols, col_ok,
                 sk_t, sk_d, rd, d_ok, D, ACC, USE_DOT, HOIST, PRECISION,
                 BLOCK_D)
    s = masked_scores(s * scale, rows[:, None], cols[None, :], m_base, sm_q,
                      sm_k, Tq, Tk, MASK_KIND, IS_CAUSAL)
    return cols, col_ok, s


@triton.jit
def _scores_fwd_kernel(
        q_ptr, k_ptr, mask_ptr, p_ptr,
        Hq, Tq, Tk, D, GROUP,
        sq_b, sq_h, sq_t, sq_d, sk_b, sk_h, sk_t, sk_d,
        sm_b, sm_h, sm_q, sm_k, sp_b, sp_h, sp_q, sp_k,
        scale_hi, scale_lo,
        MASK_KIND: tl.constexpr, IS_CAUSAL: tl.constexpr,
        USE_DOT: tl.constexpr, HOIST: tl.constexpr, PRECISION: tl.constexpr,
        ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_D: tl.constexpr):
    pid_m = tl.program_id(0)
    b, h = batch_head(tl.program_id(1), Hq)
    hk = h // GROUP
    q_base = q_ptr + b * sq_b + h * sq_h
    k_base = k_ptr + b * sk_b + hk * sk_h
    m_base = mask_ptr + b * sm_b + h * sm_h
    p_base = p_ptr + b * sp_b + h * sp_h

    rows, row_ok = span(pid_m.to(tl.int64) * BLOCK_M, BLOCK_M, Tq)
    rd, d_ok = span(0, BLOCK_D, D)
    scale = f64_scalar(scale_hi, scale_lo, ACC)
    q = rows  # placeholder in chunked mode (the scores read q in chunks)
    if HOIST:
        q = load_tile(q_base, rows, row_ok, sq_t, rd, d_ok, sq_d)
    hi = key_end(pid_m, BLOCK_M, Tk, IS_CAUSAL)

    # Pass 1: the maximum and the sum of exponentials of each row.
    m_i = tl.full([BLOCK_M], float("-inf"), ACC)
    l_i = tl.zeros([BLOCK_M], ACC)
    for n0 in range(0, hi, BLOCK_N):
        _, _, s = _scores_tile(q, q_base, rows, row_ok, k_base, m_base, n0,
                               rd, d_ok, scale, Tq, Tk, D, sq_t, sq_d, sk_t,
                               sk_d, sm_q, sm_k, MASK_KIND, IS_CAUSAL, ACC,
                               USE_DOT, HOIST, PRECISION, BLOCK_N, BLOCK_D)
        _, _, m_i, l_i = online_softmax_step(s, m_i, l_i)
    # P = exp(s - m) / l, not exp(s - lse) (reference: probs_from_stats
    # says why). A row with no allowed key has m = -inf: it subtracts 0 and
    # gets exp(-inf) * 0 = 0.
    _, inv = softmax_epilogue(m_i, l_i)
    shift = finite_or_zero(m_i)

    # Pass 2: P written once.
    for n0 in range(0, hi, BLOCK_N):
        cols, col_ok, s = _scores_tile(
            q, q_base, rows, row_ok, k_base, m_base, n0, rd, d_ok, scale, Tq,
            Tk, D, sq_t, sq_d, sk_t, sk_d, sm_q, sm_k, MASK_KIND, IS_CAUSAL,
            ACC, USE_DOT, HOIST, PRECISION, BLOCK_N, BLOCK_D)
        p = tl.exp(s - shift[:, None]) * inv[:, None]
        store_tile(p_base, rows, row_ok, sp_q, cols, col_ok, sp_k, p)
    if IS_CAUSAL:
        # Blocks entirely in the causal future: zeros.
        zeros = tl.zeros([BLOCK_M, BLOCK_N], p_ptr.dtype.element_ty)
        for n0 in range(tl.cdiv(hi, BLOCK_N) * BLOCK_N, Tk, BLOCK_N):
            cols, col_ok = span(n0, BLOCK_N, Tk)
            store_tile(p_base, rows, row_ok, sp_q, cols, col_ok, sp_k, zeros)


@triton.jit
def _scores_bwd_dq_kernel(
        gp_ptr, p_ptr, r_ptr, k_ptr, dq_ptr,
        Hq, Tq, Tk, D, GROUP,
        sg_b, sg_h, sg_q, sg_k, sp_b, sp_h, sp_q, sp_k,
        sk_b, sk_h, sk_t, sk_d, sdq_b, sdq_h, sdq_t, sdq_d,
        scale_hi, scale_lo,
        USE_DOT: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_CK: tl.constexpr):
    # Program: query rows [pid_m*BM, +BM) of head h, dQ columns
    # [pid_c*BLOCK_CK, +BLOCK_CK).
    pid_m = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    b, h = batch_head(bh, Hq)
    hk = h // GROUP
    gp_base = gp_ptr + b * sg_b + h * sg_h
    p_base = p_ptr + b * sp_b + h * sp_h
    k_base = k_ptr + b * sk_b + hk * sk_h
    rows, row_ok = span(pid_m.to(tl.int64) * BLOCK_M, BLOCK_M, Tq)
    ck, ck_ok = span(tl.program_id(2) * BLOCK_CK, BLOCK_CK, D)
    r = tl.load(r_ptr + bh * Tq + rows, mask=row_ok, other=0.0)
    acc = tl.zeros([BLOCK_M, BLOCK_CK], ACC)
    for n0 in range(0, Tk, BLOCK_N):
        cols, col_ok = span(n0, BLOCK_N, Tk)
        p = load_tile(p_base, rows, row_ok, sp_q, cols, col_ok, sp_k).to(ACC)
        gp = load_tile(gp_base, rows, row_ok, sg_q, cols, col_ok,
                       sg_k).to(ACC)
        ds = p * (gp - r[:, None])
        kc = load_tile(k_base, cols, col_ok, sk_t, ck, ck_ok, sk_d)
        acc = mm_reg(ds, kc, acc, USE_DOT, PRECISION)
    scale = f64_scalar(scale_hi, scale_lo, ACC)
    store_tile(dq_ptr + b * sdq_b + h * sdq_h, rows, row_ok, sdq_t, ck, ck_ok,
               sdq_d, acc * scale)


@triton.jit
def _scores_bwd_dk_kernel(
        gp_ptr, p_ptr, r_ptr, q_ptr, dk_ptr,
        Hq, Hk, Tq, Tk, D, GROUP,
        sg_b, sg_h, sg_q, sg_k, sp_b, sp_h, sp_q, sp_k,
        sq_b, sq_h, sq_t, sq_d, sdk_b, sdk_h, sdk_t, sdk_d,
        scale_hi, scale_lo,
        USE_DOT: tl.constexpr, PRECISION: tl.constexpr, ACC: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        BLOCK_CK: tl.constexpr):
    # Program: keys [pid_n*BN, +BN) of kv head hk, dK columns
    # [pid_c*BLOCK_CK, +BLOCK_CK); tiles are [keys, queries].
    b, hk = batch_head(tl.program_id(1).to(tl.int64), Hk)
    cols, col_ok = span(tl.program_id(0).to(tl.int64) * BLOCK_N, BLOCK_N, Tk)
    ck, ck_ok = span(tl.program_id(2) * BLOCK_CK, BLOCK_CK, D)
    acc = tl.zeros([BLOCK_N, BLOCK_CK], ACC)
    for g in range(0, GROUP):
        h = hk * GROUP + g
        gp_base = gp_ptr + b * sg_b + h * sg_h
        p_base = p_ptr + b * sp_b + h * sp_h
        q_base = q_ptr + b * sq_b + h * sq_h
        for m0 in range(0, Tq, BLOCK_M):
            rows = m0 + tl.arange(0, BLOCK_M).to(tl.int64)
            row_ok = rows < Tq
            pt = load_tile(p_base, cols, col_ok, sp_k, rows, row_ok,
                           sp_q).to(ACC)
            gpt = load_tile(gp_base, cols, col_ok, sg_k, rows, row_ok,
                            sg_q).to(ACC)
            r = tl.load(r_ptr + (b * Hq + h) * Tq + rows, mask=row_ok,
                        other=0.0)
            dst = pt * (gpt - r[None, :])
            qc = load_tile(q_base, rows, row_ok, sq_t, ck, ck_ok, sq_d)
            acc = mm_reg(dst, qc, acc, USE_DOT, PRECISION)
    scale = f64_scalar(scale_hi, scale_lo, ACC)
    store_tile(dk_ptr + b * sdk_b + hk * sdk_h, cols, col_ok, sdk_t, ck, ck_ok,
               sdk_d, acc * scale)


# ---------------------------------------------------------------------------
# Launch configuration
# ---------------------------------------------------------------------------

def _config(kernel: str, dtype: torch.dtype, gpu: bool, D: int) -> dict:
    """Launch keywords of one kernel ("fwd", "dq" or "dk").

    Hoisted mode: the forward keeps the padded query tile in registers and
    the backward accumulates whole padded rows of dQ / dK. Chunked mode
    reduces D in chunks of BLOCK_D (forward) and splits the dQ / dK columns
    in chunks of BLOCK_CK over the grid (backward).
    """
    dp = pad_dim(D)
    dot, hoist = mode(dtype, gpu)
    cfg = dict(USE_DOT=dot, HOIST=hoist, PRECISION=dot_precision(dtype, gpu),
               ACC=tl_acc_dtype(dtype))
    if not gpu:
        bm, bn, warps, stages = 16, 16, 4, 1
        chunk = dp if hoist else 16
    elif hoist:
        bm, bn, warps, stages = _GPU_TILES[kernel, dtype == torch.float32,
                                           min(256, max(64, dp))]
        chunk = dp
    elif dot:  # float32 with exact products: FMA dots on modest tiles
        bm, bn, warps, stages = _CHUNKED_TILES[kernel]
        chunk = min(dp, 64 if kernel != "fwd" else 32)
    else:  # float64
        bm, bn, warps, stages = 16, 16, 4, 2
        chunk = 16
    cfg.update(BLOCK_M=bm, BLOCK_N=bn, num_warps=warps)
    cfg["BLOCK_D" if kernel == "fwd" else "BLOCK_CK"] = chunk
    if kernel != "fwd":
        del cfg["HOIST"]
    if gpu:
        cfg["num_stages"] = stages
    return cfg


# Hoisted mode on the GPU: (kernel, float32 (TF32), padded head dim) ->
# (BLOCK_M, BLOCK_N, num_warps, num_stages); in "dk" BLOCK_N is the
# program's keys and BLOCK_M the inner query block. Chosen offline from
# ptxas register, spill and shared-memory counts for sm_90 (compiled
# without a GPU, not timed): no spills, shared memory within 163 KiB.
_GPU_TILES = {
    ("fwd", False, 64): (64, 32, 4, 3), ("fwd", False, 128): (64, 32, 8, 2),
    ("fwd", False, 256): (64, 32, 8, 2),
    ("fwd", True, 64): (64, 32, 8, 2), ("fwd", True, 128): (64, 32, 8, 2),
    ("fwd", True, 256): (64, 32, 8, 2),
    ("dq", False, 64): (64, 32, 8, 2), ("dq", False, 128): (64, 32, 8, 2),
    ("dq", False, 256): (64, 32, 8, 2),
    ("dq", True, 64): (64, 32, 8, 2), ("dq", True, 128): (64, 32, 8, 2),
    ("dq", True, 256): (64, 32, 8, 2),
    ("dk", False, 64): (32, 64, 8, 2), ("dk", False, 128): (32, 64, 8, 2),
    ("dk", False, 256): (32, 64, 8, 2),
    ("dk", True, 64): (32, 64, 8, 2), ("dk", True, 128): (32, 64, 8, 2),
    ("dk", True, 256): (32, 64, 8, 2),
}
# Chunked mode with tl.dot (float32 "ieee" on the GPU), chosen the same way.
_CHUNKED_TILES = {"fwd": (64, 32, 8, 2), "dq": (32, 32, 4, 2),
                  "dk": (32, 16, 4, 2)}

# The tuning spaces of hoisted mode in float16 and bfloat16 (SEQKERNELS_
# TRITON_TUNE=1, triton_kernels/tuning.py): (kernel, padded head dim) ->
# candidates beside the table's entry, chosen as sdpa's are (ptxas counts
# for sm_90 of 18 shapes each: at most five of the largest tiles that spill
# at most 128 bytes without a mask and at most 1 KiB with one). float32
# (TF32) keeps its table.
_TUNING_SPACE = {
    ("fwd", 64): ((128, 64, 8, 2), (64, 128, 8, 2), (32, 128, 8, 2),
                  (64, 64, 8, 2), (128, 32, 8, 2)),
    ("fwd", 128): ((128, 64, 8, 2), (64, 64, 8, 2), (128, 32, 8, 2),
                   (32, 128, 8, 2), (128, 32, 4, 2)),
    ("fwd", 256): ((128, 64, 8, 2), (64, 64, 8, 2), (128, 32, 8, 2),
                   (32, 64, 8, 2), (64, 32, 4, 2)),
    ("dq", 64): ((128, 64, 8, 2), (64, 128, 8, 2), (32, 128, 8, 2),
                 (64, 64, 8, 2), (128, 32, 8, 2)),
    ("dq", 128): ((128, 64, 8, 2), (64, 64, 8, 2), (128, 32, 8, 2),
                  (32, 64, 8, 2)),
    ("dq", 256): ((64, 64, 8, 2), (128, 32, 8, 2), (32, 64, 8, 2),
                  (32, 32, 8, 2)),
    ("dk", 64): ((32, 128, 8, 2), (64, 64, 8, 2), (128, 32, 8, 2),
                 (64, 32, 8, 2)),
    ("dk", 128): ((32, 128, 8, 2), (64, 64, 8, 2), (64, 32, 8, 2),
                  (32, 64, 4, 2)),
    ("dk", 256): ((64, 64, 8, 2), (64, 32, 8, 2), (32, 32, 8, 2),
                  (32, 32, 4, 2)),
}
# The kernels' arguments that key the tuners' caches.
_TUNING_KEY = ("D", "GROUP", "MASK_KIND", "IS_CAUSAL")


def _space(kernel: str, dtype: torch.dtype, gpu: bool,
           D: int) -> list[tuning.Tiles]:
    """The tuning space of a kernel: its table entry first, then the other
    candidates of _TUNING_SPACE; empty off the GPU and in chunked mode."""
    if not (gpu and mode(dtype, gpu)[1]):
        return []
    wide = min(256, max(64, pad_dim(D)))
    table = _GPU_TILES[kernel, dtype == torch.float32, wide]
    others = (() if dtype == torch.float32
              else _TUNING_SPACE[kernel, wide])
    return [table] + [t for t in others if t != table]


def _check(q: Tensor, k: Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4:
        raise ValueError("attention_scores: q and k must be 4-D [B, H, T, D]")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"attention_scores: query heads ({q.shape[1]}) must "
                         f"be a multiple of key heads ({k.shape[1]})")
    if q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        raise ValueError("attention_scores: shapes of q and k do not match")


# ---------------------------------------------------------------------------
# Op implementations
# ---------------------------------------------------------------------------

def attention_scores(q: Tensor, k: Tensor, attn_mask: Tensor | None,
                     is_causal: bool, scale: float) -> Tensor:
    """Forward of ``attention_scores``: the probabilities [B, Hq, Tq, Tk]."""
    _check(q, k)
    q, k = q.contiguous(), k.contiguous()
    B, Hq, Tq, D = q.shape
    Hk, Tk = k.shape[1], k.shape[2]
    p = torch.empty(B, Hq, Tq, Tk, dtype=q.dtype, device=q.device)
    if p.numel() == 0:
        return p
    cfg = _config("fwd", q.dtype, on_gpu(q), D)
    mask, ms, kind = mask_arg(attn_mask, (B, Hq, Tq, Tk), q)
    scale_hi, scale_lo = split_scalar(float(scale))
    with device_guard(q):
        tuning.launch(
            _scores_fwd_kernel, cfg, _space("fwd", q.dtype, on_gpu(q), D),
            _TUNING_KEY, (Tq, Tk),
            lambda c: (triton.cdiv(Tq, c["BLOCK_M"]), B * Hq),
            q, k, mask, p, Hq, Tq, Tk, D, Hq // Hk,
            *q.stride(), *k.stride(), *ms, *p.stride(), scale_hi, scale_lo,
            MASK_KIND=kind, IS_CAUSAL=bool(is_causal))
    return p


def attention_scores_backward(
        grad_p: Tensor, q: Tensor, k: Tensor, p: Tensor,
        scale: float) -> tuple[Tensor, Tensor]:
    """Backward of ``attention_scores``: returns (grad_q, grad_k)."""
    _check(q, k)
    q, k = q.contiguous(), k.contiguous()
    B, Hq, Tq, D = q.shape
    Hk, Tk = k.shape[1], k.shape[2]
    grad_q = torch.empty_like(q)
    grad_k = torch.empty_like(k)
    gpu = on_gpu(q)
    scale_hi, scale_lo = split_scalar(float(scale))
    r = rowdot(grad_p, p, acc_dtype(q.dtype))  # [B, Hq, Tq]
    with device_guard(q):
        if grad_q.numel() > 0:
            cfg = _config("dq", q.dtype, gpu, D)
            chunks = triton.cdiv(D, cfg["BLOCK_CK"])
            tuning.launch(
                _scores_bwd_dq_kernel, cfg, _space("dq", q.dtype, gpu, D),
                _TUNING_KEY, (Tq, Tk),
                lambda c: (triton.cdiv(Tq, c["BLOCK_M"]), B * Hq, chunks),
                grad_p, p, r, k, grad_q, Hq, Tq, Tk, D, Hq // Hk,
                *grad_p.stride(), *p.stride(), *k.stride(), *grad_q.stride(),
                scale_hi, scale_lo)
        if grad_k.numel() > 0:
            cfg = _config("dk", q.dtype, gpu, D)
            chunks = triton.cdiv(D, cfg["BLOCK_CK"])
            tuning.launch(
                _scores_bwd_dk_kernel, cfg, _space("dk", q.dtype, gpu, D),
                _TUNING_KEY, (Tq, Tk),
                lambda c: (triton.cdiv(Tk, c["BLOCK_N"]), B * Hk, chunks),
                grad_p, p, r, q, grad_k, Hq, Hk, Tq, Tk, D, Hq // Hk,
                *grad_p.stride(), *p.stride(), *q.stride(), *grad_k.stride(),
                scale_hi, scale_lo)
    return grad_q, grad_k
