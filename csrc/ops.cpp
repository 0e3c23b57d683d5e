// Every seqkernels op's schema, in one place, and the _C Python module.
//
// Each op comes in three variants that share one schema shape:
//   <op>            C++ kernels: CPU (csrc/cpu) and CUDA (csrc/cuda)
//   <op>_triton     Triton kernels, implemented in Python (triton_kernels/)
//   <op>_reference  pure PyTorch, implemented in Python (seqkernels/reference/)
// The fake (meta) implementations, the autograd formulas of all variants and
// the Python variants' kernels are registered in seqkernels/ops/<op>.py.
#include <torch/library.h>
#include <torch/python.h>

#include "seqkernels/attention_checks.h"
#include "seqkernels/recurrent_host.h"

namespace {

// Schemas; shapes, dtypes and semantics of each op are documented in its
// reference implementation, seqkernels/reference/<op>.py (the sequence ops:
// csrc/include/seqkernels/recurrent_host.h). keep_saved (the sequence ops):
// false returns saved, cell_states and cell_outputs empty, for a call whose
// backward will not run; the ops' Python faces pass it.
const char* kLstmCell =
    "(Tensor x_proj, Tensor h_proj, Tensor c, Tensor? bias)"
    " -> (Tensor h_new, Tensor c_new, Tensor saved)";
const char* kLstmCellBackward =
    "(Tensor grad_h, Tensor grad_c, Tensor c, Tensor c_new, Tensor saved)"
    " -> (Tensor grad_gates, Tensor grad_c_prev)";
const char* kLstmSeq =
    "(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? bias,"
    " Tensor? w_hr, Tensor? lengths, bool keep_saved=True)"
    " -> (Tensor y, Tensor h_n, Tensor c_n, Tensor saved, Tensor cell_states,"
    " Tensor cell_outputs)";
const char* kLstmSeqBackward =
    "(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, Tensor x, Tensor h0,"
    " Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? w_hr, Tensor? lengths,"
    " Tensor y, Tensor saved, Tensor cell_states, Tensor cell_outputs,"
    " bool has_bias)"
    " -> (Tensor grad_x, Tensor grad_h0, Tensor grad_c0, Tensor grad_w_ih,"
    " Tensor grad_w_hh, Tensor grad_bias, Tensor grad_w_hr)";

const char* kGruCell =
    "(Tensor x_proj, Tensor h_proj, Tensor h, Tensor? b_ih, Tensor? b_hh)"
    " -> (Tensor h_new, Tensor saved)";
const char* kGruCellBackward =
    "(Tensor grad_h, Tensor h, Tensor saved)"
    " -> (Tensor grad_x_proj, Tensor grad_h_proj, Tensor grad_h_prev)";
const char* kGruSeq =
    "(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? b_ih,"
    " Tensor? b_hh, Tensor? lengths, bool keep_saved=True)"
    " -> (Tensor y, Tensor h_n, Tensor saved)";
const char* kGruSeqBackward =
    "(Tensor grad_y, Tensor grad_h_n, Tensor x, Tensor h0, Tensor w_ih,"
    " Tensor w_hh, Tensor? lengths, Tensor y, Tensor saved, bool has_bias)"
    " -> (Tensor grad_x, Tensor grad_h0, Tensor grad_w_ih, Tensor grad_w_hh,"
    " Tensor grad_b_ih, Tensor grad_b_hh)";
const char* kRnnCell =
    "(Tensor x_proj, Tensor h_proj, Tensor? bias, str nonlinearity)"
    " -> (Tensor h_new, Tensor saved)";
const char* kRnnCellBackward =
    "(Tensor grad_h, Tensor saved, str nonlinearity) -> Tensor";
const char* kRnnSeq =
    "(Tensor x, Tensor h0, Tensor w_ih, Tensor w_hh, Tensor? bias,"
    " Tensor? lengths, str nonlinearity, bool keep_saved=True)"
    " -> (Tensor y, Tensor h_n, Tensor saved)";
const char* kRnnSeqBackward =
    "(Tensor grad_y, Tensor grad_h_n, Tensor x, Tensor h0, Tensor w_ih,"
    " Tensor w_hh, Tensor? lengths, Tensor y, Tensor saved, bool has_bias,"
    " str nonlinearity) -> (Tensor grad_x, Tensor grad_h0, Tensor grad_w_ih,"
    " Tensor grad_w_hh, Tensor grad_bias)";

const char* kSdpa =
    "(Tensor q, Tensor k, Tensor v, Tensor? attn_mask, float dropout_p,"
    " bool is_causal, float scale, Tensor? rng) -> (Tensor out, Tensor lse)";
const char* kSdpaBackward =
    "(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse,"
    " Tensor? attn_mask, float dropout_p, bool is_causal, float scale,"
    " Tensor? rng) -> (Tensor grad_q, Tensor grad_k, Tensor grad_v)";
const char* kAttentionScores =
    "(Tensor q, Tensor k, Tensor? attn_mask, bool is_causal, float scale)"
    " -> Tensor";
const char* kAttentionScoresBackward =
    "(Tensor grad_p, Tensor q, Tensor k, Tensor p, float scale)"
    " -> (Tensor grad_q, Tensor grad_k)";
const char* kAdditiveAttention =
    "(Tensor q, Tensor k, Tensor value, Tensor v, Tensor? bias,"
    " Tensor? attn_mask, bool need_weights)"
    " -> (Tensor context, Tensor weights, Tensor stats)";
const char* kAdditiveAttentionBackward =
    "(Tensor grad_context, Tensor? grad_weights, Tensor q, Tensor k,"
    " Tensor value, Tensor v, Tensor? bias, Tensor? attn_mask,"
    " Tensor context, Tensor stats) -> (Tensor grad_q, Tensor grad_k,"
    " Tensor grad_value, Tensor grad_v, Tensor grad_bias)";

void define_variants(torch::Library& m, const std::string& name,
                     const char* schema) {
  for (const char* suffix : {"", "_triton", "_reference"}) {
    m.def((name + suffix + schema).c_str());
  }
}

}  // namespace

