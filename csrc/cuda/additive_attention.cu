// CUDA kernels of additive (Bahdanau) attention: the ops additive_attention
// and additive_attention_backward (semantics:
// seqkernels/reference/additive_attention.py). The [B, Tq, Tk, H] tensor of
// tanh values is never stored: every kernel that needs it recomputes
// tanh(q_i + k_j + bias) in registers.
//
// forward: the flash block layout of seqkernels/attention_cuda.cuh (BM query
//          rows per block, warp-owned rows, lanes over keys): the scores of a
//          key tile are summed over H in chunks of 32 staged in shared
//          memory, then online softmax and context += P value in registers.
//          A block covers 32 * NC (64, 128 or 256) columns of value; values
//          wider than 256 take more blocks (each recomputes the scores).
//          Each row's maximum m and sum l of exp(s - m) are saved (stats);
//          with need_weights, a second kernel writes P = exp(s - m) / l
//          once (prob_from_max says why not exp(s - lse)).
// backward: P is recomputed (same kernel, accumulation dtype); dP, delta,
//          dS = P (dP - delta) and grad_value = P^T dcontext are [B,Tq,Tk]
//          elementwise work and GEMMs through ATen (cuBLAS, deterministic);
//          then, recomputing tanh,
//            dq kernel: blocks of 32 query rows x 32 hidden units, looping
//                       over keys; also writes per-block partial sums of
//                       grad_v, which ATen sums in a fixed order;
//            dk kernel: blocks of 32 keys x 32 hidden units, looping over
//                       query rows.
//          grad_bias = sum of grad_q over batch and rows (ATen). No atomics.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>

#include "seqkernels/attention_cuda.cuh"

