// Host side of the persistent recurrence kernels (persistent_recurrence.h):
// the rule of which shapes they serve, and the glue from the driver's
// SeqForward / SeqBackward to a launch, shared by the CUDA launcher and the
// host emulation so both run the same plan, buffers and arguments.
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "seqkernels/persistent_recurrence.h"
#include "seqkernels/recurrent_host.h"

namespace seqkernels {

// What the plan needs to know of the device.
struct DeviceLimits {
  int sm_count;       // blocks that can be resident at once, one per SM
  int64_t max_smem;   // dynamic shared memory a block may have (opt-in)
  bool cooperative;   // cooperative launches (co-residency guaranteed)
  // Whether W_hh may stay in registers where it fits (the Layout's
  // w_regs_forward / w_regs_backward); false keeps it in shared memory
  // everywhere: a test hook, so that the tests run both paths.
  bool w_registers = true;
};

// Whether the persistent kernels serve a layer, and with which layout; the
// reason names what does not fit where they do not. The rule:
//   - storage dtype float16 or bfloat16 (tensor-core operands); float32 and
//     float64 run the per-step kernels;
//   - no projection (the driver offers only those layers);
//   - U = the units per block that fill a 16-row tile of G*U rows, with
//     ceil(H / U) blocks no more than the device's SMs;
//   - U * B <= 1024 (pairs per block), and both kernels' shared memory
//     (the block's W_hh rows, h or the gate gradients, padded to the
//     tiles) within the device's limit per block;
//   - a device with cooperative launches.
// Where it serves, each product keeps W_hh in registers where every warp's
// A fragments fit the kernels' compile-time bound (kForwardFrags: the
// forward with at most one item per warp; kBackwardFrags), else in shared
// memory (make_layout).
struct PersistentPlan {
  bool serves;
  std::string reason;
  persistent::Layout layout;
};

PersistentPlan plan_persistent(const CellDesc& cell, int64_t T, int64_t B,
                               int64_t H, at::ScalarType dtype,
                               const DeviceLimits& device);

#if defined(SEQKERNELS_WITH_CUDA)
// The CUDA backend (csrc/cuda/persistent_recurrence.cu): the limits of a
// device, and the whole-sequence functions of its SeqSteps.
DeviceLimits cuda_device_limits(int device);
// The w_registers that cuda_device_limits gives (true until set): a test
// hook, so that the GPU runs both places of W_hh.
void set_cuda_w_registers(bool allow);
bool cuda_persistent_forward(const CellDesc& cell, const SeqForward& seq);
bool cuda_persistent_backward(const CellDesc& cell, const SeqBackward& seq);
#endif

namespace persistent {

// A tensor's data, null where it is absent (undefined or empty).
template <typename T>
T* ptr(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

inline const int64_t* lengths_ptr(const OptTensor& lengths) {
  return lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr;
}

// Calls f(scalar_t{}) with the storage type of a dtype the plan serves.
template <typename F>
void dispatch_storage(at::ScalarType dtype, F&& f) {
  if (dtype == at::kHalf) {
    f(at::Half{});
  } else {
    f(at::BFloat16{});
  }
}

// Calls launch(Cell{}, args, blocks, smem_bytes) with the forward kernel's
// arguments where the plan serves the layer; returns whether it did.
template <typename Launch>
bool run_forward(const CellDesc& cell, const SeqForward& seq,
                 const DeviceLimits& device, Launch&& launch) {
  const int64_t T = seq.y.size(0), B = seq.y.size(1), H = seq.y.size(2);
  const auto dtype = seq.y.scalar_type();
  const PersistentPlan plan = plan_persistent(cell, T, B, H, dtype, device);
  if (!plan.serves) return false;
  const Layout& L = plan.layout;
  const at::Tensor exchange = at::empty({2, B, H}, seq.y.options());
  const at::Tensor flags =
      at::zeros({L.blocks}, seq.y.options().dtype(at::kInt));
  dispatch_storage(dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    ForwardArgs<scalar_t> a{L,
                            cell.act,
                            ptr<float>(seq.xg),
                            ptr<scalar_t>(seq.h0),
                            ptr<scalar_t>(seq.w_hh),
                            ptr<scalar_t>(seq.b_hh),
                            ptr<float>(seq.c_state),
                            lengths_ptr(seq.lengths),
                            ptr<float>(seq.saved),
                            ptr<float>(seq.cell_states),
                            ptr<scalar_t>(seq.y),
                            ptr<scalar_t>(seq.h_n),
                            ptr<scalar_t>(exchange),
                            ptr<int>(flags)};
    dispatch_cell(cell.kind,
                  [&](auto tag) { launch(tag, a, L.blocks, L.f_bytes); });
  });
  return true;
}

// Likewise for the backward kernel.
template <typename Launch>
bool run_backward(const CellDesc& cell, const SeqBackward& seq,
                  const DeviceLimits& device, Launch&& launch) {
  const int64_t T = seq.grad_y.size(0), B = seq.grad_y.size(1),
                H = seq.grad_y.size(2);
  const auto dtype = seq.grad_y.scalar_type();
  const PersistentPlan plan = plan_persistent(cell, T, B, H, dtype, device);
  if (!plan.serves) return false;
  const Layout& L = plan.layout;
  const auto acc = seq.grad_y.options().dtype(at::kFloat);
  const at::Tensor partials =
      at::empty({2, L.blocks, L.k_pad, L.b_pad}, acc);
  const at::Tensor flags =
      at::zeros({L.blocks}, seq.grad_y.options().dtype(at::kInt));
  const at::Tensor saved = seq.saved.contiguous();
  dispatch_storage(dtype, [&](auto scalar) {
    using scalar_t = decltype(scalar);
    BackwardArgs<scalar_t> a{L,
                             cell.act,
                             ptr<scalar_t>(seq.grad_y),
                             ptr<scalar_t>(seq.w_hh),
                             ptr<float>(seq.dh_carry),
                             ptr<float>(seq.carry),
                             ptr<float>(saved),
                             ptr<scalar_t>(seq.h_prev),
                             ptr<float>(seq.c0),
                             ptr<float>(seq.cell_states),
                             lengths_ptr(seq.lengths),
                             ptr<float>(seq.grad_xg),
                             ptr<float>(seq.grad_hg),
                             ptr<float>(partials),
                             ptr<int>(flags)};
    dispatch_cell(cell.kind,
                  [&](auto tag) { launch(tag, a, L.blocks, L.b_bytes); });
  });
  return true;
}

}  // namespace persistent
}  // namespace seqkernels
