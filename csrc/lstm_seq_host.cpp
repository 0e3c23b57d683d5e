// The backend-neutral LSTM sequence driver: see lstm_seq_host.h.
#include "seqkernels/lstm_seq_host.h"

#include "seqkernels/checks.h"

namespace seqkernels {
namespace {

struct Dims {
  int64_t T, B, I, H, P;
};

Dims check_lstm_seq(const at::Tensor& x, const at::Tensor& h0,
                    const at::Tensor& c0, const at::Tensor& w_ih,
                    const at::Tensor& w_hh,
                    const c10::optional<at::Tensor>& bias,
                    const c10::optional<at::Tensor>& w_hr,
                    const c10::optional<at::Tensor>& lengths) {
  TORCH_CHECK(x.dim() == 3, "seqkernels: x must be [T, B, input_size], got ",
              x.sizes());
  TORCH_CHECK(x.size(0) > 0 && x.size(1) > 0,
              "seqkernels: x must have at least one step and one batch "
              "element, got shape ",
              x.sizes());
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) % 4 == 0,
              "seqkernels: w_ih must be [4 * hidden_size, input_size], got ",
              w_ih.sizes());
  const int64_t H = w_ih.size(0) / 4;
  const int64_t P = w_hr.has_value() ? w_hr->size(0) : H;
  Dims d{x.size(0), x.size(1), x.size(2), H, P};
  check_shape(w_ih, "w_ih", {4 * H, d.I});
  check_shape(w_hh, "w_hh", {4 * H, P});
  check_shape(h0, "h0", {d.B, P});
  check_shape(c0, "c0", {d.B, H});
  check_same_dtype_device(w_ih, "w_ih", x, "x");
  check_same_dtype_device(w_hh, "w_hh", x, "x");
  check_same_dtype_device(h0, "h0", x, "x");
  check_same_dtype_device(c0, "c0", x, "x");
  if (bias.has_value()) {
    check_shape(*bias, "bias", {4 * H});
    check_same_dtype_device(*bias, "bias", x, "x");
  }
  if (w_hr.has_value()) {
    check_shape(*w_hr, "w_hr", {P, H});
    check_same_dtype_device(*w_hr, "w_hr", x, "x");
  }
  check_lengths(lengths, x);
  return d;
}

