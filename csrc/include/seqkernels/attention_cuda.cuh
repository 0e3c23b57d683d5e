// Device building blocks shared by the CUDA attention kernels (sdpa.cu,
// attention_scores.cu, additive_attention.cu), and their host-side helpers:
// the CUDA backend's own argument rules, made around the checks every
// backend shares (attention_checks.h). CUDA only: include from .cu files.
// What the host emulation also compiles (parameters, masks, dropout key,
// row blocks) is in attention_math.h.
//
// The flash-style kernels share one layout:
//   - a block of kThreads = 4 warps owns BM = 4 * RPW query rows; warp w owns
//     rows w*RPW .. w*RPW + RPW - 1 of the block, so each row's softmax
//     statistics live in one warp (shuffles, no block barrier);
//   - a key tile has BN = 32 * NT keys; lane l handles keys l, l + 32, ...;
//   - tiles of K (or V) pass through a shared buffer [BN][kPad] one chunk of
//     kChunk = 32 columns at a time (the head dim is looped over in chunks,
//     so any head dim works); kPad = 33 keeps a warp reading a column of the
//     buffer free of bank conflicts;
//   - output accumulators live in registers: lane l owns columns
//     l + 32 c, c < NC, of each of its warp's rows. NC (column slots: 2, 4
//     or 8) is a template parameter chosen at launch from the head dims
//     (<= 64, <= 128, <= 256; see dispatch_col_slots), so that small heads
//     use few registers and little shared memory.
// Every sum runs in a fixed order (per-thread loops, xor-butterfly warp
// reductions whose result is the same in every lane): no atomics, results
// are bitwise reproducible.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "seqkernels/attention_math.h"

namespace seqkernels {
namespace attn {

constexpr int kChunk = 32;                    // columns per shared-memory chunk
constexpr int kPad = kChunk + 1;              // row pitch of chunk buffers
constexpr int kMaxHeadDim = 256;              // sdpa / attention_scores D, Dv
constexpr int kMaxColSlots = kMaxHeadDim / kWarpSize;

// Minimum resident blocks per SM promised to ptxas in __launch_bounds__ of
// the kernels with NC accumulator slots per row (kThreads threads): it caps
// registers at 65536 / (128 * blocks) per thread (4: 128, 3: 168, 2: 255).
// Without a promise ptxas picks its own cap and spills a little; these
// values keep every instantiation free of spills (ptxas -v, sm_90a and
// sm_80) at the highest occupancy that allows.
constexpr int rows_kernel_min_blocks(int nc) { return nc <= 2 ? 4 : 3; }

// Tile sizes per accumulation type, chosen so that every kernel's static
// shared memory stays under 48 KB (double takes twice the bytes).
template <typename acc_t>
struct FlashTile;
template <>
struct FlashTile<float> {
  static constexpr int kRowsPerWarp = 4;  // RPW
  static constexpr int kKeys = 64;        // BN
};
template <>
struct FlashTile<double> {
  static constexpr int kRowsPerWarp = 2;
  static constexpr int kKeys = 32;
};

// Every element of a register array set to x (accumulators, running maxima
// and sums before the first tile).
template <int R, typename T>
__device__ __forceinline__ void fill_regs(T (&a)[R], T x) {
#pragma unroll
  for (int r = 0; r < R; ++r) a[r] = x;
}

template <int R, int C, typename T>
__device__ __forceinline__ void fill_regs(T (&a)[R][C], T x) {
#pragma unroll
  for (int r = 0; r < R; ++r) fill_regs(a[r], x);
}

// Sum / max over the 32 lanes of a warp. The xor butterfly leaves the same
// bits in every lane (each step adds the same two values, commutatively).
// All 32 lanes must call.
template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) {
    x += __shfl_xor_sync(0xffffffffu, x, o);
  }
  return x;
}

template <typename T>
__device__ __forceinline__ T warp_max(T x) {
#pragma unroll
  for (int o = kWarpSize / 2; o > 0; o >>= 1) {
    x = max_of(x, __shfl_xor_sync(0xffffffffu, x, o));
  }
  return x;
}

// ---------------------------------------------------------------------------
// Shared-memory staging. All NTHREADS threads of a (1-D) block must call.

