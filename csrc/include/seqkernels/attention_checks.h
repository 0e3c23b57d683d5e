// Argument checks of the attention ops (sdpa, attention_scores,
// additive_attention), shared by every backend's entry points: plain host
// code on at::Tensor metadata, no backend-specific includes. Each message
// names the argument. Shapes and semantics are those of the references in
// seqkernels/reference/; the dtype rule of a backend (the CPU's
// check_cpu_dtype in checks.h) is that backend's own check, made first on q,
// as are its other own limits (the CUDA kernels' head dims, say), made after.
// The checks read metadata only, never tensor data: on CUDA tensors they do
// not synchronize, and _C.check_<op> (csrc/ops.cpp) runs them for the
// variants written in Python.
//
//   sdpa / attention_scores:
//     q [B, Hq, Tq, D]  k [B, Hk, Tk, D]  v [B, Hk, Tk, Dv]  (Hq % Hk == 0)
//     attn_mask [B, Hq, Tq, Tk] (already broadcast, any strides): bool
//       (True = attend) or a float mask of q's dtype (added to the scores)
//     out [B, Hq, Tq, Dv]  lse [B, Hq, Tq] (accumulation dtype)
//     p [B, Hq, Tq, Tk] (attention_scores' output)
//   additive_attention:
//     q [B, Tq, H]  k [B, Tk, H]  value [B, Tk, Dv]  v [H]  bias [H]
//     attn_mask [B, Tq, Tk]  context [B, Tq, Dv]  weights [B, Tq, Tk]
//     stats [B, Tq, 2] (accumulation dtype): per query row the maximum score
//       m and the sum l of exp(s - m), from which the backward recomputes
//       the weights as exp(s - m) / l (more accurate than exp(s - lse))
#pragma once

#include <ATen/ATen.h>

#include "seqkernels/checks.h"

namespace seqkernels {

inline void check_rank(const at::Tensor& t, const char* name, int64_t rank,
                       const char* layout) {
  TORCH_CHECK(t.dim() == rank, "seqkernels: ", name, " must be ", layout,
              " (", rank, "-D), got shape ", t.sizes());
}

// A mask broadcast to `target` by the caller (with .expand(); its strides
// may be 0): bool, or a float mask of q's dtype, on q's device.
inline void check_attn_mask(const c10::optional<at::Tensor>& attn_mask,
                            at::IntArrayRef target, const at::Tensor& q) {
  if (!attn_mask.has_value()) return;
  const at::Tensor& m = *attn_mask;
  TORCH_CHECK(m.scalar_type() == at::kBool ||
                  m.scalar_type() == q.scalar_type(),
              "seqkernels: attn_mask must be bool (True = attend) or a float "
              "mask of q's dtype (", q.scalar_type(), "), got ",
              m.scalar_type());
  TORCH_CHECK(m.device() == q.device(), "seqkernels: attn_mask must be on "
              "the device of q (", q.device(), "), got ", m.device());
  TORCH_CHECK(m.sizes().equals(target), "seqkernels: attn_mask must have "
              "shape ", target, " (broadcast it with expand), got ",
              m.sizes());
}

// dropout_p in [0, 1); with dropout, rng = [seed, offset] as int64.
inline void check_dropout(double dropout_p,
                          const c10::optional<at::Tensor>& rng) {
  TORCH_CHECK(dropout_p >= 0.0 && dropout_p < 1.0,
              "seqkernels: dropout_p must be in [0, 1), got ", dropout_p);
  if (dropout_p == 0.0) return;
  TORCH_CHECK(rng.has_value(), "seqkernels: rng ([seed, offset], int64) is "
              "required when dropout_p > 0");
  TORCH_CHECK(rng->scalar_type() == at::kLong && rng->numel() == 2,
              "seqkernels: rng must be an int64 tensor [seed, offset] of 2 "
              "elements, got ", rng->scalar_type(), " of shape ",
              rng->sizes());
}

// t has `shape` and q's dtype and device.
inline void check_like_q(const at::Tensor& t, const char* name,
                         at::IntArrayRef shape, const at::Tensor& q) {
  check_shape(t, name, shape);
  check_same_dtype_device(t, name, q, "q");
}

// What a forward saved for its backward (lse, stats): of the accumulation
// dtype of q, on q's device.
inline void check_saved(const at::Tensor& t, const char* name,
                        at::IntArrayRef shape, const at::Tensor& q) {
  check_shape(t, name, shape);
  TORCH_CHECK(t.scalar_type() == acc_dtype(q.scalar_type()),
              "seqkernels: ", name, " must be ", acc_dtype(q.scalar_type()),
              " (what the forward saved), got ", t.scalar_type());
  TORCH_CHECK(t.device() == q.device(), "seqkernels: ", name, " must be on "
              "the device of q (", q.device(), "), got ", t.device());
}

inline void check_floating(const at::Tensor& q) {
  TORCH_CHECK(q.is_floating_point(), "seqkernels: q must be a floating "
              "tensor, got ", q.scalar_type());
}

struct AttentionDims {
  int64_t B, Hq, Hk, Tq, Tk, D, Dv;
};

// q and k of sdpa and attention_scores (Dv = 0 until v is checked).
inline AttentionDims check_qk(const at::Tensor& q, const at::Tensor& k) {
  check_rank(q, "q", 4, "[B, Hq, Tq, D]");
  check_rank(k, "k", 4, "[B, Hk, Tk, D]");
  check_floating(q);
  check_same_dtype_device(k, "k", q, "q");
  AttentionDims d{q.size(0), q.size(1), k.size(1), q.size(2),
                  k.size(2), q.size(3), 0};
  TORCH_CHECK(k.size(0) == d.B && k.size(3) == d.D, "seqkernels: k must be "
              "[B, Hk, Tk, D] with B = ", d.B, " and D = ", d.D,
              " as q, got shape ", k.sizes());
  TORCH_CHECK(d.Hk > 0 && d.Hq % d.Hk == 0, "seqkernels: the heads of q (",
              d.Hq, ") must be a multiple of the heads of k (", d.Hk,
              ") (grouped-query attention)");
  return d;
}

inline AttentionDims check_sdpa(const at::Tensor& q, const at::Tensor& k,
                                const at::Tensor& v,
                                const c10::optional<at::Tensor>& attn_mask,
                                double dropout_p,
                                const c10::optional<at::Tensor>& rng) {
  AttentionDims d = check_qk(q, k);
  check_rank(v, "v", 4, "[B, Hk, Tk, Dv]");
  check_same_dtype_device(v, "v", q, "q");
  TORCH_CHECK(v.size(0) == d.B && v.size(1) == d.Hk && v.size(2) == d.Tk,
              "seqkernels: v must be [B, Hk, Tk, Dv] = [", d.B, ", ", d.Hk,
              ", ", d.Tk, ", Dv] as k, got shape ", v.sizes());
  d.Dv = v.size(3);
  check_attn_mask(attn_mask, {d.B, d.Hq, d.Tq, d.Tk}, q);
  check_dropout(dropout_p, rng);
  return d;
}

inline AttentionDims check_sdpa_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
    const c10::optional<at::Tensor>& attn_mask, double dropout_p,
    const c10::optional<at::Tensor>& rng) {
  const AttentionDims d = check_sdpa(q, k, v, attn_mask, dropout_p, rng);
  check_like_q(grad_out, "grad_out", {d.B, d.Hq, d.Tq, d.Dv}, q);
  check_like_q(out, "out", {d.B, d.Hq, d.Tq, d.Dv}, q);
  check_saved(lse, "lse", {d.B, d.Hq, d.Tq}, q);
  return d;
}

