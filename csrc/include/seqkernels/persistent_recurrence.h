// The persistent recurrence kernels: one launch runs a whole layer's
// recurrence (every step), forward or backward, for every cell of
// cell_math.h. The same source is compiled by nvcc for the GPU
// (csrc/cuda/persistent_recurrence.cu) and by the host compiler for the CPU
// emulation (csrc/emulation/persistent_recurrence.cpp); block_primitives.h
// gives each its primitives.
//
// Work split. Block p owns the hidden units [p*U, p*U + U) and all G gates
// of them, so the cell math and the cell state stay in the block. Its rows
// of W_hh (rows g*H + u, as tile row g*U + u) are loaded into a shared-
// memory tile once and stay on chip for the whole sequence: in registers
// where they fit, else in that tile. A warp's product work items are the
// same at every step, so where the tensor-core A fragments of its items
// (the W rows of its k range) fit a compile-time bound (kForwardFrags,
// kBackwardFrags; the plan decides each product's case, Layout's
// w_regs_forward / w_regs_backward), the warp loads them from the tile
// into a register array once, before the time loop, and each step loads
// only the other operand (h, or the gate gradients) from shared memory;
// elsewhere each step loads the A fragments from the tile as well. Every
// block must be resident at once (the launcher uses a cooperative launch,
// which fails instead of deadlocking where they cannot be): blocks wait on
// each other.
//
// Forward step t (all shapes padded to the 16-wide tensor-core tiles):
//   1. load this step's input side xg[t] of the block's units into
//      registers, then wait until every block has published h_t (flag of
//      block q >= t; h_0 is the input h0);
//   2. copy h_t [B, H] (storage dtype) from global memory (L2) to shared;
//   3. the recurrent pre-activations of the block's rows on tensor cores:
//      acc[G*U, B] = W_rows[G*U, H] h_t^T (bf16/fp16 operands, float
//      accumulation), the K range split over warps where the tile count is
//      lower than the warp count, partial tiles summed in a fixed order;
//   4. the cell for each (unit, batch row) pair; h_{t+1} of the block's
//      units goes to the exchange buffer, ping-pong by step parity;
//   5. after a barrier, one thread publishes flag = t + 1 (release).
// Two exchange buffers suffice: a block writes buffer (t+1) % 2 at step t
// only after every block has published h_t, that is after every block has
// finished reading h_{t-1}, the buffer's previous content.
//
// Backward step s (time reversed), same ownership and resident W_hh (the
// tile as float, the register fragments rounded to tf32 once, for the tf32
// product below):
//   1. wait until every block has published its partial of step s + 1;
//      the block's units' dh carried from step s + 1 is the sum of those
//      partials over blocks 0, 1, ... in that order (deterministic: no
//      atomics), taken where the row is active at s + 1 (else the carry is
//      kept), as the per-step kernels do;
//   2. the pointwise backward of each pair: the gate gradients, written to
//      grad_xg / grad_hg, and kept in shared memory as the next product's
//      operand;
//   3. the block's partial of dh_{s-1}: part[H, B] = W_rows^T dhg^T over
//      its G*U rows, on tf32 tensor cores with the gate gradients split in
//      two tf32 terms (hi + lo, the lo term the rounding error of the hi
//      one), so the product keeps about 21 bits of them (W_hh in bf16/fp16
//      is exact in tf32); published to a ping-pong buffer and a flag.
// Step 0's partial is not formed: h0's gradient is a GEMM after the kernel.
//
// Variable lengths: a row is active at step t while t < lengths[b]; steps
// at or after the longest length do no product and no exchange. The
// results are those of the per-step kernels (SeqSteps in recurrent_host.h)
// up to the order of float additions.
#pragma once

#include "seqkernels/block_primitives.h"
#include "seqkernels/cell_math.h"

