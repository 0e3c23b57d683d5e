// The tensor-core backward of scaled dot-product attention (the op
// sdpa_backward, float16 and bfloat16): FlashAttention-2's backward on
// mma.sync m16n8k16 with float accumulation, the probabilities recomputed
// from the saved lse. It takes what either forward saved (out in q's dtype,
// lse [B, Hq, Tq] in float) and writes what the SIMT backward
// (csrc/cuda/sdpa.cu) writes: dq, dk, dv in q's dtype. One source for the
// GPU (csrc/cuda/sdpa_tensor_core.cu) and for the host emulation that runs
// it on the CPU in CI (csrc/emulation/sdpa_tensor_core.cpp). The rule that
// picks it is sdpa_backward_kernel in sdpa_tensor_core.h.
//
// Three kernels, each sum in one fixed order (no atomics: bitwise
// reproducible):
//   - row_dot: delta_i = rowsum(dO * O) in float, a warp per row (lanes
//     over columns, then an xor butterfly), as the SIMT backward;
//   - backward_dq: a block of 4 warps owns kRows = 64 query rows of one
//     (b, h), as the forward (warp w rows 16 w .. 16 w + 15), Q and dO held
//     as A fragments in registers; it loops over tiles of kDqKeys = 32 keys
//     (to the block's last row under is_causal), double buffered as the
//     forward's (tile n + 1's K and V by cp.async into the other stage
//     while the block computes on tile n; one barrier per tile):
//     S = Q K^T, P = exp(S - lse)
//     (0 for a row with lse -inf), dP = dO V^T (V's rows, keys, as B's
//     columns), dS = P (dP_dropped - delta), dQ += dS K (dS rounded to q's
//     dtype as the A operand straight from the accumulators, K through
//     ldmatrix.trans); dq = scale dQ;
//   - backward_dkdv: a block owns kDkvKeys = 64 keys of one (b, kv head),
//     warp w keys 16 w .. 16 w + 15, and loops over the query heads of the
//     kv head's group (GQA: dK, dV summed over them in order), then over
//     tiles of kDkvRows = 16 query rows (from the block's first key under
//     is_causal: earlier rows see none of its keys): S^T = K Q^T and
//     dP^T = V dO^T with the keys as rows (K and V as A fragments from
//     shared memory, Q's and dO's rows as B's columns), P^T from the
//     tile's lse, dV += P_dropped^T dO and dK += dS^T Q (P^T, dS^T rounded
//     to q's dtype as A fragments from the accumulators, dO and Q through
//     ldmatrix.trans); dk = scale dK, dv = dV.
// Dropout: the forward's hash and element index (bh Tq + i) Tk + j; a kept
// element's P and dP carry 1 / (1 - p), a dropped one's are 0 (dS uses the
// undropped P, as the reference). Head dims padded with zeros to DP, DVP
// (64 or 128), the padding skipped 16 columns at a time where it can be.
// Shared memory is dynamic (DqSmem, DkvSmem below), under the 48 KB that
// needs no opt-in. Why 16 query rows a step in the dK/dV kernel: its dK and
// dV accumulators take 128 registers at D = Dv = 128, and ptxas spilled at
// 32 rows (the S^T and dP^T tiles); the launch budget is beside the launch
// (csrc/cuda/sdpa_tensor_core.cu). Follow-ups: cp.async double buffering
// of the dK/dV kernel's query tiles (Q, dO, lse, delta), 8 warps per block
// at head dim 128, as FlashAttention-2 does.
#pragma once

#include <cstdint>

#include "seqkernels/sdpa_tensor_core.h"

