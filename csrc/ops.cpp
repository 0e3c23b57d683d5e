// Every seqkernels op's schema, in one place, and the _C Python module.
//
// Each op comes in three variants that share one schema shape:
//   <op>            C++ kernels: CPU (csrc/cpu) and CUDA (csrc/cuda)
//   <op>_triton     Triton kernels, implemented in Python (triton_kernels/)
//   <op>_reference  pure PyTorch, implemented in Python (seqkernels/reference/)
// The fake (meta) implementations and the autograd formulas of all variants
// are registered in Python, in seqkernels/ops/<op>.py.
#include <Python.h>
#include <torch/library.h>

#include "seqkernels/recurrent_host.h"

namespace {

// Schemas; shapes, dtypes and semantics of each op are documented in its
// reference implementation, seqkernels/reference/<op>.py.
const char* kLstmCell =
    "(Tensor x_proj, Tensor h_proj, Tensor c, Tensor? bias)"
    " -> (Tensor h_new, Tensor c_new, Tensor saved)";
const char* kLstmCellBackward =
    "(Tensor grad_h, Tensor grad_c, Tensor c, Tensor c_new, Tensor saved)"
    " -> (Tensor grad_gates, Tensor grad_c_prev)";
const char* kLstmSeq =
    "(Tensor x, Tensor h0, Tensor c0, Tensor w_ih, Tensor w_hh, Tensor? bias,"
    " Tensor? w_hr, Tensor? lengths)"
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
    " Tensor? b_hh, Tensor? lengths) -> (Tensor y, Tensor h_n, Tensor saved)";
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
    " Tensor? lengths, str nonlinearity)"
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

// A tiny Python module: importing it loads the library above, and it reports
// how the extension was built and the C++ cell table.
namespace {

using seqkernels::CellDesc;
using seqkernels::CellKind;
using seqkernels::cell_desc;
using seqkernels::kind_name;

PyObject* build_info(PyObject*, PyObject*) {
#ifdef SEQKERNELS_WITH_CUDA
  PyObject* cuda = Py_True;
#else
  PyObject* cuda = Py_False;
#endif
#ifdef SEQKERNELS_CUDA_ARCHS
  const char* archs = SEQKERNELS_CUDA_ARCHS;
#else
  const char* archs = "";
#endif
  return Py_BuildValue("{s:O,s:s}", "cuda", cuda, "cuda_archs", archs);
}

// The C++ cell table (the traits of cell_math.h through cell_desc), for the
// test that holds seqkernels/cell_table.py to it.
PyObject* cell_traits(PyObject*, PyObject*) {
  PyObject* table = PyDict_New();
  for (int kind = 0; kind < 3; ++kind) {
    const CellDesc d = cell_desc(static_cast<CellKind>(kind));
    PyObject* row = Py_BuildValue(
        "{s:i,s:i,s:i,s:O,s:O,s:O}", "kind_id", kind, "gates", d.gates,
        "saved", d.saved, "has_c", d.has_c ? Py_True : Py_False,
        "split_grad", d.split_grad ? Py_True : Py_False, "direct_h",
        d.direct_h ? Py_True : Py_False);
    PyDict_SetItemString(table, kind_name(d.kind), row);
    Py_DECREF(row);
  }
  return table;
}

PyMethodDef kMethods[] = {
    {"build_info", build_info, METH_NOARGS,
     "dict(cuda=bool, cuda_archs=str): how this extension was compiled."},
    {"cell_traits", cell_traits, METH_NOARGS,
     "{kind: dict(kind_id, saved, saved, has_c, split_grad, direct_h)}: the "
     "cell traits of csrc/include/seqkernels/cell_math.h."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_C",
                       "seqkernels compiled kernels (CPU, and CUDA if built).",
                       -1, kMethods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&kModule); }