// dst[r * LD + c] = src[(row0 + r) * ld + col0 + c] for r < ROWS, c < kChunk,
// converted to acc_t; zero where row0 + r >= n_rows or col0 + c >= n_cols.
// Thread x copies column x % 32 of rows x / 32, x / 32 + NTHREADS / 32, ...:
// a warp reads 32 consecutive elements of a row.
template <int ROWS, int NTHREADS, int LD, typename src_t, typename acc_t>
__device__ __forceinline__ void load_chunk(acc_t* __restrict__ dst,
                                           const src_t* __restrict__ src,
                                           int64_t n_rows, int64_t n_cols,
                                           int64_t ld, int64_t row0,
                                           int64_t col0) {
  static_assert(NTHREADS % kChunk == 0, "whole warps per chunk row");
  constexpr int kRowStep = NTHREADS / kChunk;
  const int c = threadIdx.x % kChunk;
  const int r0 = threadIdx.x / kChunk;
  const bool col_ok = col0 + c < n_cols;
  int64_t off = (row0 + r0) * ld + col0 + c;  // only used when in range
  const int64_t step = int64_t(kRowStep) * ld;
#pragma unroll 4
  for (int r = r0; r < ROWS; r += kRowStep, off += step) {
    dst[r * LD + c] = (col_ok && row0 + r < n_rows)
                          ? static_cast<acc_t>(src[off])
                          : acc_t(0);
  }
}

// load_chunk (same arguments) between two block barriers: the first lets
// earlier readers of dst finish, the second makes the chunk visible to
// every warp.
template <int ROWS, int NTHREADS, int LD, typename... Args>
__device__ __forceinline__ void stage_chunk(Args... args) {
  __syncthreads();
  load_chunk<ROWS, NTHREADS, LD>(args...);
  __syncthreads();
}

// dst[r * LD + c] = src[(row0 + r) * n_cols + c] for r < ROWS, c < n_cols
// (n_cols <= LD): whole rows of a row-major [n_rows, n_cols] matrix; rows at
// or past n_rows are zero. Columns n_cols .. LD-1 are not written.
template <int ROWS, int NTHREADS, int LD, typename src_t, typename acc_t>
__device__ __forceinline__ void load_rows(acc_t* __restrict__ dst,
                                          const src_t* __restrict__ src,
                                          int64_t n_rows, int n_cols,
                                          int64_t row0) {
  for (int e = threadIdx.x; e < ROWS * n_cols; e += NTHREADS) {
    const int r = e / n_cols, c = e % n_cols;
    const int64_t gr = row0 + r;
    dst[r * LD + c] =
        gr < n_rows ? static_cast<acc_t>(src[gr * n_cols + c]) : acc_t(0);
  }
}

// ---------------------------------------------------------------------------
// Tile products of the flash layout.

// s[r][t] = sum_d rows[r][d] * M[j0 + lane + 32 t][d], d < n_cols, for the
// RPW rows of this warp. rows: this warp's first row in shared memory, pitch
// LDQ >= n_cols, valid columns < n_cols. M: row-major [n_keys, n_cols] in
// global memory (K for scores, V for dP); keys at or past n_keys give 0.
// buf: the block's [BN][kPad] chunk buffer. Synchronizes the block; every
// thread must call, and on return the buffer is still being read.
template <int RPW, int NT, int NTHREADS, int LDQ, typename scalar_t,
          typename acc_t>
__device__ __forceinline__ void rows_dot_keys(
    acc_t (&s)[RPW][NT], acc_t (*rows)[LDQ],
    acc_t (*buf)[kPad], const scalar_t* __restrict__ M, int64_t n_keys,
    int64_t n_cols, int64_t j0) {
  constexpr int BN = NT * kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  fill_regs(s, acc_t(0));
  for (int64_t d0 = 0; d0 < n_cols; d0 += kChunk) {
    stage_chunk<BN, NTHREADS, kPad>(&buf[0][0], M, n_keys, n_cols, n_cols, j0,
                                    d0);
    const int dn = static_cast<int>(min64(kChunk, n_cols - d0));
    const int dbase = static_cast<int>(d0);
    for (int dd = 0; dd < dn; ++dd) {
      acc_t kx[NT];
#pragma unroll
      for (int t = 0; t < NT; ++t) kx[t] = buf[lane + kWarpSize * t][dd];
#pragma unroll
      for (int r = 0; r < RPW; ++r) {
        const acc_t qx = rows[r][dbase + dd];
#pragma unroll
        for (int t = 0; t < NT; ++t) s[r][t] += qx * kx[t];
      }
    }
  }
}

