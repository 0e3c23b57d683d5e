"""Pieces shared by the Triton attention kernels (``sdpa``,
``attention_scores``, ``additive_attention``).

Semantics are those of ``seqkernels/reference/attention_common.py``: a bool
mask is True where attention is allowed, a float mask is added to the scaled
scores, ``is_causal`` lets query i see keys j <= i, and a row with no allowed
key has probabilities 0, output 0 and log-sum-exp -inf (no NaN anywhere).

Host side: the dtype policy (which products use ``tl.dot`` and at what
precision), the float64 scalar arguments, mask arguments, block padding.
Device side: the tile set-up every kernel repeats (``batch_head``,
``span``, ``load_tile``, ``store_tile``, ``key_end``), masked scores, the
online-softmax step, the log-sum-exp epilogue, and the tile products every
kernel uses:

* ``mm_reg(a, b, acc)``: acc + a @ b for a tile ``a`` in registers and a
  loaded tile ``b``: ``tl.dot`` (float32 accumulation) or, for float64 and
  for bfloat16 under the interpreter (whose ``tl.dot`` is wrong for it), a
  broadcast multiply and sum in the accumulation dtype.
* ``mm_ptrs(acc, ...)``: acc + A[rows, :] @ B[cols, :]^T read from memory in
  chunks of the reduced dimension (``tl.dot`` per chunk, or broadcasts):
  the way to reduce a long head dimension without holding whole-head tiles.
* ``mm_nt``: A[rows, :] @ B[cols, :]^T (scores, dP) in either mode below.

Kernels run in one of two modes (``mode()``): "hoisted", where the whole
padded head dims sit in registers (q, or k and v) and feed ``tl.dot``
directly; or "chunked", where head dims are reduced chunk by chunk from
memory and output columns are split over the grid. Chunked serves float64
and bfloat16 under the interpreter (broadcast products) and float32 with
exact ("ieee") products on the GPU, whose FMA-based dots cannot hold
whole-head tiles without spilling.
"""

import torch
import triton
import triton.language as tl
from torch import Tensor

from seqkernels._common import device_guard, next_pow2

from .cell_math import tl_acc_dtype

# Kinds of attn_mask (the kernels' MASK_KIND).
MASK_NONE = 0
MASK_BOOL = 1
MASK_FLOAT = 2


# ---------------------------------------------------------------------------
# Host helpers
# ---------------------------------------------------------------------------

def pad_dim(n: int) -> int:
    """Block width covering a dimension of ``n``: a power of two >= 16 (the
    smallest ``tl.dot`` operand); the padding is masked off."""
    return max(16, next_pow2(n))


def on_gpu(t: Tensor) -> bool:
    return t.is_cuda


def use_dot(dtype: torch.dtype, gpu: bool) -> bool:
    """Whether tile products use ``tl.dot``: not for float64 (no fp64 dot on
    every target), not for bfloat16 under the interpreter (wrong results)."""
    return dtype != torch.float64 and (gpu or dtype != torch.bfloat16)


def dot_precision(dtype: torch.dtype, gpu: bool) -> str:
    """``tl.dot`` input precision: float32 inputs use TF32 only where torch
    allows it for matmuls; everything else is exact products ("ieee")."""
    if (gpu and dtype == torch.float32 and torch.version.hip is None
            and torch.backends.cuda.matmul.allow_tf32):
        return "tf32"
    return "ieee"


def mode(dtype: torch.dtype, gpu: bool) -> tuple[bool, bool]:
    """(USE_DOT, HOIST) of the kernels for a storage dtype (see above)."""
    dot = use_dot(dtype, gpu)
    hoist = dot and not (gpu and dtype == torch.float32
                         and dot_precision(dtype, gpu) == "ieee")
    return dot, hoist


def split_scalar(x: float) -> tuple[float, float]:
    """A Python float as two float32 kernel arguments ``hi + lo``.

    Triton passes Python floats as float32; ``f64_scalar`` rebuilds the
    value in the kernels' accumulation dtype: about 48 significant bits in
    float64, ``hi`` rounded to float32 otherwise.
    """
    hi = float(torch.tensor(x, dtype=torch.float32))
    lo = float(torch.tensor(x - hi, dtype=torch.float32))
    return hi, lo