namespace seqkernels {
namespace {

using namespace attn;

constexpr int kTile2 = 32;                     // rows x hidden units, dq/dk
constexpr int kRowsY = 8;                      // threadIdx / 32 in dq/dk
constexpr int kRowsPerThread = kTile2 / kRowsY;
constexpr int kThreads2 = kWarpSize * kRowsY;  // 256

struct AdditiveParams {
  int64_t B, Tq, Tk, H, Dv;
  int64_t nb0;  // blocks along the fastest grid dimension (rows or keys)
  int64_t nb1;  // blocks along the second one (value slices, keys, hidden)
};

// s[r][t] = sum_h v_h tanh(q[i0 + row0 + r, h] + k[j0 + lane + 32 t, h]
// + bias_h) for this warp's rows of the block; rows or keys out of range
// give finite values (callers mask them). qc [BM][kChunk], buf [BN][kPad],
// vb [2][kChunk]: block scratch. Synchronizes the block; every thread must
// call.
template <int RPW, int NT, typename scalar_t, typename acc_t>
__device__ __forceinline__ void additive_scores(
    acc_t (&s)[RPW][NT], acc_t (*qc)[kChunk], acc_t (*buf)[kPad],
    acc_t (*vb)[kChunk], const scalar_t* __restrict__ qp,
    const scalar_t* __restrict__ kp, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ bias, int64_t Tq, int64_t Tk, int64_t H,
    int64_t i0, int64_t j0, int row0) {
  constexpr int BN = NT * kWarpSize;
  constexpr int BM = kWarps * RPW;
  const int lane = threadIdx.x % kWarpSize;
  fill_regs(s, acc_t(0));
  for (int64_t h0 = 0; h0 < H; h0 += kChunk) {
    __syncthreads();  // earlier readers of the scratch are done
    load_chunk<BM, kThreads, kChunk>(&qc[0][0], qp, Tq, H, H, i0, h0);
    load_chunk<BN, kThreads, kPad>(&buf[0][0], kp, Tk, H, H, j0, h0);
    if (threadIdx.x < kChunk) {
      const int64_t hh = h0 + threadIdx.x;
      vb[0][threadIdx.x] = hh < H ? static_cast<acc_t>(v[hh]) : acc_t(0);
      vb[1][threadIdx.x] = (bias != nullptr && hh < H)
                               ? static_cast<acc_t>(bias[hh])
                               : acc_t(0);
    }
    __syncthreads();
    const int hn = static_cast<int>(min64(kChunk, H - h0));
    for (int hh = 0; hh < hn; ++hh) {
      const acc_t vh = vb[0][hh], bh = vb[1][hh];
      acc_t kx[NT];
#pragma unroll
      for (int t = 0; t < NT; ++t) kx[t] = buf[lane + kWarpSize * t][hh];
#pragma unroll
      for (int r = 0; r < RPW; ++r) {
        const acc_t qx = qc[row0 + r][hh];
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          // (q + k) + bias: the reference's order of additions.
          s[r][t] += vh * sk_tanh((qx + kx[t]) + bh);
        }
      }
    }
  }
}

// q [B,Tq,H]  k [B,Tk,H]  value [B,Tk,Dv]  v [H]  bias [H] or null
// context [B,Tq,Dv]  stats [B,Tq,2] (m, l)
// grid x = nb0 (row blocks) * nb1 (slices of 32 * NC columns of value) * B.
template <typename scalar_t, typename acc_t, int NC>
__global__ void __launch_bounds__(kThreads, rows_kernel_min_blocks(NC))
    additive_forward_kernel(
        const AdditiveParams p, const scalar_t* __restrict__ q,
        const scalar_t* __restrict__ k, const scalar_t* __restrict__ value,
        const scalar_t* __restrict__ v, const scalar_t* __restrict__ bias,
        const MaskView mask, scalar_t* __restrict__ context,
        acc_t* __restrict__ stats) {
  constexpr int RPW = FlashTile<acc_t>::kRowsPerWarp;
  constexpr int BN = FlashTile<acc_t>::kKeys;
  constexpr int NT = BN / kWarpSize;
  constexpr int BM = kWarps * RPW;
  __shared__ acc_t qc[BM][kChunk];
  __shared__ acc_t buf[BN][kPad];
  __shared__ acc_t vb[2][kChunk];
  __shared__ acc_t ps[kWarps][RPW][BN];

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t blk = int64_t(blockIdx.x) % p.nb0;
  const int64_t rest = int64_t(blockIdx.x) / p.nb0;
  const int64_t slice = rest % p.nb1, b = rest / p.nb1;
  const int64_t i0 = blk * BM;
  const int64_t col0 = slice * (NC * kWarpSize);
  const int row0 = warp * RPW;
  const scalar_t* qp = q + b * p.Tq * p.H;
  const scalar_t* kp = k + b * p.Tk * p.H;
  const scalar_t* valp = value + b * p.Tk * p.Dv;

  acc_t o[RPW][NC], m[RPW], l[RPW];
  fill_regs(m, neg_inf<acc_t>());
  fill_regs(l, acc_t(0));
  fill_regs(o, acc_t(0));

  for (int64_t j0 = 0; j0 < p.Tk; j0 += BN) {
    acc_t s[RPW][NT];
    additive_scores<RPW, NT>(s, qc, buf, vb, qp, kp, v, bias, p.Tq, p.Tk,
                             p.H, i0, j0, row0);
#pragma unroll
    for (int r = 0; r < RPW; ++r) {
      const int64_t i = i0 + row0 + r;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const int64_t j = j0 + lane + kWarpSize * t;
        s[r][t] = masked_score<scalar_t>(s[r][t], acc_t(1), mask, false, b,
                                         0, i, j, p.Tq, p.Tk);
      }
      const acc_t alpha = online_softmax_step<NT>(s[r], m[r], l[r]);
#pragma unroll
      for (int c = 0; c < NC; ++c) o[r][c] *= alpha;
#pragma unroll
      for (int t = 0; t < NT; ++t) ps[warp][r][lane + kWarpSize * t] = s[r][t];
    }
    weights_times_tile<RPW, BN, NC, kThreads>(o, ps[warp], buf, valp, p.Tk,
                                              p.Dv, p.Dv, j0, col0);
  }

#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    const int64_t i = i0 + row0 + r;
    if (i < p.Tq) {
      const acc_t f = l[r] > acc_t(0) ? acc_t(1) / l[r] : acc_t(0);
      scalar_t* crow = context + (b * p.Tq + i) * p.Dv;
#pragma unroll
      for (int c = 0; c < NC; ++c) {
        const int64_t col = col0 + int64_t(c) * kWarpSize + lane;
        if (col < p.Dv) crow[col] = static_cast<scalar_t>(o[r][c] * f);
      }
      if (slice == 0 && lane == 0) {
        stats[2 * (b * p.Tq + i)] = m[r];
        stats[2 * (b * p.Tq + i) + 1] = l[r];
      }
    }
  }
}

