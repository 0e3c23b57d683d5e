// CUDA steps of the LSTM over a sequence (the driver is csrc/lstm_seq_host.cpp).
//
// Each step is one launch that fuses the recurrent matrix product with the
// pointwise cell math, so the gate pre-activations never go to memory:
//   forward:  a block owns BB batch rows x BJ hidden units and accumulates
//             all four gates of those units over K = P in tiles of KT,
//             then applies the cell and writes h, c and the saved gates;
//   backward: a block owns the same tile, accumulates the carried dh over
//             n = 4H (grad_gates_next @ w_hh), then the pointwise backward.
// This is the per-step kernel of the plan in ARCHITECTURE.md: correct and
// CUDA-graph friendly. SIMT float accumulation, no tensor cores yet.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "seqkernels/lstm_cell_math.h"
#include "seqkernels/lstm_seq_host.h"

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

// xg_s [B,4H]  h_in [B,P]  w_hh [4H,P]  c_state [B,H] (in place)
// gates_s [B,4H]  cs_s [B,H]  out_s [B,H]  h_out [B,P=H] or null
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) lstm_seq_forward_step_kernel(
    int64_t s, int B, int H, int P, const scalar_t* __restrict__ xg_s,
    const scalar_t* __restrict__ h_in, const scalar_t* __restrict__ w_hh,
    acc_t* __restrict__ c_state, const int64_t* __restrict__ lengths,
    acc_t* __restrict__ gates_s, acc_t* __restrict__ cs_s,
    scalar_t* __restrict__ out_s, scalar_t* __restrict__ h_out) {
  __shared__ acc_t hs[BB][KT];
  __shared__ acc_t ws[4][BJ][KT + 1];  // +1: threads of a warp read rows
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * BJ + tx;
  const int j0 = blockIdx.x * BJ, b0 = blockIdx.y * BB;
  const int j = j0 + tx, b = b0 + ty;
  const bool in_range = b < B && j < H;
  const bool active = in_range && row_active(lengths, b, s);

  acc_t acc[4] = {0, 0, 0, 0};
  // A block whose rows have all finished skips the product.
  if (__syncthreads_or(active)) {
    for (int k0 = 0; k0 < P; k0 += KT) {
      for (int e = tid; e < BB * KT; e += kThreads) {
        const int r = e / KT, k = k0 + e % KT;
        hs[r][e % KT] = (b0 + r < B && k < P)
                            ? acc_t(h_in[int64_t(b0 + r) * P + k])
                            : acc_t(0);
      }
      for (int e = tid; e < 4 * BJ * KT; e += kThreads) {
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
        acc[0] += hv * ws[0][tx][kk];
        acc[1] += hv * ws[1][tx][kk];
        acc[2] += hv * ws[2][tx][kk];
        acc[3] += hv * ws[3][tx][kk];
      }
      __syncthreads();
    }
  }
  if (!in_range) return;
  const int64_t g0 = int64_t(b) * 4 * H + j, bj = int64_t(b) * H + j;
  if (!active) {
    gates_s[g0] = gates_s[g0 + H] = gates_s[g0 + 2 * H] =
        gates_s[g0 + 3 * H] = acc_t(0);
    cs_s[bj] = acc_t(0);
    out_s[bj] = scalar_t(0);
    if (h_out != nullptr) h_out[bj] = h_in[bj];
    return;
  }
  LstmGates<acc_t> a;
  acc_t c, h;
  lstm_cell_forward(acc[0] + acc_t(xg_s[g0]), acc[1] + acc_t(xg_s[g0 + H]),
                    acc[2] + acc_t(xg_s[g0 + 2 * H]),
                    acc[3] + acc_t(xg_s[g0 + 3 * H]), c_state[bj], a, c, h);
  gates_s[g0] = a.i;
  gates_s[g0 + H] = a.f;
  gates_s[g0 + 2 * H] = a.g;
  gates_s[g0 + 3 * H] = a.o;
  c_state[bj] = c;
  cs_s[bj] = c;
  out_s[bj] = scalar_t(h);
  if (h_out != nullptr) h_out[bj] = scalar_t(h);
}

