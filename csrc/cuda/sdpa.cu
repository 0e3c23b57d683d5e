// CUDA kernels of scaled dot-product attention: the ops sdpa and
// sdpa_backward (semantics: seqkernels/reference/sdpa.py).
//
// Flash style, SIMT float (double for float64) accumulation, no tensor
// cores; the layout shared by the kernels is described in
// seqkernels/attention_cuda.cuh. A tensor-core forward producing the same
// out and lse (seqkernels/sdpa_tensor_core.h), and a tensor-core backward
// (seqkernels/sdpa_tensor_core_backward.h), run instead where their rule
// picks them: SEQKERNELS_ATTENTION=tensor_core, float16/bfloat16, D and
// Dv <= 128.
//   forward: a block owns BM query rows of one (b, h) and loops over tiles
//            of BN keys: scores, online softmax, P V in registers; saves the
//            log-sum-exp.
//   backward: delta = rowsum(dO * O) (row_dot_kernel); dQ by query-row
//            blocks looping over key tiles; dK and dV by key blocks looping
//            over every query row of every query head of the group (GQA),
//            so each dK, dV element has one writer and a fixed summation
//            order. No atomics.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>

#include "seqkernels/attention_cuda.cuh"
#include "seqkernels/sdpa_tensor_core.h"
#include "seqkernels/sdpa_tensor_core_backward.h"

namespace seqkernels {
namespace {

using namespace attn;

// Minimum resident blocks per SM for the dK/dV kernel (see
// rows_kernel_min_blocks): two accumulator sets need more registers.
constexpr int dkdv_min_blocks(int nc) { return nc <= 4 ? 3 : 2; }

// q [B,Hq,Tq,D]  k [B,Hk,Tk,D]  v [B,Hk,Tk,Dv]  rng [2] or null
// out [B,Hq,Tq,Dv]  lse [B,Hq,Tq]
// Block: BM rows of one (b, h); grid x = n_blocks * B * Hq, row blocks
// fastest.
template <typename scalar_t, typename acc_t, int NC>
__global__ void __launch_bounds__(kThreads, rows_kernel_min_blocks(NC))
    sdpa_forward_kernel(
        const FlashParams<acc_t> p, const scalar_t* __restrict__ q,
        const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
        const MaskView mask, const int64_t* __restrict__ rng,
        scalar_t* __restrict__ out, acc_t* __restrict__ lse) {
  constexpr int RPW = FlashTile<acc_t>::kRowsPerWarp;
  constexpr int BN = FlashTile<acc_t>::kKeys;
  constexpr int NT = BN / kWarpSize;
  constexpr int BM = kWarps * RPW;
  constexpr int LDQ = NC * kWarpSize;  // >= D, Dv
  __shared__ acc_t qs[BM][LDQ];
  __shared__ acc_t buf[BN][kPad];
  __shared__ acc_t ps[kWarps][RPW][BN];

  const RowBlock rb = row_block<BM>(p, blockIdx.x, threadIdx.x);
  const int warp = rb.warp, lane = rb.lane, row0 = rb.row0;
  const int64_t bh = rb.bh, i0 = rb.i0;
  const scalar_t* kp = k + rb.bhk * p.Tk * p.D;
  const scalar_t* vp = v + rb.bhk * p.Tk * p.Dv;
  const uint32_t key = p.dropout ? dropout_key_from(rng) : 0u;

  load_rows<BM, kThreads, LDQ>(&qs[0][0], q + bh * p.Tq * p.D, p.Tq,
                               static_cast<int>(p.D), i0);

  acc_t o[RPW][NC], m[RPW], l[RPW];
  fill_regs(m, neg_inf<acc_t>());
  fill_regs(l, acc_t(0));
  fill_regs(o, acc_t(0));

  // Under is_causal, keys past the block's last row are masked for all rows.
  const int64_t kend = p.causal ? min64(p.Tk, i0 + BM) : p.Tk;
  for (int64_t j0 = 0; j0 < kend; j0 += BN) {
    acc_t s[RPW][NT];
    rows_dot_keys<RPW, NT, kThreads, LDQ>(s, &qs[row0], buf, kp, p.Tk, p.D,
                                          j0);
#pragma unroll
    for (int r = 0; r < RPW; ++r) {
      const int64_t i = i0 + row0 + r;
      mask_row<scalar_t>(s[r], p, mask, rb, r, j0);
      const acc_t alpha = online_softmax_step<NT>(s[r], m[r], l[r]);
#pragma unroll
      for (int c = 0; c < NC; ++c) o[r][c] *= alpha;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const int64_t j = j0 + lane + kWarpSize * t;
        acc_t pv = s[r][t];
        if (p.dropout && i < p.Tq && j < p.Tk &&
            !dropout_keep(key, (bh * p.Tq + i) * p.Tk + j, p.dropout_p)) {
          pv = acc_t(0);
        }
        ps[warp][r][lane + kWarpSize * t] = pv;
      }
    }
    // Synchronizes before reading ps (the block barrier orders the warp too).
    weights_times_tile<RPW, BN, NC, kThreads>(o, ps[warp], buf, vp, p.Tk,
                                              p.Dv, p.Dv, j0, 0);
  }

#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    const int64_t i = i0 + row0 + r;
    if (i < p.Tq) {
      // The undropped sum l normalizes; kept entries carry 1 / (1 - p).
      const acc_t f = l[r] > acc_t(0) ? p.inv_keep / l[r] : acc_t(0);
      scalar_t* orow = out + (bh * p.Tq + i) * p.Dv;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int64_t col = int64_t(c) * kWarpSize + lane;
        if (col < p.Dv) orow[col] = static_cast<scalar_t>(o[r][c] * f);
      }
      if (lane == 0) lse[bh * p.Tq + i] = finish_lse(m[r], l[r]);
    }
  }
}

