// CUDA kernels of the attention probabilities: the ops attention_scores and
// attention_scores_backward (semantics:
// seqkernels/reference/attention_scores.py).
//
// forward: one kernel, the flash block layout of seqkernels/attention_cuda.cuh
//          (BM query rows of one (b, h) per block): a first pass over the key
//          tiles computes each row's maximum m and sum l online, a second
//          pass recomputes the scores and writes P = exp(s - m) / l once
//          (prob_from_max says why not exp(s - lse)). Under
//          is_causal the tiles past the block's last row are written as 0
//          without computing scores. With SEQKERNELS_ATTENTION=tensor_core
//          (float16/bfloat16, D <= 128) the tensor-core forward of
//          seqkernels/attention_scores_tensor_core.h runs instead (opt-in:
//          it has not run on a GPU yet).
// backward: one kernel computes dS = P * (dP - rowsum(dP * P)) (a warp per
//          row, fixed order); dQ = scale dS K and dK = scale dS^T Q are GEMMs
//          through ATen (cuBLAS, deterministic). For grouped-query attention
//          the query heads of a group are stacked along the GEMM's
//          contraction dimension, so dK sums the group inside the GEMM.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>

#include "seqkernels/attention_cuda.cuh"
#include "seqkernels/attention_scores_tensor_core.h"

namespace seqkernels {
namespace {

using namespace attn;

// q [B,Hq,Tq,D]  k [B,Hk,Tk,D]  probs [B,Hq,Tq,Tk]
// grid x = n_blocks * B * Hq, row blocks fastest.
template <typename scalar_t, typename acc_t, int NC>
__global__ void __launch_bounds__(kThreads)
    attention_scores_forward_kernel(
        const FlashParams<acc_t> p, const scalar_t* __restrict__ q,
        const scalar_t* __restrict__ k, const MaskView mask,
        scalar_t* __restrict__ probs) {
  constexpr int RPW = FlashTile<acc_t>::kRowsPerWarp;
  constexpr int BN = FlashTile<acc_t>::kKeys;
  constexpr int NT = BN / kWarpSize;
  constexpr int BM = kWarps * RPW;
  constexpr int LDQ = NC * kWarpSize;  // >= D
  __shared__ acc_t qs[BM][LDQ];
  __shared__ acc_t buf[BN][kPad];

  const RowBlock rb = row_block<BM>(p, blockIdx.x, threadIdx.x);
  const int lane = rb.lane, row0 = rb.row0;
  const int64_t bh = rb.bh, b = rb.b, h = rb.h, i0 = rb.i0;
  const scalar_t* kp = k + rb.bhk * p.Tk * p.D;

  load_rows<BM, kThreads, LDQ>(&qs[0][0], q + bh * p.Tq * p.D, p.Tq,
                               static_cast<int>(p.D), i0);

  // The masking stays written out in both passes below: with mask_row (as
  // sdpa.cu uses it) ptxas spilled 40 to 68 bytes here on sm_90a, against
  // 8 bytes with this form.
  // Pass 1: the maximum and the sum of exponentials of each row.
  acc_t m[RPW], l[RPW];
  fill_regs(m, neg_inf<acc_t>());
  fill_regs(l, acc_t(0));
  const int64_t kend = p.causal ? min64(p.Tk, i0 + BM) : p.Tk;
  for (int64_t j0 = 0; j0 < kend; j0 += BN) {
    acc_t s[RPW][NT];
    rows_dot_keys<RPW, NT, kThreads, LDQ>(s, &qs[row0], buf, kp, p.Tk, p.D,
                                          j0);
#pragma unroll
    for (int r = 0; r < RPW; ++r) {
      const int64_t i = i0 + row0 + r;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const int64_t j = j0 + lane + kWarpSize * t;
        s[r][t] = masked_score<scalar_t>(s[r][t], p.scale, mask, p.causal, b,
                                         h, i, j, p.Tq, p.Tk);
      }
      online_softmax_step<NT>(s[r], m[r], l[r]);
    }
  }
  acc_t inv_l[RPW];
#pragma unroll
  for (int r = 0; r < RPW; ++r) {
    inv_l[r] = l[r] > acc_t(0) ? acc_t(1) / l[r] : acc_t(0);
  }

  // Pass 2: the probabilities, every column of every row written once.
  for (int64_t j0 = 0; j0 < p.Tk; j0 += BN) {
    acc_t s[RPW][NT];
    if (j0 < kend) {  // the same in every thread of the block
      rows_dot_keys<RPW, NT, kThreads, LDQ>(s, &qs[row0], buf, kp, p.Tk, p.D,
                                            j0);
#pragma unroll
      for (int r = 0; r < RPW; ++r) {
        const int64_t i = i0 + row0 + r;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          const int64_t j = j0 + lane + kWarpSize * t;
          const acc_t x = masked_score<scalar_t>(s[r][t], p.scale, mask,
                                                 p.causal, b, h, i, j, p.Tq,
                                                 p.Tk);
          s[r][t] = prob_from_max(x, m[r], inv_l[r]);
        }
      }
    } else {
      fill_regs(s, acc_t(0));
    }
#pragma unroll
    for (int r = 0; r < RPW; ++r) {
      const int64_t i = i0 + row0 + r;
      if (i < p.Tq) {
        scalar_t* row = probs + (bh * p.Tq + i) * p.Tk;
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          const int64_t j = j0 + lane + kWarpSize * t;
          if (j < p.Tk) row[j] = static_cast<scalar_t>(s[r][t]);
        }
      }
    }
  }
}

