// The recurrent machinery shared by every cell (LSTM, GRU, RNN) and by the
// CPU and CUDA backends.
//
// A sequence runs the same way for every cell and backend: one GEMM for the
// input projection of all steps, a loop of recurrence steps, and after the
// loop the weight gradients as large GEMMs. Only the step differs per
// backend (a backend hands its step functions to the driver, SeqSteps), and
// only the pointwise math differs per cell (a CellDesc here, the traits of
// cell_math.h inside the step kernels).
//
// Shapes: T steps, B batch, I input, H hidden, G gates (4 LSTM, 3 GRU,
// 1 RNN), S saved values per unit (cell_math.h), P = proj_size or H.
//   x [T,B,I]  h0 [B,P]  c0 [B,H] (LSTM)  w_ih [G*H,I]  w_hh [G*H,P]
//   b_ih, b_hh [G*H]  w_hr [P,H] (LSTM)  lengths [B] int64 (each in [1, T];
//   a row is active at step s while s < length; time runs forward: reversed
//   directions are reversed by the caller before and after).
// Saved for backward, in the accumulation type (float for half/bfloat16):
//   saved [T,B,S*H] (the cell's saved values, block k at columns k*H..);
//   cell_states [T,B,H] (LSTM); cell_outputs [T,B,H]: cell outputs before the
//   projection (LSTM with w_hr). Absent ones are empty tensors.
#pragma once

#include <ATen/ATen.h>
#include <torch/library.h>

#include <array>
#include <tuple>

#include "seqkernels/cell_math.h"
#include "seqkernels/checks.h"