// Row r of this warp's tile of dot products q_i . k_j (rows_dot_keys) made
// scores: s[t] = masked_score of row i = rb.i0 + rb.row0 + r and key
// j = j0 + lane + 32 t. One row at a time, as the sdpa kernels use each
// row (its softmax step, its probabilities) before masking the next.
template <typename scalar_t, int NT, typename acc_t>
__device__ __forceinline__ void mask_row(acc_t (&s)[NT],
                                         const FlashParams<acc_t>& p,
                                         const MaskView& mask,
                                         const RowBlock& rb, int r,
                                         int64_t j0) {
  const int64_t i = rb.i0 + rb.row0 + r;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    s[t] = masked_score<scalar_t>(s[t], p.scale, mask, p.causal, rb.b, rb.h,
                                  i, j0 + rb.lane + kWarpSize * t, p.Tq,
                                  p.Tk);
  }
}

// o[r][c] += sum_jj w[r][jj] * M[j0 + jj][col0 + 32 c + lane] for this warp's
// rows: the probability (or dS) tile times a tile of V (or K). w: this
// warp's [RPW][BN] weights in shared memory, written by the warp before the
// call. M: row-major [n_keys, ld] in global memory; columns col0 .. col0 +
// 32 * NC - 1 that are < n_cols are used, the others give 0.
// Synchronizes the block; every thread must call.
template <int RPW, int BN, int NC, int NTHREADS, typename scalar_t,
          typename acc_t>
__device__ __forceinline__ void weights_times_tile(
    acc_t (&o)[RPW][NC], acc_t (*w)[BN], acc_t (*buf)[kPad],
    const scalar_t* __restrict__ M, int64_t n_keys, int64_t n_cols,
    int64_t ld, int64_t j0, int64_t col0) {
  const int lane = threadIdx.x % kWarpSize;
  const int jn = static_cast<int>(min64(BN, n_keys - j0));
#pragma unroll
  for (int c = 0; c < NC; ++c) {
    const int64_t cbase = col0 + int64_t(c) * kChunk;
    if (cbase < n_cols) {  // the same in every thread of the block
      stage_chunk<BN, NTHREADS, kPad>(&buf[0][0], M, n_keys, n_cols, ld, j0,
                                      cbase);
      for (int jj = 0; jj < jn; ++jj) {
        const acc_t vx = buf[jj][lane];
#pragma unroll
        for (int r = 0; r < RPW; ++r) o[r][c] += w[r][jj] * vx;
      }
    }
  }
}

// One online-softmax step for a row of this warp. In: s[t] the masked
// scores of the tile (-inf where not allowed); m, l the running max and sum.
// Out: s[t] = exp(s[t] - m_new) (0 where -inf, all 0 while every score so
// far is -inf), m and l updated; returns the factor by which accumulators
// of the previous tiles must be multiplied. Every lane must call; the result
// is the same in every lane.
template <int NT, typename acc_t>
__device__ __forceinline__ acc_t online_softmax_step(acc_t (&s)[NT], acc_t& m,
                                                     acc_t& l) {
  acc_t tile_max = s[0];
#pragma unroll
  for (int t = 1; t < NT; ++t) tile_max = max_of(tile_max, s[t]);
  tile_max = warp_max(tile_max);
  const acc_t m_new = max_of(m, tile_max);
  if (m_new == neg_inf<acc_t>()) {  // nothing allowed yet: l = 0, acc = 0
#pragma unroll
    for (int t = 0; t < NT; ++t) s[t] = acc_t(0);
    return acc_t(1);
  }
  const acc_t alpha = sk_exp(m - m_new);  // m = -inf gives 0
  acc_t sum = acc_t(0);
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    s[t] = sk_exp(s[t] - m_new);
    sum += s[t];
  }
  l = l * alpha + warp_sum(sum);
  m = m_new;
  return alpha;
}