def mask_arg(attn_mask: Tensor | None, shape: tuple[int, ...],
             fallback: Tensor) -> tuple[Tensor, tuple[int, ...], int]:
    """(tensor, strides, MASK_KIND) of an optional mask broadcast to
    ``shape``. A bool mask is read as bytes; broadcast dims have stride 0.
    Without a mask, ``fallback`` stands in for the pointer."""
    if attn_mask is None:
        return fallback, (0,) * len(shape), MASK_NONE
    m = attn_mask.expand(shape)
    if m.dtype == torch.bool:
        return m.view(torch.uint8), m.stride(), MASK_BOOL
    if not m.dtype.is_floating_point:
        raise TypeError(f"attn_mask must be bool or floating point, got "
                        f"{m.dtype}")
    return m, m.stride(), MASK_FLOAT


def rng_arg(dropout_p: float, rng: Tensor | None, fallback: Tensor) -> Tensor:
    """The ``[seed, offset]`` tensor on the data's device (read inside the
    kernel: no host sync), or ``fallback`` without dropout."""
    if dropout_p == 0.0:
        return fallback
    if rng is None:
        raise ValueError("dropout_p > 0 needs rng = [seed, offset]")
    if rng.numel() < 2:
        raise ValueError(f"rng must hold [seed, offset], got shape "
                         f"{tuple(rng.shape)}")
    return rng.to(device=fallback.device, dtype=torch.int64).reshape(-1)


# ---------------------------------------------------------------------------
# Device helpers
# ---------------------------------------------------------------------------

@triton.jit
def batch_head(bh, H):
    """(batch, head) of a program's flat batch * H + head index, in int64:
    the base offsets they scale can pass 2^31."""
    return (bh // H).to(tl.int64), (bh % H).to(tl.int64)


@triton.jit
def span(start, BLOCK: tl.constexpr, n):
    """The indices [start, start + BLOCK) and which of them are < n; they
    take start's integer type (int64 starts for offsets that may pass
    2^31)."""
    idx = start + tl.arange(0, BLOCK)
    return idx, idx < n


@triton.jit
def load_tile(base, r, r_ok, s_r, c, c_ok, s_c):
    """Tile [r, c] of the 2-D slice at ``base`` with strides (s_r, s_c), 0
    where r or c is out of bounds. A transposed tile swaps the roles."""
    return tl.load(base + r[:, None] * s_r + c[None, :] * s_c,
                   mask=r_ok[:, None] & c_ok[None, :], other=0.0)


@triton.jit
def store_tile(base, r, r_ok, s_r, c, c_ok, s_c, x):
    """Stores ``x`` as tile [r, c] of the slice at ``base`` (cast to its
    dtype), in bounds only."""
    tl.store(base + r[:, None] * s_r + c[None, :] * s_c,
             x.to(base.dtype.element_ty), mask=r_ok[:, None] & c_ok[None, :])


@triton.jit
def key_end(pid_m, BLOCK_M: tl.constexpr, Tk, IS_CAUSAL: tl.constexpr):
    """End of the key loop of query block ``pid_m``: Tk, or under a causal
    mask (key j allowed iff j <= i) none past the block's last row."""
    hi = Tk
    if IS_CAUSAL:
        hi = tl.minimum(Tk, (pid_m + 1) * BLOCK_M)
    return hi


@triton.jit
def f64_scalar(hi, lo, ACC: tl.constexpr):
    """Rebuild a scalar passed as float32 ``hi + lo`` in dtype ACC."""
    return tl.cast(hi, ACC) + tl.cast(lo, ACC)


@triton.jit
def masked_scores(s, i, j, mask_ptr, sm_q, sm_k, Tq, Tk,
                  MASK_KIND: tl.constexpr, IS_CAUSAL: tl.constexpr):
    """Scores ``s`` with -inf where key j is not allowed for query i (out of
    bounds, masked out, or in the causal future) and a float mask added.

    ``i`` and ``j`` are broadcastable index tiles (e.g. [BM, 1] and [1, BN],
    or transposed); ``mask_ptr`` points at this (batch, head)'s mask slice.
    """
    ok = (i < Tq) & (j < Tk)
    if MASK_KIND == 1:
        allowed = tl.load(mask_ptr + i * sm_q + j * sm_k, mask=ok, other=0)
        ok = ok & (allowed != 0)
    elif MASK_KIND == 2:
        add = tl.load(mask_ptr + i * sm_q + j * sm_k, mask=ok, other=0.0)
        s = s + add.to(s.dtype)
    if IS_CAUSAL:
        ok = ok & (j <= i)
    return tl.where(ok, s, float("-inf"))


@triton.jit
def online_softmax_step(s, m_i, l_i):
    """One key block of the online softmax over rows of ``s`` [BM, BN].

    Returns (p, alpha, m_new, l_new): p = exp(s - m_new) (0 where s is
    -inf), alpha rescales what was accumulated with the old maximum. A row
    that has seen only -inf keeps m = -inf, l = 0 and gets p = 0, alpha = 0
    (the exponent base is 0 there, never -inf - -inf).
    """
    m_new = tl.maximum(m_i, tl.max(s, 1))
    base = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m_i - base)
    p = tl.exp(s - base[:, None])
    l_new = l_i * alpha + tl.sum(p, 1)
    return p, alpha, m_new, l_new


