// CUDA kernels of the recurrent cells (LSTM, GRU, RNN): the steps of the
// sequence driver (csrc/recurrent_host.cpp) and the pointwise cell ops.
//
// Each sequence step is one launch that fuses the recurrent matrix product
// with the cell's pointwise math, so the recurrent pre-activations never go
// to memory. The kernels are templated on the cell traits of cell_math.h:
//   forward:  a block owns BB batch rows x BJ hidden units and accumulates
//             the G gates of those units over K = P in tiles of KT, then
//             applies the cell and writes h, the saved values and c (LSTM);
//   backward: a block owns the same tile, accumulates the carried dh over
//             n = G*H (grad_hg_next @ w_hh), then the pointwise backward.
// This is the per-step kernel, the first step before a persistent one (a
// launch per layer, W_hh held on chip across steps): correct and
// CUDA-graph friendly, deterministic (each output element has one owner
// thread; no atomics). SIMT float accumulation, no tensor cores yet.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "seqkernels/persistent_launch.h"
#include "seqkernels/recurrent_host.h"

namespace seqkernels {
namespace {

constexpr int BJ = 32;  // hidden units per block (threadIdx.x)
constexpr int BB = 8;   // batch rows per block (threadIdx.y)
constexpr int KT = 32;  // reduction tile
constexpr int kThreads = BJ * BB;

__device__ __forceinline__ bool row_active(const int64_t* lengths, int b,
                                           int64_t s) {
  return lengths == nullptr || lengths[b] > s;
}

// xg_s [B,G*H] (acc_t)  h_in [B,P]  w_hh [G*H,P]  b_hh [G*H] or null
// c_state [B,H] (in place; LSTM)  saved_s [B,S*H]  cs_s [B,H] (LSTM)
// out_s [B,H]  h_out [B,P=H] or null
template <typename Cell, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) seq_forward_step_kernel(
    int64_t s, int B, int H, int P, Activation act,
    const acc_t* __restrict__ xg_s, const scalar_t* __restrict__ h_in,
    const scalar_t* __restrict__ w_hh, const scalar_t* __restrict__ b_hh,
    acc_t* __restrict__ c_state, const int64_t* __restrict__ lengths,
    acc_t* __restrict__ saved_s, acc_t* __restrict__ cs_s,
    scalar_t* __restrict__ out_s, scalar_t* __restrict__ h_out) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  __shared__ acc_t hs[BB][KT];
  __shared__ acc_t ws[G][BJ][KT + 1];  // +1: threads of a warp read rows
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * BJ + tx;
  const int j0 = blockIdx.x * BJ, b0 = blockIdx.y * BB;
  const int j = j0 + tx, b = b0 + ty;
  const bool in_range = b < B && j < H;
  const bool active = in_range && row_active(lengths, b, s);

