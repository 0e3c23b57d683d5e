// The tensor-core forward of the attention probabilities (the op
// attention_scores, float16 and bfloat16): P = softmax(scale q k^T + mask)
// in q's dtype, as the SIMT kernel (csrc/cuda/attention_scores.cu) writes
// it, with Q K^T on mma.sync m16n8k16 (float accumulation) and P written
// once with 16-byte stores. One source for the GPU
// (csrc/cuda/attention_scores_tensor_core.cu) and for the host emulation
// that runs it on the CPU in CI (csrc/emulation/
// attention_scores_tensor_core.cpp). Opt-in, by the rule of
// sdpa_tensor_core.h (attention_scores_forward_kernel:
// SEQKERNELS_ATTENTION=tensor_core, float16/bfloat16, D <= kMaxDim), until
// a GPU run has passed it (tests/test_attention_scores_tensor_core_cuda.py).
// The backward stays the SIMT one (attention_scores.cu: dS by a warp per
// row, dQ and dK by cuBLAS), which takes P whichever forward wrote it.
//
// Layout: the sdpa forward's (sdpa_tensor_core.h): a block of 4 warps owns
// kRows = 64 query rows of one (b, h) (GQA maps h to its kv head), warp w
// rows 16 w .. 16 w + 15, Q's rows held as A fragments for the whole block,
// K tiles of kKeys = 64 keys staged in shared memory, D padded to DP = 64
// or 128. Two passes over the key tiles:
//   1. S = Q K^T, scaled and masked (attn::masked_score), and the online
//      row maximum m and sum l (the forward's online_step; no P written);
//      under is_causal only the tiles up to the block's last row;
//   2. S recomputed tile by tile and P = exp(s - m) / l (attn::
//      prob_from_max, which says why not exp(s - lse)), rounded to q's
//      dtype into the warp's 16 rows of a P tile in shared memory, which
//      the warp's lanes then write out 16 contiguous bytes (8 keys) each,
//      8 lanes a 128-byte row: each row of P is written once, in full
//      lines. The tiles past the block's last row under is_causal are
//      written as zeros without scores. A row with no allowed key is 0.
// The 16-byte stores need Tk % 8 == 0 (every row of P starts 16-byte
// aligned); otherwise each lane writes its 8 keys one element at a time,
// from the same staged tile.
// Shared memory (dynamic): the K tile (which first holds Q), rows padded by
// 8 elements as in the sdpa forward, and the P tile [kRows][kLdP]: its
// pitch of 72 elements puts the 32 lanes' 4-byte fragment writes in 32
// distinct banks, and each 8-lane phase of the 16-byte reads in one row.
// 18,432 bytes at DP = 64, 26,624 at DP = 128.
#pragma once

#include <cstdint>
#include <cstring>

#include "seqkernels/sdpa_tensor_core.h"