@triton.jit
def softmax_epilogue(m_i, l_i):
    """(lse, 1 / l) of finished rows; an empty row (l == 0) gives -inf and
    0."""
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    lse = tl.where(empty, float("-inf"), m_i + tl.log(l_safe))
    inv = tl.where(empty, 0.0, 1.0 / l_safe)
    return lse, inv


@triton.jit
def finite_or_zero(shift):
    """The row shift (log-sum-exp or maximum) to subtract when computing
    probabilities: rows with a shift of -inf (no allowed key, all scores
    -inf) subtract 0 instead, so exp(-inf - 0) = 0 rather than NaN."""
    return tl.where(shift == float("-inf"), 0.0, shift)


@triton.jit
def mm_reg(a, b, acc, USE_DOT: tl.constexpr, PRECISION: tl.constexpr):
    """acc + a @ b for a [M, K] tile in registers (any float dtype) and a
    loaded [K, N] tile ``b``; ``a`` is cast to b's dtype for ``tl.dot``."""
    if USE_DOT:
        acc = tl.dot(a.to(b.dtype), b, acc, input_precision=PRECISION)
    else:
        acc += tl.sum(a.to(acc.dtype)[:, :, None]
                      * b.to(acc.dtype)[None, :, :], axis=1)
    return acc


@triton.jit
def mm_ptrs(acc, a_ptr, a_rows, a_sr, a_sk, a_ok, b_ptr, b_rows, b_sr, b_sk,
            b_ok, K, USE_DOT: tl.constexpr, PRECISION: tl.constexpr,
            BLOCK_K: tl.constexpr):
    """acc[r, c] + sum_k A[a_rows[r], k] * B[b_rows[c], k], both read from
    memory in chunks of BLOCK_K along k (chunked mode).

    ``a_ok``/``b_ok`` mask rows out of bounds; element (row, k) of A is at
    ``a_ptr + row * a_sr + k * a_sk``.
    """
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        k_ok = kk < K
        a = tl.load(a_ptr + a_rows[:, None] * a_sr + kk[None, :] * a_sk,
                    mask=a_ok[:, None] & k_ok[None, :], other=0.0)
        b = tl.load(b_ptr + kk[:, None] * b_sk + b_rows[None, :] * b_sr,
                    mask=k_ok[:, None] & b_ok[None, :], other=0.0)
        if USE_DOT:
            acc = tl.dot(a, b.to(a.dtype), acc, input_precision=PRECISION)
        else:
            acc += tl.sum(a.to(acc.dtype)[:, :, None]
                          * b.to(acc.dtype)[None, :, :], axis=1)
    return acc