namespace seqkernels {

enum class CellKind : int { kLstm = 0, kGru = 1, kRnn = 2 };

// What the host code needs to know of a cell: the numbers of cell_math.h's
// traits, at run time, and the RNN's activation.
struct CellDesc {
  CellKind kind;
  Activation act;
  int gates;
  int saved;
  bool has_c;
  bool split_grad;
  bool direct_h;
};

CellDesc cell_desc(CellKind kind, Activation act = Activation::kTanh);

// "lstm", "gru" or "rnn": the cell's name in messages and in the Python cell
// table (seqkernels/cell_table.py).
const char* kind_name(CellKind kind);

// "tanh", "relu" or "identity"; anything else is an error naming it.
Activation parse_activation(c10::string_view nonlinearity);

// Calls f(Cell{}) with the traits struct of `kind`: the way a backend turns
// the run-time CellDesc into a template argument of its kernels.
template <typename F>
void dispatch_cell(CellKind kind, F&& f) {
  switch (kind) {
    case CellKind::kLstm:
      f(LstmCell{});
      break;
    case CellKind::kGru:
      f(GruCell{});
      break;
    case CellKind::kRnn:
      f(RnnCell{});
      break;
  }
}

using OptTensor = c10::optional<at::Tensor>;

// One forward step s of a sequence, as the driver hands it to a backend's
// step: rows of step s, undefined tensors for absent ones. "acc": in the
// accumulation dtype (acc_dtype), else in the storage dtype; "w": in the
// dtype SeqSteps::acc_weights asks for.
struct ForwardStep {
  int64_t s;              // counted from the chunk's first step, as lengths
  at::Tensor xg;          // [B, G*H] acc: input side of the pre-activations
  at::Tensor h_in;        // [B, P]: h of step s - 1
  at::Tensor w_hh;        // [G*H, P] w
  at::Tensor b_hh;        // [G*H] w: the recurrent bias (split_grad cells)
  at::Tensor c_state;     // [B, H] acc, in place: the cell state (has_c)
  OptTensor lengths;      // [B] int64
  at::Tensor saved;       // [B, S*H] acc, written: the saved values
  at::Tensor cell_state;  // [B, H] acc, written: this step's c (has_c)
  at::Tensor out;         // [B, H], written: the cell output
  at::Tensor h_out;       // [B, P], written if defined: h for step s + 1
};

// One backward step s, likewise.
struct BackwardStep {
  int64_t s;
  at::Tensor grad_hg_next;  // [B, G*H] acc: step s + 1's recurrent side
  at::Tensor w_hh;          // [G*H, P] w; undefined: no recurrent product
  at::Tensor dh_carry;      // [B, H] acc, in place: dh from later steps
  at::Tensor dh_in;         // [B, H]: the gradient of this step's output
  at::Tensor carry;         // [B, H] acc, in place: the pointwise carry
  at::Tensor saved;         // [B, S*H] acc: what the forward saved
  at::Tensor h_prev;        // [B, H]: h of step s - 1 (direct_h cells)
  at::Tensor c_prev;        // [B, H] acc: c of step s - 1 (has_c)
  at::Tensor cell_state;    // [B, H] acc: c of step s (has_c)
  OptTensor lengths;        // [B] int64
  at::Tensor grad_xg;       // [B, G*H] acc, written: input side gradients
  at::Tensor grad_hg;       // [B, G*H] acc, written: recurrent side
                            // (split_grad cells; else it is grad_xg)
};

// A whole forward recurrence without a projection (P == H), for a backend
// whose persistent kernel runs every step in one launch: the loop of
// ForwardStep over s = 0..T-1 at once, same results. "acc" as above.
// Where the driver runs the sequence in chunks (SeqSteps::chunk_bytes),
// each call is one chunk: T is its steps, and lengths (as ForwardStep's)
// count from its first step, so a length may be <= 0 or > T; a row is
// active at step s while s < lengths[b], whatever the value.
struct SeqForward {
  at::Tensor xg;           // [T, B, G*H] acc
  at::Tensor h0;           // [B, H]
  at::Tensor w_hh;         // [G*H, H]
  at::Tensor b_hh;         // [G*H] (split_grad cells)
  at::Tensor c_state;      // [B, H] acc, in place: c0 in, c_n out (has_c)
  OptTensor lengths;       // [B] int64
  at::Tensor saved;        // [T, B, S*H] acc, written
  at::Tensor cell_states;  // [T, B, H] acc, written (has_c)
  at::Tensor y;            // [T, B, H], written
  at::Tensor h_n;          // [B, H], written
  // The backend's own state for the whole op call, where the driver runs
  // the sequence in chunks of steps (SeqSteps::chunk_bytes): undefined at
  // the first chunk, kept by the driver for the next ones (the CPU's
  // packed w_hh). Null: the call has one chunk.
  at::Tensor* prepared;
};

// A whole backward recurrence without a projection: the loop of
// BackwardStep over s = T-1..0 at once.
struct SeqBackward {
  at::Tensor grad_y;       // [T, B, H]
  at::Tensor w_hh;         // [G*H, H]
  at::Tensor dh_carry;     // [B, H] acc, in place: grad_h_n in
  at::Tensor carry;        // [B, H] acc, in place (has_c, direct_h)
  at::Tensor saved;        // [T, B, S*H] acc
  at::Tensor h_prev;       // [T, B, H]: h of step s - 1 (direct_h cells)
  at::Tensor c0;           // [B, H] acc (has_c)
  at::Tensor cell_states;  // [T, B, H] acc (has_c)
  OptTensor lengths;       // [B] int64
  at::Tensor grad_xg;      // [T, B, G*H] acc, written
  at::Tensor grad_hg;      // [T, B, G*H] acc, written (split_grad; else
                           // it is grad_xg)
};

// The recurrence algorithm that SEQKERNELS_RECURRENCE asks for: unset,
// each backend's default (SeqSteps::seq_by_default); "per_step", the
// per-step kernels everywhere; "persistent", a backend's whole-sequence
// kernel wherever its rule says it serves the shape (opt-in on the GPU
// until a GPU run has passed it). Python reads the same variable
// (recurrence_algorithm in seqkernels/sequence_driver.py).
enum class Recurrence : int { kDefault = 0, kPerStep = 1, kPersistent = 2 };
Recurrence recurrence_algorithm();
// A value of SEQKERNELS_RECURRENCE ("default" as unset); anything else is
// an error naming the variable. recurrence_name is its inverse.
Recurrence parse_recurrence(const char* name);
const char* recurrence_name(Recurrence r);

// The per-step functions of a backend.
struct SeqSteps {
  // Rejects inputs the backend cannot run (say, a dtype); null: none.
  void (*check)(const at::Tensor& t, const char* name);
  // One forward step. For each active (b, j):
  //   xg[g] = step.xg[b, g*H + j]
  //   hg[g] = sum_k h_in[b, k] w_hh[g*H + j, k] + b_hh[g*H + j]
  //   Cell::forward(xg, hg, h_in[b, j], act, c_state[b, j], saved, h)
  //   step.saved[b, k*H + j] = saved[k]; cell_state[b, j] = c (kHasC);
  //   out[b, j] = h; h_out[b, j] = h (if defined; P == H then).
  // Inactive rows: saved, cell_state, out are zero; h_out copies h_in; the
  // c_state is kept.
  void (*forward)(const CellDesc& cell, const ForwardStep& step);
  // One backward step. For each (b, j):
  //   if w_hh is defined:
  //     dh_carry[b, j] = grad_hg_next defined and row active at s + 1
  //         ? sum_n grad_hg_next[b, n] w_hh[n, j] + (kDirectH ? carry : 0)
  //         : dh_carry[b, j]
  //   active at s: dh = dh_in[b, j] + dh_carry[b, j] (0 without w_hh);
  //     Cell::backward(saved, h_prev[b, j], c_prev, cell_state, dh, act,
  //                    carry[b, j] (in place), dxg, dhg)
  //     grad_xg[b, g*H + j] = dxg[g]; grad_hg likewise (kSplitGrad)
  //   inactive: grad_xg (and grad_hg) are zero; carry is kept.
  void (*backward)(const CellDesc& cell, const BackwardStep& step);
  // forward may write step.saved over step.xg (the same tensor) where the
  // cell saves as many values per unit as it has gates: each unit reads its
  // pre-activations before it writes its saved values.
  bool saved_over_xg;
  // The steps take w_hh and b_hh in the accumulation dtype, converted by the
  // driver once per op (the CPU's, whose recurrent product is a float32 or
  // float64 GEMM); false: in the storage dtype (the CUDA kernels convert
  // each element as they load it). forward_seq and backward_seq take them in
  // the storage dtype either way.
  bool acc_weights;
  // The whole recurrence in one kernel (null: the backend has none). The
  // driver calls them when the persistent algorithm is asked for (or by
  // default, seq_by_default); they
  // return false, having written nothing, where the kernel does not serve
  // the shape (the backend's documented rule), and the steps run instead.
  bool (*forward_seq)(const CellDesc& cell, const SeqForward& seq);
  bool (*backward_seq)(const CellDesc& cell, const SeqBackward& seq);
  // Whether the driver offers forward_seq and backward_seq the loop when
  // SEQKERNELS_RECURRENCE is unset too (the CPU's, whose kernel runs in
  // CI), not only when "persistent" asks for them.
  bool seq_by_default;
  // Where an op need not keep what its backward reads (keep_saved false:
  // no gradient is asked for), the driver runs the input projection and
  // the recurrence in chunks of steps whose pre-activations take at most
  // this many bytes, in buffers of that size reused by every chunk (0: all
  // steps at once). Memory then grows with B*H, not T*B*H, and the buffers
  // stay in the cache and, being small, in the allocator's heap, where a
  // fresh T*B*G*H buffer of more than 32 MB is mapped and faulted in on
  // every call (3-10 ms at B=64, H=512, T=64 on the CPU).
  int64_t chunk_bytes;
};

// The steps per chunk of a sequence whose steps take step_bytes of
// pre-activations each (SeqSteps::chunk_bytes; T where chunk_bytes is 0),
// or what set_chunk_steps asked for (tests).
int64_t chunk_steps(const SeqSteps& steps, int64_t T, int64_t step_bytes);
// Fixes the steps per chunk of every backend that chunks (0: by
// chunk_bytes again): a test hook, so that small sequences cross chunks.
void set_chunk_steps(int64_t steps);

// The sequence driver. Returns (y, h_n, c_n, saved, cs, ms); without
// keep_saved, saved, cs and ms are empty (the backward cannot run).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor>
recurrent_seq_forward(const CellDesc& cell, const at::Tensor& x,
                      const at::Tensor& h0,
                      const c10::optional<at::Tensor>& c0,
                      const at::Tensor& w_ih, const at::Tensor& w_hh,
                      const c10::optional<at::Tensor>& b_ih,
                      const c10::optional<at::Tensor>& b_hh,
                      const c10::optional<at::Tensor>& w_hr,
                      const c10::optional<at::Tensor>& lengths,
                      bool keep_saved, const SeqSteps& steps);

// Backward through time. Returns (grad_x, grad_h0, grad_c0, grad_w_ih,
// grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr); absent ones are empty.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
           at::Tensor, at::Tensor, at::Tensor>
recurrent_seq_backward(const CellDesc& cell, const at::Tensor& grad_y,
                       const at::Tensor& grad_h_n,
                       const c10::optional<at::Tensor>& grad_c_n,
                       const at::Tensor& x, const at::Tensor& h0,
                       const c10::optional<at::Tensor>& c0,
                       const at::Tensor& w_ih, const at::Tensor& w_hh,
                       const c10::optional<at::Tensor>& w_hr,
                       const c10::optional<at::Tensor>& lengths,
                       const at::Tensor& y, const at::Tensor& saved,
                       const at::Tensor& cell_states,
                       const at::Tensor& cell_outputs, bool has_bias,
                       const SeqSteps& steps);

// The sequence ops of every cell, schemas in csrc/ops.cpp; their results
// in the schemas' order.
template <size_t N>
using Tensors = decltype(std::tuple_cat(std::array<at::Tensor, N>{}));
// (y, h_n, c_n, saved, cell_states, cell_outputs)
using LstmSeqOutputs = Tensors<6>;
// (grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_bias, grad_w_hr)
using LstmSeqGrads = Tensors<7>;
// (y, h_n, saved): gru_seq, rnn_seq
using SeqOutputs = Tensors<3>;
// (grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh)
using GruSeqGrads = Tensors<6>;
// (grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_bias)
using RnnSeqGrads = Tensors<5>;
// (h_new, c_new, saved)
using LstmCellOutputs = Tensors<3>;
// (grad_x_proj, grad_h_proj, grad_h_prev)
using GruCellGrads = Tensors<3>;
LstmSeqOutputs lstm_seq(const at::Tensor& x, const at::Tensor& h0,
                  const at::Tensor& c0, const at::Tensor& w_ih,
                  const at::Tensor& w_hh, const OptTensor& bias,
                  const OptTensor& w_hr, const OptTensor& lengths,
                  bool keep_saved, const SeqSteps& steps);
LstmSeqGrads lstm_seq_backward(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n,
    const at::Tensor& grad_c_n, const at::Tensor& x, const at::Tensor& h0,
    const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const OptTensor& w_hr, const OptTensor& lengths, const at::Tensor& y,
    const at::Tensor& saved, const at::Tensor& cell_states,
    const at::Tensor& cell_outputs, bool has_bias, const SeqSteps& steps);
SeqOutputs gru_seq(const at::Tensor& x, const at::Tensor& h0,
                 const at::Tensor& w_ih, const at::Tensor& w_hh,
                 const OptTensor& b_ih, const OptTensor& b_hh,
                 const OptTensor& lengths, bool keep_saved,
                 const SeqSteps& steps);
GruSeqGrads gru_seq_backward(const at::Tensor& grad_y,
                          const at::Tensor& grad_h_n, const at::Tensor& x,
                          const at::Tensor& h0, const at::Tensor& w_ih,
                          const at::Tensor& w_hh, const OptTensor& lengths,
                          const at::Tensor& y, const at::Tensor& saved,
                          bool has_bias, const SeqSteps& steps);
SeqOutputs rnn_seq(const at::Tensor& x, const at::Tensor& h0,
                 const at::Tensor& w_ih, const at::Tensor& w_hh,
                 const OptTensor& bias, const OptTensor& lengths,
                 c10::string_view nonlinearity, bool keep_saved,
                 const SeqSteps& steps);
RnnSeqGrads rnn_seq_backward(const at::Tensor& grad_y,
                          const at::Tensor& grad_h_n, const at::Tensor& x,
                          const at::Tensor& h0, const at::Tensor& w_ih,
                          const at::Tensor& w_hh, const OptTensor& lengths,
                          const at::Tensor& y, const at::Tensor& saved,
                          bool has_bias, c10::string_view nonlinearity,
                          const SeqSteps& steps);

// The pointwise cell kernels of a backend (the `*_cell` ops: the
// projections stay GEMMs in torch, the kernel fuses everything after them).
// All tensors contiguous; undefined ones are absent.
struct CellKernels {
  void (*check)(const at::Tensor& t, const char* name);
  // For each (b, j): xg[g] = x_proj[b, g*H + j] + b_x[g*H + j],
  //   hg[g] = h_proj[b, g*H + j] + b_h[g*H + j];
  //   c = c[b, j]; Cell::forward(xg, hg, h[b, j], act, c, saved, h_new)
  //   -> h_new[b, j], c_new[b, j] = c, saved[b, k*H + j].
  void (*forward)(const CellDesc& cell, const at::Tensor& x_proj,
                  const at::Tensor& h_proj, const at::Tensor& b_x,
                  const at::Tensor& b_h, const at::Tensor& h,
                  const at::Tensor& c, at::Tensor& h_new, at::Tensor& c_new,
                  at::Tensor& saved);
  // For each (b, j): carry = grad_c[b, j];
  //   Cell::backward(saved, h[b, j], c[b, j], c_new[b, j], grad_h[b, j],
  //                  act, carry, dxg, dhg)
  //   -> grad_xg[b, g*H + j], grad_hg (kSplitGrad), grad_carry[b, j]
  //   (kHasC or kDirectH).
  void (*backward)(const CellDesc& cell, const at::Tensor& grad_h,
                   const at::Tensor& grad_c, const at::Tensor& saved,
                   const at::Tensor& h, const at::Tensor& c,
                   const at::Tensor& c_new, at::Tensor& grad_xg,
                   at::Tensor& grad_hg, at::Tensor& grad_carry);
};

LstmCellOutputs lstm_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                   const at::Tensor& c, const OptTensor& bias,
                   const CellKernels& k);