TORCH_LIBRARY(seqkernels, m) {
  define_variants(m, "lstm_cell", kLstmCell);
  define_variants(m, "lstm_cell_backward", kLstmCellBackward);
  define_variants(m, "lstm_seq", kLstmSeq);
  define_variants(m, "lstm_seq_backward", kLstmSeqBackward);
  define_variants(m, "gru_cell", kGruCell);
  define_variants(m, "gru_cell_backward", kGruCellBackward);
  define_variants(m, "gru_seq", kGruSeq);
  define_variants(m, "gru_seq_backward", kGruSeqBackward);
  define_variants(m, "rnn_cell", kRnnCell);
  define_variants(m, "rnn_cell_backward", kRnnCellBackward);
  define_variants(m, "rnn_seq", kRnnSeq);
  define_variants(m, "rnn_seq_backward", kRnnSeqBackward);
  define_variants(m, "sdpa", kSdpa);
  define_variants(m, "sdpa_backward", kSdpaBackward);
  define_variants(m, "attention_scores", kAttentionScores);
  define_variants(m, "attention_scores_backward", kAttentionScoresBackward);
  define_variants(m, "additive_attention", kAdditiveAttention);
  define_variants(m, "additive_attention_backward",
                  kAdditiveAttentionBackward);
}

// A small Python module: importing it loads the library above, it reports
// how the extension was built and the C++ cell table, and it gives the
// variants written in Python the argument checks of the C++ kernels.
namespace {

namespace py = pybind11;

py::dict build_info() {
#ifdef SEQKERNELS_WITH_CUDA
  const bool cuda = true;
#else
  const bool cuda = false;
#endif
#ifdef SEQKERNELS_CUDA_ARCHS
  const char* archs = SEQKERNELS_CUDA_ARCHS;
#else
  const char* archs = "";
#endif
  return py::dict(py::arg("cuda") = cuda, py::arg("cuda_archs") = archs);
}

// The C++ cell table (the traits of cell_math.h through cell_desc), for the
// test that holds seqkernels/cell_table.py to it.
py::dict cell_traits() {
  py::dict table;
  for (int kind = 0; kind < 3; ++kind) {
    const seqkernels::CellDesc d =
        seqkernels::cell_desc(static_cast<seqkernels::CellKind>(kind));
    table[seqkernels::kind_name(d.kind)] = py::dict(
        py::arg("kind_id") = kind, py::arg("gates") = d.gates,
        py::arg("saved") = d.saved, py::arg("has_c") = d.has_c,
        py::arg("split_grad") = d.split_grad, py::arg("direct_h") = d.direct_h);
  }
  return table;
}

using OptTensor = c10::optional<at::Tensor>;

}  // namespace

