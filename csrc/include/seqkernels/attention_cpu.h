// Pieces shared by the CPU attention kernels (csrc/cpu/sdpa.cpp,
// attention_scores.cpp, additive_attention.cpp): the operands in the
// accumulation dtype, a strided view of the (expanded) mask, the dropout
// view, and a small blocked matrix product for the tiles of a flash-style
// loop.
//
// The kernels compute in float32 or float64 only. A float16 or bfloat16
// operand is converted to float32 once per op (to_acc, mask_to_acc) and the
// results are rounded to the storage dtype once at the end (the saved lse
// and stats stay float32): every product, sum and exp then runs in float32,
// the accumulation the GPU kernels use, with one kernel per dtype instead of
// kernels templated on a storage and a compute type.
//
// The dot-product kernels work on tiles: a block of at most kBlockQ query
// rows against a block of at most kBlockK keys. Tile products run through
// block_gemm, whose every output element is the sum over k in increasing
// order (then added to C): the result never depends on the tiling of the
// output or on the number of threads. The tile loops are compiled per
// instruction set (cpu_isa.h).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "seqkernels/attention_checks.h"
#include "seqkernels/cpu_isa.h"
#include "seqkernels/cpu_math.h"
#include "seqkernels/dropout_hash.h"

namespace seqkernels {
namespace cpu {

constexpr int64_t kBlockQ = 64;  // query rows of a work item
constexpr int64_t kBlockK = 64;  // keys of an inner block

// t in its accumulation dtype (float32 for float16 and bfloat16), contiguous;
// t itself where it already is both.
inline at::Tensor to_acc(const at::Tensor& t) {
  return t.to(acc_dtype(t.scalar_type())).contiguous();
}

// A float mask in its accumulation dtype with its broadcast kept: the
// dimensions it was expanded along (stride 0) are converted once and
// expanded again, so an expanded [1, 1, Tq, Tk] mask is not materialized at
// [B, H, Tq, Tk]. A bool mask, or one already in that dtype, is returned as
// it is.
inline c10::optional<at::Tensor> mask_to_acc(
    const c10::optional<at::Tensor>& mask) {
  if (!mask.has_value() || mask->scalar_type() == at::kBool ||
      acc_dtype(mask->scalar_type()) == mask->scalar_type()) {
    return mask;
  }
  at::Tensor base = *mask;
  for (int64_t dim = 0; dim < base.dim(); ++dim) {
    if (base.stride(dim) == 0 && base.size(dim) > 1) {
      base = base.narrow(dim, 0, 1);
    }
  }
  return base.to(acc_dtype(base.scalar_type())).expand(mask->sizes());
}

template <typename T>
constexpr T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// The mask read in place through its strides (an expanded mask has zero
// strides; it is never copied). 4-D masks are indexed (b, h, i, j); 3-D
// masks (additive attention) (b, i, j), with h ignored.
template <typename T>
struct MaskView {
  const bool* allowed = nullptr;  // bool mask: true = attend
  const T* added = nullptr;       // float mask: added to the scores
  int64_t sb = 0, sh = 0, si = 0, sj = 0;

  static MaskView make(const c10::optional<at::Tensor>& mask) {
    MaskView m;
    if (!mask.has_value()) return m;
    const at::Tensor& t = *mask;
    const bool four = t.dim() == 4;
    m.sb = t.stride(0);
    m.sh = four ? t.stride(1) : 0;
    m.si = t.stride(four ? 2 : 1);
    m.sj = t.stride(four ? 3 : 2);
    if (t.scalar_type() == at::kBool) {
      m.allowed = t.data_ptr<bool>();
    } else {
      m.added = t.data_ptr<T>();
    }
    return m;
  }

  // Offset of row (b, h, i).
  int64_t row(int64_t b, int64_t h, int64_t i) const {
    return b * sb + h * sh + i * si;
  }

  bool is_bool() const { return allowed != nullptr; }
  bool key_allowed(int64_t row_off, int64_t j) const {
    return allowed == nullptr || allowed[row_off + j * sj];
  }

