// The persistent recurrence kernels (persistent_recurrence.h), compiled for
// the host and run by the host emulation: see emulation.h.
#include "seqkernels/emulation.h"

#include <atomic>

namespace seqkernels {

extern const SeqSteps kCpuSteps;

namespace {

DeviceLimits g_device{3, 227 * 1024, true};
std::atomic<int64_t> g_launches{0};

// Runs a launch's kernel as an emulated grid.
template <typename Cell, typename Args>
void emulate(Cell, const Args& args, int blocks, int smem_bytes) {
  emu::launch(blocks, persistent::kThreads, smem_bytes,
              [&] { persistent::run<Cell>(args); });
  ++g_launches;
}

bool forward_seq(const CellDesc& cell, const SeqForward& seq) {
  return persistent::run_forward(cell, seq, g_device,
                                 [](auto... a) { emulate(a...); });
}

bool backward_seq(const CellDesc& cell, const SeqBackward& seq) {
  return persistent::run_backward(cell, seq, g_device,
                                  [](auto... a) { emulate(a...); });
}

}  // namespace

const SeqSteps& emulated_steps() {
  // The CPU's steps and their dtype rule, where the plan declines a layer
  // or the per-step algorithm is asked for. The saved values get their own
  // tensor, as on the GPU.
  static const SeqSteps steps{kCpuSteps.check, kCpuSteps.forward,
                              kCpuSteps.backward, /*saved_over_xg=*/false,
                              kCpuSteps.acc_weights, forward_seq,
                              backward_seq, /*seq_by_default=*/false,
                              /*chunk_bytes=*/0};
  return steps;
}

void set_emulated_device(const DeviceLimits& device) { g_device = device; }
const DeviceLimits& emulated_device() { return g_device; }
int64_t emulated_launches() { return g_launches; }

}  // namespace seqkernels