std::tuple<at::Tensor, at::Tensor> lstm_cell_backward(
    const at::Tensor& grad_h, const at::Tensor& grad_c, const at::Tensor& c,
    const at::Tensor& c_new, const at::Tensor& saved, const CellKernels& k);
std::tuple<at::Tensor, at::Tensor> gru_cell(
    const at::Tensor& x_proj, const at::Tensor& h_proj, const at::Tensor& h,
    const OptTensor& b_ih, const OptTensor& b_hh, const CellKernels& k);
GruCellGrads gru_cell_backward(const at::Tensor& grad_h, const at::Tensor& h,
                           const at::Tensor& saved, const CellKernels& k);
std::tuple<at::Tensor, at::Tensor> rnn_cell(
    const at::Tensor& x_proj, const at::Tensor& h_proj,
    const OptTensor& bias, c10::string_view nonlinearity,
    const CellKernels& k);
at::Tensor rnn_cell_backward(const at::Tensor& grad_h,
                             const at::Tensor& saved,
                             c10::string_view nonlinearity,
                             const CellKernels& k);

// Each op's argument checks (shapes, dtypes, devices; no data read, so no
// device sync), as its kernels run them before a backend's own dtype rule:
// csrc/ops.cpp binds them for the variants written in Python. Arguments as
// the schema's, minus those no check reads.
void check_lstm_seq(const at::Tensor& x, const at::Tensor& h0,
                    const at::Tensor& c0, const at::Tensor& w_ih,
                    const at::Tensor& w_hh, const OptTensor& bias,
                    const OptTensor& w_hr, const OptTensor& lengths);