  acc_t acc[G];
#pragma unroll
  for (int g = 0; g < G; ++g) acc[g] = acc_t(0);
  // A block whose rows have all finished skips the product.
  if (__syncthreads_or(active)) {
    for (int k0 = 0; k0 < P; k0 += KT) {
      for (int e = tid; e < BB * KT; e += kThreads) {
        const int r = e / KT, k = k0 + e % KT;
        hs[r][e % KT] = (b0 + r < B && k < P)
                            ? acc_t(h_in[int64_t(b0 + r) * P + k])
                            : acc_t(0);
      }
      for (int e = tid; e < G * BJ * KT; e += kThreads) {
        const int kk = e % KT, jj = (e / KT) % BJ, g = e / (KT * BJ);
        const int k = k0 + kk;
        ws[g][jj][kk] = (j0 + jj < H && k < P)
                            ? acc_t(w_hh[int64_t(g * H + j0 + jj) * P + k])
                            : acc_t(0);
      }
      __syncthreads();
#pragma unroll 8
      for (int kk = 0; kk < KT; ++kk) {
        const acc_t hv = hs[ty][kk];
#pragma unroll
        for (int g = 0; g < G; ++g) acc[g] += hv * ws[g][tx][kk];
      }
      __syncthreads();
    }
  }
  if (!in_range) return;
  const int64_t g0 = int64_t(b) * G * H + j, bj = int64_t(b) * H + j;
  acc_t* saved = saved_s + int64_t(b) * S * H + j;
  if (!active) {
#pragma unroll
    for (int k = 0; k < S; ++k) saved[k * H] = acc_t(0);
    if constexpr (Cell::kHasC) cs_s[bj] = acc_t(0);
    out_s[bj] = scalar_t(0);
    if (h_out != nullptr) h_out[bj] = h_in[bj];
    return;
  }
  acc_t xg[G], hg[G], sk[S];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    xg[g] = xg_s[g0 + g * H];
    hg[g] = acc[g] + (b_hh != nullptr ? acc_t(b_hh[g * H + j]) : acc_t(0));
  }
  acc_t h_prev = acc_t(0), c = acc_t(0), h;
  if constexpr (Cell::kDirectH) h_prev = acc_t(h_in[int64_t(b) * P + j]);
  if constexpr (Cell::kHasC) c = c_state[bj];
  Cell::forward(xg, hg, h_prev, act, c, sk, h);
#pragma unroll
  for (int k = 0; k < S; ++k) saved[k * H] = sk[k];
  if constexpr (Cell::kHasC) {
    c_state[bj] = c;
    cs_s[bj] = c;
  }
  out_s[bj] = scalar_t(h);
  if (h_out != nullptr) h_out[bj] = scalar_t(h);
}

// grad_hg_next [B,G*H] (acc_t) or null  w_hh [G*H,H] or null  dh_carry [B,H]
// dh_in [B,H]  carry [B,H] (in place; LSTM: dc, GRU: the direct dh)
// saved_s [B,S*H]  h_prev [B,H] (GRU)  c_prev, cs_s [B,H] (LSTM)
// grad_xg_s, grad_hg_s [B,G*H] (acc_t; grad_hg_s: GRU)
template <typename Cell, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) seq_backward_step_kernel(
    int64_t s, int B, int H, Activation act,
    const acc_t* __restrict__ grad_hg_next,
    const scalar_t* __restrict__ w_hh, acc_t* __restrict__ dh_carry,
    const scalar_t* __restrict__ dh_in, acc_t* __restrict__ carry,
    const acc_t* __restrict__ saved_s, const scalar_t* __restrict__ h_prev,
    const acc_t* __restrict__ c_prev, const acc_t* __restrict__ cs_s,
    const int64_t* __restrict__ lengths, acc_t* __restrict__ grad_xg_s,
    acc_t* __restrict__ grad_hg_s) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  __shared__ acc_t gs[BB][KT];
  __shared__ acc_t ws[KT][BJ + 1];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * BJ + tx;
  const int j0 = blockIdx.x * BJ, b0 = blockIdx.y * BB;
  const int j = j0 + tx, b = b0 + ty;
  const bool in_range = b < B && j < H;
  const bool gemm = w_hh != nullptr && grad_hg_next != nullptr;
  const bool next_active = in_range && gemm && row_active(lengths, b, s + 1);

  acc_t from_next = 0;
  if (__syncthreads_or(next_active)) {
    const int N = G * H;
    for (int n0 = 0; n0 < N; n0 += KT) {
      for (int e = tid; e < BB * KT; e += kThreads) {
        const int r = e / KT, n = n0 + e % KT;
        gs[r][e % KT] = (b0 + r < B && n < N)
                            ? grad_hg_next[int64_t(b0 + r) * N + n]
                            : acc_t(0);
      }
      for (int e = tid; e < KT * BJ; e += kThreads) {
        const int kk = e / BJ, jj = e % BJ, n = n0 + kk;
        ws[kk][jj] = (n < N && j0 + jj < H)
                         ? acc_t(w_hh[int64_t(n) * H + j0 + jj])
                         : acc_t(0);
      }
      __syncthreads();
#pragma unroll 8
      for (int kk = 0; kk < KT; ++kk) from_next += gs[ty][kk] * ws[kk][tx];
      __syncthreads();
    }
  }
  if (!in_range) return;
  const int64_t g0 = int64_t(b) * G * H + j, bj = int64_t(b) * H + j;
  acc_t from_later = 0;
  if (w_hh != nullptr) {
    if (next_active) {
      from_later = from_next;
      if constexpr (Cell::kDirectH) from_later += carry[bj];
    } else {
      from_later = dh_carry[bj];
    }
    dh_carry[bj] = from_later;
  }
  if (!row_active(lengths, b, s)) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      grad_xg_s[g0 + g * H] = acc_t(0);
      if constexpr (Cell::kSplitGrad) grad_hg_s[g0 + g * H] = acc_t(0);
    }
    return;
  }
  const acc_t* saved = saved_s + int64_t(b) * S * H + j;
  acc_t sk[S], dxg[G], dhg[G];