// dQ. Same block layout as the forward. dout [B,Hq,Tq,Dv]; lse, delta
// [B,Hq,Tq]; dq [B,Hq,Tq,D].
template <typename scalar_t, typename acc_t, int NC>
__global__ void __launch_bounds__(kThreads, rows_kernel_min_blocks(NC))
    sdpa_dq_kernel(
        const FlashParams<acc_t> p, const scalar_t* __restrict__ q,
        const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
        const scalar_t* __restrict__ dout, const acc_t* __restrict__ lse,
        const acc_t* __restrict__ delta, const MaskView mask,
        const int64_t* __restrict__ rng, scalar_t* __restrict__ dq) {
  constexpr int RPW = FlashTile<acc_t>::kRowsPerWarp;
  constexpr int BN = FlashTile<acc_t>::kKeys;
  constexpr int NT = BN / kWarpSize;
  constexpr int BM = kWarps * RPW;
  constexpr int LDQ = NC * kWarpSize;  // >= D, Dv
  __shared__ acc_t qs[BM][LDQ];
  __shared__ acc_t dos[BM][LDQ];
  __shared__ acc_t buf[BN][kPad];
  __shared__ acc_t dss[kWarps][RPW][BN];

  const RowBlock rb = row_block<BM>(p, blockIdx.x, threadIdx.x);
  const int warp = rb.warp, lane = rb.lane, row0 = rb.row0;
  const int64_t bh = rb.bh, i0 = rb.i0;
  const scalar_t* kp = k + rb.bhk * p.Tk * p.D;
  const scalar_t* vp = v + rb.bhk * p.Tk * p.Dv;
  const uint32_t key = p.dropout ? dropout_key_from(rng) : 0u;

  load_rows<BM, kThreads, LDQ>(&qs[0][0], q + bh * p.Tq * p.D, p.Tq,
                               static_cast<int>(p.D), i0);
  load_rows<BM, kThreads, LDQ>(&dos[0][0], dout + bh * p.Tq * p.Dv, p.Tq,
                               static_cast<int>(p.Dv), i0);

  acc_t lse_r[RPW], delta_r[RPW], acc[RPW][NC];
#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    const int64_t i = i0 + row0 + r;
    lse_r[r] = i < p.Tq ? lse[bh * p.Tq + i] : neg_inf<acc_t>();
    delta_r[r] = i < p.Tq ? delta[bh * p.Tq + i] : acc_t(0);
  }
  fill_regs(acc, acc_t(0));

  const int64_t kend = p.causal ? min64(p.Tk, i0 + BM) : p.Tk;
  for (int64_t j0 = 0; j0 < kend; j0 += BN) {
    acc_t s[RPW][NT], dp[RPW][NT];
    rows_dot_keys<RPW, NT, kThreads, LDQ>(s, &qs[row0], buf, kp, p.Tk, p.D,
                                          j0);
    rows_dot_keys<RPW, NT, kThreads, LDQ>(dp, &dos[row0], buf, vp, p.Tk,
                                          p.Dv, j0);
#pragma unroll
    for (int r = 0; r < RPW; ++r) {
      const int64_t i = i0 + row0 + r;
      mask_row<scalar_t>(s[r], p, mask, rb, r, j0);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const int64_t j = j0 + lane + kWarpSize * t;
        const acc_t pr = prob_from_lse(s[r][t], lse_r[r]);
        acc_t dpv = dp[r][t];
        if (p.dropout) {
          const bool kept =
              i < p.Tq && j < p.Tk &&
              dropout_keep(key, (bh * p.Tq + i) * p.Tk + j, p.dropout_p);
          dpv = kept ? dpv * p.inv_keep : acc_t(0);
        }
        dss[warp][r][lane + kWarpSize * t] = pr * (dpv - delta_r[r]);
      }
    }
    weights_times_tile<RPW, BN, NC, kThreads>(acc, dss[warp], buf, kp, p.Tk,
                                              p.D, p.D, j0, 0);
  }