namespace seqkernels {
namespace sdpa_tc {

constexpr int kDqKeys = 32;   // keys per step of the dQ kernel
constexpr int kDkvKeys = 64;  // keys per block of the dK/dV kernel
constexpr int kDkvRows = 16;  // query rows per step of the dK/dV kernel

// The dQ block's shared memory, in 16-bit elements: the key loop's two
// stages, each a K tile [kDqKeys][kLdK] and a V tile [kDqKeys][kLdV] (key
// tile n in stage n % 2); Q's 64 rows, then dO's (each staged there in
// turn to fill the A fragments) from stage 1 on, so that tile 0 can fill
// stage 0 meanwhile.
template <int DP, int DVP>
struct DqSmem {
  static constexpr int kLdK = DP + 8;  // padded pitches, as the forward's
  static constexpr int kLdV = DVP + 8;
  static constexpr int kV = kDqKeys * kLdK;  // offset of a stage's V tile
  static constexpr int kStage = kV + kDqKeys * kLdV;  // elements of a stage
  static constexpr int kRowsElems = kRows * (kLdK > kLdV ? kLdK : kLdV);
  static constexpr int kElems =
      kStage + (kRowsElems > kStage ? kRowsElems : kStage);
  static constexpr int kBytes = 2 * kElems;
};

// The dK/dV block's shared memory: K tile [kDkvKeys][kLdK], V tile
// [kDkvKeys][kLdV], then the query step's Q tile [kDkvRows][kLdK] and dO
// tile [kDkvRows][kLdV] (16-bit elements), then its lse and delta
// (kDkvRows floats each).
template <int DP, int DVP>
struct DkvSmem {
  static constexpr int kLdK = DP + 8;
  static constexpr int kLdV = DVP + 8;
  static constexpr int kV = kDkvKeys * kLdK;
  static constexpr int kQ = kV + kDkvKeys * kLdV;
  static constexpr int kDO = kQ + kDkvRows * kLdK;
  static constexpr int kStats = kDO + kDkvRows * kLdV;  // a multiple of 8
  static constexpr int kBytes = 2 * kStats + 2 * kDkvRows * 4;
};

// out[row] = sum_c a[row, c] b[row, c] in float over n columns, for the
// rows block, block + n_grid, ... (times kWarps, plus the warp): the
// lanes take columns lane, lane + 32, ..., then an xor butterfly sums
// them (the same bits in every lane). a, b [rows, n] row-major.
template <typename scalar_t>
SK_DEVICE void row_dot(int64_t rows, int64_t n, int64_t n_grid,
                       const scalar_t* __restrict__ a,
                       const scalar_t* __restrict__ b,
                       float* __restrict__ out) {
  const int lane = warp::lane();
  for (int64_t row = int64_t(blk::block_index()) * attn::kWarps +
                     blk::warp_index();
       row < rows; row += n_grid * attn::kWarps) {
    float acc = 0.f;
    for (int64_t c = lane; c < n; c += warp::kLanes) {
      acc += static_cast<float>(a[row * n + c]) *
             static_cast<float>(b[row * n + c]);
    }
    SK_UNROLL
    for (int o = warp::kLanes / 2; o > 0; o >>= 1) {
      acc += warp::shfl_xor(acc, o);
    }
    if (lane == 0) out[row] = acc;
  }
}

// One element of the backward, where the accumulators of S and dP meet:
// in, s = q_i . k_j and dp = dO_i . v_j; out, s = P dropped (the weight of
// dO in dV) and dp = dS = P (dP dropped - delta_i).
template <typename scalar_t>
SK_DEVICE void element_grads(const attn::FlashParams<float>& p,
                             const attn::MaskView& mask, uint32_t key,
                             int64_t b, int64_t h, int64_t bh, int64_t i,
                             int64_t j, float lse_i, float delta_i, float& s,
                             float& dp) {
  const float x = attn::masked_score<scalar_t>(s, p.scale, mask, p.causal, b,
                                               h, i, j, p.Tq, p.Tk);
  const float pr = attn::prob_from_lse(x, lse_i);
  const bool kept =
      !p.dropout || (i < p.Tq && j < p.Tk &&
                     dropout_keep(key, (bh * p.Tq + i) * p.Tk + j,
                                  p.dropout_p));
  s = kept ? pr * p.inv_keep : 0.f;
  dp = pr * ((kept ? dp * p.inv_keep : 0.f) - delta_i);
}

// q [B,Hq,Tq,D]  k [B,Hk,Tk,D]  v [B,Hk,Tk,Dv]  dout [B,Hq,Tq,Dv]
// lse, delta [B,Hq,Tq] (float)  rng [2] or null  dq [B,Hq,Tq,D];
// p.n_blocks = ceil(Tq / kRows), grid x = p.n_blocks * B * Hq, kThreads
// threads, DqSmem<DP, DVP>::kBytes of dynamic shared memory.
template <typename scalar_t, int DP, int DVP>
SK_DEVICE void backward_dq(const attn::FlashParams<float>& p,
                           const scalar_t* __restrict__ q,
                           const scalar_t* __restrict__ k,
                           const scalar_t* __restrict__ v,
                           const scalar_t* __restrict__ dout,
                           const float* __restrict__ lse,
                           const float* __restrict__ delta,
                           const attn::MaskView& mask,
                           const int64_t* __restrict__ rng,
                           scalar_t* __restrict__ dq) {
  using S = DqSmem<DP, DVP>;
  constexpr int KC = DP / 16;     // 16-column chunks of Q and K
  constexpr int VC = DVP / 16;    // 16-column chunks of dO and V
  constexpr int NB = kDqKeys / 8;  // 8-key blocks of a tile
  constexpr int KB = DP / 8;      // 8-column blocks of dQ and K
  uint16_t* sm = reinterpret_cast<uint16_t*>(blk::smem());
  uint16_t* rows = sm + S::kStage;  // Q's, then dO's

  const attn::RowBlock rb =
      attn::row_block<kRows>(p, blk::block_index(), blk::thread_index());
  const int g = rb.lane / 4, t = rb.lane % 4;
  const scalar_t* kp = k + rb.bhk * p.Tk * p.D;
  const scalar_t* vp = v + rb.bhk * p.Tk * p.Dv;
  const uint32_t key = p.dropout ? attn::dropout_key_from(rng) : 0u;
  const warp::TileCoord xa = warp::x4_rows_a(rb.lane);
  const warp::TileCoord xk = warp::x4_rows_bt(rb.lane);

  // Tile 0 on its way into stage 0 while Q, then dO, go through shared
  // memory from stage 1 on into A fragments (tile 1 fills stage 1 only
  // after the loop's first barrier, when every warp holds them).
  const int64_t kend = p.causal ? attn::min64(p.Tk, rb.i0 + kRows) : p.Tk;
  if (kend > 0) prefetch_kv<S, DP, DVP, kDqKeys>(sm, p, kp, vp, 0);
  uint32_t qf[KC][4], df[VC][4];
  stage_a_frags<DP, S::kLdK>(qf, rows, q + rb.bh * p.Tq * p.D, p.Tq, p.D,
                             rb.i0, rb.row0, xa);
  blk::sync();  // every warp holds its Q fragments
  stage_a_frags<DVP, S::kLdV>(df, rows, dout + rb.bh * p.Tq * p.Dv, p.Tq,
                              p.Dv, rb.i0, rb.row0, xa);

  // Row g of the warp is hr = 0, row g + 8 is hr = 1.
  float lse_r[2], delta_r[2];
  SK_UNROLL
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t i = rb.i0 + rb.row0 + g + 8 * hr;
    lse_r[hr] = i < p.Tq ? lse[rb.bh * p.Tq + i] : attn::neg_inf<float>();
    delta_r[hr] = i < p.Tq ? delta[rb.bh * p.Tq + i] : 0.f;
  }
  float acc[KB][4];
  zero(acc);