  // Masks the scores s[0, n) of keys j0, j0+1, ... of the row at row_off.
  void apply(T* s, int64_t n, int64_t row_off, int64_t j0) const {
    if (allowed != nullptr) {
      const bool* m = allowed + row_off + j0 * sj;
      for (int64_t jj = 0; jj < n; ++jj) {
        if (!m[jj * sj]) s[jj] = neg_inf<T>();
      }
    } else if (added != nullptr) {
      const T* m = added + row_off + j0 * sj;
      for (int64_t jj = 0; jj < n; ++jj) s[jj] += m[jj * sj];
    }
  }
};

// The scores of keys j0.. of query row i, in place: s = s * scale, then the
// mask, then the causal rule (key j allowed iff j <= i).
template <typename T>
SK_CPU_KERNEL inline void scale_and_mask(T* s, int64_t n, T scale, const MaskView<T>& mask,
                           int64_t row_off, int64_t i, int64_t j0,
                           bool is_causal) {
  for (int64_t jj = 0; jj < n; ++jj) s[jj] *= scale;
  mask.apply(s, n, row_off, j0);
  if (is_causal) {
    for (int64_t jj = std::max<int64_t>(i + 1 - j0, 0); jj < n; ++jj) {
      s[jj] = neg_inf<T>();
    }
  }
}

// Counter-based dropout (seqkernels/dropout_hash.h): element `index` of the
// [B, Hq, Tq, Tk] probabilities is kept iff its uniform >= p (p compared as
// float32), and kept ones are scaled by 1 / (1 - p).
template <typename T>
struct DropoutView {
  bool on = false;
  uint32_t key = 0;
  float p = 0.0f;
  T rescale = 1;

  static DropoutView make(double dropout_p,
                          const c10::optional<at::Tensor>& rng) {
    DropoutView d;
    if (dropout_p == 0.0) return d;
    const at::Tensor r = rng->to(at::kCPU).contiguous();
    const int64_t* sv = r.data_ptr<int64_t>();
    d.on = true;
    d.key = dropout_key(sv[0], sv[1]);
    d.p = static_cast<float>(dropout_p);
    d.rescale = static_cast<T>(1.0 / (1.0 - dropout_p));
    return d;
  }

