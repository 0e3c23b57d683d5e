// The _C functions of the tensor-core sdpa and attention probabilities:
// which forward and backward the CUDA sdpa and which forward
// attention_scores run (the rule of csrc/include/seqkernels/
// sdpa_tensor_core.h), and _C.emulated.sdpa / sdpa_backward /
// attention_scores / warp_tiles / cp_async, the kernels and their
// warp and copy primitives run on the CPU by the host emulation, with
// set_cp_async_mode / cp_async_mode choosing where its cp.async copies
// land (tests only).
#include <torch/python.h>

#include "seqkernels/attention_scores_tensor_core.h"
#include "seqkernels/emulation.h"
#include "seqkernels/sdpa_tensor_core.h"

namespace seqkernels {

void bind_attention(pybind11::module_& m) {
  namespace py = pybind11;
  m.def(
      "attention_kernel",
      [] { return sdpa_tc::kernel_name(sdpa_tc::attention_kernel_asked()); },
      "The attention kernel SEQKERNELS_ATTENTION asks for, as the CUDA sdpa "
      "reads it: 'simt' or 'tensor_core'.");
  m.def(
      "sdpa_forward_kernel",
      [](at::ScalarType dtype, int64_t D, int64_t Dv) {
        return sdpa_tc::kernel_name(
            sdpa_tc::sdpa_forward_kernel(dtype, D, Dv));
      },
      py::arg("dtype"), py::arg("D"), py::arg("Dv"),
      "The forward the CUDA sdpa runs for q's dtype and head dims D, Dv "
      "under the current SEQKERNELS_ATTENTION: 'simt' or 'tensor_core'.");
  m.def(
      "attention_scores_forward_kernel",
      [](at::ScalarType dtype, int64_t D) {
        return sdpa_tc::kernel_name(
            sdpa_tc::attention_scores_forward_kernel(dtype, D));
      },
      py::arg("dtype"), py::arg("D"),
      "The forward the CUDA attention_scores runs for q's dtype and head "
      "dim D under the current SEQKERNELS_ATTENTION: 'simt' or "
      "'tensor_core'.");

  m.def(
      "sdpa_backward_kernel",
      [](at::ScalarType dtype, int64_t D, int64_t Dv) {
        return sdpa_tc::kernel_name(
            sdpa_tc::sdpa_backward_kernel(dtype, D, Dv));
      },
      py::arg("dtype"), py::arg("D"), py::arg("Dv"),
      "The backward the CUDA sdpa_backward runs for q's dtype and head dims "
      "D, Dv under the current SEQKERNELS_ATTENTION: 'simt' or "
      "'tensor_core'.");

  py::module_ e = m.attr("emulated").cast<py::module_>();
  e.def("sdpa", &emulated_sdpa, py::arg("q"), py::arg("k"), py::arg("v"),
        py::arg("attn_mask"), py::arg("dropout_p"), py::arg("is_causal"),
        py::arg("scale"), py::arg("rng"),
        "seqkernels::sdpa's forward (out, lse) by the tensor-core kernel, on "
        "CPU tensors (float16, bfloat16; D, Dv <= 128), emulated.");
  e.def("sdpa_backward", &emulated_sdpa_backward, py::arg("grad_out"),
        py::arg("q"), py::arg("k"), py::arg("v"), py::arg("out"),
        py::arg("lse"), py::arg("attn_mask"), py::arg("dropout_p"),
        py::arg("is_causal"), py::arg("scale"), py::arg("rng"),
        "seqkernels::sdpa_backward (grad_q, grad_k, grad_v) by the "
        "tensor-core kernels, on CPU tensors (float16, bfloat16; D, Dv <= "
        "128), emulated.");
  e.def("warp_tiles", &emulated_warp_tiles, py::arg("a"), py::arg("bt"),
        py::arg("v"),
        "(S, O): S = a bt^T and O = round(S) v on one emulated warp through "
        "ldmatrix, mma.sync and the S-to-A register reuse (a, bt, v "
        "[16, 16], float16 or bfloat16; S, O float).");
  e.def("cp_async", &emulated_cp_async, py::arg("src"), py::arg("n_valid"),
        "cp.async on one emulated warp: lane l copies row l of src [32, 8] "
        "int16 into buffers A and B (a group each; zeros for l >= n_valid) "
        "over -1; its rows of A and B before any wait, after wait_group 1 "
        "and after wait_group 0: [3, 2, 32, 8] int16.");
  e.def("set_cp_async_mode", &set_emulated_cp_async_mode, py::arg("mode"),
        "Where the emulation's cp.async copies land from the next launch "
        "on: 'late' (at the wait_group that covers them; the default) or "
        "'early' (at issue).");
  e.def("cp_async_mode", &emulated_cp_async_mode,
        "The emulation's cp.async mode: 'late' or 'early'.");
  e.def("attention_scores", &emulated_attention_scores, py::arg("q"),
        py::arg("k"), py::arg("attn_mask"), py::arg("is_causal"),
        py::arg("scale"),
        "seqkernels::attention_scores (the probabilities) by the tensor-core "
        "kernel, on CPU tensors (float16, bfloat16; D <= 128), emulated; "
        "unwritten elements would be NaN.");
}

}  // namespace seqkernels
