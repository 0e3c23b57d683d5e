// The persistent recurrence kernels run on the CPU through the host
// emulation (host_emulation.h): test infrastructure, bound in csrc/ops.cpp
// as _C.emulated. Nothing of it serves users' tensors.
#pragma once

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

}  // namespace seqkernels