// probs[b, i, j] = exp(s_ij - m_bi) / l_bi (0 for an empty row), with (m, l)
// from stats [B,Tq,2], one BM x BN
// tile per block. probs [B,Tq,Tk] of out_t: the weights (storage dtype) in
// the forward, P (accumulation dtype) in the backward.
// grid x = nb0 (row blocks) * nb1 (key blocks) * B.
template <typename scalar_t, typename acc_t, typename out_t>
__global__ void __launch_bounds__(kThreads, 8) additive_probs_kernel(
    const AdditiveParams p, const scalar_t* __restrict__ q,
    const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ bias, const MaskView mask,
    const acc_t* __restrict__ stats, out_t* __restrict__ probs) {
  constexpr int RPW = FlashTile<acc_t>::kRowsPerWarp;
  constexpr int BN = FlashTile<acc_t>::kKeys;
  constexpr int NT = BN / kWarpSize;
  constexpr int BM = kWarps * RPW;
  __shared__ acc_t qc[BM][kChunk];
  __shared__ acc_t buf[BN][kPad];
  __shared__ acc_t vb[2][kChunk];

  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  const int64_t blk = int64_t(blockIdx.x) % p.nb0;
  const int64_t rest = int64_t(blockIdx.x) / p.nb0;
  const int64_t kb = rest % p.nb1, b = rest / p.nb1;
  const int64_t i0 = blk * BM, j0 = kb * BN;
  const int row0 = warp * RPW;

  acc_t s[RPW][NT];
  additive_scores<RPW, NT>(s, qc, buf, vb, q + b * p.Tq * p.H,
                           k + b * p.Tk * p.H, v, bias, p.Tq, p.Tk, p.H, i0,
                           j0, row0);
#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    const int64_t i = i0 + row0 + r;
    if (i < p.Tq) {
      const acc_t m_i = stats[2 * (b * p.Tq + i)];
      const acc_t l_i = stats[2 * (b * p.Tq + i) + 1];
      const acc_t inv_l = l_i > acc_t(0) ? acc_t(1) / l_i : acc_t(0);
      out_t* row = probs + (b * p.Tq + i) * p.Tk;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const int64_t j = j0 + lane + kWarpSize * t;
        if (j < p.Tk) {
          const acc_t x = masked_score<scalar_t>(s[r][t], acc_t(1), mask,
                                                 false, b, 0, i, j, p.Tq,
                                                 p.Tk);
          row[j] = static_cast<out_t>(prob_from_max(x, m_i, inv_l));
        }
      }
    }
  }
}

