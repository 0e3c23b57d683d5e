// The backend-neutral recurrent machinery: see recurrent_host.h.
#include "seqkernels/recurrent_host.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>

#include "seqkernels/checks.h"
#include "seqkernels/gemm.h"

namespace seqkernels {

CellDesc cell_desc(CellKind kind, Activation act) {
  CellDesc d{kind, act, 0, 0, false, false, false};
  dispatch_cell(kind, [&](auto cell) {
    using Cell = decltype(cell);
    d.gates = Cell::kGates;
    d.saved = Cell::kSaved;
    d.has_c = Cell::kHasC;
    d.split_grad = Cell::kSplitGrad;
    d.direct_h = Cell::kDirectH;
  });
  return d;
}

const char* kind_name(CellKind kind) {
  switch (kind) {
    case CellKind::kLstm:
      return "lstm";
    case CellKind::kGru:
      return "gru";
    default:
      return "rnn";
  }
}

Activation parse_activation(c10::string_view nonlinearity) {
  if (nonlinearity == "tanh") return Activation::kTanh;
  if (nonlinearity == "relu") return Activation::kRelu;
  if (nonlinearity == "identity") return Activation::kIdentity;
  TORCH_CHECK(false,
              "seqkernels: nonlinearity must be 'tanh', 'relu' or "
              "'identity', got '",
              std::string(nonlinearity), "'");
}

Recurrence parse_recurrence(const char* name) {
  const std::string value = name == nullptr ? "default" : name;
  for (Recurrence r : {Recurrence::kDefault, Recurrence::kPerStep,
                       Recurrence::kPersistent}) {
    if (value == recurrence_name(r)) return r;
  }
  TORCH_CHECK(false,
              "seqkernels: SEQKERNELS_RECURRENCE must be 'default', "
              "'per_step' or 'persistent', got '",
              value, "'");
}

const char* recurrence_name(Recurrence r) {
  switch (r) {
    case Recurrence::kPerStep:
      return "per_step";
    case Recurrence::kPersistent:
      return "persistent";
    default:
      return "default";
  }
}

Recurrence recurrence_algorithm() {
  return parse_recurrence(std::getenv("SEQKERNELS_RECURRENCE"));
}

namespace {
std::atomic<int64_t> g_chunk_steps{0};
}  // namespace

int64_t chunk_steps(const SeqSteps& steps, int64_t T, int64_t step_bytes) {
  if (steps.chunk_bytes == 0) return T;
  const int64_t asked = g_chunk_steps.load(std::memory_order_relaxed);
  if (asked > 0) return std::min(T, asked);
  return std::clamp<int64_t>(
      steps.chunk_bytes / std::max<int64_t>(1, step_bytes), 1, T);
}

void set_chunk_steps(int64_t steps) {
  TORCH_CHECK(steps >= 0, "seqkernels: chunk steps must be >= 0, got ",
              steps);
  g_chunk_steps = steps;
}

namespace {

// Whether the driver offers the whole loop to the backend's kernel f.
template <typename F>
bool persistent_asked(const SeqSteps& steps, F* f) {
  const Recurrence asked = recurrence_algorithm();
  return f != nullptr &&
         (asked == Recurrence::kPersistent ||
          (asked == Recurrence::kDefault && steps.seq_by_default));
}

void check_bias(const OptTensor& b, const char* name, int64_t n,
                const at::Tensor& like, const char* like_name) {
  if (!b.has_value()) return;
  check_shape(*b, name, {n});
  check_same_dtype_device(*b, name, like, like_name);
}

struct Dims {
  int64_t T, B, I, H, P;
};

Dims check_seq(const CellDesc& cell, const at::Tensor& x,
               const at::Tensor& h0, const OptTensor& c0,
               const at::Tensor& w_ih, const at::Tensor& w_hh,
               const OptTensor& b_ih, const OptTensor& b_hh,
               const OptTensor& w_hr, const OptTensor& lengths) {
  const int64_t G = cell.gates;
  TORCH_CHECK(x.dim() == 3, "seqkernels: x must be [T, B, input_size], got ",
              x.sizes());
  TORCH_CHECK(x.size(0) > 0 && x.size(1) > 0,
              "seqkernels: x must have at least one step and one batch "
              "element, got shape ",
              x.sizes());
  TORCH_CHECK(w_ih.dim() == 2 && w_ih.size(0) % G == 0,
              "seqkernels: w_ih must be [", G,
              " * hidden_size, input_size] for the ", kind_name(cell.kind),
              " cell, got ", w_ih.sizes());
  const int64_t H = w_ih.size(0) / G;
  TORCH_CHECK(!w_hr.has_value() || cell.kind == CellKind::kLstm,
              "seqkernels: w_hr (a projection) exists for the lstm cell "
              "only");
  const int64_t P = w_hr.has_value() ? w_hr->size(0) : H;
  Dims d{x.size(0), x.size(1), x.size(2), H, P};
  check_shape(w_ih, "w_ih", {G * H, d.I});
  check_shape(w_hh, "w_hh", {G * H, P});
  check_shape(h0, "h0", {d.B, P});
  check_same_dtype_device(w_ih, "w_ih", x, "x");
  check_same_dtype_device(w_hh, "w_hh", x, "x");
  check_same_dtype_device(h0, "h0", x, "x");
  if (cell.has_c) {
    TORCH_CHECK(c0.has_value(), "seqkernels: c0 is missing");
    check_shape(*c0, "c0", {d.B, H});
    check_same_dtype_device(*c0, "c0", x, "x");
  }
  check_bias(b_ih, "b_ih", G * H, x, "x");
  check_bias(b_hh, "b_hh", G * H, x, "x");
  if (w_hr.has_value()) {
    check_shape(*w_hr, "w_hr", {P, H});
    check_same_dtype_device(*w_hr, "w_hr", x, "x");
  }
  check_lengths(lengths, x);
  return d;
}

// The backward's checks: those of the forward, and what the forward saved.
Dims check_seq_backward(const CellDesc& cell, const at::Tensor& grad_y,
                        const at::Tensor& grad_h_n, const OptTensor& grad_c_n,
                        const at::Tensor& x, const at::Tensor& h0,
                        const OptTensor& c0, const at::Tensor& w_ih,
                        const at::Tensor& w_hh, const OptTensor& w_hr,
                        const OptTensor& lengths, const at::Tensor& y,
                        const at::Tensor& saved,
                        const at::Tensor& cell_states) {
  const Dims d = check_seq(cell, x, h0, c0, w_ih, w_hh, c10::nullopt,
                           c10::nullopt, w_hr, lengths);
  const auto acc_type = acc_dtype(x.scalar_type());
  check_shape(grad_y, "grad_y", {d.T, d.B, d.P});
  check_shape(grad_h_n, "grad_h_n", {d.B, d.P});
  check_shape(y, "y", {d.T, d.B, d.P});
  check_shape(saved, "saved", {d.T, d.B, cell.saved * d.H});
  TORCH_CHECK(saved.scalar_type() == acc_type, "seqkernels: saved must be ",
              acc_type, " (what the forward saved), got ",
              saved.scalar_type());
  if (cell.has_c) {
    TORCH_CHECK(grad_c_n.has_value(), "seqkernels: grad_c_n is missing");
    check_shape(*grad_c_n, "grad_c_n", {d.B, d.H});
    check_shape(cell_states, "cell_states", {d.T, d.B, d.H});
  }
  return d;
}

// Rows active at step s, as a [B, 1] bool mask (only for the projection
// path, whose projection GEMM runs in ATen outside the step kernels).
at::Tensor active_mask(const OptTensor& lengths, int64_t s) {
  return lengths->gt(s).unsqueeze(1);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
recurrent_seq_forward(const CellDesc& cell, const at::Tensor& x_in,
                      const at::Tensor& h0_in, const OptTensor& c0_in,
                      const at::Tensor& w_ih_in, const at::Tensor& w_hh_in,
                      const OptTensor& b_ih, const OptTensor& b_hh,
                      const OptTensor& w_hr_in, const OptTensor& lengths_in,
                      bool keep_saved, const SeqSteps& steps) {
  if (steps.check != nullptr) steps.check(x_in, "x");
  const Dims d = check_seq(cell, x_in, h0_in, c0_in, w_ih_in, w_hh_in, b_ih,
                           b_hh, w_hr_in, lengths_in);
  const int64_t GH = cell.gates * d.H;
  const at::Tensor x = x_in.contiguous();
  const at::Tensor w_hh = w_hh_in.contiguous();
  OptTensor lengths;
  if (lengths_in.has_value()) lengths = lengths_in->contiguous();
  const bool proj = w_hr_in.has_value();
  const auto acc = x.options().dtype(acc_dtype(x.scalar_type()));

  // The input-side bias goes into the input projection. The recurrent bias
  // joins it where the cell only sees the sum of both sides; a cell that
  // treats the sides differently (GRU) gets it in its step.
  OptTensor bias_x;
  if (b_ih.has_value()) bias_x = b_ih->to(acc);
  at::Tensor bias_h;
  if (b_hh.has_value()) {
    if (cell.split_grad) {
      bias_h = b_hh->contiguous();
    } else {
      bias_x = bias_x.has_value() ? *bias_x + b_hh->to(acc) : b_hh->to(acc);
    }
  }

  // The input projection, kept in the accumulation dtype as cuDNN keeps
  // its gate pre-activations in float32: rounded to bfloat16 it would hand
  // the cell a fresh rounding error every step, which the cell state (and
  // the GRU's h) integrates over a long sequence. One GEMM for every step
  // where the saved values are kept; without them, one per chunk of steps
  // (SeqSteps::chunk_bytes), each chunk's buffers reused by the next.
  const at::Tensor x2 = x.view({d.T * d.B, d.I}).to(acc);
  const at::Tensor w_ih_t = w_ih_in.to(acc).t();
  const at::Tensor b_x = bias_x.has_value() ? *bias_x : at::Tensor();
  const int64_t step_bytes =
      d.B * GH * int64_t(c10::elementSize(acc_dtype(x.scalar_type())));
  const int64_t chunk =
      keep_saved ? d.T : chunk_steps(steps, d.T, step_bytes);
  auto project = [&](int64_t t0, int64_t n) {
    return gemm(x2.narrow(0, t0 * d.B, n * d.B), w_ih_t, b_x)
        .view({n, d.B, GH});
  };

  at::Tensor y = at::empty({d.T, d.B, d.P}, x.options());
  // The saved values take the pre-activations' place where the backend
  // allows it (one buffer of T*B*G*H fewer to allocate and fault in).
  const bool over_xg = steps.saved_over_xg && cell.saved == cell.gates;
  const int64_t rows = keep_saved ? d.T : chunk;  // steps the buffers hold
  at::Tensor saved = over_xg ? at::Tensor()
                             : at::empty({rows, d.B, cell.saved * d.H}, acc);
  at::Tensor cell_states = cell.has_c ? at::empty({rows, d.B, d.H}, acc)
                                      : at::empty({0}, acc);
  at::Tensor cell_outputs = proj ? at::empty({rows, d.B, d.H}, x.options())
                                 : at::empty({0}, x.options());
  at::Tensor c_state;
  if (cell.has_c) {
    c_state = c0_in->to(acc, /*non_blocking=*/false, /*copy=*/true);
  }
  // Ping-pong hidden states (every block of a step reads all of h_{s-1});
  // h_state[cur] holds the latest.
  at::Tensor h_state[2] = {h0_in.contiguous().clone(),
                           at::empty({d.B, d.P}, x.options())};
  int cur = 0;
  // The steps' w_hh and b_hh (SeqSteps::acc_weights), converted at the
  // first chunk the steps run, for every step.
  at::Tensor w_hh_step, b_hh_step;
  at::Tensor prepared;  // SeqForward::prepared, across the chunks

  for (int64_t t0 = 0; t0 < d.T; t0 += chunk) {
    const int64_t n = std::min(chunk, d.T - t0);
    const at::Tensor xg = project(t0, n);
    if (over_xg && keep_saved) saved = xg;  // one chunk: every step
    // This chunk's rows of the outputs: of the whole sequence's tensors
    // where they are kept, else of the chunk's buffers.
    const int64_t r0 = keep_saved ? t0 : 0;
    const at::Tensor sv = over_xg ? xg : saved.narrow(0, r0, n);
    const at::Tensor cs =
        cell.has_c ? cell_states.narrow(0, r0, n) : at::Tensor();
    const at::Tensor co = proj ? cell_outputs.narrow(0, r0, n) : at::Tensor();
    const at::Tensor yc = y.narrow(0, t0, n);
    // The chunk's steps count from 0, and its lengths with them.
    OptTensor lens;
    if (lengths.has_value()) lens = t0 == 0 ? *lengths : *lengths - t0;
    if (!proj && persistent_asked(steps, steps.forward_seq) &&
        steps.forward_seq(cell, SeqForward{xg, h_state[cur], w_hh, bias_h,
                                           c_state, lens, sv, cs, yc,
                                           h_state[1 - cur],
                                           n < d.T ? &prepared : nullptr})) {
      cur = 1 - cur;
      continue;
    }
    if (!w_hh_step.defined()) {
      w_hh_step = steps.acc_weights ? w_hh.to(acc) : w_hh;
      b_hh_step = steps.acc_weights && bias_h.defined() ? bias_h.to(acc)
                                                        : bias_h;
    }
    for (int64_t s = 0; s < n; ++s) {
      const at::Tensor h_in = h_state[cur];
      cur = 1 - cur;
      const at::Tensor h_next = h_state[cur];
      // Without a projection the step writes y and the next h itself; with
      // one it writes the cell output, and the projection follows here.
      const ForwardStep step{s,
                             xg[s],
                             h_in,
                             w_hh_step,
                             b_hh_step,
                             c_state,
                             lens,
                             sv[s],
                             cell.has_c ? cs[s] : at::Tensor(),
                             proj ? co[s] : yc[s],
                             proj ? at::Tensor() : h_next};
      steps.forward(cell, step);
      if (!proj) continue;
      const at::Tensor h_new = gemm(step.out, w_hr_in->t());
      if (lens.has_value()) {
        const at::Tensor active = active_mask(lens, s);
        yc[s].copy_(at::where(active, h_new, at::zeros_like(h_new)));
        h_next.copy_(at::where(active, h_new, h_in));
      } else {
        yc[s].copy_(h_new);
        h_next.copy_(h_new);
      }
    }
  }
  const at::Tensor h_n = h_state[cur];
  const at::Tensor c_n = cell.has_c ? c_state.to(x.scalar_type())
                                    : at::empty({0}, x.options());
  if (!keep_saved) {  // nothing for a backward
    saved = at::empty({0}, acc);
    cell_states = at::empty({0}, acc);
    cell_outputs = at::empty({0}, x.options());
  }
  return {y, h_n, c_n, saved, cell_states, cell_outputs};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor, at::Tensor, at::Tensor>
recurrent_seq_backward(const CellDesc& cell, const at::Tensor& grad_y_in,
                       const at::Tensor& grad_h_n, const OptTensor& grad_c_n,
                       const at::Tensor& x_in, const at::Tensor& h0,
                       const OptTensor& c0, const at::Tensor& w_ih,
                       const at::Tensor& w_hh_in, const OptTensor& w_hr,
                       const OptTensor& lengths_in, const at::Tensor& y,
                       const at::Tensor& saved, const at::Tensor& cell_states,
                       const at::Tensor& cell_outputs, bool has_bias,
                       const SeqSteps& steps) {
  if (steps.check != nullptr) steps.check(x_in, "x");
  const Dims d =
      check_seq_backward(cell, grad_y_in, grad_h_n, grad_c_n, x_in, h0, c0,
                         w_ih, w_hh_in, w_hr, lengths_in, y, saved,
                         cell_states);
  const int64_t GH = cell.gates * d.H;
  const auto acc_type = acc_dtype(x_in.scalar_type());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad_y = grad_y_in.contiguous();
  const at::Tensor w_hh = w_hh_in.contiguous();
  OptTensor lengths;
  if (lengths_in.has_value()) lengths = lengths_in->contiguous();
  const bool proj = w_hr.has_value();
  const auto acc = x.options().dtype(acc_type);

  // Gradients of the input-side pre-activations, and of the recurrent side
  // where the cell makes them differ, in the accumulation dtype (as the
  // forward's pre-activations): they feed the recurrent product of the
  // step before, so a bfloat16 rounding would enter the carried gradient at
  // every step. The GEMMs over them below run in that dtype too.
  at::Tensor grad_xg = at::empty({d.T, d.B, GH}, acc);
  at::Tensor grad_hg =
      cell.split_grad ? at::empty({d.T, d.B, GH}, acc) : grad_xg;
  const at::Tensor w_hh_acc = w_hh.to(acc);
  // The pointwise carry: dc (LSTM), the direct dh path (GRU).
  at::Tensor carry;
  if (cell.has_c) {
    carry = grad_c_n->to(acc, false, /*copy=*/true);
  } else if (cell.direct_h) {
    carry = at::zeros({d.B, d.H}, acc);
  }
  at::Tensor c0_acc;
  if (cell.has_c) c0_acc = c0->to(acc);
  // The cell state before step s (LSTM).
  const auto c_prev = [&](int64_t s) {
    return s > 0 ? cell_states[s - 1] : c0_acc;
  };
  // h_{s-1} for every step: padded steps carry zero gate gradients, so the
  // zeros that y holds there do not matter.
  const at::Tensor h_prev =
      at::cat({h0.unsqueeze(0), y.narrow(0, 0, d.T - 1)}, 0);
  at::Tensor grad_w_hr;
  const at::Tensor none;

  if (!proj) {
    at::Tensor dh_carry = grad_h_n.to(acc, false, /*copy=*/true);
    const bool whole =
        persistent_asked(steps, steps.backward_seq) &&
        steps.backward_seq(
            cell, SeqBackward{grad_y, w_hh, dh_carry, carry, saved,
                              cell.direct_h ? h_prev : none,
                              cell.has_c ? c0_acc : none,
                              cell.has_c ? cell_states : none, lengths,
                              grad_xg, grad_hg});
    for (int64_t s = whole ? -1 : d.T - 1; s >= 0; --s) {
      steps.backward(
          cell, BackwardStep{s,
                             s + 1 < d.T ? grad_hg[s + 1] : none,
                             steps.acc_weights ? w_hh_acc : w_hh,
                             dh_carry,
                             grad_y[s],
                             carry,
                             saved[s],
                             cell.direct_h ? h_prev[s] : none,
                             cell.has_c ? c_prev(s) : none,
                             cell.has_c ? cell_states[s] : none,
                             lengths,
                             grad_xg[s],
                             cell.split_grad ? grad_hg[s] : grad_xg[s]});
    }
  } else {
    // With a projection (LSTM) the carried gradient lives in the P-dim h
    // space; it reaches the cell through w_hr, so the step runs without its
    // GEMM.
    at::Tensor dh_carry = grad_h_n.to(acc, false, /*copy=*/true);
    at::Tensor grad_h_all = at::empty({d.T, d.B, d.P}, acc);
    const at::Tensor w_hr_acc = w_hr->to(acc);
    for (int64_t s = d.T - 1; s >= 0; --s) {
      if (s + 1 < d.T) {
        const at::Tensor from_next = gemm(grad_hg[s + 1], w_hh_acc);
        dh_carry = lengths.has_value()
                       ? at::where(active_mask(lengths, s + 1), from_next,
                                   dh_carry)
                       : from_next;
      }
      at::Tensor dh = grad_y[s].to(acc) + dh_carry;
      if (lengths.has_value()) {
        dh = at::where(active_mask(lengths, s), dh, at::zeros_like(dh));
      }
      grad_h_all[s].copy_(dh);
      // The step kernels take dh in the storage dtype.
      const at::Tensor dm = gemm(dh, w_hr_acc).to(x.scalar_type());
      steps.backward(cell, BackwardStep{s, none, none, none, dm, carry,
                                        saved[s], none,
                                        c_prev(s), cell_states[s],
                                        lengths, grad_xg[s], grad_xg[s]});
    }
    grad_w_hr = gemm(grad_h_all.view({d.T * d.B, d.P}).t(),
                       cell_outputs.reshape({d.T * d.B, d.H}).to(acc))
                    .to(x.scalar_type());
  }

  // Every row is active at step 0, so h0's gradient comes through w_hh
  // (and the direct path of the GRU).
  at::Tensor grad_h0 = gemm(grad_hg[0], w_hh_acc);
  if (cell.direct_h) grad_h0.add_(carry);
  grad_h0 = grad_h0.to(x.scalar_type());
  at::Tensor grad_c0 = cell.has_c ? carry.to(x.scalar_type())
                                  : at::empty({0}, x.options());
  const at::Tensor gx2 = grad_xg.view({d.T * d.B, GH});
  const at::Tensor gh2 = grad_hg.view({d.T * d.B, GH});
  const auto st = x.scalar_type();
  at::Tensor grad_x = gemm(gx2, w_ih.to(acc)).view({d.T, d.B, d.I}).to(st);
  at::Tensor grad_w_ih =
      gemm(gx2.t(), x.view({d.T * d.B, d.I}).to(acc)).to(st);
  at::Tensor grad_w_hh =
      gemm(gh2.t(), h_prev.view({d.T * d.B, d.P}).to(acc)).to(st);
  const at::Tensor empty = at::empty({0}, x.options());
  at::Tensor grad_b_ih = has_bias ? gx2.sum(0).to(st) : empty;
  at::Tensor grad_b_hh =
      has_bias && cell.split_grad ? gh2.sum(0).to(st) : empty;
  if (!proj) grad_w_hr = empty;
  return {grad_x,    grad_h0,   grad_c0,   grad_w_ih,
          grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr};
}

// ---------------------------------------------------------------------------
// The sequence ops
// ---------------------------------------------------------------------------

LstmSeqOutputs lstm_seq(const at::Tensor& x, const at::Tensor& h0,
                  const at::Tensor& c0, const at::Tensor& w_ih,
                  const at::Tensor& w_hh, const OptTensor& bias,
                  const OptTensor& w_hr, const OptTensor& lengths,
                  bool keep_saved, const SeqSteps& steps) {
  return recurrent_seq_forward(cell_desc(CellKind::kLstm), x, h0, c0, w_ih,
                               w_hh, bias, c10::nullopt, w_hr, lengths,
                               keep_saved, steps);
}

LstmSeqGrads lstm_seq_backward(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n,
    const at::Tensor& grad_c_n, const at::Tensor& x, const at::Tensor& h0,
    const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const OptTensor& w_hr, const OptTensor& lengths, const at::Tensor& y,
    const at::Tensor& saved, const at::Tensor& cell_states,
    const at::Tensor& cell_outputs, bool has_bias, const SeqSteps& steps) {
  auto [gx, gh0, gc0, gw_ih, gw_hh, gb, gb_hh, gw_hr] =
      recurrent_seq_backward(cell_desc(CellKind::kLstm), grad_y, grad_h_n,
                             grad_c_n, x, h0, c0, w_ih, w_hh, w_hr, lengths,
                             y, saved, cell_states, cell_outputs, has_bias,
                             steps);
  return {gx, gh0, gc0, gw_ih, gw_hh, gb, gw_hr};
}

SeqOutputs gru_seq(const at::Tensor& x, const at::Tensor& h0,
                 const at::Tensor& w_ih, const at::Tensor& w_hh,
                 const OptTensor& b_ih, const OptTensor& b_hh,
                 const OptTensor& lengths, bool keep_saved,
                 const SeqSteps& steps) {
  auto [y, h_n, c_n, saved, cell_states, cell_outputs] = recurrent_seq_forward(
      cell_desc(CellKind::kGru), x, h0, c10::nullopt, w_ih, w_hh, b_ih, b_hh,
      c10::nullopt, lengths, keep_saved, steps);
  return {y, h_n, saved};
}

GruSeqGrads gru_seq_backward(const at::Tensor& grad_y,
                          const at::Tensor& grad_h_n, const at::Tensor& x,
                          const at::Tensor& h0, const at::Tensor& w_ih,
                          const at::Tensor& w_hh, const OptTensor& lengths,
                          const at::Tensor& y, const at::Tensor& saved,
                          bool has_bias, const SeqSteps& steps) {
  const at::Tensor empty = at::empty({0}, x.options());
  auto [gx, gh0, gc0, gw_ih, gw_hh, gb_ih, gb_hh, gw_hr] =
      recurrent_seq_backward(cell_desc(CellKind::kGru), grad_y, grad_h_n,
                             c10::nullopt, x, h0, c10::nullopt, w_ih, w_hh,
                             c10::nullopt, lengths, y, saved, empty, empty,
                             has_bias, steps);
  return {gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh};
}

SeqOutputs rnn_seq(const at::Tensor& x, const at::Tensor& h0,
                 const at::Tensor& w_ih, const at::Tensor& w_hh,
                 const OptTensor& bias, const OptTensor& lengths,
                 c10::string_view nonlinearity, bool keep_saved,
                 const SeqSteps& steps) {
  auto [y, h_n, c_n, saved, cell_states, cell_outputs] = recurrent_seq_forward(
      cell_desc(CellKind::kRnn, parse_activation(nonlinearity)), x, h0,
      c10::nullopt, w_ih, w_hh, bias, c10::nullopt, c10::nullopt, lengths,
      keep_saved, steps);
  return {y, h_n, saved};
}

RnnSeqGrads rnn_seq_backward(const at::Tensor& grad_y,
                          const at::Tensor& grad_h_n, const at::Tensor& x,
                          const at::Tensor& h0, const at::Tensor& w_ih,
                          const at::Tensor& w_hh, const OptTensor& lengths,
                          const at::Tensor& y, const at::Tensor& saved,
                          bool has_bias, c10::string_view nonlinearity,
                          const SeqSteps& steps) {
  const at::Tensor empty = at::empty({0}, x.options());
  auto [gx, gh0, gc0, gw_ih, gw_hh, gb, gb_hh, gw_hr] =
      recurrent_seq_backward(
          cell_desc(CellKind::kRnn, parse_activation(nonlinearity)), grad_y,
          grad_h_n, c10::nullopt, x, h0, c10::nullopt, w_ih, w_hh,
          c10::nullopt, lengths, y, saved, empty, empty, has_bias, steps);
  return {gx, gh0, gw_ih, gw_hh, gb};
}

// ---------------------------------------------------------------------------
// The cell ops
// ---------------------------------------------------------------------------

namespace {

// Checks the inputs of a cell op; returns H.
int64_t check_cell(const CellDesc& cell, const at::Tensor& x_proj,
                   const at::Tensor& h_proj, const OptTensor& b_x,
                   const OptTensor& b_h, const at::Tensor& state,
                   const char* state_name) {
  const int64_t G = cell.gates;
  TORCH_CHECK(x_proj.dim() == 2 && x_proj.size(1) % G == 0,
              "seqkernels: x_proj must be [B, ", G, " * hidden_size], got ",
              x_proj.sizes());
  const int64_t B = x_proj.size(0), H = x_proj.size(1) / G;
  check_shape(h_proj, "h_proj", {B, G * H});
  check_same_dtype_device(h_proj, "h_proj", x_proj, "x_proj");
  if (state.defined()) {
    check_shape(state, state_name, {B, H});
    check_same_dtype_device(state, state_name, x_proj, "x_proj");
  }
  check_bias(b_x, b_h.has_value() ? "b_ih" : "bias", G * H, x_proj,
             "x_proj");
  check_bias(b_h, "b_hh", G * H, x_proj, "x_proj");
  return H;
}

// Checks the inputs of a cell op's backward: `state` [B, H] gives the
// shapes, `saved` is what the forward saved.
void check_cell_backward(const CellDesc& cell, const at::Tensor& grad_h,
                         const at::Tensor& state, const char* state_name,
                         const at::Tensor& saved) {
  TORCH_CHECK(state.dim() == 2, "seqkernels: ", state_name,
              " must be [B, hidden_size], got ", state.sizes());
  check_shape(grad_h, "grad_h", state.sizes());
  check_same_dtype_device(grad_h, "grad_h", state, state_name);
  check_shape(saved, "saved", {state.size(0), cell.saved * state.size(1)});
  TORCH_CHECK(saved.scalar_type() == acc_dtype(state.scalar_type()),
              "seqkernels: saved must be ", acc_dtype(state.scalar_type()),
              " (what the forward saved), got ", saved.scalar_type());
  TORCH_CHECK(saved.device() == state.device(),
              "seqkernels: saved must be on the device of ", state_name);
}

at::Tensor contiguous_or_undefined(const OptTensor& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

}  // namespace

LstmCellOutputs lstm_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                   const at::Tensor& c_in, const OptTensor& bias,
                   const CellKernels& k) {
  const CellDesc cell = cell_desc(CellKind::kLstm);
  const int64_t H = check_cell(cell, x_proj, h_proj, bias, c10::nullopt,
                               c_in, "c");
  if (k.check != nullptr) k.check(x_proj, "x_proj");
  const int64_t B = x_proj.size(0);
  const at::Tensor c = c_in.contiguous();
  at::Tensor h_new = at::empty({B, H}, c.options());
  at::Tensor c_new = at::empty({B, H}, c.options());
  at::Tensor saved = at::empty(
      {B, cell.saved * H}, c.options().dtype(acc_dtype(c.scalar_type())));
  if (B * H > 0) {
    k.forward(cell, x_proj.contiguous(), h_proj.contiguous(),
              contiguous_or_undefined(bias), at::Tensor(), at::Tensor(), c,
              h_new, c_new, saved);
  }
  return {h_new, c_new, saved};
}

std::tuple<at::Tensor, at::Tensor> lstm_cell_backward(
    const at::Tensor& grad_h, const at::Tensor& grad_c, const at::Tensor& c,
    const at::Tensor& c_new, const at::Tensor& saved, const CellKernels& k) {
  const CellDesc cell = cell_desc(CellKind::kLstm);
  check_lstm_cell_backward(grad_h, grad_c, c, c_new, saved);
  if (k.check != nullptr) k.check(c, "c");
  at::Tensor grad_gates = at::empty(saved.sizes(), c.options());
  at::Tensor grad_c_prev = at::empty(c.sizes(), c.options());
  at::Tensor none;
  if (c.numel() > 0) {
    k.backward(cell, grad_h.contiguous(), grad_c.contiguous(),
               saved.contiguous(), at::Tensor(), c.contiguous(),
               c_new.contiguous(), grad_gates, none, grad_c_prev);
  }
  return {grad_gates, grad_c_prev};
}

std::tuple<at::Tensor, at::Tensor> gru_cell(
    const at::Tensor& x_proj, const at::Tensor& h_proj, const at::Tensor& h_in,
    const OptTensor& b_ih, const OptTensor& b_hh, const CellKernels& k) {
  const CellDesc cell = cell_desc(CellKind::kGru);
  const int64_t H =
      check_cell(cell, x_proj, h_proj, b_ih, b_hh, h_in, "h");
  if (k.check != nullptr) k.check(x_proj, "x_proj");
  const int64_t B = x_proj.size(0);
  const at::Tensor h = h_in.contiguous();
  at::Tensor h_new = at::empty({B, H}, h.options());
  at::Tensor saved = at::empty(
      {B, cell.saved * H}, h.options().dtype(acc_dtype(h.scalar_type())));
  at::Tensor none;
  if (B * H > 0) {
    k.forward(cell, x_proj.contiguous(), h_proj.contiguous(),
              contiguous_or_undefined(b_ih), contiguous_or_undefined(b_hh), h,
              at::Tensor(), h_new, none, saved);
  }
  return {h_new, saved};
}

GruCellGrads gru_cell_backward(const at::Tensor& grad_h, const at::Tensor& h,
                           const at::Tensor& saved, const CellKernels& k) {
  const CellDesc cell = cell_desc(CellKind::kGru);
  check_cell_backward(cell, grad_h, h, "h", saved);
  if (k.check != nullptr) k.check(h, "h");
  const int64_t B = h.size(0), H = h.size(1);
  at::Tensor grad_x_proj = at::empty({B, cell.gates * H}, h.options());
  at::Tensor grad_h_proj = at::empty({B, cell.gates * H}, h.options());
  at::Tensor grad_h_prev = at::empty({B, H}, h.options());
  if (B * H > 0) {
    k.backward(cell, grad_h.contiguous(), at::Tensor(), saved.contiguous(),
               h.contiguous(), at::Tensor(), at::Tensor(), grad_x_proj,
               grad_h_proj, grad_h_prev);
  }
  return {grad_x_proj, grad_h_proj, grad_h_prev};
}

std::tuple<at::Tensor, at::Tensor> rnn_cell(const at::Tensor& x_proj,
                                            const at::Tensor& h_proj,
                                            const OptTensor& bias,
                                            c10::string_view nonlinearity,
                                            const CellKernels& k) {
  const CellDesc cell =
      cell_desc(CellKind::kRnn, parse_activation(nonlinearity));
  const int64_t H = check_cell(cell, x_proj, h_proj, bias, c10::nullopt,
                               at::Tensor(), "");
  if (k.check != nullptr) k.check(x_proj, "x_proj");
  const int64_t B = x_proj.size(0);
  at::Tensor h_new = at::empty({B, H}, x_proj.options());
  at::Tensor saved = at::empty(
      {B, cell.saved * H},
      x_proj.options().dtype(acc_dtype(x_proj.scalar_type())));
  at::Tensor none;
  if (B * H > 0) {
    k.forward(cell, x_proj.contiguous(), h_proj.contiguous(),
              contiguous_or_undefined(bias), at::Tensor(), at::Tensor(),
              at::Tensor(), h_new, none, saved);
  }
  return {h_new, saved};
}

at::Tensor rnn_cell_backward(const at::Tensor& grad_h,
                             const at::Tensor& saved,
                             c10::string_view nonlinearity,
                             const CellKernels& k) {
  const CellDesc cell =
      cell_desc(CellKind::kRnn, parse_activation(nonlinearity));
  check_cell_backward(cell, grad_h, grad_h, "grad_h", saved);
  if (k.check != nullptr) k.check(grad_h, "grad_h");
  at::Tensor grad_pre = at::empty(grad_h.sizes(), grad_h.options());
  at::Tensor none;
  if (grad_h.numel() > 0) {
    k.backward(cell, grad_h.contiguous(), at::Tensor(), saved.contiguous(),
               at::Tensor(), at::Tensor(), at::Tensor(), grad_pre, none,
               none);
  }
  return grad_pre;
}

// ---------------------------------------------------------------------------
// Each op's checks, as its kernels run them (declared in recurrent_host.h)
// ---------------------------------------------------------------------------

void check_lstm_seq(const at::Tensor& x, const at::Tensor& h0,
                    const at::Tensor& c0, const at::Tensor& w_ih,
                    const at::Tensor& w_hh, const OptTensor& bias,
                    const OptTensor& w_hr, const OptTensor& lengths) {
  check_seq(cell_desc(CellKind::kLstm), x, h0, c0, w_ih, w_hh, bias,
            c10::nullopt, w_hr, lengths);
}

void check_lstm_seq_backward(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n,
    const at::Tensor& grad_c_n, const at::Tensor& x, const at::Tensor& h0,
    const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const OptTensor& w_hr, const OptTensor& lengths, const at::Tensor& y,
    const at::Tensor& saved, const at::Tensor& cell_states) {
  check_seq_backward(cell_desc(CellKind::kLstm), grad_y, grad_h_n, grad_c_n,
                     x, h0, c0, w_ih, w_hh, w_hr, lengths, y, saved,
                     cell_states);
}

void check_gru_seq(const at::Tensor& x, const at::Tensor& h0,
                   const at::Tensor& w_ih, const at::Tensor& w_hh,
                   const OptTensor& b_ih, const OptTensor& b_hh,
                   const OptTensor& lengths) {
  check_seq(cell_desc(CellKind::kGru), x, h0, c10::nullopt, w_ih, w_hh, b_ih,
            b_hh, c10::nullopt, lengths);
}

void check_gru_seq_backward(const at::Tensor& grad_y,
                            const at::Tensor& grad_h_n, const at::Tensor& x,
                            const at::Tensor& h0, const at::Tensor& w_ih,
                            const at::Tensor& w_hh, const OptTensor& lengths,
                            const at::Tensor& y, const at::Tensor& saved) {
  check_seq_backward(cell_desc(CellKind::kGru), grad_y, grad_h_n,
                     c10::nullopt, x, h0, c10::nullopt, w_ih, w_hh,
                     c10::nullopt, lengths, y, saved, at::Tensor());
}

void check_rnn_seq(const at::Tensor& x, const at::Tensor& h0,
                   const at::Tensor& w_ih, const at::Tensor& w_hh,
                   const OptTensor& bias, const OptTensor& lengths,
                   c10::string_view nonlinearity) {
  check_seq(cell_desc(CellKind::kRnn, parse_activation(nonlinearity)), x, h0,
            c10::nullopt, w_ih, w_hh, bias, c10::nullopt, c10::nullopt,
            lengths);
}

void check_rnn_seq_backward(const at::Tensor& grad_y,
                            const at::Tensor& grad_h_n, const at::Tensor& x,
                            const at::Tensor& h0, const at::Tensor& w_ih,
                            const at::Tensor& w_hh, const OptTensor& lengths,
                            const at::Tensor& y, const at::Tensor& saved,
                            c10::string_view nonlinearity) {
  check_seq_backward(
      cell_desc(CellKind::kRnn, parse_activation(nonlinearity)), grad_y,
      grad_h_n, c10::nullopt, x, h0, c10::nullopt, w_ih, w_hh, c10::nullopt,
      lengths, y, saved, at::Tensor());
}

void check_lstm_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                     const at::Tensor& c, const OptTensor& bias) {
  check_cell(cell_desc(CellKind::kLstm), x_proj, h_proj, bias, c10::nullopt,
             c, "c");
}

void check_lstm_cell_backward(const at::Tensor& grad_h,
                              const at::Tensor& grad_c, const at::Tensor& c,
                              const at::Tensor& c_new,
                              const at::Tensor& saved) {
  check_cell_backward(cell_desc(CellKind::kLstm), grad_h, c, "c", saved);
  check_shape(grad_c, "grad_c", c.sizes());
  check_shape(c_new, "c_new", c.sizes());
  check_same_dtype_device(grad_c, "grad_c", c, "c");
  check_same_dtype_device(c_new, "c_new", c, "c");
}

void check_gru_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                    const at::Tensor& h, const OptTensor& b_ih,
                    const OptTensor& b_hh) {
  check_cell(cell_desc(CellKind::kGru), x_proj, h_proj, b_ih, b_hh, h, "h");
}

void check_gru_cell_backward(const at::Tensor& grad_h, const at::Tensor& h,
                             const at::Tensor& saved) {
  check_cell_backward(cell_desc(CellKind::kGru), grad_h, h, "h", saved);
}

void check_rnn_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                    const OptTensor& bias, c10::string_view nonlinearity) {
  check_cell(cell_desc(CellKind::kRnn, parse_activation(nonlinearity)),
             x_proj, h_proj, bias, c10::nullopt, at::Tensor(), "");
}

void check_rnn_cell_backward(const at::Tensor& grad_h,
                             const at::Tensor& saved,
                             c10::string_view nonlinearity) {
  check_cell_backward(
      cell_desc(CellKind::kRnn, parse_activation(nonlinearity)), grad_h,
      grad_h, "grad_h", saved);
}

}  // namespace seqkernels