// grad_gates_next [B,4H] or null  w_hh [4H,H] or null  dh_carry [B,H]
// dh_in [B,H]  dc_carry [B,H] (in place)  gates_s [B,4H]  c_prev, cs_s [B,H]
// grad_gates_s [B,4H]
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) lstm_seq_backward_step_kernel(
    int64_t s, int B, int H, const scalar_t* __restrict__ grad_gates_next,
    const scalar_t* __restrict__ w_hh, acc_t* __restrict__ dh_carry,
    const scalar_t* __restrict__ dh_in, acc_t* __restrict__ dc_carry,
    const acc_t* __restrict__ gates_s, const acc_t* __restrict__ c_prev,
    const acc_t* __restrict__ cs_s, const int64_t* __restrict__ lengths,
    scalar_t* __restrict__ grad_gates_s) {
  __shared__ acc_t gs[BB][KT];
  __shared__ acc_t ws[KT][BJ + 1];
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * BJ + tx;
  const int j0 = blockIdx.x * BJ, b0 = blockIdx.y * BB;
  const int j = j0 + tx, b = b0 + ty;
  const bool in_range = b < B && j < H;
  const bool gemm = w_hh != nullptr && grad_gates_next != nullptr;
  const bool next_active = in_range && gemm && row_active(lengths, b, s + 1);

  acc_t from_next = 0;
  if (__syncthreads_or(next_active)) {
    const int N = 4 * H;
    for (int n0 = 0; n0 < N; n0 += KT) {
      for (int e = tid; e < BB * KT; e += kThreads) {
        const int r = e / KT, n = n0 + e % KT;
        gs[r][e % KT] =
            (b0 + r < B && n < N)
                ? acc_t(grad_gates_next[int64_t(b0 + r) * N + n])
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
  const int64_t g0 = int64_t(b) * 4 * H + j, bj = int64_t(b) * H + j;
  acc_t carry = 0;
  if (w_hh != nullptr) {
    carry = next_active ? from_next : dh_carry[bj];
    dh_carry[bj] = carry;
  }
  if (!row_active(lengths, b, s)) {
    grad_gates_s[g0] = grad_gates_s[g0 + H] = grad_gates_s[g0 + 2 * H] =
        grad_gates_s[g0 + 3 * H] = scalar_t(0);
    return;
  }
  const LstmGates<acc_t> a{gates_s[g0], gates_s[g0 + H], gates_s[g0 + 2 * H],
                           gates_s[g0 + 3 * H]};
  acc_t di, df, dg, do_, dc_prev;
  lstm_cell_backward(a, c_prev[bj], cs_s[bj], acc_t(dh_in[bj]) + carry,
                     dc_carry[bj], di, df, dg, do_, dc_prev);
  grad_gates_s[g0] = scalar_t(di);
  grad_gates_s[g0 + H] = scalar_t(df);
  grad_gates_s[g0 + 2 * H] = scalar_t(dg);
  grad_gates_s[g0 + 3 * H] = scalar_t(do_);
  dc_carry[bj] = dc_prev;
}

template <typename T>
T* ptr_or_null(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

const int64_t* lengths_ptr(const c10::optional<at::Tensor>& lengths) {
  return lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr;
}

dim3 step_grid(int64_t B, int64_t H) {
  return dim3((H + BJ - 1) / BJ, (B + BB - 1) / BB);
}

void forward_step(int64_t s, const at::Tensor& xg_s, const at::Tensor& h_in,
                  const at::Tensor& w_hh, at::Tensor& c_state,
                  const c10::optional<at::Tensor>& lengths,
                  at::Tensor& gates_s, at::Tensor& cs_s, at::Tensor& out_s,
                  at::Tensor& h_out) {
  const c10::cuda::CUDAGuard guard(c_state.device());
  const int64_t B = c_state.size(0), H = c_state.size(1), P = h_in.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, xg_s.scalar_type(), "lstm_seq_forward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        lstm_seq_forward_step_kernel<scalar_t, acc_t>
            <<<step_grid(B, H), dim3(BJ, BB), 0, stream>>>(
                s, B, H, P, xg_s.data_ptr<scalar_t>(),
                h_in.data_ptr<scalar_t>(), w_hh.data_ptr<scalar_t>(),
                c_state.data_ptr<acc_t>(), lengths_ptr(lengths),
                gates_s.data_ptr<acc_t>(), cs_s.data_ptr<acc_t>(),
                out_s.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(h_out));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

void backward_step(int64_t s, const at::Tensor& grad_gates_next,
                   const at::Tensor& w_hh, at::Tensor& dh_carry,
                   const at::Tensor& dh_in, at::Tensor& dc_carry,
                   const at::Tensor& gates_s, const at::Tensor& c_prev,
                   const at::Tensor& cs_s,
                   const c10::optional<at::Tensor>& lengths,
                   at::Tensor& grad_gates_s) {
  const c10::cuda::CUDAGuard guard(dc_carry.device());
  const int64_t B = dc_carry.size(0), H = dc_carry.size(1);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, dh_in.scalar_type(), "lstm_seq_backward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        lstm_seq_backward_step_kernel<scalar_t, acc_t>
            <<<step_grid(B, H), dim3(BJ, BB), 0, stream>>>(
                s, B, H, ptr_or_null<scalar_t>(grad_gates_next),
                ptr_or_null<scalar_t>(w_hh),
                w_hh.defined() ? dh_carry.data_ptr<acc_t>() : nullptr,
                dh_in.data_ptr<scalar_t>(), dc_carry.data_ptr<acc_t>(),
                gates_s.data_ptr<acc_t>(), c_prev.data_ptr<acc_t>(),
                cs_s.data_ptr<acc_t>(), lengths_ptr(lengths),
                grad_gates_s.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
}

}  // namespace

// Every CUDA dtype is served; the launches run on the data's device.
extern const LstmSeqSteps kCudaSteps{nullptr, forward_step, backward_step};

}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CUDA, m) {
  m.impl("lstm_seq", &seqkernels::lstm_seq_op<seqkernels::kCudaSteps>);
  m.impl("lstm_seq_backward",
         &seqkernels::lstm_seq_backward_op<seqkernels::kCudaSteps>);
}