namespace seqkernels {
namespace persistent {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / blk::kWarpSize;
constexpr int kTile = 16;   // the tiles' M and N; K is 16 (bf16/fp16), 8 (tf32)
constexpr int kTf32K = 8;
constexpr int kPairs = 4;   // (unit, batch row) pairs per thread at most
constexpr int kPad16 = 8;   // row pitch padding of 16-bit tiles (elements)
constexpr int kPad32 = 4;   // and of float tiles
// The tensor-core A fragments (W_hh rows) a warp may keep in registers for
// the whole sequence: 4 registers each per thread (an m16n16k16 bf16/fp16
// fragment is 8 16-bit elements, an m16n16k8 tf32 one 4 floats), so 64 and
// 96 registers of the 255 that __launch_bounds__(256, 1) allows. The
// bounds are compile-time because the fragment arrays are indexed only by
// fully unrolled loops (a runtime index would put them in local memory);
// ptxas -v shows no spills and no stack with them (the figures are in
// csrc/cuda/persistent_recurrence.cu). Where a warp's fragments exceed a
// bound, every step reads them from the shared-memory tile instead.
constexpr int kForwardFrags = 16;
constexpr int kBackwardFrags = 24;

SK_DEVICE constexpr int round_up(int n, int m) { return (n + m - 1) / m * m; }

// Sizes, tile shapes and shared-memory offsets (bytes) of one launch.
struct Layout {
  int T, B, H, G, S;
  int units;   // U: hidden units per block (the last block may own fewer)
  int blocks;  // ceil(H / U)
  int m_pad;   // G*U rounded up to the tile: rows of the resident W tile
  int k_pad;   // H rounded up to the tile
  int b_pad;   // B rounded up to the tile
  int k_split; // warps sharing one forward output tile's K range
  // Whether each warp's A fragments of W_hh stay in registers (loaded once
  // before the time loop) in the forward and the backward product; where
  // not, every step loads them from the shared-memory tile.
  bool w_regs_forward, w_regs_backward;
  int ld_w, ld_h;  // forward: row pitches of the W and h tiles (16-bit)
  int ld_wf, ld_g; // backward: of the float W tile and gate-gradient tiles
  int f_w, f_h, f_acc, f_c, f_len, f_bytes;              // forward smem
  int b_w, b_hi, b_lo, b_dh, b_carry, b_len, b_bytes;    // backward smem
};

// The A fragments of W_hh the busiest warp multiplies each step, or -1
// where a warp has more than one forward item (the forward register path
// keeps one item's k range per warp).
inline int forward_frags_per_warp(const Layout& L) {
  const int items = (L.m_pad / kTile) * (L.b_pad / kTile) * L.k_split;
  const int k_steps = L.k_pad / kTile;
  return items <= kWarps ? (k_steps + L.k_split - 1) / L.k_split : -1;
}
inline int backward_frags_per_warp(const Layout& L) {
  const int items = (L.k_pad / kTile) * (L.b_pad / kTile);
  return (items + kWarps - 1) / kWarps * (L.m_pad / kTf32K);
}

// The layout for U units per block; plain integer arithmetic, host side.
// w_registers: whether W_hh may stay in registers where the fragments fit
// (false keeps it in shared memory: a test hook).
inline Layout make_layout(int G, int S, int T, int B, int H, int units,
                          bool w_registers) {
  Layout L{};
  L.T = T;
  L.B = B;
  L.H = H;
  L.G = G;
  L.S = S;
  L.units = units;
  L.blocks = (H + units - 1) / units;
  L.m_pad = round_up(G * units, kTile);
  L.k_pad = round_up(H, kTile);
  L.b_pad = round_up(B, kTile);
  const int tiles = (L.m_pad / kTile) * (L.b_pad / kTile);
  const int k_steps = L.k_pad / kTile;
  L.k_split = std::max(1, std::min(kWarps / tiles, k_steps));
  const int fwd_frags = forward_frags_per_warp(L);
  L.w_regs_forward = w_registers && fwd_frags >= 0 &&
                     fwd_frags <= kForwardFrags;
  L.w_regs_backward =
      w_registers && backward_frags_per_warp(L) <= kBackwardFrags;
  L.ld_w = L.k_pad + kPad16;
  L.ld_h = L.k_pad + kPad16;
  L.ld_wf = L.k_pad + kPad32;
  L.ld_g = L.m_pad + kPad32;
  const auto region = [](int& offset, int& at, long bytes) {
    at = offset;
    offset += round_up(int(bytes), 128);
  };
  int off = 0;
  region(off, L.f_w, 2L * L.m_pad * L.ld_w);
  region(off, L.f_h, 2L * L.b_pad * L.ld_h);
  region(off, L.f_acc, 4L * L.k_split * L.m_pad * L.b_pad);
  region(off, L.f_c, 4L * units * B);
  region(off, L.f_len, 4L * B);
  L.f_bytes = off;
  off = 0;
  region(off, L.b_w, 4L * L.m_pad * L.ld_wf);
  region(off, L.b_hi, 4L * L.b_pad * L.ld_g);
  region(off, L.b_lo, 4L * L.b_pad * L.ld_g);
  region(off, L.b_dh, 4L * units * B);
  region(off, L.b_carry, 4L * units * B);
  region(off, L.b_len, 4L * B);
  L.b_bytes = off;
  return L;
}

// Pointers of a forward launch (shapes as SeqForward in recurrent_host.h;
// "float" tensors are in the accumulation dtype).
template <typename scalar_t>
struct ForwardArgs {
  Layout L;
  Activation act;
  const float* xg;          // [T, B, G*H]
  const scalar_t* h0;       // [B, H]
  const scalar_t* w_hh;     // [G*H, H]
  const scalar_t* b_hh;     // [G*H] or null (split_grad cells)
  float* c_state;           // [B, H] in place (has_c) or null
  const int64_t* lengths;   // [B] or null
  float* saved;             // [T, B, S*H]
  float* cell_states;       // [T, B, H] (has_c) or null
  scalar_t* y;              // [T, B, H]
  scalar_t* h_n;            // [B, H]
  scalar_t* exchange;       // [2, B, H]: h_t of step t in buffer t % 2
  int* flags;               // [blocks], zero at launch
};

template <typename scalar_t>
struct BackwardArgs {
  Layout L;
  Activation act;
  const scalar_t* grad_y;      // [T, B, H]
  const scalar_t* w_hh;        // [G*H, H]
  float* dh_carry;             // [B, H] in place
  float* carry;                // [B, H] in place (has_c, direct_h) or null
  const float* saved;          // [T, B, S*H]
  const scalar_t* h_prev;      // [T, B, H] (direct_h) or null
  const float* c0;             // [B, H] (has_c) or null
  const float* cell_states;    // [T, B, H] (has_c) or null
  const int64_t* lengths;      // [B] or null
  float* grad_xg;              // [T, B, G*H]
  float* grad_hg;              // [T, B, G*H] (== grad_xg unless split_grad)
  float* partials;             // [2, blocks, k_pad, b_pad]
  int* flags;                  // [blocks], zero at launch
};

// Each row's length (T without lengths) into len[B] of shared memory, and
// the longest one: steps from there on have no active row.
SK_DEVICE int load_lengths(const int64_t* lengths, int T, int B, int* len) {
  for (int b = blk::thread_index(); b < B; b += kThreads) {
    len[b] = lengths == nullptr ? T : int(std::min<int64_t>(lengths[b], T));
  }
  blk::sync();
  int t_end = 0;
  for (int b = 0; b < B; ++b) t_end = std::max(t_end, len[b]);
  return t_end;
}

// The (unit, batch row) pairs of this thread: pair i is p = tid + i*threads,
// unit p / B, row p % B, for p < units_here * B.
struct Pair {
  int u, b;
  bool valid;
};
SK_DEVICE Pair pair(int i, int units_here, int B) {
  const int p = blk::thread_index() + i * kThreads;
  return Pair{p / B, p % B, p < units_here * B};
}

// The block's resident rows of W_hh [G*H, H] into the tile w (row pitch
// ld): tile row g*U + u holds row g*H + u0 + u; zero outside the block's
// units and past H, so the padded products add nothing.
template <typename scalar_t, typename tile_t>
SK_DEVICE void load_rows(const Layout& L, const scalar_t* w_hh, int u0,
                         int units_here, tile_t* w, int ld) {
  for (int e = blk::thread_index(); e < L.m_pad * L.k_pad; e += kThreads) {
    const int r = e / L.k_pad, k = e % L.k_pad;
    const int g = r / L.units, u = r % L.units;
    w[r * ld + k] = g < L.G && u < units_here && k < L.H
                        ? tile_t(w_hh[(g * L.H + u0 + u) * int64_t(L.H) + k])
                        : tile_t(0);
  }
}

// A forward work item: output tile (mt, nt) over the k steps [k0, k1) of
// its K range ks (empty for a range past the end: the tile is then zero).
struct ForwardItem {
  int mt, nt, ks, k0, k1;
};
SK_DEVICE ForwardItem forward_item(const Layout& L, int it) {
  const int m_tiles = L.m_pad / kTile, k_steps = L.k_pad / kTile;
  const int chunk = (k_steps + L.k_split - 1) / L.k_split;
  const int ks = it % L.k_split, mn = it / L.k_split;
  return ForwardItem{mn % m_tiles, mn / m_tiles, ks, ks * chunk,
                     std::min(k_steps, (ks + 1) * chunk)};
}

// The forward product's operand fragments.
template <typename scalar_t>
struct ForwardFrags {
  using mma_t = typename blk::MmaType<scalar_t>::type;
  using A = blk::wmma::fragment<blk::wmma::matrix_a, kTile, kTile, kTile,
                                mma_t, blk::wmma::row_major>;
  using B = blk::wmma::fragment<blk::wmma::matrix_b, kTile, kTile, kTile,
                                mma_t, blk::wmma::col_major>;
  using C = blk::wmma::fragment<blk::wmma::accumulator, kTile, kTile, kTile,
                                float>;
};

// Where W_hh stays in registers (L.w_regs_forward): this warp's item (at
// most one per warp there) and its A fragments, loaded once from the
// shared tile w; fragment i is k step k0 + i.
template <typename scalar_t>
SK_DEVICE void load_forward_frags(
    const Layout& L, const scalar_t* w,
    typename ForwardFrags<scalar_t>::A (&wa)[kForwardFrags]) {
  const int it = blk::warp_index();
  if (it >= (L.m_pad / kTile) * (L.b_pad / kTile) * L.k_split) return;
  const ForwardItem q = forward_item(L, it);
  SK_UNROLL
  for (int i = 0; i < kForwardFrags; ++i) {
    if (q.k0 + i < q.k1) {
      blk::wmma::load_matrix_sync(
          wa[i],
          blk::mma_ptr(w + q.mt * kTile * L.ld_w + (q.k0 + i) * kTile),
          L.ld_w);
    }
  }
}

// Forward step 3: acc[ks][m][b] = sum over the k range ks of
// w[m][k] * h[b][k], each warp a set of (m tile, b tile, k range) items;
// the A fragments from wa (loaded by load_forward_frags) where W_hh stays
// in registers, else from the shared tile w.
template <typename scalar_t>
SK_DEVICE void forward_product(
    const Layout& L, const scalar_t* w,
    const typename ForwardFrags<scalar_t>::A (&wa)[kForwardFrags],
    const scalar_t* h, float* acc) {
  namespace wm = blk::wmma;
  using F = ForwardFrags<scalar_t>;
  const int items = (L.m_pad / kTile) * (L.b_pad / kTile) * L.k_split;
  for (int it = blk::warp_index(); it < items; it += kWarps) {
    const ForwardItem q = forward_item(L, it);
    typename F::C c;
    typename F::B b;
    wm::fill_fragment(c, 0.0f);
    const scalar_t* h_tile = h + q.nt * kTile * L.ld_h;
    if (L.w_regs_forward) {
      SK_UNROLL
      for (int i = 0; i < kForwardFrags; ++i) {
        if (q.k0 + i < q.k1) {
          wm::load_matrix_sync(
              b, blk::mma_ptr(h_tile + (q.k0 + i) * kTile), L.ld_h);
          wm::mma_sync(c, wa[i], b, c);
        }
      }
    } else {
      for (int kk = q.k0; kk < q.k1; ++kk) {
        typename F::A a;
        wm::load_matrix_sync(
            a, blk::mma_ptr(w + q.mt * kTile * L.ld_w + kk * kTile), L.ld_w);
        wm::load_matrix_sync(b, blk::mma_ptr(h_tile + kk * kTile), L.ld_h);
        wm::mma_sync(c, a, b, c);
      }
    }
    wm::store_matrix_sync(
        acc + (q.ks * L.m_pad + q.mt * kTile) * L.b_pad + q.nt * kTile, c,
        L.b_pad, wm::mem_row_major);
  }
}

template <typename Cell, typename scalar_t>
SK_DEVICE void persistent_forward(const ForwardArgs<scalar_t>& a) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  const Layout& L = a.L;
  const int B = L.B, H = L.H, tid = blk::thread_index();
  const int me = blk::block_index(), u0 = me * L.units;
  const int units_here = std::min(L.units, H - u0);
  unsigned char* sm = blk::smem();
  scalar_t* w = reinterpret_cast<scalar_t*>(sm + L.f_w);
  scalar_t* h = reinterpret_cast<scalar_t*>(sm + L.f_h);
  float* acc = reinterpret_cast<float*>(sm + L.f_acc);
  float* c_s = reinterpret_cast<float*>(sm + L.f_c);  // [units][B]
  int* len = reinterpret_cast<int*>(sm + L.f_len);
  const int64_t GH = int64_t(G) * H, SH = int64_t(S) * H;