// Rows active at step s, as a [B, 1] bool mask (only for the projection
// path, whose projection GEMM runs in ATen outside the step kernels).
at::Tensor active_mask(const c10::optional<at::Tensor>& lengths, int64_t s) {
  return lengths->gt(s).unsqueeze(1);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
lstm_seq_forward_host(const at::Tensor& x_in, const at::Tensor& h0_in,
                      const at::Tensor& c0_in, const at::Tensor& w_ih_in,
                      const at::Tensor& w_hh_in,
                      const c10::optional<at::Tensor>& bias,
                      const c10::optional<at::Tensor>& w_hr_in,
                      const c10::optional<at::Tensor>& lengths_in,
                      const LstmSeqSteps& steps) {
  const Dims d = check_lstm_seq(x_in, h0_in, c0_in, w_ih_in, w_hh_in, bias,
                                w_hr_in, lengths_in);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor w_hh = w_hh_in.contiguous();
  c10::optional<at::Tensor> lengths;
  if (lengths_in.has_value()) lengths = lengths_in->contiguous();
  const bool proj = w_hr_in.has_value();
  const auto acc = x.options().dtype(acc_dtype(x.scalar_type()));

  // Input projection of every step in one GEMM, bias folded in.
  const at::Tensor x2 = x.view({d.T * d.B, d.I});
  const at::Tensor xg =
      (bias.has_value() ? at::addmm(*bias, x2, w_ih_in.t())
                        : at::mm(x2, w_ih_in.t()))
          .view({d.T, d.B, 4 * d.H});

  at::Tensor y = at::empty({d.T, d.B, d.P}, x.options());
  at::Tensor gates = at::empty({d.T, d.B, 4 * d.H}, acc);
  at::Tensor cs = at::empty({d.T, d.B, d.H}, acc);
  at::Tensor ms = proj ? at::empty({d.T, d.B, d.H}, x.options())
                       : at::empty({0}, x.options());
  at::Tensor c_state = c0_in.to(acc, /*non_blocking=*/false, /*copy=*/true);
  // Ping-pong hidden states: every block of a step reads all of h_{s-1}.
  at::Tensor h_state[2] = {h0_in.contiguous().clone(),
                           at::empty({d.B, d.P}, x.options())};
  at::Tensor no_h;
  for (int64_t s = 0; s < d.T; ++s) {
    at::Tensor& h_in = h_state[s % 2];
    at::Tensor& h_next = h_state[(s + 1) % 2];
    at::Tensor gates_s = gates[s];
    at::Tensor cs_s = cs[s];
    if (!proj) {
      at::Tensor out_s = y[s];
      steps.forward(s, xg[s], h_in, w_hh, c_state, lengths, gates_s, cs_s,
                    out_s, h_next);
      continue;
    }
    at::Tensor m_s = ms[s];
    steps.forward(s, xg[s], h_in, w_hh, c_state, lengths, gates_s, cs_s, m_s,
                  no_h);
    const at::Tensor h_new = at::mm(m_s, w_hr_in->t());
    if (lengths.has_value()) {
      const at::Tensor active = active_mask(lengths, s);
      y[s].copy_(at::where(active, h_new, at::zeros_like(h_new)));
      h_next.copy_(at::where(active, h_new, h_in));
    } else {
      y[s].copy_(h_new);
      h_next.copy_(h_new);
    }
  }
  at::Tensor h_n = h_state[d.T % 2];
  at::Tensor c_n = c_state.to(x.scalar_type());
  return {y, h_n, c_n, gates, cs, ms};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor, at::Tensor>
lstm_seq_backward_host(const at::Tensor& grad_y_in,
                       const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
                       const at::Tensor& x_in, const at::Tensor& h0,
                       const at::Tensor& c0, const at::Tensor& w_ih,
                       const at::Tensor& w_hh_in,
                       const c10::optional<at::Tensor>& w_hr,
                       const c10::optional<at::Tensor>& lengths_in,
                       const at::Tensor& y, const at::Tensor& gates,
                       const at::Tensor& cs, const at::Tensor& ms,
                       bool has_bias, const LstmSeqSteps& steps) {
  const Dims d =
      check_lstm_seq(x_in, h0, c0, w_ih, w_hh_in, c10::nullopt, w_hr,
                     lengths_in);
  check_shape(grad_y_in, "grad_y", {d.T, d.B, d.P});
  check_shape(grad_h_n, "grad_h_n", {d.B, d.P});
  check_shape(grad_c_n, "grad_c_n", {d.B, d.H});
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad_y = grad_y_in.contiguous();
  const at::Tensor w_hh = w_hh_in.contiguous();
  c10::optional<at::Tensor> lengths;
  if (lengths_in.has_value()) lengths = lengths_in->contiguous();
  const bool proj = w_hr.has_value();
  const auto acc = x.options().dtype(acc_dtype(x.scalar_type()));

  at::Tensor grad_gates = at::empty({d.T, d.B, 4 * d.H}, x.options());
  at::Tensor dc_carry = grad_c_n.to(acc, false, /*copy=*/true);
  const at::Tensor c0_acc = c0.to(acc);
  at::Tensor grad_w_hr;

  if (!proj) {
    at::Tensor dh_carry = grad_h_n.to(acc, false, /*copy=*/true);
    for (int64_t s = d.T - 1; s >= 0; --s) {
      const at::Tensor next = s + 1 < d.T ? grad_gates[s + 1] : at::Tensor();
      at::Tensor grad_gates_s = grad_gates[s];
      steps.backward(s, next, w_hh, dh_carry, grad_y[s], dc_carry, gates[s],
                     s > 0 ? cs[s - 1] : c0_acc, cs[s], lengths,
                     grad_gates_s);
    }
  } else {
    // With a projection the carried gradient lives in the P-dim h space;
    // it reaches the cell through w_hr, so the step runs without its GEMM.
    at::Tensor dh_carry = grad_h_n.contiguous().clone();
    at::Tensor grad_h_all = at::empty({d.T, d.B, d.P}, x.options());
    at::Tensor unused;
    const at::Tensor no_w;
    for (int64_t s = d.T - 1; s >= 0; --s) {
      if (s + 1 < d.T) {
        const at::Tensor from_next = at::mm(grad_gates[s + 1], w_hh);
        dh_carry = lengths.has_value()
                       ? at::where(active_mask(lengths, s + 1), from_next,
                                   dh_carry)
                       : from_next;
      }
      at::Tensor dh = grad_y[s] + dh_carry;
      if (lengths.has_value()) {
        dh = at::where(active_mask(lengths, s), dh, at::zeros_like(dh));
      }
      grad_h_all[s].copy_(dh);
      const at::Tensor dm = at::mm(dh, *w_hr);
      at::Tensor grad_gates_s = grad_gates[s];
      steps.backward(s, at::Tensor(), no_w, unused, dm, dc_carry, gates[s],
                     s > 0 ? cs[s - 1] : c0_acc, cs[s], lengths,
                     grad_gates_s);
    }
    grad_w_hr = at::mm(grad_h_all.view({d.T * d.B, d.P}).t(),
                       ms.reshape({d.T * d.B, d.H}));
  }

  // Every row is active at step 0, so h0's gradient comes through w_hh.
  at::Tensor grad_h0 = at::mm(grad_gates[0], w_hh);
  at::Tensor grad_c0 = dc_carry.to(x.scalar_type());
  const at::Tensor g2 = grad_gates.view({d.T * d.B, 4 * d.H});
  at::Tensor grad_x = at::mm(g2, w_ih).view({d.T, d.B, d.I});
  at::Tensor grad_w_ih = at::mm(g2.t(), x.view({d.T * d.B, d.I}));
  // h_{s-1} for every step: padded steps carry zero gate gradients, so the
  // zeros that y holds there do not matter.
  const at::Tensor h_prev =
      at::cat({h0.unsqueeze(0), y.narrow(0, 0, d.T - 1)}, 0)
          .view({d.T * d.B, d.P});
  at::Tensor grad_w_hh = at::mm(g2.t(), h_prev);
  at::Tensor grad_bias =
      has_bias ? g2.sum(0) : at::empty({0}, x.options());
  if (!proj) grad_w_hr = at::empty({0}, x.options());
  return {grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias,
          grad_w_hr};
}

void check_lstm_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                     const at::Tensor& c,
                     const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(x_proj.dim() == 2 && x_proj.size(1) % 4 == 0,
              "seqkernels: x_proj must be [B, 4 * hidden_size], got ",
              x_proj.sizes());
  const int64_t B = x_proj.size(0), H = x_proj.size(1) / 4;
  check_shape(h_proj, "h_proj", {B, 4 * H});
  check_shape(c, "c", {B, H});
  check_same_dtype_device(h_proj, "h_proj", x_proj, "x_proj");
  check_same_dtype_device(c, "c", x_proj, "x_proj");
  if (bias.has_value()) {
    check_shape(*bias, "bias", {4 * H});
    check_same_dtype_device(*bias, "bias", x_proj, "x_proj");
  }
}

void check_lstm_cell_backward(const at::Tensor& grad_h,
                              const at::Tensor& grad_c, const at::Tensor& c,
                              const at::Tensor& c_new,
                              const at::Tensor& gates) {
  TORCH_CHECK(c.dim() == 2, "seqkernels: c must be [B, hidden_size], got ",
              c.sizes());
  check_shape(grad_h, "grad_h", c.sizes());
  check_shape(grad_c, "grad_c", c.sizes());
  check_shape(c_new, "c_new", c.sizes());
  check_shape(gates, "gates", {c.size(0), 4 * c.size(1)});
  check_same_dtype_device(grad_h, "grad_h", c, "c");
  check_same_dtype_device(grad_c, "grad_c", c, "c");
  check_same_dtype_device(c_new, "c_new", c, "c");
  TORCH_CHECK(gates.scalar_type() == acc_dtype(c.scalar_type()),
              "seqkernels: gates must be ", acc_dtype(c.scalar_type()),
              " (what lstm_cell saved), got ", gates.scalar_type());
}

}  // namespace seqkernels
