// CUDA kernels of the fused LSTM cell: x_proj + h_proj + bias -> (h, c),
// one thread per (batch row, hidden unit), forward and backward.
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

constexpr int kThreads = 256;

// x_proj, h_proj [B,4H]  bias [4H] or null  c [B,H]
// h_new, c_new [B,H]  gates [B,4H] (accumulation type)
template <typename scalar_t, typename acc_t>
__global__ void lstm_cell_forward_kernel(
    int64_t n, int64_t H, const scalar_t* __restrict__ x_proj,
    const scalar_t* __restrict__ h_proj, const scalar_t* __restrict__ bias,
    const scalar_t* __restrict__ c, scalar_t* __restrict__ h_new,
    scalar_t* __restrict__ c_new, acc_t* __restrict__ gates) {
  for (int64_t bj = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; bj < n;
       bj += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = bj % H, g0 = (bj / H) * 4 * H + j;
    acc_t pre[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      pre[k] = acc_t(x_proj[g0 + k * H]) + acc_t(h_proj[g0 + k * H]) +
               (bias != nullptr ? acc_t(bias[k * H + j]) : acc_t(0));
    }
    LstmGates<acc_t> a;
    acc_t cn, hn;
    lstm_cell_forward(pre[0], pre[1], pre[2], pre[3], acc_t(c[bj]), a, cn, hn);
    gates[g0] = a.i;
    gates[g0 + H] = a.f;
    gates[g0 + 2 * H] = a.g;
    gates[g0 + 3 * H] = a.o;
    c_new[bj] = scalar_t(cn);
    h_new[bj] = scalar_t(hn);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void lstm_cell_backward_kernel(
    int64_t n, int64_t H, const scalar_t* __restrict__ grad_h,
    const scalar_t* __restrict__ grad_c, const scalar_t* __restrict__ c,
    const scalar_t* __restrict__ c_new, const acc_t* __restrict__ gates,
    scalar_t* __restrict__ grad_gates, scalar_t* __restrict__ grad_c_prev) {
  for (int64_t bj = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; bj < n;
       bj += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g0 = (bj / H) * 4 * H + bj % H;
    const LstmGates<acc_t> a{gates[g0], gates[g0 + H], gates[g0 + 2 * H],
                             gates[g0 + 3 * H]};
    acc_t di, df, dg, do_, dc;
    lstm_cell_backward(a, acc_t(c[bj]), acc_t(c_new[bj]), acc_t(grad_h[bj]),
                       acc_t(grad_c[bj]), di, df, dg, do_, dc);
    grad_gates[g0] = scalar_t(di);
    grad_gates[g0 + H] = scalar_t(df);
    grad_gates[g0 + 2 * H] = scalar_t(dg);
    grad_gates[g0 + 3 * H] = scalar_t(do_);
    grad_c_prev[bj] = scalar_t(dc);
  }
}

unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>(
      std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell_cuda(
    const at::Tensor& x_proj_in, const at::Tensor& h_proj_in,
    const at::Tensor& c_in, const c10::optional<at::Tensor>& bias_in) {
  check_lstm_cell(x_proj_in, h_proj_in, c_in, bias_in);
  const c10::cuda::CUDAGuard guard(c_in.device());
  const at::Tensor xp = x_proj_in.contiguous(), hp = h_proj_in.contiguous();
  const at::Tensor c = c_in.contiguous();
  const at::Tensor bias =
      bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  const int64_t n = c.numel(), H = c.size(1);
  at::Tensor h_new = at::empty_like(c), c_new = at::empty_like(c);
  at::Tensor gates =
      at::empty(xp.sizes(), xp.options().dtype(acc_dtype(xp.scalar_type())));
  if (n == 0) return {h_new, c_new, gates};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.scalar_type(), "lstm_cell_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        lstm_cell_forward_kernel<scalar_t, acc_t>
            <<<blocks_for(n), kThreads, 0,
               c10::cuda::getCurrentCUDAStream()>>>(
                n, H, xp.data_ptr<scalar_t>(), hp.data_ptr<scalar_t>(),
                bias.defined() ? bias.data_ptr<scalar_t>() : nullptr,
                c.data_ptr<scalar_t>(), h_new.data_ptr<scalar_t>(),
                c_new.data_ptr<scalar_t>(), gates.data_ptr<acc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {h_new, c_new, gates};
}

std::tuple<at::Tensor, at::Tensor> lstm_cell_backward_cuda(
    const at::Tensor& grad_h_in, const at::Tensor& grad_c_in,
    const at::Tensor& c_in, const at::Tensor& c_new_in,
    const at::Tensor& gates_in) {
  check_lstm_cell_backward(grad_h_in, grad_c_in, c_in, c_new_in, gates_in);
  const c10::cuda::CUDAGuard guard(c_in.device());
  const at::Tensor dh = grad_h_in.contiguous(), dc = grad_c_in.contiguous();
  const at::Tensor c = c_in.contiguous(), cn = c_new_in.contiguous();
  const at::Tensor gates = gates_in.contiguous();
  const int64_t n = c.numel(), H = c.size(1);
  at::Tensor grad_gates = at::empty(gates.sizes(), c.options());
  at::Tensor grad_c_prev = at::empty_like(c);
  if (n == 0) return {grad_gates, grad_c_prev};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, c.scalar_type(), "lstm_cell_backward_cuda",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        lstm_cell_backward_kernel<scalar_t, acc_t>
            <<<blocks_for(n), kThreads, 0,
               c10::cuda::getCurrentCUDAStream()>>>(
                n, H, dh.data_ptr<scalar_t>(), dc.data_ptr<scalar_t>(),
                c.data_ptr<scalar_t>(), cn.data_ptr<scalar_t>(),
                gates.data_ptr<acc_t>(), grad_gates.data_ptr<scalar_t>(),
                grad_c_prev.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {grad_gates, grad_c_prev};
}

}  // namespace
}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CUDA, m) {
  m.impl("lstm_cell", &seqkernels::lstm_cell_cuda);
  m.impl("lstm_cell_backward", &seqkernels::lstm_cell_backward_cuda);
}