void check_lstm_seq_backward(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n,
    const at::Tensor& grad_c_n, const at::Tensor& x, const at::Tensor& h0,
    const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const OptTensor& w_hr, const OptTensor& lengths, const at::Tensor& y,
    const at::Tensor& saved, const at::Tensor& cell_states);
void check_gru_seq(const at::Tensor& x, const at::Tensor& h0,
                   const at::Tensor& w_ih, const at::Tensor& w_hh,
                   const OptTensor& b_ih, const OptTensor& b_hh,
                   const OptTensor& lengths);
void check_gru_seq_backward(const at::Tensor& grad_y,
                            const at::Tensor& grad_h_n, const at::Tensor& x,
                            const at::Tensor& h0, const at::Tensor& w_ih,
                            const at::Tensor& w_hh, const OptTensor& lengths,
                            const at::Tensor& y, const at::Tensor& saved);
void check_rnn_seq(const at::Tensor& x, const at::Tensor& h0,
                   const at::Tensor& w_ih, const at::Tensor& w_hh,
                   const OptTensor& bias, const OptTensor& lengths,
                   c10::string_view nonlinearity);
void check_rnn_seq_backward(const at::Tensor& grad_y,
                            const at::Tensor& grad_h_n, const at::Tensor& x,
                            const at::Tensor& h0, const at::Tensor& w_ih,
                            const at::Tensor& w_hh, const OptTensor& lengths,
                            const at::Tensor& y, const at::Tensor& saved,
                            c10::string_view nonlinearity);
