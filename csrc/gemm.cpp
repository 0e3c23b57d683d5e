// seqkernels::gemm (contract in gemm.h).
#include "seqkernels/gemm.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>

namespace seqkernels {
namespace {

// torch's oneDNN linear (X @ W^T + B), or null where this torch lacks it.
// It is looked up by name once: it is an op of torch's own registry, not a
// function its headers declare.
const c10::OperatorHandle* onednn_linear() {
  static const std::optional<c10::OperatorHandle> op =
      c10::Dispatcher::singleton().findOp({"mkldnn::_linear_pointwise", ""});
  return op.has_value() ? &*op : nullptr;
}

bool use_onednn(const at::Tensor& a, const at::Tensor& b) {
  return a.device().is_cpu() && a.scalar_type() == at::kFloat &&
         b.scalar_type() == at::kFloat && a.numel() > 0 && b.numel() > 0 &&
         at::globalContext().userEnabledMkldnn() && onednn_linear() != nullptr;
}

}  // namespace

at::Tensor gemm(const at::Tensor& a, const at::Tensor& b,
                const at::Tensor& bias) {
  if (!use_onednn(a, b)) {
    return bias.defined() ? at::addmm(bias, a, b) : at::mm(a, b);
  }
  // oneDNN's X must be contiguous. A transposed a (the weight gradients'
  // g^T @ x) would be copied whole; where b is the smaller operand, copy it
  // instead and compute the product transposed: (b^T a^T)^T. The copy of a
  // [T*B, 4H] gradient was a quarter of an LSTM's backward at B=32, H=256.
  if (!a.is_contiguous() && a.t().is_contiguous() && !bias.defined() &&
      b.numel() + a.size(0) * b.size(1) < a.numel()) {
    return gemm(b.t().contiguous(), a.t()).t().contiguous();
  }
  // _linear_pointwise(X, W, B?, attr, scalars, algorithm): X @ W^T + B with
  // no fused post-op ("none").
  torch::jit::Stack stack;
  stack.reserve(6);
  stack.emplace_back(a);
  stack.emplace_back(b.t());
  stack.emplace_back(bias.defined() ? c10::IValue(bias) : c10::IValue());
  stack.emplace_back(std::string("none"));
  stack.emplace_back(c10::List<std::optional<at::Scalar>>());
  stack.emplace_back(c10::IValue());
  onednn_linear()->callBoxed(&stack);
  return stack[0].toTensor();
}

}  // namespace seqkernels