  // x if element `index` is kept, scaled; else 0.
  T apply(T x, int64_t index) const {
    return dropout_keep(key, index, p) ? x * rescale : T(0);
  }
};

// C[m, n] = (accumulate ? C[m, n] : 0) + sum_k A(m, k) B[k, n], k in
// increasing order, for m < M, n < N. A(m, k) = A[m * a_m + k * a_k] (so A
// or its transpose, row-major); B row-major with leading dimension ldb; C
// must not overlap A or B.
// Register tiles of 4 rows by 128 bytes of columns: each panel of 4 rows of
// A is first packed k-major, and the inner loops run over contiguous
// columns of B so that the compiler vectorizes them. The tile width decides
// whether GCC keeps the accumulators in registers: on a 64x64x64 float tile
// (one thread, AMD development machine) 128 bytes ran at 37, 75 and 244
// GFLOP/s in the baseline, AVX2 and AVX-512 copies; 32 bytes at 26, 45 and
// 4, and 64 bytes below 13 in all three.
template <typename T>
SK_CPU_KERNEL inline void block_gemm(int64_t M, int64_t N, int64_t K, const T* A,
                       int64_t a_m, int64_t a_k, const T* B, int64_t ldb,
                       T* C, int64_t ldc, bool accumulate) {
  constexpr int MR = 4;
  constexpr int NR = 128 / static_cast<int>(sizeof(T));
  constexpr int64_t kStackK = 256;
  auto store = [&](int64_t m, int64_t n, T acc) {
    T& c = C[m * ldc + n];
    c = accumulate ? c + acc : acc;
  };
  T stack_panel[MR * kStackK];
  std::vector<T> heap_panel;
  T* panel = stack_panel;
  if (K > kStackK && M >= MR) {
    heap_panel.resize(MR * K);
    panel = heap_panel.data();
  }
  int64_t m = 0;
  for (; m + MR <= M; m += MR) {
    for (int64_t k = 0; k < K; ++k) {  // panel[k][r] = A(m + r, k)
      for (int r = 0; r < MR; ++r) {
        panel[k * MR + r] = A[(m + r) * a_m + k * a_k];
      }
    }
    int64_t n = 0;
    for (; n + NR <= N; n += NR) {
      T acc[MR][NR] = {};
      for (int64_t k = 0; k < K; ++k) {
        const T* b = B + k * ldb + n;
        const T* ak = panel + k * MR;
        for (int r = 0; r < MR; ++r) {
          const T ar = ak[r];
          for (int c = 0; c < NR; ++c) acc[r][c] += ar * b[c];
        }
      }
      for (int r = 0; r < MR; ++r) {
        for (int c = 0; c < NR; ++c) store(m + r, n + c, acc[r][c]);
      }
    }
    for (; n < N; ++n) {
      T acc[MR] = {};
      for (int64_t k = 0; k < K; ++k) {
        const T bk = B[k * ldb + n];
        const T* ak = panel + k * MR;
        for (int r = 0; r < MR; ++r) acc[r] += ak[r] * bk;
      }
      for (int r = 0; r < MR; ++r) store(m + r, n, acc[r]);
    }
  }
  for (; m < M; ++m) {
    const T* a = A + m * a_m;
    int64_t n = 0;
    for (; n + NR <= N; n += NR) {
      T acc[NR] = {};
      for (int64_t k = 0; k < K; ++k) {
        const T ak = a[k * a_k];
        const T* b = B + k * ldb + n;
        for (int c = 0; c < NR; ++c) acc[c] += ak * b[c];
      }
      for (int c = 0; c < NR; ++c) store(m, n + c, acc[c]);
    }
    for (; n < N; ++n) {
      T acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += a[k * a_k] * B[k * ldb + n];
      store(m, n, acc);
    }
  }
}

// dst[c * ld_dst + r] = src[r * ld_src + c] for r < rows, c < cols.
template <typename T>
SK_CPU_KERNEL inline void transpose_block(int64_t rows, int64_t cols, const T* src,
                            int64_t ld_src, T* dst, int64_t ld_dst) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      dst[c * ld_dst + r] = src[r * ld_src + c];
    }
  }
}

// A work item of the loops over query blocks (sdpa forward and backward
// pass 1, attention_scores forward and backward pass 1): (b, h, block of
// kBlockQ query rows), numbered w with the query block fastest.
struct QueryBlock {
  int64_t bh;   // b * Hq + h
  int64_t b, h;
  int64_t i0;   // first row
  int64_t nq;   // rows: kBlockQ, fewer in the last block
  int64_t kvh;  // b * Hk + the kv head of h
};

inline int64_t query_blocks(int64_t Tq) { return (Tq + kBlockQ - 1) / kBlockQ; }

inline QueryBlock query_block(int64_t w, const AttentionDims& d) {
  const int64_t n_qblocks = query_blocks(d.Tq);
  QueryBlock qb;
  qb.bh = w / n_qblocks;
  qb.b = qb.bh / d.Hq;
  qb.h = qb.bh % d.Hq;
  qb.i0 = (w % n_qblocks) * kBlockQ;
  qb.nq = std::min(kBlockQ, d.Tq - qb.i0);
  qb.kvh = qb.b * d.Hk + qb.h / (d.Hq / d.Hk);
  return qb;
}

// Every block of kBlockK rows of x [heads, Tn, D] transposed: block kb of
// head h is [D][kBlockK] at offset block_offset(h * blocks + kb, D). The
// tile loops read a key block's transpose from here instead of transposing
// it again for every block of queries (a fifth of the attention-scores
// kernel's time at B=2, heads=4, T=256).
inline int64_t key_blocks(int64_t Tn) { return (Tn + kBlockK - 1) / kBlockK; }
inline int64_t block_offset(int64_t block, int64_t D) {
  return block * D * kBlockK;
}

template <typename T>
std::vector<T> transposed_blocks(const T* x, int64_t heads, int64_t Tn,
                                 int64_t D) {
  const int64_t blocks = key_blocks(Tn);
  std::vector<T> out(heads * blocks * D * kBlockK);
  at::parallel_for(0, heads * blocks, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t j0 = (w % blocks) * kBlockK;
      transpose_block(std::min(kBlockK, Tn - j0), D,
                      x + ((w / blocks) * Tn + j0) * D, D,
                      out.data() + block_offset(w, D), kBlockK);
    }
  });
  return out;
}

