// The pieces of the CUDA attention kernels that compile for both the GPU
// (nvcc) and the host: the block layout's constants, the kernels'
// parameters, the masks' semantics (masked_score), the dropout key, the
// finished log-sum-exp, the probability from its row's maximum, the
// row-block mapping (GQA included), and the host helpers that build them
// from tensors. attention_cuda.cuh (the SIMT kernels' building blocks, CUDA
// only) and the tensor-core kernels (sdpa_tensor_core.h,
// attention_scores_tensor_core.h; also run on the CPU by the host
// emulation) share
// them, so that both kernels and the emulation read masks, draw dropout and
// map blocks by the same code.
#pragma once

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "seqkernels/attention_checks.h"
#include "seqkernels/dropout_hash.h"
#include "seqkernels/host_device.h"

namespace seqkernels {
namespace attn {

constexpr int kWarpSize = 32;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * kWarpSize;  // threads of a flash-style block

// Shapes and scalars of the dot-product attention kernels (sdpa,
// attention_scores): q [B,Hq,Tq,D], k [B,Hk,Tk,D], v [B,Hk,Tk,Dv].
template <typename acc_t>
struct FlashParams {
  int64_t B, Hq, Hk, Tq, Tk, D, Dv;
  int64_t n_blocks;  // blocks per head: query-row blocks, or key blocks
  acc_t scale;
  acc_t inv_keep;    // 1 / (1 - dropout_p); 1 without dropout
  float dropout_p;   // compared as float, as the reference does
  bool causal;
  bool dropout;      // dropout_p > 0
};


// ---------------------------------------------------------------------------
// Math wrappers (accurate library functions; no fast-math intrinsics).

SK_HD float sk_exp(float x) { return expf(x); }
SK_HD double sk_exp(double x) { return exp(x); }
SK_HD float sk_log(float x) { return logf(x); }
SK_HD double sk_log(double x) { return log(x); }
SK_HD float sk_tanh(float x) { return tanhf(x); }
SK_HD double sk_tanh(double x) { return tanh(x); }

template <typename T>
SK_HD T neg_inf() {
#if defined(__CUDA_ARCH__)
  if constexpr (sizeof(T) == 4) {
    return -__int_as_float(0x7f800000);
  } else {
    return -__longlong_as_double(0x7ff0000000000000LL);
  }
#else
  return -std::numeric_limits<T>::infinity();
#endif
}

SK_HD int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

template <typename T>
SK_HD T max_of(T a, T b) {
  return a > b ? a : b;
}

// ---------------------------------------------------------------------------
// Masks. The mask is read through its strides (a broadcast dimension has
// stride 0), never copied. Logical shape [B, H, Tq, Tk]; additive attention
// uses H = 1 (sh = 0).

enum MaskKind : int { kMaskNone = 0, kMaskBool = 1, kMaskFloat = 2 };

struct MaskView {
  const void* ptr = nullptr;
  int kind = kMaskNone;
  int64_t sb = 0, sh = 0, si = 0, sj = 0;
};

// Masked, scaled score of query i and key j: -inf where not allowed (outside
// [0,Tq) x [0,Tk), a False bool mask entry, j > i under is_causal), else
// dot * scale plus the float mask entry. The mask is read only inside the
// bounds. Float masks have the element type scalar_t.
template <typename scalar_t, typename acc_t>
SK_HD acc_t masked_score(acc_t dot, acc_t scale,
                                              const MaskView& mask,
                                              bool causal, int64_t b,
                                              int64_t h, int64_t i, int64_t j,
                                              int64_t Tq, int64_t Tk) {
  if (i >= Tq || j >= Tk || (causal && j > i)) return neg_inf<acc_t>();
  acc_t x = dot * scale;
  if (mask.kind != kMaskNone) {
    const int64_t off = b * mask.sb + h * mask.sh + i * mask.si + j * mask.sj;
    if (mask.kind == kMaskBool) {
      if (static_cast<const uint8_t*>(mask.ptr)[off] == 0) {
        return neg_inf<acc_t>();
      }
    } else {
      x += static_cast<acc_t>(static_cast<const scalar_t*>(mask.ptr)[off]);
    }
  }
  return x;
}

// ---------------------------------------------------------------------------
// Dropout: the per-launch key comes from rng = [seed, offset] (int64, in
// the kernel's memory), read here, in the kernel: no host synchronization.
SK_HD uint32_t dropout_key_from(const int64_t* rng) {
  return rng == nullptr ? 0u : dropout_key(rng[0], rng[1]);
}


// Log-sum-exp of a finished row: -inf for a row with no allowed key.
template <typename acc_t>
SK_HD acc_t finish_lse(acc_t m, acc_t l) {
  return l > acc_t(0) ? m + sk_log(l) : neg_inf<acc_t>();
}

// Probability from a score and its row's log-sum-exp; 0 for an empty row
// (lse -inf) and for a masked score.
template <typename acc_t>
SK_HD acc_t prob_from_lse(acc_t x, acc_t lse) {
  return lse == neg_inf<acc_t>() ? acc_t(0) : sk_exp(x - lse);
}
// Probability from a score, its row's maximum m and 1 / l (l = sum of
// exp(s - m)); 0 for an empty row (inv_l = 0). Where the probabilities are
// an output, this beats exp(x - lse): lse = m + log(l) is rounded at the
// magnitude of m, which exp turns into a relative error of |m| * eps in
// every probability of the row, while x - m is exact near the maximum.
template <typename acc_t>
SK_HD acc_t prob_from_max(acc_t x, acc_t m, acc_t inv_l) {
  return inv_l == acc_t(0) ? acc_t(0) : sk_exp(x - m) * inv_l;
}


// ---------------------------------------------------------------------------
// Where a block of the query-row kernels (sdpa forward and dQ,
// attention_scores forward, the tensor-core sdpa forward) stands: BM query
// rows of one (b, h), grid x = n_blocks * B * Hq with the row blocks
// fastest; `block` and `thread` are the block's and the thread's (1-D)
// indices.
struct RowBlock {
  int warp, lane;
  int row0;     // the warp's first row within the block
  int64_t bh;   // b * Hq + h
  int64_t b, h;
  int64_t bhk;  // b * Hk + the kv head of h
  int64_t i0;   // the block's first query row
};

// (Unsigned indices, as blockIdx and threadIdx are: their division by the
// warp size is a shift.)
template <int BM, typename acc_t>
SK_HD RowBlock row_block(const FlashParams<acc_t>& p, unsigned block,
                         unsigned thread) {
  RowBlock rb;
  rb.warp = static_cast<int>(thread / kWarpSize);
  rb.lane = static_cast<int>(thread % kWarpSize);
  rb.row0 = rb.warp * (BM / kWarps);
  rb.bh = int64_t(block) / p.n_blocks;
  rb.b = rb.bh / p.Hq;
  rb.h = rb.bh % p.Hq;
  rb.bhk = rb.b * p.Hk + rb.h / (p.Hq / p.Hk);
  rb.i0 = (int64_t(block) % p.n_blocks) * BM;
  return rb;
}

// ---------------------------------------------------------------------------
// Host helpers.

template <typename acc_t>
FlashParams<acc_t> make_flash_params(const AttentionDims& d, double dropout_p,
                                     bool is_causal, double scale) {
  FlashParams<acc_t> p;
  p.B = d.B;
  p.Hq = d.Hq;
  p.Tq = d.Tq;
  p.D = d.D;
  p.Hk = d.Hk;
  p.Tk = d.Tk;
  p.Dv = d.Dv;
  p.n_blocks = 0;
  p.scale = static_cast<acc_t>(scale);
  p.inv_keep = static_cast<acc_t>(1.0 / (1.0 - dropout_p));
  p.dropout_p = static_cast<float>(dropout_p);
  p.causal = is_causal;
  p.dropout = dropout_p > 0.0;
  return p;
}


template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// The kernels' view of a mask that check_attn_mask passed: its own strides
// (0 along broadcast dims), [B, H, Tq, Tk] or, for additive attention,
// [B, Tq, Tk] (sh = 0). The mask is read in place.
inline MaskView make_mask_view(const c10::optional<at::Tensor>& mask) {
  MaskView view;
  if (!mask.has_value()) return view;
  const at::Tensor& m = *mask;
  const bool four = m.dim() == 4;
  view.ptr = m.data_ptr();
  view.kind = m.scalar_type() == at::kBool ? kMaskBool : kMaskFloat;
  view.sb = m.stride(0);
  view.sh = four ? m.stride(1) : 0;
  view.si = m.stride(four ? 2 : 1);
  view.sj = m.stride(four ? 3 : 2);
  return view;
}


}  // namespace attn
}  // namespace seqkernels