namespace seqkernels {
void bind_persistent(pybind11::module_& m);  // csrc/persistent_bindings.cpp
void bind_attention(pybind11::module_& m);   // csrc/attention_bindings.cpp
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "seqkernels compiled kernels (CPU, and CUDA if built).";
  m.def("build_info", &build_info,
        "dict(cuda=bool, cuda_archs=str): how this extension was compiled.");
  m.def("cell_traits", &cell_traits,
        "{kind: dict(kind_id, gates, saved, has_c, split_grad, direct_h)}: "
        "the cell traits of csrc/include/seqkernels/cell_math.h.");
  seqkernels::bind_persistent(m);
  seqkernels::bind_attention(m);  // after: it adds to _C.emulated

  // Recurrent argument checks (recurrent_host.h), as the attention ones
  // below: check_<op>(*args) takes the op's schema arguments in order and
  // raises the RuntimeError its C++ kernels raise; arguments no check reads
  // are taken and ignored.
  using at::Tensor;
  m.def("set_chunk_steps", &seqkernels::set_chunk_steps, py::arg("steps"),
        "Test hook: the steps per chunk of the sequence ops that run in "
        "chunks without keep_saved (0: by SeqSteps::chunk_bytes again).");
  m.def(
      "check_lstm_seq",
      [](const Tensor& x, const Tensor& h0, const Tensor& c0,
         const Tensor& w_ih, const Tensor& w_hh, const OptTensor& bias,
         const OptTensor& w_hr, const OptTensor& lengths,
         bool /*keep_saved*/) {
        seqkernels::check_lstm_seq(x, h0, c0, w_ih, w_hh, bias, w_hr,
                                   lengths);
      },
      "Checks the arguments of seqkernels::lstm_seq as its C++ kernels do.");
  m.def(
      "check_lstm_seq_backward",
      [](const Tensor& grad_y, const Tensor& grad_h_n, const Tensor& grad_c_n,
         const Tensor& x, const Tensor& h0, const Tensor& c0,
         const Tensor& w_ih, const Tensor& w_hh, const OptTensor& w_hr,
         const OptTensor& lengths, const Tensor& y, const Tensor& saved,
         const Tensor& cell_states, const Tensor& /*cell_outputs*/,
         bool /*has_bias*/) {
        seqkernels::check_lstm_seq_backward(grad_y, grad_h_n, grad_c_n, x, h0,
                                            c0, w_ih, w_hh, w_hr, lengths, y,
                                            saved, cell_states);
      },
      "Checks the arguments of seqkernels::lstm_seq_backward.");
  m.def(
      "check_gru_seq",
      [](const Tensor& x, const Tensor& h0, const Tensor& w_ih,
         const Tensor& w_hh, const OptTensor& b_ih, const OptTensor& b_hh,
         const OptTensor& lengths, bool /*keep_saved*/) {
        seqkernels::check_gru_seq(x, h0, w_ih, w_hh, b_ih, b_hh, lengths);
      },
      "Checks the arguments of seqkernels::gru_seq as its C++ kernels do.");
  m.def(
      "check_gru_seq_backward",
      [](const Tensor& grad_y, const Tensor& grad_h_n, const Tensor& x,
         const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
         const OptTensor& lengths, const Tensor& y, const Tensor& saved,
         bool /*has_bias*/) {
        seqkernels::check_gru_seq_backward(grad_y, grad_h_n, x, h0, w_ih,
                                           w_hh, lengths, y, saved);
      },
      "Checks the arguments of seqkernels::gru_seq_backward.");
  m.def(
      "check_rnn_seq",
      [](const Tensor& x, const Tensor& h0, const Tensor& w_ih,
         const Tensor& w_hh, const OptTensor& bias, const OptTensor& lengths,
         const std::string& nonlinearity, bool /*keep_saved*/) {
        seqkernels::check_rnn_seq(x, h0, w_ih, w_hh, bias, lengths,
                                  nonlinearity);
      },
      "Checks the arguments of seqkernels::rnn_seq as its C++ kernels do.");
  m.def(
      "check_rnn_seq_backward",
      [](const Tensor& grad_y, const Tensor& grad_h_n, const Tensor& x,
         const Tensor& h0, const Tensor& w_ih, const Tensor& w_hh,
         const OptTensor& lengths, const Tensor& y, const Tensor& saved,
         bool /*has_bias*/, const std::string& nonlinearity) {
        seqkernels::check_rnn_seq_backward(grad_y, grad_h_n, x, h0, w_ih,
                                           w_hh, lengths, y, saved,
                                           nonlinearity);
      },
      "Checks the arguments of seqkernels::rnn_seq_backward.");
  m.def("check_lstm_cell", &seqkernels::check_lstm_cell,
        "Checks the arguments of seqkernels::lstm_cell as its C++ kernels "
        "do.");
  m.def("check_lstm_cell_backward", &seqkernels::check_lstm_cell_backward,
        "Checks the arguments of seqkernels::lstm_cell_backward.");
  m.def("check_gru_cell", &seqkernels::check_gru_cell,
        "Checks the arguments of seqkernels::gru_cell as its C++ kernels do.");
  m.def("check_gru_cell_backward", &seqkernels::check_gru_cell_backward,
        "Checks the arguments of seqkernels::gru_cell_backward.");
  m.def(
      "check_rnn_cell",
      [](const Tensor& x_proj, const Tensor& h_proj, const OptTensor& bias,
         const std::string& nonlinearity) {
        seqkernels::check_rnn_cell(x_proj, h_proj, bias, nonlinearity);
      },
      "Checks the arguments of seqkernels::rnn_cell as its C++ kernels do.");
  m.def(
      "check_rnn_cell_backward",
      [](const Tensor& grad_h, const Tensor& saved,
         const std::string& nonlinearity) {
        seqkernels::check_rnn_cell_backward(grad_h, saved, nonlinearity);
      },
      "Checks the arguments of seqkernels::rnn_cell_backward.");