void check_lstm_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                     const at::Tensor& c, const OptTensor& bias);
void check_lstm_cell_backward(const at::Tensor& grad_h,
                              const at::Tensor& grad_c, const at::Tensor& c,
                              const at::Tensor& c_new,
                              const at::Tensor& saved);
void check_gru_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                    const at::Tensor& h, const OptTensor& b_ih,
                    const OptTensor& b_hh);
void check_gru_cell_backward(const at::Tensor& grad_h, const at::Tensor& h,
                             const at::Tensor& saved);
void check_rnn_cell(const at::Tensor& x_proj, const at::Tensor& h_proj,
                    const OptTensor& bias, c10::string_view nonlinearity);
void check_rnn_cell_backward(const at::Tensor& grad_h,
                             const at::Tensor& saved,
                             c10::string_view nonlinearity);

// A backend's TORCH_LIBRARY_IMPL registers every recurrent op with its
// steps and cell kernels: register_recurrent_ops<kSteps, kCells>(m).
template <const SeqSteps& kSteps, const CellKernels& kCells>
struct RecurrentOps {
  static LstmSeqOutputs lstm_seq_op(const at::Tensor& x, const at::Tensor& h0,
                              const at::Tensor& c0, const at::Tensor& w_ih,
                              const at::Tensor& w_hh, const OptTensor& bias,
                              const OptTensor& w_hr,
                              const OptTensor& lengths, bool keep_saved) {
    return lstm_seq(x, h0, c0, w_ih, w_hh, bias, w_hr, lengths, keep_saved,
                    kSteps);
  }
  static LstmSeqGrads lstm_seq_backward_op(
      const at::Tensor& grad_y, const at::Tensor& grad_h_n,
      const at::Tensor& grad_c_n, const at::Tensor& x, const at::Tensor& h0,
      const at::Tensor& c0, const at::Tensor& w_ih, const at::Tensor& w_hh,
      const OptTensor& w_hr, const OptTensor& lengths, const at::Tensor& y,
      const at::Tensor& saved, const at::Tensor& cell_states,
      const at::Tensor& cell_outputs, bool has_bias) {
    return lstm_seq_backward(grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih,
                             w_hh, w_hr, lengths, y, saved, cell_states,
                             cell_outputs, has_bias, kSteps);
  }
  static SeqOutputs gru_seq_op(const at::Tensor& x, const at::Tensor& h0,
                             const at::Tensor& w_ih, const at::Tensor& w_hh,
                             const OptTensor& b_ih, const OptTensor& b_hh,
                             const OptTensor& lengths, bool keep_saved) {
    return gru_seq(x, h0, w_ih, w_hh, b_ih, b_hh, lengths, keep_saved,
                   kSteps);
  }
  static GruSeqGrads gru_seq_backward_op(
      const at::Tensor& grad_y, const at::Tensor& grad_h_n,
      const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
      const at::Tensor& w_hh, const OptTensor& lengths, const at::Tensor& y,
      const at::Tensor& saved, bool has_bias) {
    return gru_seq_backward(grad_y, grad_h_n, x, h0, w_ih, w_hh, lengths, y,
                            saved, has_bias, kSteps);
  }
  static SeqOutputs rnn_seq_op(const at::Tensor& x, const at::Tensor& h0,
                             const at::Tensor& w_ih, const at::Tensor& w_hh,
                             const OptTensor& bias, const OptTensor& lengths,
                             c10::string_view nonlinearity,
                             bool keep_saved) {
    return rnn_seq(x, h0, w_ih, w_hh, bias, lengths, nonlinearity,
                   keep_saved, kSteps);
  }
  static RnnSeqGrads rnn_seq_backward_op(
      const at::Tensor& grad_y, const at::Tensor& grad_h_n,
      const at::Tensor& x, const at::Tensor& h0, const at::Tensor& w_ih,
      const at::Tensor& w_hh, const OptTensor& lengths, const at::Tensor& y,
      const at::Tensor& saved, bool has_bias,
      c10::string_view nonlinearity) {
    return rnn_seq_backward(grad_y, grad_h_n, x, h0, w_ih, w_hh, lengths, y,
                            saved, has_bias, nonlinearity, kSteps);
  }
  static LstmCellOutputs lstm_cell_op(const at::Tensor& x_proj,
                               const at::Tensor& h_proj, const at::Tensor& c,
                               const OptTensor& bias) {
    return lstm_cell(x_proj, h_proj, c, bias, kCells);
  }
  static std::tuple<at::Tensor, at::Tensor> lstm_cell_backward_op(
      const at::Tensor& grad_h, const at::Tensor& grad_c,
      const at::Tensor& c, const at::Tensor& c_new,
      const at::Tensor& saved) {
    return lstm_cell_backward(grad_h, grad_c, c, c_new, saved, kCells);
  }
  static std::tuple<at::Tensor, at::Tensor> gru_cell_op(
      const at::Tensor& x_proj, const at::Tensor& h_proj,
      const at::Tensor& h, const OptTensor& b_ih, const OptTensor& b_hh) {
    return gru_cell(x_proj, h_proj, h, b_ih, b_hh, kCells);
  }
  static GruCellGrads gru_cell_backward_op(const at::Tensor& grad_h,
                                       const at::Tensor& h,
                                       const at::Tensor& saved) {
    return gru_cell_backward(grad_h, h, saved, kCells);
  }
  static std::tuple<at::Tensor, at::Tensor> rnn_cell_op(
      const at::Tensor& x_proj, const at::Tensor& h_proj,
      const OptTensor& bias, c10::string_view nonlinearity) {
    return rnn_cell(x_proj, h_proj, bias, nonlinearity, kCells);
  }
  static at::Tensor rnn_cell_backward_op(const at::Tensor& grad_h,
                                         const at::Tensor& saved,
                                         c10::string_view nonlinearity) {
    return rnn_cell_backward(grad_h, saved, nonlinearity, kCells);
  }
};

template <const SeqSteps& kSteps, const CellKernels& kCells>
void register_recurrent_ops(torch::Library& m) {
  using Ops = RecurrentOps<kSteps, kCells>;
  m.impl("lstm_seq", &Ops::lstm_seq_op);
  m.impl("lstm_seq_backward", &Ops::lstm_seq_backward_op);
  m.impl("gru_seq", &Ops::gru_seq_op);
  m.impl("gru_seq_backward", &Ops::gru_seq_backward_op);
  m.impl("rnn_seq", &Ops::rnn_seq_op);
  m.impl("rnn_seq_backward", &Ops::rnn_seq_backward_op);
  m.impl("lstm_cell", &Ops::lstm_cell_op);
  m.impl("lstm_cell_backward", &Ops::lstm_cell_backward_op);
  m.impl("gru_cell", &Ops::gru_cell_op);
  m.impl("gru_cell_backward", &Ops::gru_cell_backward_op);
  m.impl("rnn_cell", &Ops::rnn_cell_op);
  m.impl("rnn_cell_backward", &Ops::rnn_cell_backward_op);
}

}  // namespace seqkernels