  // The forward's double buffer: after each thread's wait and the barrier,
  // tile n is in stage n % 2 for the whole block, and every warp is done
  // with tile n - 1 (or dO), so that stage can take tile n + 1.
  int stage = 0;  // tile n's: n % 2
  for (int64_t j0 = 0; j0 < kend; j0 += kDqKeys, stage ^= 1) {
    blk::cp_async_wait<0>();
    blk::sync();
    if (j0 + kDqKeys < kend) {
      prefetch_kv<S, DP, DVP, kDqKeys>(sm + (stage ^ 1) * S::kStage, p, kp,
                                       vp, j0 + kDqKeys);
    }
    const uint16_t* ks = sm + stage * S::kStage;
    const uint16_t* vs = ks + S::kV;

    // S = Q K^T and dP = dO V^T over the 16-key pairs that hold a key
    // before kend (the others stay 0 and are masked).
    float s[NB][4], dp[NB][4];
    zero(s);
    zero(dp);
    mma_frags_bt<scalar_t>(s, qf, ks, S::kLdK, p.D, kend - j0, xk);
    mma_frags_bt<scalar_t>(dp, df, vs, S::kLdV, p.Dv, kend - j0, xk);

    // Element (nb, r) of this lane: row g + 8 (r / 2), key
    // j0 + 8 nb + 2 t + r % 2. dS into dp.
    SK_UNROLL
    for (int nb = 0; nb < NB; ++nb) {
      SK_UNROLL
      for (int r = 0; r < 4; ++r) {
        element_grads<scalar_t>(p, mask, key, rb.b, rb.h, rb.bh,
                                rb.i0 + rb.row0 + g + 8 * (r / 2),
                                j0 + 8 * nb + 2 * t + r % 2, lse_r[r / 2],
                                delta_r[r / 2], s[nb][r], dp[nb][r]);
      }
    }

    // dQ += dS K, one 16-key chunk at a time.
    SK_UNROLL
    for (int c = 0; c < kDqKeys / 16; ++c) {
      if (j0 + 16 * c < kend) {
        uint32_t da[4];
        warp::a_from_c<scalar_t>(da, dp[2 * c], dp[2 * c + 1]);
        mma_rows_b<scalar_t>(acc, da, ks + 16 * c * S::kLdK, S::kLdK, p.D,
                             xa);
      }
    }
  }