// ds[row, :] = p * (gp - sum_c gp[row, c] * p[row, c]) for each of `rows`
// rows of n columns; one warp per row. gp, p [rows, n] (storage dtype),
// ds [rows, n] (accumulation dtype).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) attention_scores_ds_kernel(
    int64_t rows, int64_t n, const scalar_t* __restrict__ gp,
    const scalar_t* __restrict__ p, acc_t* __restrict__ ds) {
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
  for (int64_t row = int64_t(blockIdx.x) * kWarps + warp; row < rows;
       row += int64_t(gridDim.x) * kWarps) {
    const scalar_t* gpr = gp + row * n;
    const scalar_t* pr = p + row * n;
    acc_t dot = acc_t(0);
    for (int64_t c = lane; c < n; c += kWarpSize) {
      dot += static_cast<acc_t>(gpr[c]) * static_cast<acc_t>(pr[c]);
    }
    dot = warp_sum(dot);
    acc_t* dsr = ds + row * n;
    for (int64_t c = lane; c < n; c += kWarpSize) {
      const acc_t pv = static_cast<acc_t>(pr[c]);
      dsr[c] = pv * (static_cast<acc_t>(gpr[c]) - dot);
    }
  }
}

at::Tensor attention_scores_cuda(const at::Tensor& q_in,
                                 const at::Tensor& k_in,
                                 const c10::optional<at::Tensor>& attn_mask,
                                 bool is_causal, double scale) {
  check_cuda_q(q_in);
  const AttentionDims d = check_attention_scores(q_in, k_in, attn_mask);
  check_head_dim(d.D, "q");
  const c10::cuda::CUDAGuard guard(q_in.device());
  const MaskView mask = make_mask_view(attn_mask);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous();
  at::Tensor probs = at::empty({d.B, d.Hq, d.Tq, d.Tk}, q.options());
  if (probs.numel() == 0) return probs;
  // The rule of sdpa_tensor_core.h, read at every call.
  if (sdpa_tc::attention_scores_forward_kernel(q.scalar_type(), d.D) ==
      sdpa_tc::AttentionKernel::kTensorCore) {
    sdpa_tc::launch_probs_forward(q, k, mask, d, is_causal, scale, probs);
    return probs;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, q.scalar_type(), "attention_scores_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        constexpr int BM = kWarps * FlashTile<acc_t>::kRowsPerWarp;
        auto p = make_flash_params<acc_t>(d, 0.0, is_causal, scale);
        p.n_blocks = ceil_div(d.Tq, BM);
        const unsigned int blocks =
            grid_blocks(p.n_blocks * d.B * d.Hq, "attention_scores");
        dispatch_col_slots(d.D, [&](auto nc) {
          attention_scores_forward_kernel<scalar_t, acc_t, decltype(nc)::value>
              <<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
                  p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), mask,
                  probs.data_ptr<scalar_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return probs;
}

std::tuple<at::Tensor, at::Tensor> attention_scores_backward_cuda(
    const at::Tensor& grad_p_in, const at::Tensor& q_in,
    const at::Tensor& k_in, const at::Tensor& p_in, double scale) {
  check_cuda_q(q_in);
  const AttentionDims d =
      check_attention_scores_backward(grad_p_in, q_in, k_in, p_in);
  check_head_dim(d.D, "q");  // as the forward, though cuBLAS takes any
  const int64_t B = d.B, Hq = d.Hq, Hk = d.Hk, Tq = d.Tq, Tk = d.Tk, D = d.D;
  const c10::cuda::CUDAGuard guard(q_in.device());
  const at::ScalarType acc_type = acc_dtype(q_in.scalar_type());
  const at::Tensor gp = grad_p_in.contiguous(), p = p_in.contiguous();
  at::Tensor ds = at::empty({B, Hq, Tq, Tk}, q_in.options().dtype(acc_type));
  const int64_t rows = B * Hq * Tq;
  if (rows > 0 && Tk > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, q_in.scalar_type(),
        "attention_scores_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          attention_scores_ds_kernel<scalar_t, acc_t>
              <<<warp_per_row_blocks(rows, "attention_scores_backward"),
                 kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
                  rows, Tk, gp.data_ptr<scalar_t>(), p.data_ptr<scalar_t>(),
                  ds.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
  }
  // Query head h = hk * G + g: the heads of a group are adjacent, so
  // [B, Hq, Tq, .] views as [B, Hk, G * Tq, .].
  const int64_t G = Hq / Hk;
  const at::Tensor ds_g = ds.view({B, Hk, G * Tq, Tk});
  const at::Tensor q_g =
      q_in.to(acc_type).contiguous().view({B, Hk, G * Tq, D});
  const at::Tensor k_acc = k_in.to(acc_type);
  at::Tensor grad_q = (at::matmul(ds_g, k_acc) * scale)
                          .view({B, Hq, Tq, D})
                          .to(q_in.scalar_type());
  at::Tensor grad_k = (at::matmul(ds_g.transpose(-1, -2), q_g) * scale)
                          .to(k_in.scalar_type())
                          .contiguous();
  return {grad_q.contiguous(), grad_k};
}

}  // namespace
}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CUDA, m) {
  m.impl("attention_scores", &seqkernels::attention_scores_cuda);
  m.impl("attention_scores_backward",
         &seqkernels::attention_scores_backward_cuda);
}