#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    const int64_t i = i0 + row0 + r;
    if (i < p.Tq) {
      scalar_t* row = dq + (bh * p.Tq + i) * p.D;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int64_t col = int64_t(c) * kWarpSize + lane;
        if (col < p.D) row[col] = static_cast<scalar_t>(acc[r][c] * p.scale);
      }
    }
  }
}

// acc[r][c] += sum_ii w[r][ii] * cs[ii][lane], ii < n: this warp's KPW
// keys' weights (P dropped, or dS) times column c of the staged chunk of
// query rows (dO, or Q), summed over the rows in order.
template <int KPW, int NC, int BMQ, typename acc_t>
__device__ __forceinline__ void keys_times_chunk(acc_t (&acc)[KPW][NC], int c,
                                                 acc_t (*w)[BMQ],
                                                 acc_t (*cs)[kPad],
                                                 int n, int lane) {
  for (int ii = 0; ii < n; ++ii) {
    const acc_t x = cs[ii][lane];
#pragma unroll
    for (int r = 0; r < KPW; ++r) acc[r][c] += w[r][ii] * x;
  }
}

// dK and dV. A block owns BNK = 4 * KPW keys of one (b, kv head); warp w
// owns keys w*KPW .. w*KPW + KPW - 1, lane l handles query row i0 + l of
// each 32-row query tile, and owns columns l + 32 c of the warp's dK, dV
// rows. The loop runs over the query heads of the group, then over query
// tiles: one fixed order. grid x = n_blocks * B * Hk, key blocks fastest.
// dk [B,Hk,Tk,D]  dv [B,Hk,Tk,Dv]
template <typename scalar_t, typename acc_t, int NC>
__global__ void __launch_bounds__(kThreads, dkdv_min_blocks(NC))
    sdpa_dkdv_kernel(
        const FlashParams<acc_t> p, const scalar_t* __restrict__ q,
        const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
        const scalar_t* __restrict__ dout, const acc_t* __restrict__ lse,
        const acc_t* __restrict__ delta, const MaskView mask,
        const int64_t* __restrict__ rng, scalar_t* __restrict__ dk,
        scalar_t* __restrict__ dv) {
  constexpr int KPW = FlashTile<acc_t>::kRowsPerWarp;
  constexpr int BNK = kWarps * KPW;
  constexpr int BMQ = kWarpSize;
  constexpr int LDK = NC * kWarpSize;  // >= D, Dv
  __shared__ acc_t ks[BNK][LDK];
  __shared__ acc_t vs[BNK][LDK];
  __shared__ acc_t cs[BMQ][kPad];  // a chunk of Q or dO rows
  __shared__ acc_t p_s[kWarps][KPW][BMQ];
  __shared__ acc_t ds_s[kWarps][KPW][BMQ];

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t blk = int64_t(blockIdx.x) % p.n_blocks;
  const int64_t bhk = int64_t(blockIdx.x) / p.n_blocks;  // b * Hk + hk
  const int64_t b = bhk / p.Hk, hk = bhk % p.Hk;
  const int64_t G = p.Hq / p.Hk;
  const int64_t j0 = blk * BNK;
  const int key0 = warp * KPW;
  const uint32_t key = p.dropout ? dropout_key_from(rng) : 0u;

  load_rows<BNK, kThreads, LDK>(&ks[0][0], k + bhk * p.Tk * p.D, p.Tk,
                                static_cast<int>(p.D), j0);
  load_rows<BNK, kThreads, LDK>(&vs[0][0], v + bhk * p.Tk * p.Dv, p.Tk,
                                static_cast<int>(p.Dv), j0);

  acc_t dk_acc[KPW][NC], dv_acc[KPW][NC];
  fill_regs(dk_acc, acc_t(0));
  fill_regs(dv_acc, acc_t(0));

  // Under is_causal, query rows before the block's first key see none of
  // its keys.
  const int64_t i_start = p.causal ? j0 : 0;
  for (int64_t g = 0; g < G; ++g) {
    const int64_t h = hk * G + g;
    const int64_t bh = b * p.Hq + h;
    const scalar_t* qp = q + bh * p.Tq * p.D;
    const scalar_t* dop = dout + bh * p.Tq * p.Dv;
    for (int64_t i0 = i_start; i0 < p.Tq; i0 += BMQ) {
      const int64_t i = i0 + lane;
      const acc_t lse_i = i < p.Tq ? lse[bh * p.Tq + i] : neg_inf<acc_t>();
      const acc_t delta_i = i < p.Tq ? delta[bh * p.Tq + i] : acc_t(0);
      const int in = static_cast<int>(min64(BMQ, p.Tq - i0));

      // Scores of (row i, key j0 + key0 + r).
      acc_t s[KPW];
      fill_regs(s, acc_t(0));
      for (int64_t d0 = 0; d0 < p.D; d0 += kChunk) {
        stage_chunk<BMQ, kThreads, kPad>(&cs[0][0], qp, p.Tq, p.D, p.D, i0,
                                         d0);
        const int dn = static_cast<int>(min64(kChunk, p.D - d0));
        const int dbase = static_cast<int>(d0);
        for (int dd = 0; dd < dn; ++dd) {
          const acc_t qx = cs[lane][dd];
#pragma unroll
          for (int r = 0; r < KPW; ++r) s[r] += qx * ks[key0 + r][dbase + dd];
        }
      }

      // Probabilities, and the dropped ones that multiply dO into dV.
      acc_t pr[KPW];
      bool kept[KPW];
#pragma unroll
      for (int r = 0; r < KPW; ++r) {
        const int64_t j = j0 + key0 + r;
        const acc_t x = masked_score<scalar_t>(s[r], p.scale, mask, p.causal,
                                               b, h, i, j, p.Tq, p.Tk);
        pr[r] = prob_from_lse(x, lse_i);
        kept[r] = !p.dropout ||
                  (i < p.Tq && j < p.Tk &&
                   dropout_keep(key, (bh * p.Tq + i) * p.Tk + j,
                                p.dropout_p));
        p_s[warp][r][lane] = kept[r] ? pr[r] * p.inv_keep : acc_t(0);
      }

      // dP = dO . v_j (per row) and dV += P_drop^T dO, one dO chunk at a
      // time.
      acc_t dpa[KPW];
      fill_regs(dpa, acc_t(0));
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int cb = c * kChunk;
        if (cb < p.Dv) {  // the same in every thread of the block
          stage_chunk<BMQ, kThreads, kPad>(&cs[0][0], dop, p.Tq, p.Dv, p.Dv,
                                           i0, cb);
          const int cn = static_cast<int>(min64(kChunk, p.Dv - cb));
          for (int cc = 0; cc < cn; ++cc) {
            const acc_t dox = cs[lane][cc];
#pragma unroll
            for (int r = 0; r < KPW; ++r) {
              dpa[r] += dox * vs[key0 + r][cb + cc];
            }
          }
          keys_times_chunk(dv_acc, c, p_s[warp], cs, in, lane);
        }
      }

      // dS = P (dP_drop - delta).
#pragma unroll
      for (int r = 0; r < KPW; ++r) {
        const acc_t dpv = kept[r] ? dpa[r] * p.inv_keep : acc_t(0);
        ds_s[warp][r][lane] = pr[r] * (dpv - delta_i);
      }

      // dK += dS^T Q, one Q chunk at a time.
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int cb = c * kChunk;
        if (cb < p.D) {
          stage_chunk<BMQ, kThreads, kPad>(&cs[0][0], qp, p.Tq, p.D, p.D, i0,
                                           cb);
          keys_times_chunk(dk_acc, c, ds_s[warp], cs, in, lane);
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < KPW; ++r) {
    const int64_t j = j0 + key0 + r;
    if (j < p.Tk) {
      scalar_t* krow = dk + (bhk * p.Tk + j) * p.D;
      scalar_t* vrow = dv + (bhk * p.Tk + j) * p.Dv;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int64_t col = int64_t(c) * kWarpSize + lane;
        if (col < p.D) {
          krow[col] = static_cast<scalar_t>(dk_acc[r][c] * p.scale);
        }
        if (col < p.Dv) vrow[col] = static_cast<scalar_t>(dv_acc[r][c]);
      }
    }
  }
}