inline AttentionDims check_attention_scores(
    const at::Tensor& q, const at::Tensor& k,
    const c10::optional<at::Tensor>& attn_mask) {
  const AttentionDims d = check_qk(q, k);
  check_attn_mask(attn_mask, {d.B, d.Hq, d.Tq, d.Tk}, q);
  return d;
}

inline AttentionDims check_attention_scores_backward(const at::Tensor& grad_p,
                                                     const at::Tensor& q,
                                                     const at::Tensor& k,
                                                     const at::Tensor& p) {
  const AttentionDims d = check_qk(q, k);
  check_like_q(grad_p, "grad_p", {d.B, d.Hq, d.Tq, d.Tk}, q);
  check_like_q(p, "p", {d.B, d.Hq, d.Tq, d.Tk}, q);
  return d;
}

struct AdditiveDims {
  int64_t B, Tq, Tk, H, Dv;
};

inline AdditiveDims check_additive_attention(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& value,
    const at::Tensor& v, const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& attn_mask) {
  check_rank(q, "q", 3, "[B, Tq, H]");
  check_rank(k, "k", 3, "[B, Tk, H]");
  check_rank(value, "value", 3, "[B, Tk, Dv]");
  check_floating(q);
  const AdditiveDims d{q.size(0), q.size(1), k.size(1), q.size(2),
                       value.size(2)};
  TORCH_CHECK(k.size(0) == d.B && k.size(2) == d.H, "seqkernels: k must be "
              "[B, Tk, H] with B = ", d.B, " and H = ", d.H, " as q, got "
              "shape ", k.sizes());
  TORCH_CHECK(value.size(0) == d.B && value.size(1) == d.Tk,
              "seqkernels: value must be [B, Tk, Dv] = [", d.B, ", ", d.Tk,
              ", Dv] as k, got shape ", value.sizes());
  check_shape(v, "v", {d.H});
  check_same_dtype_device(k, "k", q, "q");
  check_same_dtype_device(value, "value", q, "q");
  check_same_dtype_device(v, "v", q, "q");
  if (bias.has_value()) check_like_q(*bias, "bias", {d.H}, q);
  check_attn_mask(attn_mask, {d.B, d.Tq, d.Tk}, q);
  return d;
}

inline AdditiveDims check_additive_attention_backward(
    const at::Tensor& grad_context,
    const c10::optional<at::Tensor>& grad_weights, const at::Tensor& q,
    const at::Tensor& k, const at::Tensor& value, const at::Tensor& v,
    const c10::optional<at::Tensor>& bias,
    const c10::optional<at::Tensor>& attn_mask, const at::Tensor& context,
    const at::Tensor& stats) {
  const AdditiveDims d =
      check_additive_attention(q, k, value, v, bias, attn_mask);
  check_like_q(grad_context, "grad_context", {d.B, d.Tq, d.Dv}, q);
  if (grad_weights.has_value()) {
    check_like_q(*grad_weights, "grad_weights", {d.B, d.Tq, d.Tk}, q);
  }
  check_like_q(context, "context", {d.B, d.Tq, d.Dv}, q);
  check_saved(stats, "stats", {d.B, d.Tq, 2}, q);
  return d;
}

}  // namespace seqkernels
