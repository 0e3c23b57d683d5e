// The tensor-core forward of scaled dot-product attention (the op sdpa,
// float16 and bfloat16): FlashAttention-2's structure on mma.sync
// m16n8k16 with float accumulation and the softmax in float registers. It
// produces what the SIMT forward (csrc/cuda/sdpa.cu) produces, out in q's
// dtype and lse [B, Hq, Tq] in float, so that either backward (the SIMT
// one, or the tensor-core one of sdpa_tensor_core_backward.h, which also
// uses the warp tile products below) serves both. One source for the GPU (csrc/cuda/sdpa_tensor_core.cu) and for the
// host emulation that runs it on the CPU in CI
// (csrc/emulation/sdpa_tensor_core.cpp, through warp_mma.h and
// block_primitives.h).
//
// Which forward runs (the rule, read at every call by the CUDA sdpa):
// SEQKERNELS_ATTENTION=tensor_core asks for this kernel, and it runs when q
// is float16 or bfloat16 and D, Dv <= kMaxDim; otherwise, and by default
// (SEQKERNELS_ATTENTION unset or "simt"), the SIMT kernel runs. The
// backward follows the same rule (sdpa_backward_kernel): the tensor-core
// backward (sdpa_tensor_core_backward.h) runs exactly where this forward
// would. Both are opt-in until a GPU run has passed them
// (tests/test_sdpa_tensor_core_cuda.py). The same rule (D <= kMaxDim, no
// value dim) picks the tensor-core forward of the attention probabilities
// (attention_scores_tensor_core.h), which shares this file's block pieces
// (load_q_fragments .. online_step).
//
// Layout. A block of kThreads = 4 warps owns kRows = 64 query rows of one
// (b, h) (attn::row_block: GQA maps h to its kv head); warp w owns rows
// 16 w .. 16 w + 15, so each row's softmax statistics live in the 4 lanes
// of one quad (the C layout: lanes 4 g .. 4 g + 3 hold rows g and g + 8 of
// the warp). Head dims are padded with zeros to DP, DVP (64 or 128,
// template parameters), the padding skipped 16 columns at a time.
//   - Q's 64 x DP tile is staged once in shared memory and each warp keeps
//     its 16 rows as A fragments in registers for the whole key loop;
//   - the key loop runs over tiles of kKeys = 64 keys (to the block's last
//     row under is_causal), double buffered: K and V tiles staged in two
//     stages of shared memory, tile n + 1 copied by cp.async (16 bytes,
//     zero-filled past Tk or D, where the rows allow 16-byte copies; plain
//     element stores otherwise) while the block computes on tile n, one
//     barrier per tile (see the loop); S = Q K^T with K as the B operand
//     (ldmatrix; K rows are B's columns), scale and mask per element
//     (attn::masked_score), the online softmax in registers (row maxima
//     over the quad with two xor shuffles; the running sum l per lane,
//     summed over the quad at the end), dropout with the SIMT kernel's hash
//     and element index (bh Tq + i) Tk + j, P rounded to q's dtype and used
//     as the A operand of P V straight from the S accumulators (the C
//     fragments of two adjacent 8-key blocks are the A fragment of one
//     16-key chunk), V as the B operand (ldmatrix.trans), O accumulated in
//     float registers;
//   - out = O / l (times 1 / (1 - p) with dropout, l being the undropped
//     sum, as the SIMT kernel does), lse = m + log(l); a row with no
//     allowed key gets out 0 and lse -inf.
// Shared memory (dynamic, so that the emulation gives each block its own):
// two stages of a K tile and a V tile (stage 1's K tile first holds Q),
// rows padded by 8 elements so that the 8 rows an ldmatrix reads fall in
// distinct banks: 36,864 bytes at DP = DVP = 64, 53,248 at 64/128 and
// 128/64, 69,632 at 128/128, above the 48 KB that needs no opt-in at three
// of the four widths (the launch opts in; its budget is written beside it,
// csrc/cuda/sdpa_tensor_core.cu). Follow-up: 16-byte stores of out
// through shared memory.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "seqkernels/attention_math.h"
#include "seqkernels/warp_mma.h"

