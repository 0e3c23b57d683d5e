// The rule of which layers the persistent recurrence kernels serve: see
// plan_persistent in persistent_launch.h.
#include <sstream>

#include "seqkernels/persistent_launch.h"

namespace seqkernels {

PersistentPlan plan_persistent(const CellDesc& cell, int64_t T, int64_t B,
                               int64_t H, at::ScalarType dtype,
                               const DeviceLimits& device) {
  using namespace persistent;
  PersistentPlan plan{false, "", Layout{}};
  std::ostringstream why;
  if (dtype != at::kHalf && dtype != at::kBFloat16) {
    why << "dtype " << dtype
        << ": the persistent kernel multiplies float16/bfloat16 on tensor "
           "cores; float32 and float64 run the per-step kernels";
  } else if (!device.cooperative) {
    why << "the device has no cooperative launch";
  } else if (device.sm_count < 1) {
    why << "the device has no SM free";
  } else if (B * H >= (int64_t(1) << 31) || T >= (int64_t(1) << 31)) {
    why << "B * H = " << B * H << " is above the kernel's 32-bit indices";
  } else {
    const int G = cell.gates;
    // The fewest units per block that the SMs allow, then as many more as
    // fill the 16-row tile those units need anyway.
    const int at_least = int((H + device.sm_count - 1) / device.sm_count);
    const int units = round_up(G * at_least, kTile) / G;
    const Layout L = make_layout(G, cell.saved, int(T), int(B), int(H), units,
                                 device.w_registers);
    const int64_t smem = std::max(L.f_bytes, L.b_bytes);
    if (L.blocks > kThreads) {
      why << L.blocks << " blocks: more than the " << kThreads
          << " threads that wait for them";
    } else if (int64_t(units) * B > int64_t(kPairs) * kThreads) {
      why << "batch " << B << " x " << units << " units per block is above "
          << kPairs * kThreads << " (unit, row) pairs per block";
    } else if (smem > device.max_smem) {
      why << "a block needs " << smem << " bytes of shared memory (W_hh rows "
          << "of " << units << " units at H = " << H << ", batch " << B
          << "), the device gives " << device.max_smem;
    } else {
      plan.serves = true;
      plan.layout = L;
      // Where each product keeps W_hh, and the busiest warp's fragments
      // against the bound.
      const auto where = [&](bool regs, int frags, int bound) {
        why << (regs ? "registers" : "shared memory") << " (";
        if (frags < 0) {
          why << "several items per warp";
        } else {
          why << frags << " A fragments per warp, at most " << bound
              << " in registers";
        }
        if (!device.w_registers) why << "; the test hook keeps W_hh shared";
        why << ")";
      };
      why << L.blocks << " blocks of " << units << " units, " << smem
          << " bytes of shared memory; W_hh of the forward in ";
      where(L.w_regs_forward, forward_frags_per_warp(L), kForwardFrags);
      why << ", of the backward in ";
      where(L.w_regs_backward, backward_frags_per_warp(L), kBackwardFrags);
    }
  }
  plan.reason = why.str();
  return plan;
}

}  // namespace seqkernels
