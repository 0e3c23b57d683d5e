// CPU steps of the LSTM over a sequence (the driver is csrc/lstm_seq_host.cpp).
//
// On the CPU the recurrent product is an ATen GEMM (MKL/oneDNN) followed by
// the shared pointwise cell math; a hand-written CPU GEMM would only be
// slower.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "seqkernels/lstm_cell_math.h"
#include "seqkernels/lstm_seq_host.h"

namespace seqkernels {
namespace {

void check_cpu_dtype(const at::Tensor& x, const char* name) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "seqkernels: the cpu backend supports float32 and float64; ",
              name, " is ", x.scalar_type());
}

bool active(const c10::optional<at::Tensor>& lengths, int64_t b, int64_t s) {
  return !lengths.has_value() || lengths->data_ptr<int64_t>()[b] > s;
}

void forward_step(int64_t s, const at::Tensor& xg_s, const at::Tensor& h_in,
                  const at::Tensor& w_hh, at::Tensor& c_state,
                  const c10::optional<at::Tensor>& lengths,
                  at::Tensor& gates_s, at::Tensor& cs_s, at::Tensor& out_s,
                  at::Tensor& h_out) {
  const at::Tensor pre = at::addmm(xg_s, h_in, w_hh.t());
  const int64_t B = c_state.size(0), H = c_state.size(1);
  AT_DISPATCH_FLOATING_TYPES(pre.scalar_type(), "lstm_seq_forward_cpu", [&] {
    const scalar_t* p = pre.data_ptr<scalar_t>();
    const scalar_t* hi = h_in.data_ptr<scalar_t>();
    scalar_t* c = c_state.data_ptr<scalar_t>();
    scalar_t* g = gates_s.data_ptr<scalar_t>();
    scalar_t* cs = cs_s.data_ptr<scalar_t>();
    scalar_t* out = out_s.data_ptr<scalar_t>();
    scalar_t* ho = h_out.defined() ? h_out.data_ptr<scalar_t>() : nullptr;
    const int64_t P = h_in.size(1);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const bool on = active(lengths, b, s);
        for (int64_t j = 0; j < H; ++j) {
          const int64_t gi = b * 4 * H + j, bj = b * H + j;
          if (!on) {
            g[gi] = g[gi + H] = g[gi + 2 * H] = g[gi + 3 * H] = 0;
            cs[bj] = 0;
            out[bj] = 0;
            continue;
          }
          LstmGates<scalar_t> a;
          scalar_t c_new, h_new;
          lstm_cell_forward(p[gi], p[gi + H], p[gi + 2 * H], p[gi + 3 * H],
                            c[bj], a, c_new, h_new);
          g[gi] = a.i, g[gi + H] = a.f, g[gi + 2 * H] = a.g,
          g[gi + 3 * H] = a.o;
          c[bj] = cs[bj] = c_new;
          out[bj] = h_new;
        }
        if (ho != nullptr) {
          for (int64_t k = 0; k < P; ++k) {
            ho[b * P + k] = on ? out[b * H + k] : hi[b * P + k];
          }
        }
      }
    });
  });
}

void backward_step(int64_t s, const at::Tensor& grad_gates_next,
                   const at::Tensor& w_hh, at::Tensor& dh_carry,
                   const at::Tensor& dh_in, at::Tensor& dc_carry,
                   const at::Tensor& gates_s, const at::Tensor& c_prev,
                   const at::Tensor& cs_s,
                   const c10::optional<at::Tensor>& lengths,
                   at::Tensor& grad_gates_s) {
  at::Tensor from_next;
  if (w_hh.defined() && grad_gates_next.defined()) {
    from_next = at::mm(grad_gates_next, w_hh);
  }
  const int64_t B = dc_carry.size(0), H = dc_carry.size(1);
  AT_DISPATCH_FLOATING_TYPES(dc_carry.scalar_type(), "lstm_seq_backward_cpu",
                             [&] {
    const scalar_t* fn =
        from_next.defined() ? from_next.data_ptr<scalar_t>() : nullptr;
    scalar_t* dhc = w_hh.defined() ? dh_carry.data_ptr<scalar_t>() : nullptr;
    const scalar_t* dhi = dh_in.data_ptr<scalar_t>();
    scalar_t* dcc = dc_carry.data_ptr<scalar_t>();
    const scalar_t* g = gates_s.data_ptr<scalar_t>();
    const scalar_t* cp = c_prev.data_ptr<scalar_t>();
    const scalar_t* c = cs_s.data_ptr<scalar_t>();
    scalar_t* dg = grad_gates_s.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const bool on = active(lengths, b, s);
        const bool next_on = fn != nullptr && active(lengths, b, s + 1);
        for (int64_t j = 0; j < H; ++j) {
          const int64_t gi = b * 4 * H + j, bj = b * H + j;
          scalar_t carry = 0;
          if (dhc != nullptr) {
            carry = next_on ? fn[bj] : dhc[bj];
            dhc[bj] = carry;
          }
          if (!on) {
            dg[gi] = dg[gi + H] = dg[gi + 2 * H] = dg[gi + 3 * H] = 0;
            continue;
          }
          const LstmGates<scalar_t> a{g[gi], g[gi + H], g[gi + 2 * H],
                                      g[gi + 3 * H]};
          lstm_cell_backward(a, cp[bj], c[bj], dhi[bj] + carry, dcc[bj],
                             dg[gi], dg[gi + H], dg[gi + 2 * H],
                             dg[gi + 3 * H], dcc[bj]);
        }
      }
    });
  });
}

void check_cpu_x(const at::Tensor& x) { check_cpu_dtype(x, "x"); }

}  // namespace

extern const LstmSeqSteps kCpuSteps{check_cpu_x, forward_step, backward_step};

}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CPU, m) {
  m.impl("lstm_seq", &seqkernels::lstm_seq_op<seqkernels::kCpuSteps>);
  m.impl("lstm_seq_backward",
         &seqkernels::lstm_seq_backward_op<seqkernels::kCpuSteps>);
}