namespace seqkernels {
namespace sdpa_tc {

constexpr int kThreads = attn::kThreads;
constexpr int kRows = 64;    // query rows per block, 16 per warp
constexpr int kKeys = 64;    // keys per tile
constexpr int kMaxDim = 128;  // D and Dv served

// Shared memory of a block, in 16-bit elements: two stages, each a K tile
// [kKeys][kLdK] and a V tile [kKeys][kLdV]; key tile n is in stage n % 2
// (the forward's double buffer).
template <int DP, int DVP>
struct Smem {
  static constexpr int kLdK = DP + 8;
  static constexpr int kLdV = DVP + 8;
  static constexpr int kV = kKeys * kLdK;  // offset of a stage's V tile
  static constexpr int kStage = kV + kKeys * kLdV;  // elements of a stage
  static constexpr int kBytes = 2 * 2 * kStage;
};

// How stage_rows moves 16-byte chunks: kSync, loads and stores that are
// done when it returns (visible to the block after the next barrier);
// kAsync, cp.async copies that the caller commits and waits for
// (blk::cp_async16).
enum class Copy { kSync, kAsync };

// dst[r * LD + c] = the bits of src[(row0 + r) * n_cols + c] for r < ROWS,
// c < COLS, zero where row0 + r >= n_rows or c >= n_cols. Rows of 8
// elements go as 16-byte copies (kSync or kAsync) when every row allows
// them (n_cols % 8 == 0 and src 16-byte aligned), else element by element
// with plain loads and stores, whichever the copy. All kThreads threads of
// the block call.
template <int COLS, int LD, int ROWS = kRows, Copy kCopy = Copy::kSync,
          typename scalar_t>
SK_DEVICE void stage_rows(uint16_t* dst, const scalar_t* src, int64_t n_rows,
                          int64_t n_cols, int64_t row0) {
  static_assert(COLS % 8 == 0 && LD % 8 == 0, "16-byte rows");
  const int tid = blk::thread_index();
  if (n_cols % 8 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0) {
    constexpr int kVecs = COLS / 8;
    for (int e = tid; e < ROWS * kVecs; e += kThreads) {
      const int r = e / kVecs, c = (e % kVecs) * 8;
      uint16_t* d = dst + r * LD + c;
      const bool in_range = row0 + r < n_rows && c < n_cols;
      if constexpr (kCopy == Copy::kAsync) {
        // Out of range, src itself: a valid address that is not read.
        blk::cp_async16(d, in_range ? src + (row0 + r) * n_cols + c : src,
                        in_range);
      } else if (in_range) {
        blk::copy16(d, src + (row0 + r) * n_cols + c);
      } else {
        blk::zero16(d);
      }
    }
  } else {
    for (int e = tid; e < ROWS * COLS; e += kThreads) {
      const int r = e / COLS, c = e % COLS;
      dst[r * LD + c] = row0 + r < n_rows && c < n_cols
                            ? warp::bits_of(src[(row0 + r) * n_cols + c])
                            : uint16_t(0);
    }
  }
}

// The A fragments af[kc] of this warp's 16 rows (from warp_row0 of the
// block's kRows) of the row-major [n_rows, n_cols] src from row0 on,
// staged through smem (stage_rows, then a block barrier): Q, or dO. The
// chunks from n_cols on are left unset (never used). All threads call.
template <int COLS, int LD, typename scalar_t>
SK_DEVICE void stage_a_frags(uint32_t (&af)[COLS / 16][4], uint16_t* smem,
                             const scalar_t* src, int64_t n_rows,
                             int64_t n_cols, int64_t row0, int warp_row0,
                             warp::TileCoord xa) {
  stage_rows<COLS, LD>(smem, src, n_rows, n_cols, row0);
  blk::sync();
  SK_UNROLL
  for (int kc = 0; kc < COLS / 16; ++kc) {
    if (16 * kc < n_cols) {
      warp::ldmatrix_x4(af[kc],
                        smem + (warp_row0 + xa.row) * LD + 16 * kc + xa.col);
    }
  }
}

// Warp tile products of the kernels (forward and backward), on a warp's
// 16-row A fragment a and C fragments acc[nb] (8 columns each), B from a
// shared-memory tile of 16-bit elements with pitch ld.

template <int N>
SK_DEVICE void zero(float (&acc)[N][4]) {
  SK_UNROLL
  for (int n = 0; n < N; ++n) {
    SK_UNROLL
    for (int r = 0; r < 4; ++r) acc[n][r] = 0.f;
  }
}

// acc[nb] += a B, B = bt^T: B's columns 8 nb .. 8 nb + 7 are rows of the
// row-major tile bt (its first 16 columns the k), through ldmatrix; pairs
// of 8-column blocks from n on are skipped. xk = warp::x4_rows_bt(lane).
template <typename scalar_t, int NB>
SK_DEVICE void mma_cols_bt(float (&acc)[NB][4], const uint32_t (&a)[4],
                           const uint16_t* bt, int ld, int64_t n,
                           warp::TileCoord xk) {
  SK_UNROLL
  for (int nb = 0; nb < NB; nb += 2) {
    if (8 * nb < n) {
      uint32_t f[4];
      warp::ldmatrix_x4(f, bt + (8 * nb + xk.row) * ld + xk.col);
      warp::mma_16816<scalar_t>(acc[nb], a, {f[0], f[1]});
      warp::mma_16816<scalar_t>(acc[nb + 1], a, {f[2], f[3]});
    }
  }
}

// acc += A B over the k chunks kc < KC that start before k_cols, A's
// chunk kc being the fragment af[kc] and B's the 16 columns from 16 kc of
// bt's rows (mma_cols_bt): the warp's 16 rows of Q K^T or dO V^T.
template <typename scalar_t, int KC, int NB>
SK_DEVICE void mma_frags_bt(float (&acc)[NB][4], const uint32_t (&af)[KC][4],
                            const uint16_t* bt, int ld, int64_t k_cols,
                            int64_t n, warp::TileCoord xk) {
  SK_UNROLL
  for (int kc = 0; kc < KC; ++kc) {
    if (16 * kc < k_cols) {
      mma_cols_bt<scalar_t>(acc, af[kc], bt + 16 * kc, ld, n, xk);
    }
  }
}

// The same with A's 16 rows read from the row-major tile a (pitch ld, as
// bt's) chunk by chunk (ldmatrix; xa = warp::x4_rows_a(lane)), KC chunks
// at most: K Q^T or V dO^T of a warp's 16 keys.
template <typename scalar_t, int KC, int NB>
SK_DEVICE void mma_rows_bt(float (&acc)[NB][4], const uint16_t* a,
                           const uint16_t* bt, int ld, int64_t k_cols,
                           int64_t n, warp::TileCoord xa,
                           warp::TileCoord xk) {
  SK_UNROLL
  for (int kc = 0; kc < KC; ++kc) {
    if (16 * kc < k_cols) {
      uint32_t f[4];
      warp::ldmatrix_x4(f, a + xa.row * ld + 16 * kc + xa.col);
      mma_cols_bt<scalar_t>(acc, f, bt + 16 * kc, ld, n, xk);
    }
  }
}

// acc[nb] += a B, B the row-major 16 x 8 NB tile b (rows the k), through
// ldmatrix.trans; pairs of 8-column blocks from n on are skipped.
// xa = warp::x4_rows_a(lane).
template <typename scalar_t, int NB>
SK_DEVICE void mma_rows_b(float (&acc)[NB][4], const uint32_t (&a)[4],
                          const uint16_t* b, int ld, int64_t n,
                          warp::TileCoord xa) {
  SK_UNROLL
  for (int nb = 0; nb < NB; nb += 2) {
    if (8 * nb < n) {
      uint32_t f[4];
      warp::ldmatrix_x4_trans(f, b + xa.row * ld + 8 * nb + xa.col);
      warp::mma_16816<scalar_t>(acc[nb], a, {f[0], f[1]});
      warp::mma_16816<scalar_t>(acc[nb + 1], a, {f[2], f[3]});
    }
  }
}

// row[8 nb + 2 t + e] = acc[nb][2 hr + e] * f for the columns < n: this
// lane's share of row g + 8 hr of the warp's C fragments.
template <typename scalar_t, int NB>
SK_DEVICE void store_row(scalar_t* row, const float (&acc)[NB][4], int hr,
                         int t, int64_t n, float f) {
  SK_UNROLL
  for (int nb = 0; nb < NB; ++nb) {
    SK_UNROLL
    for (int e = 0; e < 2; ++e) {
      const int col = 8 * nb + 2 * t + e;
      if (col < n) row[col] = static_cast<scalar_t>(acc[nb][2 * hr + e] * f);
    }
  }
}

// ---------------------------------------------------------------------------
// The pieces of a query-row block that the sdpa forward and the attention
// probabilities' forward (attention_scores_tensor_core.h) share. A lane's
// C-fragment element (hr, nb, e) of an S tile is the warp's row g + 8 hr
// and the tile's key 8 nb + 2 t + e (register 2 hr + e of block nb).

static_assert(kRows == kKeys, "Q is staged through the K tile's buffer");
constexpr int kKeyBlocks = kKeys / 8;  // 8-key blocks of a tile (S's n)

// The block's kRows rows of q, staged through buf (pitch LD; all kThreads
// threads call), as this warp's A fragments: chunk kc holds columns
// 16 kc .. 16 kc + 15 (chunks past D are left unset and never used).
template <int DP, int LD, typename scalar_t>
SK_DEVICE void load_q_fragments(uint32_t (&qf)[DP / 16][4], uint16_t* buf,
                                const attn::FlashParams<float>& p,
                                const attn::RowBlock& rb,
                                const scalar_t* __restrict__ q) {
  stage_a_frags<DP, LD>(qf, buf, q + rb.bh * p.Tq * p.D, p.Tq, p.D, rb.i0,
                        rb.row0, warp::x4_rows_a(rb.lane));
}

// s = Q K^T of the warp's 16 rows and the kKeys keys from j0 staged in ks
// (pitch LD), K as the B operand (K's rows are B's columns), over the
// 8-key blocks that hold a key before kend (the others stay 0).
template <typename scalar_t, int DP, int LD>
SK_DEVICE void qk_tile(float (&s)[kKeyBlocks][4],
                       const uint32_t (&qf)[DP / 16][4], const uint16_t* ks,
                       int64_t D, int64_t j0, int64_t kend, int lane) {
  zero(s);
  mma_frags_bt<scalar_t>(s, qf, ks, LD, D, kend - j0,
                         warp::x4_rows_bt(lane));
}

// Row half hr of s scaled and masked in place (attn::masked_score), keys
// from j0; returns this lane's maximum of it.
template <typename scalar_t>
SK_DEVICE float mask_row(float (&s)[kKeyBlocks][4], int hr,
                         const attn::FlashParams<float>& p,
                         const attn::MaskView& mask, const attn::RowBlock& rb,
                         int64_t j0) {
  const int g = rb.lane / 4, t = rb.lane % 4;
  const int64_t i = rb.i0 + rb.row0 + g + 8 * hr;
  float mx = attn::neg_inf<float>();
  SK_UNROLL
  for (int nb = 0; nb < kKeyBlocks; ++nb) {
    SK_UNROLL
    for (int e = 0; e < 2; ++e) {
      float& x = s[nb][2 * hr + e];
      x = attn::masked_score<scalar_t>(x, p.scale, mask, p.causal, rb.b, rb.h,
                                       i, j0 + 8 * nb + 2 * t + e, p.Tq, p.Tk);
      mx = attn::max_of(mx, x);
    }
  }
  return mx;
}

// The maximum and the sum over the 4 lanes of a quad (a row's lanes), in
// an order that leaves the same bits in the four.
SK_DEVICE float quad_max(float x) {
  x = attn::max_of(x, warp::shfl_xor(x, 1));
  return attn::max_of(x, warp::shfl_xor(x, 2));
}
SK_DEVICE float quad_sum(float x) {
  x += warp::shfl_xor(x, 1);
  return x + warp::shfl_xor(x, 2);
}

// The online softmax step of row half hr of a masked tile whose row
// maximum (over the quad) is mx: s becomes exp(s - m_new), 0 while the row
// has no allowed key; l (this lane's share of the row's sum) becomes
// l alpha + this lane's sum, m becomes m_new; returns alpha, the factor of
// what was accumulated before.
SK_DEVICE float online_step(float (&s)[kKeyBlocks][4], int hr, float mx,
                            float& m, float& l) {
  const float m_new = attn::max_of(m, mx);
  const bool none = m_new == attn::neg_inf<float>();
  const float alpha = none ? 1.f : attn::sk_exp(m - m_new);
  float sum = 0.f;
  SK_UNROLL
  for (int nb = 0; nb < kKeyBlocks; ++nb) {
    SK_UNROLL
    for (int e = 0; e < 2; ++e) {
      float& x = s[nb][2 * hr + e];
      x = none ? 0.f : attn::sk_exp(x - m_new);
      sum += x;
    }
  }
  l = l * alpha + sum;
  m = m_new;
  return alpha;
}

// The KEYS keys from j0 of K and V (kp, vp: the kv head's rows) into a
// stage of the double buffer of the layout S: the K tile [KEYS][S::kLdK]
// at stage, the V tile [KEYS][S::kLdV] at stage + S::kV; cp.async copies,
// one committed group per thread, where the rows allow 16-byte copies,
// plain stores elsewhere (stage_rows). All kThreads threads call. The
// sdpa forward's key tiles and the backward's dQ key tiles.
template <typename S, int DP, int DVP, int KEYS, typename scalar_t>
SK_DEVICE void prefetch_kv(uint16_t* stage, const attn::FlashParams<float>& p,
                           const scalar_t* kp, const scalar_t* vp,
                           int64_t j0) {
  static_assert(S::kV == KEYS * S::kLdK, "the V tile follows the K tile");
  stage_rows<DP, S::kLdK, KEYS, Copy::kAsync>(stage, kp, p.Tk, p.D, j0);
  stage_rows<DVP, S::kLdV, KEYS, Copy::kAsync>(stage + S::kV, vp, p.Tk, p.Dv,
                                               j0);
  blk::cp_async_commit();
}

// q [B,Hq,Tq,D]  k [B,Hk,Tk,D]  v [B,Hk,Tk,Dv]  rng [2] or null
// out [B,Hq,Tq,Dv]  lse [B,Hq,Tq]; p.n_blocks = ceil(Tq / kRows), grid x =
// p.n_blocks * B * Hq, kThreads threads, Smem<DP, DVP>::kBytes of dynamic
// shared memory.
template <typename scalar_t, int DP, int DVP>
SK_DEVICE void forward(const attn::FlashParams<float>& p,
                       const scalar_t* __restrict__ q,
                       const scalar_t* __restrict__ k,
                       const scalar_t* __restrict__ v,
                       const attn::MaskView& mask,
                       const int64_t* __restrict__ rng,
                       scalar_t* __restrict__ out, float* __restrict__ lse) {
  using S = Smem<DP, DVP>;
  constexpr int KC = DP / 16;    // 16-column chunks of Q and K
  constexpr int NB = kKeyBlocks;
  constexpr int VB = DVP / 8;    // 8-column blocks of V and O
  const float kNegInf = attn::neg_inf<float>();
  uint16_t* smem = reinterpret_cast<uint16_t*>(blk::smem());

  const attn::RowBlock rb =
      attn::row_block<kRows>(p, blk::block_index(), blk::thread_index());
  const int g = rb.lane / 4, t = rb.lane % 4;
  const scalar_t* kp = k + rb.bhk * p.Tk * p.D;
  const scalar_t* vp = v + rb.bhk * p.Tk * p.Dv;
  const uint32_t key = p.dropout ? attn::dropout_key_from(rng) : 0u;

  // ldmatrix row addresses (warp_mma.h) of V's rows (keys) as the k of B
  // (.trans).
  const warp::TileCoord xa = warp::x4_rows_a(rb.lane);

  // Under is_causal, keys past the block's last row are masked for all rows.
  const int64_t kend = p.causal ? attn::min64(p.Tk, rb.i0 + kRows) : p.Tk;

  // Tile 0 on its way into stage 0 while Q goes through stage 1's K tile
  // into A fragments (tile 1 fills stage 1 only after the loop's first
  // barrier, when every warp holds its Q fragments).
  if (kend > 0) prefetch_kv<S, DP, DVP, kKeys>(smem, p, kp, vp, 0);
  uint32_t qf[KC][4];
  load_q_fragments<DP, S::kLdK>(qf, smem + S::kStage, p, rb, q);

  // Row g of the warp is hr = 0, row g + 8 is hr = 1.
  float o[VB][4], m[2], l[2];
  zero(o);
  m[0] = m[1] = kNegInf;
  l[0] = l[1] = 0.f;

  // Double buffered: tile n + 1 is copied into the other stage while the
  // block computes on tile n. One barrier a tile orders both hazards: after
  // each thread's wait, every copy of tile n has landed and is visible to
  // the block; and every warp is done with tile n - 1 (or Q), so its stage
  // can take tile n + 1.
  int stage = 0;  // tile n's: n % 2
  for (int64_t j0 = 0; j0 < kend; j0 += kKeys, stage ^= 1) {
    // This thread's copies of tile n (the only group in flight), then the
    // barrier that shows every thread's to the block.
    blk::cp_async_wait<0>();
    blk::sync();
    if (j0 + kKeys < kend) {
      prefetch_kv<S, DP, DVP, kKeys>(smem + (stage ^ 1) * S::kStage, p, kp,
                                     vp, j0 + kKeys);
    }
    const uint16_t* ks = smem + stage * S::kStage;
    const uint16_t* vs = ks + S::kV;

    // S = Q K^T over the 8-key blocks that hold a key before kend.
    float s[NB][4];
    qk_tile<scalar_t, DP, S::kLdK>(s, qf, ks, p.D, j0, kend, rb.lane);

    // Scores, the online softmax step, dropout (after the sum: l is the
    // undropped sum).
    SK_UNROLL
    for (int hr = 0; hr < 2; ++hr) {
      const float mx = quad_max(mask_row<scalar_t>(s, hr, p, mask, rb, j0));
      const float alpha = online_step(s, hr, mx, m[hr], l[hr]);
      if (p.dropout) {
        const int64_t i = rb.i0 + rb.row0 + g + 8 * hr;
        SK_UNROLL
        for (int nb = 0; nb < NB; ++nb) {
          SK_UNROLL
          for (int e = 0; e < 2; ++e) {
            const int64_t j = j0 + 8 * nb + 2 * t + e;
            if (i < p.Tq && j < p.Tk &&
                !dropout_keep(key, (rb.bh * p.Tq + i) * p.Tk + j,
                              p.dropout_p)) {
              s[nb][2 * hr + e] = 0.f;
            }
          }
        }
      }
      SK_UNROLL
      for (int vb = 0; vb < VB; ++vb) {
        o[vb][2 * hr] *= alpha;
        o[vb][2 * hr + 1] *= alpha;
      }
    }

    // O += P V, one 16-key chunk at a time, P's A fragment made from the
    // S accumulators of its two 8-key blocks.
    SK_UNROLL
    for (int c = 0; c < kKeys / 16; ++c) {
      if (j0 + 16 * c < kend) {
        uint32_t pa[4];
        warp::a_from_c<scalar_t>(pa, s[2 * c], s[2 * c + 1]);
        mma_rows_b<scalar_t>(o, pa, vs + 16 * c * S::kLdV, S::kLdV, p.Dv, xa);
      }
    }
  }

  SK_UNROLL
  for (int hr = 0; hr < 2; ++hr) {
    const float lsum = quad_sum(l[hr]);  // the quad's partial sums
    const int64_t i = rb.i0 + rb.row0 + g + 8 * hr;
    if (i < p.Tq) {
      // The undropped sum l normalizes; kept entries carry 1 / (1 - p).
      const float f = lsum > 0.f ? p.inv_keep / lsum : 0.f;
      store_row(out + (rb.bh * p.Tq + i) * p.Dv, o, hr, t, p.Dv, f);
      if (t == 0) lse[rb.bh * p.Tq + i] = attn::finish_lse(m[hr], lsum);
    }
  }
}

// ---------------------------------------------------------------------------
// Host side: the rule, and the dispatch over dtypes and padded widths.

enum class AttentionKernel : int { kSimt = 0, kTensorCore = 1 };

// What SEQKERNELS_ATTENTION asks for: "simt" (default) or "tensor_core".
inline AttentionKernel attention_kernel_asked() {
  const char* name = std::getenv("SEQKERNELS_ATTENTION");
  if (name == nullptr || std::string(name) == "simt") {
    return AttentionKernel::kSimt;
  }
  TORCH_CHECK(std::string(name) == "tensor_core",
              "seqkernels: SEQKERNELS_ATTENTION must be 'simt' or "
              "'tensor_core', got '",
              name, "'");
  return AttentionKernel::kTensorCore;
}

// Whether this kernel serves q's dtype and the head dims.
inline bool serves(at::ScalarType dtype, int64_t D, int64_t Dv) {
  return (dtype == at::kHalf || dtype == at::kBFloat16) && D >= 1 &&
         D <= kMaxDim && Dv >= 1 && Dv <= kMaxDim;
}

// The forward the CUDA sdpa runs for q's dtype and the head dims (the rule
// at the top of this file).
inline AttentionKernel sdpa_forward_kernel(at::ScalarType dtype, int64_t D,
                                           int64_t Dv) {
  return attention_kernel_asked() == AttentionKernel::kTensorCore &&
                 serves(dtype, D, Dv)
             ? AttentionKernel::kTensorCore
             : AttentionKernel::kSimt;
}

// The backward the CUDA sdpa_backward runs: the tensor-core one
// (sdpa_tensor_core_backward.h) where the forward's rule picks the
// tensor-core forward, the SIMT one elsewhere.
inline AttentionKernel sdpa_backward_kernel(at::ScalarType dtype, int64_t D,
                                            int64_t Dv) {
  return sdpa_forward_kernel(dtype, D, Dv);
}

// The forward the CUDA attention_scores runs for q's dtype and head dim D
// (attention_scores_tensor_core.h): the same rule, with no value dim.
inline AttentionKernel attention_scores_forward_kernel(at::ScalarType dtype,
                                                       int64_t D) {
  return sdpa_forward_kernel(dtype, D, 1);
}

inline const char* kernel_name(AttentionKernel k) {
  return k == AttentionKernel::kTensorCore ? "tensor_core" : "simt";
}

// Calls f(scalar_t(), std::integral_constant<int, DP>(),
// std::integral_constant<int, DVP>()) for a shape that serves() accepts:
// each head dim padded to 64 or 128.
template <typename F>
void dispatch(at::ScalarType dtype, int64_t D, int64_t Dv, F&& f) {
  TORCH_CHECK(serves(dtype, D, Dv), "seqkernels: internal: the tensor-core "
              "sdpa does not serve ", dtype, " with D = ", D, ", Dv = ", Dv);
  auto widths = [&](auto type) {
    auto dv = [&](auto dp) {
      if (Dv <= 64) {
        f(type, dp, std::integral_constant<int, 64>());
      } else {
        f(type, dp, std::integral_constant<int, 128>());
      }
    };
    if (D <= 64) {
      dv(std::integral_constant<int, 64>());
    } else {
      dv(std::integral_constant<int, 128>());
    }
  };
  if (dtype == at::kHalf) {
    widths(c10::Half());
  } else {
    widths(c10::BFloat16());
  }
}

// The kernel's parameters for a checked shape.
inline attn::FlashParams<float> make_params(const AttentionDims& d,
                                            double dropout_p, bool is_causal,
                                            double scale) {
  auto p = attn::make_flash_params<float>(d, dropout_p, is_causal, scale);
  p.n_blocks = (d.Tq + kRows - 1) / kRows;
  return p;
}

// Runs the kernel on CUDA tensors (csrc/cuda/sdpa_tensor_core.cu; CUDA
// builds only): q, k, v contiguous and checked, out and lse allocated, mask
// and rng_c as the CUDA sdpa made them.
void launch_forward(const at::Tensor& q, const at::Tensor& k,
                    const at::Tensor& v, const attn::MaskView& mask,
                    const at::Tensor& rng_c, const AttentionDims& d,
                    double dropout_p, bool is_causal, double scale,
                    at::Tensor& out, at::Tensor& lse);

}  // namespace sdpa_tc
}  // namespace seqkernels