namespace seqkernels {
namespace sdpa_tc {

constexpr int kLdP = kKeys + 8;  // pitch of the P tile, in elements

// Shared memory of a probabilities block, in 16-bit elements: the K tile
// [kKeys][kLdK], then the P tile [kRows][kLdP].
template <int DP>
struct ProbsSmem {
  static constexpr int kLdK = DP + 8;
  static constexpr int kP = kKeys * kLdK;  // offset of the P tile
  static constexpr int kBytes = 2 * (kP + kRows * kLdP);
};

// The lanes of a warp wait for each other, their shared-memory writes
// before it seen by the warp after it.
SK_DEVICE void warp_sync() {
#if defined(__CUDACC__)
  __syncwarp();
#else
  (void)emu::warp_exchange(0);  // a barrier of the warp's lanes
#endif
}

// The two 16-bit elements of v (lo first) at dst, 4-byte aligned.
SK_DEVICE void store_pair(uint16_t* dst, uint32_t v) {
#if defined(__CUDACC__)
  *reinterpret_cast<uint32_t*>(dst) = v;
#else
  std::memcpy(dst, &v, sizeof(v));
#endif
}

// Writes the warp's 16 rows of the tile of keys j0 .. j0 + kKeys - 1 of P
// [B,Hq,Tq,Tk] from pt (the block's P tile), or zeros where pt is null:
// each lane 8 keys of a row at a time, as one 16-byte store where vec (Tk %
// 8 == 0, P 16-byte aligned), else element by element. Rows >= Tq and keys
// >= Tk are not written.
template <typename scalar_t>
SK_DEVICE void store_p_tile(scalar_t* __restrict__ probs, const uint16_t* pt,
                            bool vec, const attn::FlashParams<float>& p,
                            const attn::RowBlock& rb, int64_t j0) {
  constexpr int kVecs = kKeys / 8;  // 16-byte pieces of a tile's row
  SK_UNROLL
  for (int u = 0; u < 16 * kVecs / warp::kLanes; ++u) {
    const int e = rb.lane + u * warp::kLanes;
    const int r = rb.row0 + e / kVecs, c = (e % kVecs) * 8;
    const int64_t i = rb.i0 + r, j = j0 + c;
    if (i < p.Tq && j < p.Tk) {
      scalar_t* dst = probs + (rb.bh * p.Tq + i) * p.Tk + j;
      const uint16_t* src = pt == nullptr ? nullptr : pt + r * kLdP + c;
      if (vec) {
        if (src != nullptr) {
          blk::copy16(dst, src);
        } else {
          blk::zero16(dst);
        }
      } else {
        const int n = static_cast<int>(attn::min64(8, p.Tk - j));
        for (int x = 0; x < n; ++x) {
          dst[x] = src != nullptr ? scalar_t(src[x], scalar_t::from_bits())
                                  : scalar_t(0.f);
        }
      }
    }
  }
}

// s = Q K^T of the warp's rows (qf) and the key tile from j0 of kp (this
// (b, kv head)'s keys), staged in ks (pitch ProbsSmem<DP>::kLdK) between
// two barriers: the first waits for every warp to be done with what ks
// (and the P tile) held. All kThreads threads call.
template <int DP, typename scalar_t>
SK_DEVICE void staged_qk_tile(float (&s)[kKeyBlocks][4],
                              const uint32_t (&qf)[DP / 16][4], uint16_t* ks,
                              const scalar_t* __restrict__ kp,
                              const attn::FlashParams<float>& p, int64_t j0,
                              int64_t kend, int lane) {
  constexpr int LD = ProbsSmem<DP>::kLdK;
  blk::sync();
  stage_rows<DP, LD>(ks, kp, p.Tk, p.D, j0);
  blk::sync();
  qk_tile<scalar_t, DP, LD>(s, qf, ks, p.D, j0, kend, lane);
}

// q [B,Hq,Tq,D]  k [B,Hk,Tk,D]  probs [B,Hq,Tq,Tk]; p.n_blocks =
// ceil(Tq / kRows), grid x = p.n_blocks * B * Hq, kThreads threads,
// ProbsSmem<DP>::kBytes of dynamic shared memory.
template <typename scalar_t, int DP>
SK_DEVICE void probs_forward(const attn::FlashParams<float>& p,
                             const scalar_t* __restrict__ q,
                             const scalar_t* __restrict__ k,
                             const attn::MaskView& mask,
                             scalar_t* __restrict__ probs) {
  using S = ProbsSmem<DP>;
  uint16_t* ks = reinterpret_cast<uint16_t*>(blk::smem());
  uint16_t* ps = ks + S::kP;

  const attn::RowBlock rb =
      attn::row_block<kRows>(p, blk::block_index(), blk::thread_index());
  const int g = rb.lane / 4, t = rb.lane % 4;
  const scalar_t* kp = k + rb.bhk * p.Tk * p.D;

  // Q, through the K buffer, into A fragments.
  uint32_t qf[DP / 16][4];
  load_q_fragments<DP, S::kLdK>(qf, ks, p, rb, q);

  // Pass 1: each row's maximum m and sum l (row g of the warp is hr = 0,
  // row g + 8 is hr = 1; l per lane until the end).
  float m[2] = {attn::neg_inf<float>(), attn::neg_inf<float>()};
  float l[2] = {0.f, 0.f};
  // Under is_causal, keys past the block's last row are masked for all rows.
  const int64_t kend = p.causal ? attn::min64(p.Tk, rb.i0 + kRows) : p.Tk;
  for (int64_t j0 = 0; j0 < kend; j0 += kKeys) {
    float s[kKeyBlocks][4];
    staged_qk_tile<DP>(s, qf, ks, kp, p, j0, kend, rb.lane);
    SK_UNROLL
    for (int hr = 0; hr < 2; ++hr) {
      online_step(s, hr, quad_max(mask_row<scalar_t>(s, hr, p, mask, rb, j0)),
                  m[hr], l[hr]);
    }
  }
  float inv_l[2];
  SK_UNROLL
  for (int hr = 0; hr < 2; ++hr) {
    const float lsum = quad_sum(l[hr]);
    inv_l[hr] = lsum > 0.f ? 1.f / lsum : 0.f;
  }

  // Pass 2: every tile of P written once.
  const bool vec =
      p.Tk % 8 == 0 && reinterpret_cast<uintptr_t>(probs) % 16 == 0;
  for (int64_t j0 = 0; j0 < p.Tk; j0 += kKeys) {
    if (j0 >= kend) {  // the same in every thread of the block
      store_p_tile<scalar_t>(probs, nullptr, vec, p, rb, j0);
      continue;
    }
    // staged_qk_tile's first barrier also means every warp is done with
    // its P rows of the previous tile (the tiles before kend come first,
    // so no zero tile lies between).
    float s[kKeyBlocks][4];
    staged_qk_tile<DP>(s, qf, ks, kp, p, j0, kend, rb.lane);
    SK_UNROLL
    for (int hr = 0; hr < 2; ++hr) {
      mask_row<scalar_t>(s, hr, p, mask, rb, j0);
      uint16_t* prow = ps + (rb.row0 + g + 8 * hr) * kLdP + 2 * t;
      SK_UNROLL
      for (int nb = 0; nb < kKeyBlocks; ++nb) {
        const float p0 =
            attn::prob_from_max(s[nb][2 * hr], m[hr], inv_l[hr]);
        const float p1 =
            attn::prob_from_max(s[nb][2 * hr + 1], m[hr], inv_l[hr]);
        store_pair(prow + 8 * nb, warp::pack2<scalar_t>(p0, p1));
      }
    }
    warp_sync();  // the warp's P rows are in the tile
    store_p_tile<scalar_t>(probs, ps, vec, p, rb, j0);
  }
}

// ---------------------------------------------------------------------------
// Host side (the rule is sdpa_tensor_core.h's attention_scores_forward_kernel).

// Calls f(scalar_t(), std::integral_constant<int, DP>()) for q's dtype and
// head dim D (served: attention_scores_forward_kernel's conditions), D
// padded to 64 or 128.
template <typename F>
void dispatch_probs(at::ScalarType dtype, int64_t D, F&& f) {
  // The probabilities have no value dim: Dv = 1 picks one width for it.
  dispatch(dtype, D, 1, [&](auto type, auto dp, auto) { f(type, dp); });
}

// Runs the kernel on CUDA tensors (csrc/cuda/attention_scores_tensor_core.cu;
// CUDA builds only): q, k contiguous and checked, probs allocated, mask as
// the CUDA attention_scores made it.
void launch_probs_forward(const at::Tensor& q, const at::Tensor& k,
                          const attn::MaskView& mask, const AttentionDims& d,
                          bool is_causal, double scale, at::Tensor& probs);

}  // namespace sdpa_tc

// The op attention_scores' forward on CPU tensors by this kernel, run by
// the host emulation (float16, bfloat16; D <= sdpa_tc::kMaxDim); probs is
// filled with NaN first, so an unwritten element shows. Tests only
// (_C.emulated.attention_scores).
at::Tensor emulated_attention_scores(
    const at::Tensor& q, const at::Tensor& k,
    const c10::optional<at::Tensor>& attn_mask, bool is_causal, double scale);

}  // namespace seqkernels