std::tuple<at::Tensor, at::Tensor> sdpa_cuda(
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const c10::optional<at::Tensor>& attn_mask, double dropout_p,
    bool is_causal, double scale, const c10::optional<at::Tensor>& rng) {
  check_cuda_q(q_in);
  const AttentionDims d =
      check_sdpa(q_in, k_in, v_in, attn_mask, dropout_p, rng);
  check_head_dim(d.D, "q");
  check_head_dim(d.Dv, "v");
  const at::Tensor rng_c = device_rng(dropout_p, rng, q_in);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const MaskView mask = make_mask_view(attn_mask);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(),
                   v = v_in.contiguous();
  at::Tensor out = at::empty({d.B, d.Hq, d.Tq, d.Dv}, q.options());
  at::Tensor lse = at::empty({d.B, d.Hq, d.Tq},
                             q.options().dtype(acc_dtype(q.scalar_type())));
  // The rule of sdpa_tensor_core.h, read at every call.
  const bool tensor_core =
      sdpa_tc::sdpa_forward_kernel(q.scalar_type(), d.D, d.Dv) ==
      sdpa_tc::AttentionKernel::kTensorCore;
  if (d.B * d.Hq * d.Tq == 0) return {out, lse};
  if (tensor_core) {
    sdpa_tc::launch_forward(q, k, v, mask, rng_c, d, dropout_p, is_causal,
                            scale, out, lse);
    return {out, lse};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, q.scalar_type(), "sdpa_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        constexpr int BM = kWarps * FlashTile<acc_t>::kRowsPerWarp;
        auto p = make_flash_params<acc_t>(d, dropout_p, is_causal, scale);
        p.n_blocks = ceil_div(d.Tq, BM);
        const unsigned int blocks =
            grid_blocks(p.n_blocks * d.B * d.Hq, "sdpa");
        dispatch_col_slots(std::max(d.D, d.Dv), [&](auto nc) {
          sdpa_forward_kernel<scalar_t, acc_t, decltype(nc)::value>
              <<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
                  p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                  v.data_ptr<scalar_t>(), mask, ptr_or_null<int64_t>(rng_c),
                  out.data_ptr<scalar_t>(), lse.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sdpa_backward_cuda(
    const at::Tensor& grad_out_in, const at::Tensor& q_in,
    const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& out_in,
    const at::Tensor& lse_in, const c10::optional<at::Tensor>& attn_mask,
    double dropout_p, bool is_causal, double scale,
    const c10::optional<at::Tensor>& rng) {
  check_cuda_q(q_in);
  const AttentionDims d =
      check_sdpa_backward(grad_out_in, q_in, k_in, v_in, out_in, lse_in,
                          attn_mask, dropout_p, rng);
  check_head_dim(d.D, "q");
  check_head_dim(d.Dv, "v");
  const at::Tensor rng_c = device_rng(dropout_p, rng, q_in);
  const c10::cuda::CUDAGuard guard(q_in.device());
  const MaskView mask = make_mask_view(attn_mask);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(),
                   v = v_in.contiguous(), dout = grad_out_in.contiguous(),
                   out = out_in.contiguous(), lse = lse_in.contiguous();
  at::Tensor grad_q = at::empty(q.sizes(), q.options());
  at::Tensor grad_k = at::empty(k.sizes(), k.options());
  at::Tensor grad_v = at::empty(v.sizes(), v.options());
  at::Tensor delta = at::empty({d.B, d.Hq, d.Tq}, lse.options());
  // The rule of sdpa_tensor_core.h, read at every call.
  if (sdpa_tc::sdpa_backward_kernel(q.scalar_type(), d.D, d.Dv) ==
      sdpa_tc::AttentionKernel::kTensorCore) {
    sdpa_tc::launch_backward(dout, q, k, v, out, lse, mask, rng_c, d,
                             dropout_p, is_causal, scale, delta, grad_q,
                             grad_k, grad_v);
    return {grad_q, grad_k, grad_v};
  }
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, q.scalar_type(), "sdpa_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        constexpr int BM = kWarps * FlashTile<acc_t>::kRowsPerWarp;
        constexpr int BNK = BM;  // keys per dK/dV block: 4 warps x KPW
        const int64_t* rng_p = ptr_or_null<int64_t>(rng_c);
        auto p = make_flash_params<acc_t>(d, dropout_p, is_causal, scale);
        const int64_t head_cols = std::max(d.D, d.Dv);

        const int64_t rows = d.B * d.Hq * d.Tq;
        if (rows > 0) {
          row_dot_kernel<scalar_t, acc_t>
              <<<warp_per_row_blocks(rows, "sdpa_backward"), kThreads, 0,
                 stream>>>(rows, d.Dv, dout.data_ptr<scalar_t>(),
                           out.data_ptr<scalar_t>(), delta.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();

          p.n_blocks = ceil_div(d.Tq, BM);
          const unsigned int dq_blocks =
              grid_blocks(p.n_blocks * d.B * d.Hq, "sdpa_backward");
          dispatch_col_slots(head_cols, [&](auto nc) {
            sdpa_dq_kernel<scalar_t, acc_t, decltype(nc)::value>
                <<<dq_blocks, kThreads, 0, stream>>>(
                    p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                    v.data_ptr<scalar_t>(), dout.data_ptr<scalar_t>(),
                    lse.data_ptr<acc_t>(), delta.data_ptr<acc_t>(), mask,
                    rng_p, grad_q.data_ptr<scalar_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        }
        // Runs even without query rows: it writes the zero dK, dV.
        p.n_blocks = ceil_div(d.Tk, BNK);
        const int64_t kv_blocks = p.n_blocks * d.B * d.Hk;
        if (kv_blocks > 0) {
          const unsigned int dkdv_blocks =
              grid_blocks(kv_blocks, "sdpa_backward");
          dispatch_col_slots(head_cols, [&](auto nc) {
            sdpa_dkdv_kernel<scalar_t, acc_t, decltype(nc)::value>
                <<<dkdv_blocks, kThreads, 0, stream>>>(
                    p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                    v.data_ptr<scalar_t>(), dout.data_ptr<scalar_t>(),
                    lse.data_ptr<acc_t>(), delta.data_ptr<acc_t>(), mask,
                    rng_p, grad_k.data_ptr<scalar_t>(),
                    grad_v.data_ptr<scalar_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        }
      });
  return {grad_q, grad_k, grad_v};
}

}  // namespace
}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CUDA, m) {
  m.impl("sdpa", &seqkernels::sdpa_cuda);
  m.impl("sdpa_backward", &seqkernels::sdpa_backward_cuda);
}