  SK_UNROLL
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t i = rb.i0 + rb.row0 + g + 8 * hr;
    if (i < p.Tq) {
      store_row(dq + (rb.bh * p.Tq + i) * p.D, acc, hr, t, p.D, p.scale);
    }
  }
}

// q, k, v, dout, lse, delta, rng as backward_dq; dk [B,Hk,Tk,D]
// dv [B,Hk,Tk,Dv]; p.n_blocks = ceil(Tk / kDkvKeys), grid x =
// p.n_blocks * B * Hk (key blocks fastest), kThreads threads,
// DkvSmem<DP, DVP>::kBytes of dynamic shared memory. Writes zeros where no
// query row sees a key.
template <typename scalar_t, int DP, int DVP>
SK_DEVICE void backward_dkdv(const attn::FlashParams<float>& p,
                             const scalar_t* __restrict__ q,
                             const scalar_t* __restrict__ k,
                             const scalar_t* __restrict__ v,
                             const scalar_t* __restrict__ dout,
                             const float* __restrict__ lse,
                             const float* __restrict__ delta,
                             const attn::MaskView& mask,
                             const int64_t* __restrict__ rng,
                             scalar_t* __restrict__ dk,
                             scalar_t* __restrict__ dv) {
  using S = DkvSmem<DP, DVP>;
  constexpr int KC = DP / 16;       // 16-column chunks of K and Q
  constexpr int VC = DVP / 16;      // 16-column chunks of V and dO
  constexpr int QB = kDkvRows / 8;  // 8-row blocks of a query step
  constexpr int KB = DP / 8;        // 8-column blocks of dK
  constexpr int VB = DVP / 8;       // 8-column blocks of dV
  uint16_t* ks = reinterpret_cast<uint16_t*>(blk::smem());
  uint16_t* vs = ks + S::kV;
  uint16_t* qs = ks + S::kQ;
  uint16_t* dos = ks + S::kDO;
  float* lse_s = reinterpret_cast<float*>(ks + S::kStats);
  float* delta_s = lse_s + kDkvRows;

  const int tid = blk::thread_index();
  const int lane = warp::lane(), key0 = 16 * blk::warp_index();
  const int g = lane / 4, t = lane % 4;
  const int64_t blk_k = int64_t(blk::block_index()) % p.n_blocks;
  const int64_t bhk = int64_t(blk::block_index()) / p.n_blocks;
  const int64_t b = bhk / p.Hk, hk = bhk % p.Hk, G = p.Hq / p.Hk;
  const int64_t j0 = blk_k * kDkvKeys;
  const uint32_t key = p.dropout ? attn::dropout_key_from(rng) : 0u;
  const warp::TileCoord xa = warp::x4_rows_a(lane);
  const warp::TileCoord xb = warp::x4_rows_bt(lane);

  stage_rows<DP, S::kLdK, kDkvKeys>(ks, k + bhk * p.Tk * p.D, p.Tk, p.D, j0);
  stage_rows<DVP, S::kLdV, kDkvKeys>(vs, v + bhk * p.Tk * p.Dv, p.Tk, p.Dv,
                                     j0);

  float dka[KB][4], dva[VB][4];
  zero(dka);
  zero(dva);

  // Under is_causal, query rows before the block's first key see none of
  // its keys.
  const int64_t i_start = p.causal ? j0 : 0;
  for (int64_t gh = 0; gh < G; ++gh) {
    const int64_t h = hk * G + gh;
    const int64_t bh = b * p.Hq + h;
    for (int64_t i0 = i_start; i0 < p.Tq; i0 += kDkvRows) {
      blk::sync();  // every warp is done with the previous step's tiles
      stage_rows<DP, S::kLdK, kDkvRows>(qs, q + bh * p.Tq * p.D, p.Tq, p.D,
                                        i0);
      stage_rows<DVP, S::kLdV, kDkvRows>(dos, dout + bh * p.Tq * p.Dv, p.Tq,
                                         p.Dv, i0);
      if (tid < kDkvRows) {
        const int64_t i = i0 + tid;
        lse_s[tid] = i < p.Tq ? lse[bh * p.Tq + i] : attn::neg_inf<float>();
        delta_s[tid] = i < p.Tq ? delta[bh * p.Tq + i] : 0.f;
      }
      blk::sync();

      // S^T = K Q^T and dP^T = V dO^T: this warp's 16 keys by the step's
      // query rows (Q's and dO's rows are B's columns).
      float s[QB][4], dp[QB][4];
      zero(s);
      zero(dp);
      mma_rows_bt<scalar_t, KC>(s, ks + key0 * S::kLdK, qs, S::kLdK, p.D,
                                kDkvRows, xa, xb);
      mma_rows_bt<scalar_t, VC>(dp, vs + key0 * S::kLdV, dos, S::kLdV, p.Dv,
                                kDkvRows, xa, xb);

      // Element (qb, r) of this lane: key j0 + key0 + g + 8 (r / 2), query
      // row i0 + 8 qb + 2 t + r % 2. P dropped into s, dS into dp.
      SK_UNROLL
      for (int qb = 0; qb < QB; ++qb) {
        SK_UNROLL
        for (int r = 0; r < 4; ++r) {
          const int ii = 8 * qb + 2 * t + r % 2;
          element_grads<scalar_t>(p, mask, key, b, h, bh, i0 + ii,
                                  j0 + key0 + g + 8 * (r / 2), lse_s[ii],
                                  delta_s[ii], s[qb][r], dp[qb][r]);
        }
      }

      // dV += P_dropped^T dO and dK += dS^T Q, one 16-row chunk at a time
      // (dO and Q row-major with the rows as k: ldmatrix.trans).
      SK_UNROLL
      for (int c = 0; c < kDkvRows / 16; ++c) {
        if (i0 + 16 * c < p.Tq) {
          uint32_t pa[4], da[4];
          warp::a_from_c<scalar_t>(pa, s[2 * c], s[2 * c + 1]);
          warp::a_from_c<scalar_t>(da, dp[2 * c], dp[2 * c + 1]);
          mma_rows_b<scalar_t>(dva, pa, dos + 16 * c * S::kLdV, S::kLdV,
                               p.Dv, xa);
          mma_rows_b<scalar_t>(dka, da, qs + 16 * c * S::kLdK, S::kLdK, p.D,
                               xa);
        }
      }
    }
  }

  SK_UNROLL
  for (int hr = 0; hr < 2; ++hr) {
    const int64_t j = j0 + key0 + g + 8 * hr;
    if (j < p.Tk) {
      store_row(dk + (bhk * p.Tk + j) * p.D, dka, hr, t, p.D, p.scale);
      store_row(dv + (bhk * p.Tk + j) * p.Dv, dva, hr, t, p.Dv, 1.f);
    }
  }
}