#pragma unroll
  for (int k = 0; k < S; ++k) sk[k] = saved[k * H];
  acc_t h_p = acc_t(0), c_p = acc_t(0), c_v = acc_t(0), carry_v = acc_t(0);
  if constexpr (Cell::kDirectH) h_p = acc_t(h_prev[bj]);
  if constexpr (Cell::kHasC) {
    c_p = c_prev[bj];
    c_v = cs_s[bj];
    carry_v = carry[bj];
  }
  Cell::backward(sk, h_p, c_p, c_v, acc_t(dh_in[bj]) + from_later, act,
                 carry_v, dxg, dhg);
#pragma unroll
  for (int g = 0; g < G; ++g) {
    grad_xg_s[g0 + g * H] = dxg[g];
    if constexpr (Cell::kSplitGrad) grad_hg_s[g0 + g * H] = dhg[g];
  }
  if constexpr (Cell::kHasC || Cell::kDirectH) carry[bj] = carry_v;
}

// Pointwise cells, one thread per (batch row, hidden unit).
// x_proj, h_proj [B,G*H]  b_x, b_h [G*H] or null  h [B,H] (GRU)
// c [B,H] (LSTM)  h_new [B,H]  c_new [B,H] (LSTM)  saved [B,S*H]
template <typename Cell, typename scalar_t, typename acc_t>
__global__ void cell_forward_kernel(
    int64_t n, int64_t H, Activation act, const scalar_t* __restrict__ x_proj,
    const scalar_t* __restrict__ h_proj, const scalar_t* __restrict__ b_x,
    const scalar_t* __restrict__ b_h, const scalar_t* __restrict__ h,
    const scalar_t* __restrict__ c, scalar_t* __restrict__ h_new,
    scalar_t* __restrict__ c_new, acc_t* __restrict__ saved) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  for (int64_t bj = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; bj < n;
       bj += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = bj / H, j = bj % H, g0 = b * G * H + j;
    acc_t xg[G], hg[G], sk[S];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      xg[g] = acc_t(x_proj[g0 + g * H]) +
              (b_x != nullptr ? acc_t(b_x[g * H + j]) : acc_t(0));
      hg[g] = acc_t(h_proj[g0 + g * H]) +
              (b_h != nullptr ? acc_t(b_h[g * H + j]) : acc_t(0));
    }
    acc_t h_p = acc_t(0), c_v = acc_t(0), h_v;
    if constexpr (Cell::kDirectH) h_p = acc_t(h[bj]);
    if constexpr (Cell::kHasC) c_v = acc_t(c[bj]);
    Cell::forward(xg, hg, h_p, act, c_v, sk, h_v);
    h_new[bj] = scalar_t(h_v);
    if constexpr (Cell::kHasC) c_new[bj] = scalar_t(c_v);
#pragma unroll
    for (int k = 0; k < S; ++k) saved[b * S * H + k * H + j] = sk[k];
  }
}

