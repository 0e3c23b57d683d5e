// The CPU's persistent recurrence (csrc/cpu/persistent_recurrence.cpp): a
// whole layer's forward or backward recurrence in one parallel region, in
// place of the per-step kernels' two library calls and one thread-pool
// wake-up per step.
//
// w_hh is packed once per call into the layout of the inner loop (blocks of
// hidden units: [block][k][gate][units] for the forward, its transpose
// [block][n][units] for the backward; the module comment of the .cpp gives
// the widths), and each step is a set of tasks, one
// per block of units and rows: the task computes its units' recurrent
// product in registers (float32, the sum over k in order, FMA) and runs
// the cell math of cpu_cell_rows.h on them at once, so the gate
// pre-activations never leave the cache. The steps are separated by the
// light barrier of cpu_step_team.h.
//
// The rule (cpu_persistent_plan) decides where it runs: float32, float16
// and bfloat16 (float32 math; float64 takes the per-step kernels), without
// a projection (the driver offers no other), and, by default, for the
// layers where it was measured faster than the per-step kernels; asked for
// (SEQKERNELS_RECURRENCE=persistent) it runs on every layer it can.
#pragma once

#include <string>

#include "seqkernels/recurrent_host.h"

namespace seqkernels {

struct CpuPersistentPlan {
  bool serves;
  int threads;         // threads of the parallel region (serves)
  std::string reason;  // why, in words (seqkernels.explain shows it)
};

CpuPersistentPlan cpu_persistent_plan(CellKind kind, int64_t B, int64_t H,
                                      at::ScalarType dtype,
                                      Recurrence asked);

// SeqSteps::forward_seq and backward_seq of the CPU backend.
bool cpu_forward_seq(const CellDesc& cell, const SeqForward& seq);
bool cpu_backward_seq(const CellDesc& cell, const SeqBackward& seq);

// How many forward and backward recurrences the kernel has run (the tests
// count them, so that a kernel that declined cannot pass as tested).
int64_t cpu_persistent_runs();

// The units per block the kernel takes: 8 (an AVX2 CPU's), 16 (AVX-512's)
// or 0, the CPU's own (tests run both widths on one machine).
void set_cpu_unit_width(int units);

}  // namespace seqkernels
