// Host side of the LSTM over a sequence, shared by the CPU and CUDA backends.
//
// The sequence machinery is the same on every backend: one GEMM for the input
// projection of all steps, a loop of recurrence steps, and after the loop the
// weight gradients as large GEMMs. Only the step differs per backend; a
// backend hands its two step functions to the driver.
//
// Shapes: T steps, B batch, I input, H hidden, P = proj_size or H.
//   x [T,B,I]  h0 [B,P]  c0 [B,H]  w_ih [4H,I]  w_hh [4H,P]  bias [4H]
//   w_hr [P,H]  lengths [B] int64 (each in [1, T]; a row is active at step s
//   while s < length, and time runs forward: reversed directions are
//   reversed by the caller before and after).
// Saved for backward, in the accumulation type (float for half/bfloat16):
//   gates [T,B,4H] activated i,f,g,o; cs [T,B,H] cell states.
//   ms [T,B,H] cell outputs before the projection (empty without w_hr).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

namespace seqkernels {

struct LstmSeqSteps {
  // Rejects inputs the backend cannot run (say, a dtype); null: none.
  void (*check)(const at::Tensor& x);
  // One forward step s. For each active (b, j):
  //   pre = xg_s[b, gate*H + j] + sum_k h_in[b, k] w_hh[gate*H + j, k]
  //   pointwise cell; c_state[b, j] updated in place;
  //   gates_s, cs_s, out_s (the cell output) and h_out (if defined) written.
  // Inactive rows: gates_s, cs_s, out_s are zero; h_out copies h_in; the
  // c_state is kept.
  void (*forward)(int64_t s, const at::Tensor& xg_s, const at::Tensor& h_in,
                  const at::Tensor& w_hh, at::Tensor& c_state,
                  const c10::optional<at::Tensor>& lengths,
                  at::Tensor& gates_s, at::Tensor& cs_s, at::Tensor& out_s,
                  at::Tensor& h_out);
  // One backward step s. For each (b, j):
  //   carry = w_hh defined ? (grad_gates_next defined and row active at s+1
  //           ? sum_n grad_gates_next[b, n] w_hh[n, j] : dh_carry[b, j]) : 0
  //   dh_carry[b, j] = carry (if w_hh defined)
  //   active at s: dh = dh_in[b, j] + carry; pointwise backward writes
  //     grad_gates_s and dc_carry (in place); inactive: grad_gates_s = 0.
  void (*backward)(int64_t s, const at::Tensor& grad_gates_next,
                   const at::Tensor& w_hh, at::Tensor& dh_carry,
                   const at::Tensor& dh_in, at::Tensor& dc_carry,
                   const at::Tensor& gates_s, const at::Tensor& c_prev,
                   const at::Tensor& cs_s,
                   const c10::optional<at::Tensor>& lengths,
                   at::Tensor& grad_gates_s);
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
lstm_seq_forward_host(const at::Tensor& x, const at::Tensor& h0,
                      const at::Tensor& c0, const at::Tensor& w_ih,
                      const at::Tensor& w_hh,
                      const c10::optional<at::Tensor>& bias,
                      const c10::optional<at::Tensor>& w_hr,
                      const c10::optional<at::Tensor>& lengths,
                      const LstmSeqSteps& steps);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor, at::Tensor>
lstm_seq_backward_host(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                       const at::Tensor& grad_c_n, const at::Tensor& x,
                       const at::Tensor& h0, const at::Tensor& c0,
                       const at::Tensor& w_ih, const at::Tensor& w_hh,
                       const c10::optional<at::Tensor>& w_hr,
                       const c10::optional<at::Tensor>& lengths,
                       const at::Tensor& y, const at::Tensor& gates,
                       const at::Tensor& cs, const at::Tensor& ms,
                       bool has_bias, const LstmSeqSteps& steps);

// The op entry points of a backend, registered by its TORCH_LIBRARY_IMPL:
//   m.impl("lstm_seq", &lstm_seq_op<kSteps>);
template <const LstmSeqSteps& kSteps>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
lstm_seq_op(const at::Tensor& x, const at::Tensor& h0, const at::Tensor& c0,
            const at::Tensor& w_ih, const at::Tensor& w_hh,
            const c10::optional<at::Tensor>& bias,
            const c10::optional<at::Tensor>& w_hr,
            const c10::optional<at::Tensor>& lengths) {
  if (kSteps.check != nullptr) kSteps.check(x);
  return lstm_seq_forward_host(x, h0, c0, w_ih, w_hh, bias, w_hr, lengths,
                               kSteps);
}

template <const LstmSeqSteps& kSteps>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor, at::Tensor>
lstm_seq_backward_op(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                     const at::Tensor& grad_c_n, const at::Tensor& x,
                     const at::Tensor& h0, const at::Tensor& c0,
                     const at::Tensor& w_ih, const at::Tensor& w_hh,
                     const c10::optional<at::Tensor>& w_hr,
                     const c10::optional<at::Tensor>& lengths,
                     const at::Tensor& y, const at::Tensor& gates,
                     const at::Tensor& cs, const at::Tensor& ms,
                     bool has_bias) {
  if (kSteps.check != nullptr) kSteps.check(x);
  return lstm_seq_backward_host(grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih,
                                w_hh, w_hr, lengths, y, gates, cs, ms,
                                has_bias, kSteps);
}

// Pointwise LSTM cell (x_proj + h_proj + bias -> h, c), the checks and
// output allocation shared by the CPU and CUDA entry points.
void check_lstm_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                     const at::Tensor& c,
                     const c10::optional<at::Tensor>& bias);
void check_lstm_cell_backward(const at::Tensor& grad_h,
                              const at::Tensor& grad_c, const at::Tensor& c,
                              const at::Tensor& c_new,
                              const at::Tensor& gates);

// Accumulation dtype for a storage dtype: float for half and bfloat16.
inline at::ScalarType acc_dtype(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

}  // namespace seqkernels