// Where a thread of the dq and dk kernels stands: grid x = nb0 * nb1 * B,
// blocks of kTile2 rows (dq: query rows, dk: keys) fastest, then blocks of
// kTile2 hidden units; thread (tx, ty) owns unit h = h0 + tx of rows
// x0 + ty + kRowsY r. vh, bh: v_h and bias_h (0 past H or without bias).
template <typename acc_t>
struct HiddenBlock {
  int tx, ty;
  int64_t blk, b;
  int64_t x0, h0, h;
  bool h_ok;  // h < H
  acc_t vh, bh;
};

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ HiddenBlock<acc_t> hidden_block(
    const AdditiveParams& p, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ bias) {
  HiddenBlock<acc_t> hb;
  hb.tx = threadIdx.x % kWarpSize;
  hb.ty = threadIdx.x / kWarpSize;
  hb.blk = int64_t(blockIdx.x) % p.nb0;
  const int64_t rest = int64_t(blockIdx.x) / p.nb0;
  hb.b = rest / p.nb1;
  hb.x0 = hb.blk * kTile2;
  hb.h0 = (rest % p.nb1) * kTile2;
  hb.h = hb.h0 + hb.tx;
  hb.h_ok = hb.h < p.H;
  hb.vh = hb.h_ok ? static_cast<acc_t>(v[hb.h]) : acc_t(0);
  hb.bh = (hb.h_ok && bias != nullptr) ? static_cast<acc_t>(bias[hb.h])
                                       : acc_t(0);
  return hb;
}

// x[r] = unit hb.h of row hb.x0 + ty + kRowsY r of src [n, H] (one batch's
// q or k), 0 out of range.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void load_unit_rows(
    acc_t (&x)[kRowsPerThread], const scalar_t* __restrict__ src, int64_t n,
    int64_t H, const HiddenBlock<acc_t>& hb) {
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int64_t row = hb.x0 + hb.ty + kRowsY * r;
    x[r] = (hb.h_ok && row < n) ? static_cast<acc_t>(src[row * H + hb.h])
                                : acc_t(0);
  }
}

// dst[row * H + h] = a[r] * v_h for the rows row = hb.x0 + ty + kRowsY r
// that load_unit_rows read, of dst [n, H] (one batch's dq or dk).
template <typename out_t, typename acc_t>
__device__ __forceinline__ void store_unit_rows(
    out_t* __restrict__ dst, const acc_t (&a)[kRowsPerThread], int64_t n,
    int64_t H, const HiddenBlock<acc_t>& hb) {
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    const int64_t row = hb.x0 + hb.ty + kRowsY * r;
    if (hb.h_ok && row < n) {
      dst[row * H + hb.h] = static_cast<out_t>(a[r] * hb.vh);
    }
  }
}

// One step's tiles of the dq and dk loops, between block barriers: units
// hb.h0.. of rows x0.. of x [n, H] (one batch's k for dq, q for dk) into xs,
// and the ds tile of rows i0.., keys j0.. into dss.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void stage_unit_and_ds_tiles(
    acc_t (*xs)[kPad], acc_t (*dss)[kPad], const scalar_t* __restrict__ x,
    int64_t n, int64_t x0, const acc_t* __restrict__ dsp,
    const AdditiveParams& p, int64_t i0, int64_t j0,
    const HiddenBlock<acc_t>& hb) {
  __syncthreads();
  load_chunk<kTile2, kThreads2, kPad>(&xs[0][0], x, n, p.H, p.H, x0, hb.h0);
  load_chunk<kTile2, kThreads2, kPad>(&dss[0][0], dsp, p.Tq, p.Tk, p.Tk, i0,
                                      j0);
  __syncthreads();
}