@triton.jit
def mm_nt(a, a_base, a_rows, a_ok, sa_r, sa_k, b_base, b_rows, b_ok, sb_r,
          sb_k, rk, k_ok, K, ACC: tl.constexpr, USE_DOT: tl.constexpr,
          HOIST: tl.constexpr, PRECISION: tl.constexpr,
          BLOCK_K: tl.constexpr):
    """(A[a_rows, :] @ B[b_rows, :]^T, bt) in either mode; element (row, k)
    of A is at ``a_base + row * sa_r + k * sa_k``, likewise for B.

    Hoisted: ``a`` is A[a_rows, rk] in registers (rk the whole padded K),
    and bt = B^T[rk, b_rows] is loaded here and returned for kernels that
    use B again (see ``b_rows_tile``). Chunked: the product reads A and B
    from memory in chunks of BLOCK_K (``mm_ptrs``); ``a`` and bt are then
    placeholders.
    """
    if HOIST:
        bt = load_tile(b_base, rk, k_ok, sb_k, b_rows, b_ok, sb_r)
        s = tl.dot(a, bt.to(a.dtype), input_precision=PRECISION)
    else:
        bt = a
        s = mm_ptrs(tl.zeros([a_rows.shape[0], b_rows.shape[0]], ACC),
                    a_base, a_rows, sa_r, sa_k, a_ok, b_base, b_rows, sb_r,
                    sb_k, b_ok, K, USE_DOT, PRECISION, BLOCK_K)
    return s, bt


@triton.jit
def b_rows_tile(bt, b_base, r, r_ok, s_r, c, c_ok, s_c, HOIST: tl.constexpr):
    """B[r, c], the B of an ``mm_nt`` as the right operand of a later
    product: the transpose of its tile bt in hoisted mode (c covers the
    padded head dim there), else loaded."""
    if HOIST:
        tile = tl.trans(bt)
    else:
        tile = load_tile(b_base, r, r_ok, s_r, c, c_ok, s_c)
    return tile


# ---------------------------------------------------------------------------
# Row dot products: delta = rowsum(dO * O), r = rowsum(dP * P)
# ---------------------------------------------------------------------------

@triton.jit
def _rowdot_kernel(a_ptr, b_ptr, out_ptr, H, T, N,
                   sa_b, sa_h, sa_t, sa_n, sb_b, sb_h, sb_t, sb_n,
                   ACC: tl.constexpr, BLOCK_M: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    # One program: BLOCK_M rows t of one (batch, head); out is [B, H, T].
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < T
    a_base = a_ptr + b * sa_b + h * sa_h + rows[:, None] * sa_t
    b_base = b_ptr + b * sb_b + h * sb_h + rows[:, None] * sb_t
    acc = tl.zeros([BLOCK_M], ACC)
    for n0 in range(0, N, BLOCK_N):
        nn = n0 + tl.arange(0, BLOCK_N)
        ok = row_ok[:, None] & (nn < N)[None, :]
        x = tl.load(a_base + nn[None, :] * sa_n, mask=ok, other=0.0)
        y = tl.load(b_base + nn[None, :] * sb_n, mask=ok, other=0.0)
        acc += tl.sum(x.to(ACC) * y.to(ACC), 1)
    tl.store(out_ptr + bh.to(tl.int64) * T + rows, acc, mask=row_ok)


def rowdot(a: Tensor, b: Tensor, acc: torch.dtype) -> Tensor:
    """sum(a * b, -1) in dtype ``acc`` for [B, H, T, N] tensors of any
    strides (one program per BLOCK_M rows, a fixed summation order); the
    result is contiguous [B, H, T]."""
    B, H, T, N = a.shape
    out = torch.empty(B, H, T, dtype=acc, device=a.device)
    if out.numel() > 0:
        block_m = 16 if not a.is_cuda else 32
        block_n = min(128, pad_dim(N)) if a.is_cuda else min(64, pad_dim(N))
        with device_guard(a):
            _rowdot_kernel[(triton.cdiv(T, block_m), B * H)](
                a, b, out, H, T, N, *a.stride(), *b.stride(),
                ACC=tl_acc_dtype(acc), BLOCK_M=block_m, BLOCK_N=block_n)
    return out
