// The persistent recurrence kernels and the tensor-core sdpa run on
// the CPU through the host emulation (host_emulation.h): test
// infrastructure, bound as _C.emulated (csrc/persistent_bindings.cpp,
// csrc/attention_bindings.cpp). Nothing of it serves users' tensors.
#pragma once

#include <string>

#include "seqkernels/persistent_launch.h"
#include "seqkernels/recurrent_host.h"

namespace seqkernels {

// The CPU backend's per-step functions, with the persistent kernels run in
// the emulation as its whole-sequence functions (taken when
// SEQKERNELS_RECURRENCE=persistent and the plan serves the layer on the
// emulated device).
const SeqSteps& emulated_steps();

// The emulated device the plan sees (default: 3 SMs, 227 KiB of shared
// memory per block, cooperative launches), so that small layers split over
// several blocks as large ones do on a GPU.
void set_emulated_device(const DeviceLimits& device);
const DeviceLimits& emulated_device();

// Persistent kernels the emulation has run so far (a test's proof that the
// kernel, not the per-step fallback, produced its results).
int64_t emulated_launches();

// The op sdpa's forward on CPU tensors by the tensor-core kernel
// (sdpa_tensor_core.h), for the dtypes and head dims it serves: (out, lse).
std::tuple<at::Tensor, at::Tensor> emulated_sdpa(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const c10::optional<at::Tensor>& attn_mask, double dropout_p,
    bool is_causal, double scale, const c10::optional<at::Tensor>& rng);

// The op sdpa_backward on CPU tensors by the tensor-core backward
// (sdpa_tensor_core_backward.h), for the dtypes and head dims it serves:
// (grad_q, grad_k, grad_v).
std::tuple<at::Tensor, at::Tensor, at::Tensor> emulated_sdpa_backward(
    const at::Tensor& grad_out, const at::Tensor& q, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& out, const at::Tensor& lse,
    const c10::optional<at::Tensor>& attn_mask, double dropout_p,
    bool is_causal, double scale, const c10::optional<at::Tensor>& rng);

// Where the emulation's cp.async copies land from the next launch on
// (host_emulation.h, CpAsyncMode): "late" (at the wait_group that covers
// them; the default) or "early" (at issue).
void set_emulated_cp_async_mode(const std::string& mode);
std::string emulated_cp_async_mode();

// cp.async (block_primitives.h) on one warp: lane l copies row l of src
// [32, 8] int16 (16 bytes) into a buffer A as one group and into a buffer B
// as a second, zero-filled for l >= n_valid, over old contents -1; returns
// its rows of A and B before any wait, after wait_group 1 and after
// wait_group 0: [3, 2, 32, 8] int16.
at::Tensor emulated_cp_async(const at::Tensor& src, int64_t n_valid);

// The warp primitives (warp_mma.h) on one warp: a, bt, v [16, 16] of
// float16 or bfloat16; returns S = a bt^T and O = P v in float, P being S
// rounded to a's dtype and taken straight from S's fragments.
std::tuple<at::Tensor, at::Tensor> emulated_warp_tiles(const at::Tensor& a,
                                                       const at::Tensor& bt,
                                                       const at::Tensor& v);

}  // namespace seqkernels