// ---------------------------------------------------------------------------
// Host side: the three launches' parameters and grids, shared by the CUDA
// launcher and the emulation.

struct BackwardPlan {
  attn::FlashParams<float> dq, dkdv;  // n_blocks: query-row / key blocks
  int64_t dq_blocks, dkdv_blocks;     // grids (0: no launch)
  int64_t rows;                       // B Hq Tq: rows of delta
};

inline BackwardPlan make_backward_plan(const AttentionDims& d,
                                       double dropout_p, bool is_causal,
                                       double scale) {
  BackwardPlan plan;
  plan.dq = make_params(d, dropout_p, is_causal, scale);
  plan.dkdv = plan.dq;
  plan.dkdv.n_blocks = (d.Tk + kDkvKeys - 1) / kDkvKeys;
  plan.rows = d.B * d.Hq * d.Tq;
  plan.dq_blocks = plan.dq.n_blocks * d.B * d.Hq;
  plan.dkdv_blocks = plan.dkdv.n_blocks * d.B * d.Hk;
  return plan;
}

// Runs the three kernels on CUDA tensors (csrc/cuda/sdpa_tensor_core.cu;
// CUDA builds only): q, k, v, dout, out contiguous and checked, lse
// contiguous float; delta [B, Hq, Tq] float, grad_q, grad_k, grad_v
// allocated; mask and rng_c as the CUDA sdpa_backward made them.
void launch_backward(const at::Tensor& dout, const at::Tensor& q,
                     const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& out, const at::Tensor& lse,
                     const attn::MaskView& mask, const at::Tensor& rng_c,
                     const AttentionDims& d, double dropout_p,
                     bool is_causal, double scale, at::Tensor& delta,
                     at::Tensor& grad_q, at::Tensor& grad_k,
                     at::Tensor& grad_v);

}  // namespace sdpa_tc
}  // namespace seqkernels