  // Attention argument checks (attention_checks.h): check_<op>(*args) takes
  // the op's schema arguments, in order, so a Python variant can run the
  // checks of the C++ kernels before it launches; shape, dtype and device
  // only, no data read (no sync on CUDA). Each returns None or raises the
  // RuntimeError the C++ kernels raise. Arguments no check reads (is_causal,
  // scale, need_weights) are taken and ignored, to keep the schema's order.
  m.def(
      "check_sdpa",
      [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
         const OptTensor& attn_mask, double dropout_p, bool /*is_causal*/,
         double /*scale*/, const OptTensor& rng) {
        seqkernels::check_sdpa(q, k, v, attn_mask, dropout_p, rng);
      },
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("attn_mask"),
      py::arg("dropout_p"), py::arg("is_causal"), py::arg("scale"),
      py::arg("rng"),
      "Checks the arguments of seqkernels::sdpa as its C++ kernels do: q "
      "[B, Hq, Tq, D], k [B, Hk, Tk, D] (Hq % Hk == 0), v [B, Hk, Tk, Dv] "
      "of q's dtype and device; attn_mask None or [B, Hq, Tq, Tk], bool or "
      "of q's dtype; dropout_p in [0, 1), and with dropout rng an int64 "
      "[seed, offset]. Raises RuntimeError naming the bad argument.");
  m.def(
      "check_sdpa_backward",
      [](const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
         const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
         const OptTensor& attn_mask, double dropout_p, bool /*is_causal*/,
         double /*scale*/, const OptTensor& rng) {
        seqkernels::check_sdpa_backward(grad_out, q, k, v, out, lse,
                                        attn_mask, dropout_p, rng);
      },
      py::arg("grad_out"), py::arg("q"), py::arg("k"), py::arg("v"),
      py::arg("out"), py::arg("lse"), py::arg("attn_mask"),
      py::arg("dropout_p"), py::arg("is_causal"), py::arg("scale"),
      py::arg("rng"),
      "Checks the arguments of seqkernels::sdpa_backward as its C++ kernels "
      "do: those of check_sdpa, then grad_out and out [B, Hq, Tq, Dv] of "
      "q's dtype and device, lse [B, Hq, Tq] of the accumulation dtype "
      "(float32 for float16 and bfloat16) on q's device. Raises "
      "RuntimeError naming the bad argument.");
  m.def(
      "check_attention_scores",
      [](const at::Tensor& q, const at::Tensor& k, const OptTensor& attn_mask,
         bool /*is_causal*/, double /*scale*/) {
        seqkernels::check_attention_scores(q, k, attn_mask);
      },
      py::arg("q"), py::arg("k"), py::arg("attn_mask"), py::arg("is_causal"),
      py::arg("scale"),
      "Checks the arguments of seqkernels::attention_scores as its C++ "
      "kernels do: q [B, Hq, Tq, D], k [B, Hk, Tk, D] (Hq % Hk == 0) of q's "
      "dtype and device; attn_mask None or [B, Hq, Tq, Tk], bool or of q's "
      "dtype. Raises RuntimeError naming the bad argument.");
  m.def(
      "check_attention_scores_backward",
      [](const at::Tensor& grad_p, const at::Tensor& q, const at::Tensor& k,
         const at::Tensor& p, double /*scale*/) {
        seqkernels::check_attention_scores_backward(grad_p, q, k, p);
      },
      py::arg("grad_p"), py::arg("q"), py::arg("k"), py::arg("p"),
      py::arg("scale"),
      "Checks the arguments of seqkernels::attention_scores_backward as its "
      "C++ kernels do: q and k as check_attention_scores, grad_p and p "
      "[B, Hq, Tq, Tk] of q's dtype and device. Raises RuntimeError naming "
      "the bad argument.");
  m.def(
      "check_additive_attention",
      [](const at::Tensor& q, const at::Tensor& k, const at::Tensor& value,
         const at::Tensor& v, const OptTensor& bias,
         const OptTensor& attn_mask, bool /*need_weights*/) {
        seqkernels::check_additive_attention(q, k, value, v, bias, attn_mask);
      },
      py::arg("q"), py::arg("k"), py::arg("value"), py::arg("v"),
      py::arg("bias"), py::arg("attn_mask"), py::arg("need_weights"),
      "Checks the arguments of seqkernels::additive_attention as its C++ "
      "kernels do: q [B, Tq, H], k [B, Tk, H], value [B, Tk, Dv], v [H], "
      "bias None or [H], all of q's dtype and device; attn_mask None or "
      "[B, Tq, Tk], bool or of q's dtype. Raises RuntimeError naming the "
      "bad argument.");
  m.def(
      "check_additive_attention_backward",
      [](const at::Tensor& grad_context, const OptTensor& grad_weights,
         const at::Tensor& q, const at::Tensor& k, const at::Tensor& value,
         const at::Tensor& v, const OptTensor& bias,
         const OptTensor& attn_mask, const at::Tensor& context,
         const at::Tensor& stats) {
        seqkernels::check_additive_attention_backward(
            grad_context, grad_weights, q, k, value, v, bias, attn_mask,
            context, stats);
      },
      py::arg("grad_context"), py::arg("grad_weights"), py::arg("q"),
      py::arg("k"), py::arg("value"), py::arg("v"), py::arg("bias"),
      py::arg("attn_mask"), py::arg("context"), py::arg("stats"),
      "Checks the arguments of seqkernels::additive_attention_backward as "
      "its C++ kernels do: those of check_additive_attention, then "
      "grad_context and context [B, Tq, Dv], grad_weights None or "
      "[B, Tq, Tk], of q's dtype and device, and stats [B, Tq, 2] of the "
      "accumulation dtype (float32 for float16 and bfloat16) on q's "
      "device. Raises RuntimeError naming the bad argument.");
}
