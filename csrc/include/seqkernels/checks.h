// Argument checks shared by every kernel entry point. Each message names the
// argument, so that a user sees which input is wrong and how.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace seqkernels {

// Accumulation dtype for a storage dtype: float for half and bfloat16.
inline at::ScalarType acc_dtype(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

// The dtypes of the CPU backend's kernels: float32, float64, and float16 and
// bfloat16 with float32 accumulation (csrc/cpu/).
inline void check_cpu_dtype(const at::Tensor& t, const char* name) {
  const at::ScalarType s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kHalf ||
                  s == at::kBFloat16,
              "seqkernels: the cpu backend supports float32, float64, "
              "float16 and bfloat16; ", name, " is ", s);
}

inline void check_shape(const at::Tensor& t, const char* name,
                        at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes().equals(expected), "seqkernels: ", name,
              " must have shape ", expected, ", got ", t.sizes());
}

inline void check_same_dtype_device(const at::Tensor& t, const char* name,
                                    const at::Tensor& like,
                                    const char* like_name) {
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "seqkernels: ", name,
              " must have the dtype of ", like_name, " (", like.scalar_type(),
              "), got ", t.scalar_type());
  TORCH_CHECK(t.device() == like.device(), "seqkernels: ", name,
              " must be on the device of ", like_name, " (", like.device(),
              "), got ", t.device());
}

// Lengths of a variable-length batch: int64, on the device of the data, one
// per batch element, each in [1, T]. Checking the range reads the values, a
// device sync on CUDA, which is why callers may pass none.
inline void check_lengths(const c10::optional<at::Tensor>& lengths,
                          const at::Tensor& x) {
  if (!lengths.has_value()) return;
  const at::Tensor& l = *lengths;
  TORCH_CHECK(l.scalar_type() == at::kLong,
              "seqkernels: lengths must be int64, got ", l.scalar_type());
  TORCH_CHECK(l.device() == x.device(),
              "seqkernels: lengths must be on the device of x (", x.device(),
              "), got ", l.device());
  check_shape(l, "lengths", {x.size(1)});
}

}  // namespace seqkernels