  load_rows(L, a.w_hh, u0, units_here, w, L.ld_w);
  SK_UNROLL
  for (int i = 0; i < kPairs; ++i) {
    const Pair q = pair(i, units_here, B);
    if (Cell::kHasC && q.valid) {
      c_s[q.u * B + q.b] = a.c_state[int64_t(q.b) * H + u0 + q.u];
    }
  }
  const int t_end = load_lengths(a.lengths, L.T, B, len);
  // After load_lengths' barrier, which orders load_rows' writes of w.
  typename ForwardFrags<scalar_t>::A wa[kForwardFrags];
  if (L.w_regs_forward) load_forward_frags(L, w, wa);

  for (int t = 0; t < L.T; ++t) {
    const int64_t tb = int64_t(t) * B;
    if (t >= t_end) {  // no active row: zeros, and h and c stay

  SK_UNROLL
  for (int i = 0; i < kPairs; ++i) {
        const Pair q = pair(i, units_here, B);
        if (!q.valid) continue;
        const int64_t j = u0 + q.u, row = tb + q.b;
        for (int k = 0; k < S; ++k) a.saved[row * SH + k * H + j] = 0.0f;
        if (Cell::kHasC) a.cell_states[row * H + j] = 0.0f;
        a.y[row * H + j] = scalar_t(0);
      }
      continue;
    }
    // 1. The input side first: its loads overlap the wait.
    float xr[kPairs][G];

  SK_UNROLL
  for (int i = 0; i < kPairs; ++i) {
      const Pair q = pair(i, units_here, B);
      for (int g = 0; g < G; ++g) {
        xr[i][g] = q.valid ? a.xg[(tb + q.b) * GH + g * H + u0 + q.u] : 0.0f;
      }
    }
    if (t > 0 && tid < L.blocks) blk::wait_at_least(a.flags + tid, t);
    blk::sync();
    // 2. h_t into shared memory, zero in the padding.
    const scalar_t* src =
        t == 0 ? a.h0 : a.exchange + int64_t(t % 2) * B * H;
    for (int e = tid; e < L.b_pad * L.k_pad; e += kThreads) {
      const int b = e / L.k_pad, k = e % L.k_pad;
      h[b * L.ld_h + k] = b < B && k < H ? blk::load_l2(src + b * H + k)
                                         : scalar_t(0);
    }
    blk::sync();
    // 3. The recurrent side on tensor cores.
    forward_product(L, w, wa, h, acc);
    blk::sync();
    // 4. The cell.
    scalar_t* dst = a.exchange + int64_t((t + 1) % 2) * B * H;

  SK_UNROLL
  for (int i = 0; i < kPairs; ++i) {
      const Pair q = pair(i, units_here, B);
      if (!q.valid) continue;
      const int64_t j = u0 + q.u, row = tb + q.b;
      const scalar_t h_in = h[q.b * L.ld_h + j];
      float* saved = a.saved + row * SH + j;
      if (t >= len[q.b]) {
        for (int k = 0; k < S; ++k) saved[k * H] = 0.0f;
        if (Cell::kHasC) a.cell_states[row * H + j] = 0.0f;
        a.y[row * H + j] = scalar_t(0);
        dst[q.b * H + j] = h_in;
        continue;
      }
      float hg[G], sk[S];
      for (int g = 0; g < G; ++g) {
        float sum = 0.0f;
        for (int ks = 0; ks < L.k_split; ++ks) {
          sum += acc[(ks * L.m_pad + g * L.units + q.u) * L.b_pad + q.b];
        }
        hg[g] = sum + (a.b_hh != nullptr ? float(a.b_hh[g * H + j]) : 0.0f);
      }
      float c = Cell::kHasC ? c_s[q.u * B + q.b] : 0.0f, h_new;
      Cell::forward(xr[i], hg, float(h_in), a.act, c, sk, h_new);
      for (int k = 0; k < S; ++k) saved[k * H] = sk[k];
      if (Cell::kHasC) {
        c_s[q.u * B + q.b] = c;
        a.cell_states[row * H + j] = c;
      }
      a.y[row * H + j] = scalar_t(h_new);
      dst[q.b * H + j] = scalar_t(h_new);
    }
    // 5. Publish h_{t+1}.
    blk::sync();
    if (tid == 0) blk::publish(a.flags + me, t + 1);
  }
  // The final states: h of the last step with an active row (this block's
  // own writes, ordered by the barrier), and c.
  const scalar_t* last = a.exchange + int64_t(t_end % 2) * B * H;
  SK_UNROLL
  for (int i = 0; i < kPairs; ++i) {
    const Pair q = pair(i, units_here, B);
    if (!q.valid) continue;
    const int64_t bj = int64_t(q.b) * H + u0 + q.u;
    a.h_n[bj] = blk::load_l2(last + bj);
    if (Cell::kHasC) a.c_state[bj] = c_s[q.u * B + q.b];
  }
}

// The backward product's operand fragments (tf32, float accumulation).
struct BackwardFrags {
  using A = blk::wmma::fragment<blk::wmma::matrix_a, kTile, kTile, kTf32K,
                                blk::wmma::precision::tf32,
                                blk::wmma::col_major>;
  using B = blk::wmma::fragment<blk::wmma::matrix_b, kTile, kTile, kTf32K,
                                blk::wmma::precision::tf32,
                                blk::wmma::col_major>;
  using C = blk::wmma::fragment<blk::wmma::accumulator, kTile, kTile, kTf32K,
                                float>;
};

// The A fragment of W^T for output k tile mt at k step kk (rows kk*8 ..
// kk*8 + 7 of the float tile w), rounded to tf32.
SK_DEVICE void load_backward_a(const Layout& L, const float* w, int mt,
                               int kk, BackwardFrags::A& wa) {
  blk::wmma::load_matrix_sync(wa, w + kk * kTf32K * L.ld_wf + mt * kTile,
                              L.ld_wf);
  for (int e = 0; e < wa.num_elements; ++e) {
    wa.x[e] = blk::wmma::__float_to_tf32(wa.x[e]);
  }
}

// Where W_hh stays in registers (L.w_regs_backward): this warp's A
// fragments, loaded once from the shared tile w and rounded to tf32 once.
// Fragment f is k step f % k_steps of the warp's item f / k_steps (items
// warp, warp + kWarps, ...), the order backward_product walks them in.
SK_DEVICE void load_backward_frags(const Layout& L, const float* w,
                                   BackwardFrags::A (&wa)[kBackwardFrags]) {
  const int m_tiles = L.k_pad / kTile, k_steps = L.m_pad / kTf32K;
  const int items = m_tiles * (L.b_pad / kTile), warp = blk::warp_index();
  const int frags = (items - warp + kWarps - 1) / kWarps * k_steps;
  int it = warp, kk = 0;
  SK_UNROLL
  for (int f = 0; f < kBackwardFrags; ++f) {
    if (f < frags) {
      load_backward_a(L, w, it % m_tiles, kk, wa[f]);
      if (++kk == k_steps) {
        kk = 0;
        it += kWarps;
      }
    }
  }
}

// Backward step 3: part[k][b] = sum over the block's rows r of
// w[r][k] * (hi[b][r] + lo[b][r]), one (k tile, b tile) per warp item; the
// A fragments from wa (load_backward_frags) where W_hh stays in
// registers, else from the shared tile w, rounded to tf32 at each load.
SK_DEVICE void backward_product(const Layout& L, const float* w,
                                const BackwardFrags::A (&wa)[kBackwardFrags],
                                const float* hi, const float* lo,
                                float* part) {
  namespace wm = blk::wmma;
  const int m_tiles = L.k_pad / kTile, n_tiles = L.b_pad / kTile;
  const int k_steps = L.m_pad / kTf32K;
  const int items = m_tiles * n_tiles, warp = blk::warp_index();
  // c += wa * (hi + lo) at k step kk of output tile (mt, nt).
  const auto step = [&](const BackwardFrags::A& a, int nt, int kk,
                        BackwardFrags::C& c) {
    BackwardFrags::B gb;
    const float* terms[2] = {hi, lo};
    for (const float* g : terms) {
      wm::load_matrix_sync(gb, g + nt * kTile * L.ld_g + kk * kTf32K,
                           L.ld_g);
      for (int e = 0; e < gb.num_elements; ++e) {
        gb.x[e] = wm::__float_to_tf32(gb.x[e]);
      }
      wm::mma_sync(c, a, gb, c);
    }
  };
  const auto store = [&](int mt, int nt, const BackwardFrags::C& c) {
    wm::store_matrix_sync(part + mt * kTile * L.b_pad + nt * kTile, c,
                          L.b_pad, wm::mem_row_major);
  };
  BackwardFrags::C c;
  if (L.w_regs_backward) {
    // The fragments in load_backward_frags' order; an item's tile is
    // stored after its last k step.
    const int frags = (items - warp + kWarps - 1) / kWarps * k_steps;
    int it = warp, kk = 0;
    wm::fill_fragment(c, 0.0f);
    SK_UNROLL
    for (int f = 0; f < kBackwardFrags; ++f) {
      if (f < frags) {
        step(wa[f], it / m_tiles, kk, c);
        if (++kk == k_steps) {
          store(it % m_tiles, it / m_tiles, c);
          wm::fill_fragment(c, 0.0f);
          kk = 0;
          it += kWarps;
        }
      }
    }
    return;
  }
  for (int it = warp; it < items; it += kWarps) {
    const int mt = it % m_tiles, nt = it / m_tiles;
    wm::fill_fragment(c, 0.0f);
    for (int kk = 0; kk < k_steps; ++kk) {
      BackwardFrags::A a;
      load_backward_a(L, w, mt, kk, a);
      step(a, nt, kk, c);
    }
    store(mt, nt, c);
  }
}

template <typename Cell, typename scalar_t>
SK_DEVICE void persistent_backward(const BackwardArgs<scalar_t>& a) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  const Layout& L = a.L;
  const int B = L.B, H = L.H, tid = blk::thread_index();
  const int me = blk::block_index(), u0 = me * L.units;
  const int units_here = std::min(L.units, H - u0);
  unsigned char* sm = blk::smem();
  float* w = reinterpret_cast<float*>(sm + L.b_w);
  float* hi = reinterpret_cast<float*>(sm + L.b_hi);  // [b_pad][ld_g]
  float* lo = reinterpret_cast<float*>(sm + L.b_lo);
  float* dh_s = reinterpret_cast<float*>(sm + L.b_dh);       // [units][B]
  float* carry_s = reinterpret_cast<float*>(sm + L.b_carry);  // [units][B]
  int* len = reinterpret_cast<int*>(sm + L.b_len);
  const int64_t GH = int64_t(G) * H, SH = int64_t(S) * H;
  const int64_t part_size = int64_t(L.k_pad) * L.b_pad;
  constexpr bool kCarry = Cell::kHasC || Cell::kDirectH;