// A row's maximum, and (exp_and_sum) s[j] = exp(s[j] - m) in place with
// their sum: kLanes partial maxima and sums, combined in a fixed order (a
// single running max or sum is a chain of dependent steps that the
// compiler may not reorder into vector lanes). Inlined into the kernels
// that call them (flatten: their instruction set's copy).
constexpr int kLanes = 16;

template <typename T>
inline T row_max(const T* s, int64_t n) {
  T lane[kLanes];
  std::fill(lane, lane + kLanes, neg_inf<T>());
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int q = 0; q < kLanes; ++q) lane[q] = std::max(lane[q], s[j + q]);
  }
  T mx = neg_inf<T>();
  for (int q = 0; q < kLanes; ++q) mx = std::max(mx, lane[q]);
  for (; j < n; ++j) mx = std::max(mx, s[j]);
  return mx;
}

template <typename T>
inline T exp_and_sum(T* s, int64_t n, T m) {
  for (int64_t j = 0; j < n; ++j) s[j] = cpu_math::exp(s[j] - m);
  T lane[kLanes];
  std::fill(lane, lane + kLanes, T(0));
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    for (int q = 0; q < kLanes; ++q) lane[q] += s[j + q];
  }
  T sum = 0;
  for (int q = 0; q < kLanes; ++q) sum += lane[q];
  for (; j < n; ++j) sum += s[j];
  return sum;
}

// Online softmax of one row over blocks of keys. The row's state is the
// running max m and the running sum l of exp(s - m); update() turns the
// block's scores into exp(s - m_new) in place and returns the factor by
// which earlier accumulations must be rescaled (1 when nothing changed).
// A row whose keys are all masked so far keeps m = -inf, l = 0, and its
// block becomes zeros.
template <typename T>
SK_CPU_KERNEL inline T online_softmax_update(T* s, int64_t n, T& m, T& l) {
  const T m_new = std::max(m, row_max(s, n));
  if (m_new == neg_inf<T>()) {
    std::fill(s, s + n, T(0));
    return T(1);
  }
  const T alpha = cpu_math::exp(m - m_new);  // 0 when m was -inf
  l = l * alpha + exp_and_sum(s, n, m_new);
  m = m_new;
  return alpha;
}

// out[j] = exp(s[j] - m) / l for j < n: probabilities from a row's scores,
// their maximum m and l = sum exp(s - m); a row with no allowed key (l = 0)
// gives 0. Not exp(s - lse): lse = m + log(l) is rounded at the magnitude of
// m, and exp turns that into a relative error of |m| * eps in every
// probability of the row, where s - m is exact near the maximum.
// out may be s (in place).
template <typename T>
SK_CPU_KERNEL inline void probs_from_max(T* out, const T* s, int64_t n, T m,
                                         T l) {
  if (!(l > T(0))) {
    std::fill(out, out + n, T(0));
    return;
  }
  const T inv = T(1) / l;
  for (int64_t j = 0; j < n; ++j) out[j] = cpu_math::exp(s[j] - m) * inv;
}

// The softmax of a whole row of scores in place: s[j] = exp(s[j] - m) / l
// with m the row's maximum and l = sum exp(s - m); a row with no allowed
// key gives 0.
template <typename T>
SK_CPU_KERNEL inline void softmax_in_place(T* s, int64_t n) {
  const T m = row_max(s, n);
  if (m == neg_inf<T>()) {
    std::fill(s, s + n, T(0));
    return;
  }
  const T inv = T(1) / exp_and_sum(s, n, m);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

// log-sum-exp of a finished row: -inf when every key was masked.
template <typename T>
inline T row_lse(T m, T l) {
  return l > T(0) ? m + std::log(l) : neg_inf<T>();
}

// Keys [0, limit) that query row i may see under the causal rule.
inline int64_t causal_keys(bool is_causal, int64_t i, int64_t Tk) {
  return is_causal ? std::min(Tk, i + 1) : Tk;
}

}  // namespace cpu
}  // namespace seqkernels