// grad_h [B,H]  grad_c [B,H] (LSTM)  saved [B,S*H]  h [B,H] (GRU)
// c, c_new [B,H] (LSTM)  grad_xg [B,G*H]  grad_hg [B,G*H] (GRU)
// grad_carry [B,H] (LSTM: grad of c; GRU: the direct grad of h)
template <typename Cell, typename scalar_t, typename acc_t>
__global__ void cell_backward_kernel(
    int64_t n, int64_t H, Activation act, const scalar_t* __restrict__ grad_h,
    const scalar_t* __restrict__ grad_c, const acc_t* __restrict__ saved,
    const scalar_t* __restrict__ h, const scalar_t* __restrict__ c,
    const scalar_t* __restrict__ c_new, scalar_t* __restrict__ grad_xg,
    scalar_t* __restrict__ grad_hg, scalar_t* __restrict__ grad_carry) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  for (int64_t bj = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; bj < n;
       bj += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = bj / H, j = bj % H, g0 = b * G * H + j;
    acc_t sk[S], dxg[G], dhg[G];
#pragma unroll
    for (int k = 0; k < S; ++k) sk[k] = saved[b * S * H + k * H + j];
    acc_t h_p = acc_t(0), c_p = acc_t(0), c_v = acc_t(0), carry = acc_t(0);
    if constexpr (Cell::kDirectH) h_p = acc_t(h[bj]);
    if constexpr (Cell::kHasC) {
      c_p = acc_t(c[bj]);
      c_v = acc_t(c_new[bj]);
      carry = acc_t(grad_c[bj]);
    }
    Cell::backward(sk, h_p, c_p, c_v, acc_t(grad_h[bj]), act, carry, dxg,
                   dhg);
#pragma unroll
    for (int g = 0; g < G; ++g) {
      grad_xg[g0 + g * H] = scalar_t(dxg[g]);
      if constexpr (Cell::kSplitGrad) grad_hg[g0 + g * H] = scalar_t(dhg[g]);
    }
    if constexpr (Cell::kHasC || Cell::kDirectH) {
      grad_carry[bj] = scalar_t(carry);
    }
  }
}

// ---------------------------------------------------------------------------
// Launchers
// ---------------------------------------------------------------------------

using persistent::lengths_ptr;
using persistent::ptr;

dim3 step_grid(int64_t B, int64_t H) {
  return dim3((H + BJ - 1) / BJ, (B + BB - 1) / BB);
}

constexpr int kCellThreads = 256;

unsigned int cell_blocks(int64_t n) {
  return static_cast<unsigned int>(
      std::min<int64_t>((n + kCellThreads - 1) / kCellThreads, 65535));
}

void forward_step(const CellDesc& cell, const ForwardStep& step) {
  const c10::cuda::CUDAGuard guard(step.out.device());
  const int64_t B = step.out.size(0), H = step.out.size(1);
  const int64_t P = step.h_in.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, step.h_in.scalar_type(), "seq_forward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        dispatch_cell(cell.kind, [&](auto cell_tag) {
          using Cell = decltype(cell_tag);
          seq_forward_step_kernel<Cell, scalar_t, acc_t>
              <<<step_grid(B, H), dim3(BJ, BB), 0, stream>>>(
                  step.s, B, H, P, cell.act, ptr<acc_t>(step.xg),
                  ptr<scalar_t>(step.h_in), ptr<scalar_t>(step.w_hh),
                  ptr<scalar_t>(step.b_hh), ptr<acc_t>(step.c_state),
                  lengths_ptr(step.lengths), ptr<acc_t>(step.saved),
                  ptr<acc_t>(step.cell_state), ptr<scalar_t>(step.out),
                  ptr<scalar_t>(step.h_out));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
}