// dq[b,i,h] = v_h sum_j ds_ij (1 - t_ijh^2) and, per block, the partial sum
// over its rows and all keys of ds_ij t_ijh. Block: 32 rows x 32 hidden
// units; thread (x, y) owns unit h0 + x of rows i0 + y + 8 r.
// ds [B,Tq,Tk], dq [B,Tq,H] (accumulation dtype), dv_part [B * nb0, H].
// grid x = nb0 (row blocks) * nb1 (hidden blocks) * B.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads2, 4) additive_dq_kernel(
    const AdditiveParams p, const scalar_t* __restrict__ q,
    const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ bias, const acc_t* __restrict__ ds,
    acc_t* __restrict__ dq, acc_t* __restrict__ dv_part) {
  __shared__ acc_t ks[kTile2][kPad];   // [key][unit]
  __shared__ acc_t dss[kTile2][kPad];  // [row][key]
  __shared__ acc_t red[kRowsY][kWarpSize];

  const HiddenBlock<acc_t> pos = hidden_block<scalar_t, acc_t>(p, v, bias);
  const int tx = pos.tx, ty = pos.ty;
  const int64_t b = pos.b, i0 = pos.x0;
  const scalar_t* kp = k + b * p.Tk * p.H;
  const acc_t* dsp = ds + b * p.Tq * p.Tk;

  acc_t qv[kRowsPerThread], a[kRowsPerThread];
  load_unit_rows(qv, q + b * p.Tq * p.H, p.Tq, p.H, pos);
  fill_regs(a, acc_t(0));
  acc_t dvp = acc_t(0);

  for (int64_t j0 = 0; j0 < p.Tk; j0 += kTile2) {
    stage_unit_and_ds_tiles(ks, dss, kp, p.Tk, j0, dsp, p, i0, j0, pos);
    const int jn = static_cast<int>(min64(kTile2, p.Tk - j0));
    for (int jj = 0; jj < jn; ++jj) {
      const acc_t kx = ks[jj][tx];
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        const acc_t t = sk_tanh((qv[r] + kx) + pos.bh);
        const acc_t d = dss[ty + kRowsY * r][jj];
        a[r] += d * (acc_t(1) - t * t);
        dvp += d * t;
      }
    }
  }

  store_unit_rows(dq + b * p.Tq * p.H, a, p.Tq, p.H, pos);
  red[ty][tx] = dvp;
  __syncthreads();
  if (ty == 0 && pos.h_ok) {
    acc_t sum = acc_t(0);
#pragma unroll
    for (int y = 0; y < kRowsY; ++y) sum += red[y][tx];
    dv_part[(b * p.nb0 + pos.blk) * p.H + pos.h] = sum;
  }
}