  load_rows(L, a.w_hh, u0, units_here, w, L.ld_wf);
  // The gate-gradient tiles are written only inside (B, G*U) below.
  for (int e = tid; e < L.b_pad * L.ld_g; e += kThreads) {
    hi[e] = 0.0f;
    lo[e] = 0.0f;
  }
  SK_UNROLL
  for (int i = 0; i < kPairs; ++i) {
    const Pair q = pair(i, units_here, B);
    if (!q.valid) continue;
    const int64_t bj = int64_t(q.b) * H + u0 + q.u;
    dh_s[q.u * B + q.b] = a.dh_carry[bj];
    if (kCarry) carry_s[q.u * B + q.b] = a.carry[bj];
  }
  const int t_end = load_lengths(a.lengths, L.T, B, len);
  // After load_lengths' barrier, which orders load_rows' writes of w.
  BackwardFrags::A wa[kBackwardFrags];
  if (L.w_regs_backward) load_backward_frags(L, w, wa);

  for (int s = L.T - 1; s >= 0; --s) {
    const int64_t sb = int64_t(s) * B;
    if (s >= t_end) {  // no active row: zero gradients; the carries stay

  SK_UNROLL
  for (int i = 0; i < kPairs; ++i) {
        const Pair q = pair(i, units_here, B);
        if (!q.valid) continue;
        for (int g = 0; g < G; ++g) {
          const int64_t n = (sb + q.b) * GH + g * H + u0 + q.u;
          a.grad_xg[n] = 0.0f;
          a.grad_hg[n] = 0.0f;
        }
      }
      continue;
    }
    const bool from_next = s + 1 < t_end;
    if (from_next && tid < L.blocks) {
      blk::wait_at_least(a.flags + tid, t_end - 1 - s);
    }
    blk::sync();
    const float* parts = a.partials + int64_t((s + 1) % 2) * L.blocks *
                                          part_size;

  SK_UNROLL
  for (int i = 0; i < kPairs; ++i) {
      const Pair q = pair(i, units_here, B);
      if (!q.valid) continue;
      const int j = u0 + q.u, ub = q.u * B + q.b;
      const int64_t row = sb + q.b;
      // 1. dh from step s + 1, summed over the blocks in a fixed order.
      if (from_next && len[q.b] > s + 1) {
        float sum = 0.0f;
        for (int p = 0; p < L.blocks; ++p) {
          sum += blk::load_l2(parts + p * part_size + j * L.b_pad + q.b);
        }
        if (Cell::kDirectH) sum += carry_s[ub];
        dh_s[ub] = sum;
      }
      // 2. The pointwise backward.
      float dxg[G], dhg[G];
      if (s >= len[q.b]) {
        for (int g = 0; g < G; ++g) dxg[g] = dhg[g] = 0.0f;
      } else {
        float sk[S];
        for (int k = 0; k < S; ++k) sk[k] = a.saved[row * SH + k * H + j];
        float h_p = 0.0f, c_p = 0.0f, c_v = 0.0f;
        if (Cell::kDirectH) h_p = float(a.h_prev[row * H + j]);
        if (Cell::kHasC) {
          c_p = s > 0 ? a.cell_states[(row - B) * H + j]
                      : a.c0[int64_t(q.b) * H + j];
          c_v = a.cell_states[row * H + j];
        }
        float carry_v = kCarry ? carry_s[ub] : 0.0f;
        Cell::backward(sk, h_p, c_p, c_v,
                       float(a.grad_y[row * H + j]) + dh_s[ub], a.act,
                       carry_v, dxg, dhg);
        if (!Cell::kSplitGrad) {
          for (int g = 0; g < G; ++g) dhg[g] = dxg[g];
        }
        if (kCarry) carry_s[ub] = carry_v;
      }
      for (int g = 0; g < G; ++g) {
        const int64_t n = row * GH + g * H + j;
        a.grad_xg[n] = dxg[g];
        if (Cell::kSplitGrad) a.grad_hg[n] = dhg[g];
        const float top = blk::wmma::__float_to_tf32(dhg[g]);
        hi[q.b * L.ld_g + g * L.units + q.u] = top;
        lo[q.b * L.ld_g + g * L.units + q.u] = dhg[g] - top;
      }
    }
    blk::sync();
    if (s == 0) break;
    // 3. This block's partial of dh_{s-1}, then publish it.
    backward_product(L, w, wa, hi, lo,
                     a.partials + (int64_t(s % 2) * L.blocks + me) * part_size);
    blk::sync();
    if (tid == 0) blk::publish(a.flags + me, t_end - s);
  }
  SK_UNROLL
  for (int i = 0; i < kPairs; ++i) {
    const Pair q = pair(i, units_here, B);
    if (!q.valid) continue;
    const int64_t bj = int64_t(q.b) * H + u0 + q.u;
    a.dh_carry[bj] = dh_s[q.u * B + q.b];
    if (kCarry) a.carry[bj] = carry_s[q.u * B + q.b];
  }
}

// The kernel of a launch, by its arguments: what the CUDA kernel and the
// emulated grid run.
template <typename Cell, typename scalar_t>
SK_DEVICE void run(const ForwardArgs<scalar_t>& a) {
  persistent_forward<Cell>(a);
}
template <typename Cell, typename scalar_t>
SK_DEVICE void run(const BackwardArgs<scalar_t>& a) {
  persistent_backward<Cell>(a);
}

}  // namespace persistent
}  // namespace seqkernels