// prob_from_lse and prob_from_max (a probability from its row's
// log-sum-exp, or from its maximum and 1 / sum) are in attention_math.h:
// the host emulation of the tensor-core kernels shares them.

// out[row] = sum_c a[row, c] * b[row, c] over n columns; one warp per row.
// a, b: [rows, n] row-major. Launch with 1-D blocks of kThreads.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    row_dot_kernel(int64_t rows, int64_t n, const scalar_t* __restrict__ a,
                   const scalar_t* __restrict__ b, acc_t* __restrict__ out) {
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  for (int64_t row = int64_t(blockIdx.x) * kWarps + warp; row < rows;
       row += int64_t(gridDim.x) * kWarps) {
    acc_t acc = acc_t(0);
    for (int64_t c = lane; c < n; c += kWarpSize) {
      acc += static_cast<acc_t>(a[row * n + c]) *
             static_cast<acc_t>(b[row * n + c]);
    }
    acc = warp_sum(acc);
    if (lane == 0) out[row] = acc;
  }
}

// ---------------------------------------------------------------------------
// Host helpers.

// Blocks of a 1-D grid; every kernel folds its batch/head dims into x.
inline unsigned int grid_blocks(int64_t n, const char* what) {
  TORCH_CHECK(n >= 0 && n <= int64_t(std::numeric_limits<int32_t>::max()),
              "seqkernels: ", what, ": problem too large for one launch (",
              n, " blocks)");
  return static_cast<unsigned int>(n);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grid of a kernel with a warp per row looping over rows (row_dot_kernel,
// attention_scores_ds_kernel): capped, since more blocks only queue.
inline unsigned int warp_per_row_blocks(int64_t rows, const char* what) {
  return grid_blocks(std::min<int64_t>(ceil_div(rows, kWarps),
                                       int64_t(1) << 20),
                     what);
}

// Calls f(std::integral_constant<int, NC>()) with NC = 2, 4 or 8 column
// slots per lane: the fewest that hold `cols` (<= kMaxHeadDim) columns.
template <typename F>
void dispatch_col_slots(int64_t cols, F&& f) {
  if (cols <= 2 * kWarpSize) {
    f(std::integral_constant<int, 2>());
  } else if (cols <= 4 * kWarpSize) {
    f(std::integral_constant<int, 4>());
  } else {
    TORCH_CHECK(cols <= kMaxHeadDim, "seqkernels: internal: head dim ", cols);
    f(std::integral_constant<int, kMaxColSlots>());
  }
}

// The CUDA backend's rules on q, checked before the shared checks of
// attention_checks.h (which then hold every other tensor to q's dtype and
// device): a CUDA tensor of a dtype the kernels are instantiated for.
inline void check_cuda_q(const at::Tensor& q) {
  TORCH_CHECK(q.is_cuda(), "seqkernels: q must be a CUDA tensor, got ",
              q.device());
  const at::ScalarType t = q.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kHalf || t == at::kBFloat16 ||
                  t == at::kDouble,
              "seqkernels: q must be float32, float16, bfloat16 or float64, "
              "got ", t);
}

// A head dim the register tiles hold (dispatch_col_slots), checked after
// the shared checks.
inline void check_head_dim(int64_t dim, const char* name) {
  TORCH_CHECK(dim >= 1 && dim <= kMaxHeadDim, "seqkernels: the head dim of ",
              name, " must be in [1, ", kMaxHeadDim, "], got ", dim);
}

// rng, checked by check_dropout, as the kernels read it (dropout_key_from):
// in device memory, contiguous; undefined without dropout. The CPU kernels
// copy it to the host instead, so its device is a CUDA-side rule.
inline at::Tensor device_rng(double dropout_p,
                             const c10::optional<at::Tensor>& rng,
                             const at::Tensor& q) {
  if (dropout_p == 0.0) return at::Tensor();
  TORCH_CHECK(rng->device() == q.device(), "seqkernels: rng must be on the "
              "device of q (", q.device(), "), got ", rng->device());
  return rng->contiguous();
}

}  // namespace attn
}  // namespace seqkernels