// dk[b,j,h] = v_h sum_i ds_ij (1 - t_ijh^2). Block: 32 keys x 32 hidden
// units; thread (x, y) owns unit h0 + x of keys j0 + y + 8 r.
// grid x = nb0 (key blocks) * nb1 (hidden blocks) * B.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads2, 4) additive_dk_kernel(
    const AdditiveParams p, const scalar_t* __restrict__ q,
    const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ bias, const acc_t* __restrict__ ds,
    scalar_t* __restrict__ dk) {
  __shared__ acc_t qs[kTile2][kPad];   // [row][unit]
  __shared__ acc_t dss[kTile2][kPad];  // [row][key]

  const HiddenBlock<acc_t> pos = hidden_block<scalar_t, acc_t>(p, v, bias);
  const int tx = pos.tx, ty = pos.ty;
  const int64_t b = pos.b, j0 = pos.x0;
  const scalar_t* qp = q + b * p.Tq * p.H;
  const acc_t* dsp = ds + b * p.Tq * p.Tk;

  acc_t kv[kRowsPerThread], a[kRowsPerThread];
  load_unit_rows(kv, k + b * p.Tk * p.H, p.Tk, p.H, pos);
  fill_regs(a, acc_t(0));

  for (int64_t i0 = 0; i0 < p.Tq; i0 += kTile2) {
    stage_unit_and_ds_tiles(qs, dss, qp, p.Tq, i0, dsp, p, i0, j0, pos);
    const int in = static_cast<int>(min64(kTile2, p.Tq - i0));
    for (int ii = 0; ii < in; ++ii) {
      const acc_t qx = qs[ii][tx];
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        const acc_t t = sk_tanh((qx + kv[r]) + pos.bh);
        a[r] += dss[ii][ty + kRowsY * r] * (acc_t(1) - t * t);
      }
    }
  }

  store_unit_rows(dk + b * p.Tk * p.H, a, p.Tk, p.H, pos);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> additive_attention_cuda(
    const at::Tensor& q_in, const at::Tensor& k_in,
    const at::Tensor& value_in, const at::Tensor& v_in,
    const c10::optional<at::Tensor>& bias_in,
    const c10::optional<at::Tensor>& attn_mask, bool need_weights) {
  check_cuda_q(q_in);
  const AdditiveDims d =
      check_additive_attention(q_in, k_in, value_in, v_in, bias_in, attn_mask);
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, H = d.H, Dv = d.Dv;
  const c10::cuda::CUDAGuard guard(q_in.device());
  const MaskView mask = make_mask_view(attn_mask);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(),
                   value = value_in.contiguous(), v = v_in.contiguous();
  const at::Tensor bias =
      bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  at::Tensor context = at::empty({B, Tq, Dv}, q.options());
  at::Tensor stats = at::empty(
      {B, Tq, 2}, q.options().dtype(acc_dtype(q.scalar_type())));
  at::Tensor weights = need_weights ? at::empty({B, Tq, Tk}, q.options())
                                    : at::empty({0}, q.options());
  if (B * Tq == 0) return {context, weights, stats};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, q.scalar_type(), "additive_attention_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        constexpr int BM = kWarps * FlashTile<acc_t>::kRowsPerWarp;
        constexpr int BN = FlashTile<acc_t>::kKeys;
        // Value columns per block: 32 * NC, the fewest slots for
        // min(Dv, 256); wider values take several slices.
        dispatch_col_slots(std::min<int64_t>(Dv, kMaxHeadDim), [&](auto nc) {
          constexpr int NC = decltype(nc)::value;
          const AdditiveParams p{
              B, Tq, Tk, H, Dv, ceil_div(Tq, BM),
              std::max<int64_t>(1, ceil_div(Dv, NC * kWarpSize))};
          additive_forward_kernel<scalar_t, acc_t, NC>
              <<<grid_blocks(p.nb0 * p.nb1 * B, "additive_attention"),
                 kThreads, 0, stream>>>(
                  p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                  value.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                  ptr_or_null<scalar_t>(bias), mask,
                  context.data_ptr<scalar_t>(), stats.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
        if (need_weights && Tk > 0) {
          const AdditiveParams p{B, Tq, Tk, H, Dv, ceil_div(Tq, BM),
                                 ceil_div(Tk, BN)};
          additive_probs_kernel<scalar_t, acc_t, scalar_t>
              <<<grid_blocks(p.nb0 * p.nb1 * B, "additive_attention"),
                 kThreads, 0, stream>>>(
                  p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                  v.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bias),
                  mask, stats.data_ptr<acc_t>(),
                  weights.data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });
  return {context, weights, stats};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
additive_attention_backward_cuda(
    const at::Tensor& grad_context_in,
    const c10::optional<at::Tensor>& grad_weights, const at::Tensor& q_in,
    const at::Tensor& k_in, const at::Tensor& value_in,
    const at::Tensor& v_in, const c10::optional<at::Tensor>& bias_in,
    const c10::optional<at::Tensor>& attn_mask, const at::Tensor& context_in,
    const at::Tensor& stats_in) {
  check_cuda_q(q_in);
  const AdditiveDims d = check_additive_attention_backward(
      grad_context_in, grad_weights, q_in, k_in, value_in, v_in, bias_in,
      attn_mask, context_in, stats_in);
  const int64_t B = d.B, Tq = d.Tq, Tk = d.Tk, H = d.H, Dv = d.Dv;
  const at::ScalarType acc_type = acc_dtype(q_in.scalar_type());
  const c10::cuda::CUDAGuard guard(q_in.device());
  const MaskView mask = make_mask_view(attn_mask);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(),
                   value = value_in.contiguous(), v = v_in.contiguous(),
                   stats = stats_in.contiguous();
  const at::Tensor bias =
      bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const at::TensorOptions acc_opts = q.options().dtype(acc_type);

  // P, recomputed exactly as the forward's weights.
  at::Tensor P = at::empty({B, Tq, Tk}, acc_opts);
  if (P.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, q.scalar_type(),
        "additive_attention_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          constexpr int BM = kWarps * FlashTile<acc_t>::kRowsPerWarp;
          constexpr int BN = FlashTile<acc_t>::kKeys;
          const AdditiveParams p{B, Tq, Tk, H, Dv, ceil_div(Tq, BM),
                                 ceil_div(Tk, BN)};
          additive_probs_kernel<scalar_t, acc_t, acc_t>
              <<<grid_blocks(p.nb0 * p.nb1 * B,
                             "additive_attention_backward"),
                 kThreads, 0, stream>>>(
                  p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                  v.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bias),
                  mask, stats.data_ptr<acc_t>(), P.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }

  // dS = P (dP - delta), dP = dcontext value^T (+ grad_weights), and
  // delta = sum_j P dP as torch's softmax backward takes it, so that each
  // row of dS sums to zero up to rounding. (rowsum(dcontext * context)
  // would carry the forward's rounding of context into a per-row offset of
  // dS, which the grad_k and grad_bias sums over rows and keys collect
  // coherently: 1.5x over the tolerance rule in float32 on an H100.)
  const at::Tensor dctx = grad_context_in.to(acc_type);
  at::Tensor dP = at::matmul(dctx, value.to(acc_type).transpose(1, 2));
  if (grad_weights.has_value()) dP = dP + grad_weights->to(acc_type);
  const at::Tensor delta = (P * dP).sum(-1, true);
  const at::Tensor ds = (P * (dP - delta)).contiguous();
  at::Tensor grad_value =
      at::matmul(P.transpose(1, 2), dctx).to(value.scalar_type());

  const int64_t nb_q = ceil_div(Tq, kTile2), nb_k = ceil_div(Tk, kTile2),
                nb_h = ceil_div(H, kTile2);
  at::Tensor dq = at::empty({B, Tq, H}, acc_opts);
  at::Tensor dv_part = at::empty({B * nb_q, H}, acc_opts);
  at::Tensor grad_k = at::empty({B, Tk, H}, k.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, q.scalar_type(),
      "additive_attention_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const int64_t dq_blocks = nb_q * nb_h * B;
        if (dq_blocks > 0) {
          const AdditiveParams p{B, Tq, Tk, H, Dv, nb_q, nb_h};
          additive_dq_kernel<scalar_t, acc_t>
              <<<grid_blocks(dq_blocks, "additive_attention_backward"),
                 kThreads2, 0, stream>>>(
                  p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                  v.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bias),
                  ds.data_ptr<acc_t>(), dq.data_ptr<acc_t>(),
                  dv_part.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
        const int64_t dk_blocks = nb_k * nb_h * B;
        if (dk_blocks > 0) {
          const AdditiveParams p{B, Tq, Tk, H, Dv, nb_k, nb_h};
          additive_dk_kernel<scalar_t, acc_t>
              <<<grid_blocks(dk_blocks, "additive_attention_backward"),
                 kThreads2, 0, stream>>>(
                  p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                  v.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bias),
                  ds.data_ptr<acc_t>(), grad_k.data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        }
      });

  at::Tensor grad_q = dq.to(q.scalar_type());
  at::Tensor grad_v = dv_part.sum(0).to(v.scalar_type());
  at::Tensor grad_bias = bias.defined()
                             ? dq.sum(at::IntArrayRef{0, 1}).to(q.scalar_type())
                             : at::empty({0}, q.options());
  return {grad_q, grad_k, grad_value, grad_v, grad_bias};
}

}  // namespace
}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CUDA, m) {
  m.impl("additive_attention", &seqkernels::additive_attention_cuda);
  m.impl("additive_attention_backward",
         &seqkernels::additive_attention_backward_cuda);
}
