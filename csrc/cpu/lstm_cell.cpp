// CPU kernels of the fused LSTM cell: x_proj + h_proj + bias -> (h, c).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "seqkernels/lstm_cell_math.h"
#include "seqkernels/lstm_seq_host.h"

namespace seqkernels {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell_cpu(
    const at::Tensor& x_proj_in, const at::Tensor& h_proj_in,
    const at::Tensor& c_in, const c10::optional<at::Tensor>& bias_in) {
  check_lstm_cell(x_proj_in, h_proj_in, c_in, bias_in);
  TORCH_CHECK(x_proj_in.scalar_type() == at::kFloat ||
                  x_proj_in.scalar_type() == at::kDouble,
              "seqkernels: the cpu backend supports float32 and float64; "
              "x_proj is ",
              x_proj_in.scalar_type());
  const at::Tensor xp = x_proj_in.contiguous(), hp = h_proj_in.contiguous();
  const at::Tensor c = c_in.contiguous();
  const at::Tensor bias = bias_in.has_value() ? bias_in->contiguous()
                                              : at::Tensor();
  const int64_t B = c.size(0), H = c.size(1);
  at::Tensor h_new = at::empty_like(c), c_new = at::empty_like(c);
  at::Tensor gates = at::empty_like(xp);
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "lstm_cell_cpu", [&] {
    const scalar_t* x = xp.data_ptr<scalar_t>();
    const scalar_t* h = hp.data_ptr<scalar_t>();
    const scalar_t* bi = bias.defined() ? bias.data_ptr<scalar_t>() : nullptr;
    const scalar_t* cp = c.data_ptr<scalar_t>();
    scalar_t* ho = h_new.data_ptr<scalar_t>();
    scalar_t* co = c_new.data_ptr<scalar_t>();
    scalar_t* g = gates.data_ptr<scalar_t>();
    at::parallel_for(0, B * H, 1024, [&](int64_t i0, int64_t i1) {
      for (int64_t bj = i0; bj < i1; ++bj) {
        const int64_t b = bj / H, j = bj % H;
        scalar_t pre[4];
        for (int k = 0; k < 4; ++k) {
          const int64_t n = b * 4 * H + k * H + j;
          pre[k] = x[n] + h[n] + (bi != nullptr ? bi[k * H + j] : 0);
        }
        LstmGates<scalar_t> a;
        lstm_cell_forward(pre[0], pre[1], pre[2], pre[3], cp[bj], a, co[bj],
                          ho[bj]);
        scalar_t* gb = g + b * 4 * H + j;
        gb[0] = a.i, gb[H] = a.f, gb[2 * H] = a.g, gb[3 * H] = a.o;
      }
    });
  });
  return {h_new, c_new, gates};
}

std::tuple<at::Tensor, at::Tensor> lstm_cell_backward_cpu(
    const at::Tensor& grad_h_in, const at::Tensor& grad_c_in,
    const at::Tensor& c_in, const at::Tensor& c_new_in,
    const at::Tensor& gates_in) {
  check_lstm_cell_backward(grad_h_in, grad_c_in, c_in, c_new_in, gates_in);
  const at::Tensor dh = grad_h_in.contiguous(), dc = grad_c_in.contiguous();
  const at::Tensor c = c_in.contiguous(), cn = c_new_in.contiguous();
  const at::Tensor gates = gates_in.contiguous();
  const int64_t B = c.size(0), H = c.size(1);
  at::Tensor grad_gates = at::empty_like(gates);
  at::Tensor grad_c_prev = at::empty_like(c);
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "lstm_cell_backward_cpu", [&] {
    const scalar_t* dhp = dh.data_ptr<scalar_t>();
    const scalar_t* dcp = dc.data_ptr<scalar_t>();
    const scalar_t* cp = c.data_ptr<scalar_t>();
    const scalar_t* cnp = cn.data_ptr<scalar_t>();
    const scalar_t* g = gates.data_ptr<scalar_t>();
    scalar_t* dg = grad_gates.data_ptr<scalar_t>();
    scalar_t* dcprev = grad_c_prev.data_ptr<scalar_t>();
    at::parallel_for(0, B * H, 1024, [&](int64_t i0, int64_t i1) {
      for (int64_t bj = i0; bj < i1; ++bj) {
        const int64_t n = (bj / H) * 4 * H + bj % H;
        const LstmGates<scalar_t> a{g[n], g[n + H], g[n + 2 * H],
                                    g[n + 3 * H]};
        lstm_cell_backward(a, cp[bj], cnp[bj], dhp[bj], dcp[bj], dg[n],
                           dg[n + H], dg[n + 2 * H], dg[n + 3 * H],
                           dcprev[bj]);
      }
    });
  });
  return {grad_gates, grad_c_prev};
}

}  // namespace
}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CPU, m) {
  m.impl("lstm_cell", &seqkernels::lstm_cell_cpu);
  m.impl("lstm_cell_backward", &seqkernels::lstm_cell_backward_cpu);
}