void backward_step(const CellDesc& cell, const BackwardStep& step) {
  const c10::cuda::CUDAGuard guard(step.dh_in.device());
  const int64_t B = step.dh_in.size(0), H = step.dh_in.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, step.dh_in.scalar_type(), "seq_backward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        dispatch_cell(cell.kind, [&](auto cell_tag) {
          using Cell = decltype(cell_tag);
          seq_backward_step_kernel<Cell, scalar_t, acc_t>
              <<<step_grid(B, H), dim3(BJ, BB), 0, stream>>>(
                  step.s, B, H, cell.act, ptr<acc_t>(step.grad_hg_next),
                  ptr<scalar_t>(step.w_hh),
                  step.w_hh.defined() ? ptr<acc_t>(step.dh_carry) : nullptr,
                  ptr<scalar_t>(step.dh_in), ptr<acc_t>(step.carry),
                  ptr<acc_t>(step.saved), ptr<scalar_t>(step.h_prev),
                  ptr<acc_t>(step.c_prev), ptr<acc_t>(step.cell_state),
                  lengths_ptr(step.lengths), ptr<acc_t>(step.grad_xg),
                  ptr<acc_t>(step.grad_hg));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
}

void cell_forward(const CellDesc& cell, const at::Tensor& x_proj,
                  const at::Tensor& h_proj, const at::Tensor& b_x,
                  const at::Tensor& b_h, const at::Tensor& h,
                  const at::Tensor& c, at::Tensor& h_new, at::Tensor& c_new,
                  at::Tensor& saved) {
  const c10::cuda::CUDAGuard guard(h_new.device());
  const int64_t n = h_new.numel(), H = h_new.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x_proj.scalar_type(), "cell_forward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        dispatch_cell(cell.kind, [&](auto cell_tag) {
          using Cell = decltype(cell_tag);
          cell_forward_kernel<Cell, scalar_t, acc_t>
              <<<cell_blocks(n), kCellThreads, 0,
                 c10::cuda::getCurrentCUDAStream()>>>(
                  n, H, cell.act, ptr<scalar_t>(x_proj),
                  ptr<scalar_t>(h_proj), ptr<scalar_t>(b_x),
                  ptr<scalar_t>(b_h), ptr<scalar_t>(h), ptr<scalar_t>(c),
                  ptr<scalar_t>(h_new), ptr<scalar_t>(c_new),
                  ptr<acc_t>(saved));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
}

void cell_backward(const CellDesc& cell, const at::Tensor& grad_h,
                   const at::Tensor& grad_c, const at::Tensor& saved,
                   const at::Tensor& h, const at::Tensor& c,
                   const at::Tensor& c_new, at::Tensor& grad_xg,
                   at::Tensor& grad_hg, at::Tensor& grad_carry) {
  const c10::cuda::CUDAGuard guard(grad_h.device());
  const int64_t n = grad_h.numel(), H = grad_h.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_h.scalar_type(), "cell_backward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        dispatch_cell(cell.kind, [&](auto cell_tag) {
          using Cell = decltype(cell_tag);
          cell_backward_kernel<Cell, scalar_t, acc_t>
              <<<cell_blocks(n), kCellThreads, 0,
                 c10::cuda::getCurrentCUDAStream()>>>(
                  n, H, cell.act, ptr<scalar_t>(grad_h),
                  ptr<scalar_t>(grad_c), ptr<acc_t>(saved), ptr<scalar_t>(h),
                  ptr<scalar_t>(c), ptr<scalar_t>(c_new),
                  ptr<scalar_t>(grad_xg), ptr<scalar_t>(grad_hg),
                  ptr<scalar_t>(grad_carry));
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
}

}  // namespace

// Every CUDA dtype is served; the launches run on the data's device.
extern const SeqSteps kCudaSteps{nullptr, forward_step, backward_step,
                                  /*saved_over_xg=*/false,
                                  /*acc_weights=*/false,
                                  cuda_persistent_forward,
                                  cuda_persistent_backward,
                                  /*seq_by_default=*/false,
                                  /*chunk_bytes=*/0};
extern const CellKernels kCudaCells{nullptr, cell_forward, cell_backward};

}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CUDA, m) {
  seqkernels::register_recurrent_ops<seqkernels::kCudaSteps,
                                     seqkernels::kCudaCells>(m);
}
