// CUDA launchers of the persistent recurrence kernels
// (csrc/include/seqkernels/persistent_recurrence.h): the whole-sequence
// functions of the CUDA backend's SeqSteps, taken when
// SEQKERNELS_RECURRENCE=persistent and plan_persistent serves the layer.
//
// Launch budget (both kernels): 256 threads, one block per SM (the
// cooperative launch guarantees every block is resident; the kernels wait
// on each other), __launch_bounds__(256, 1), so up to 255 registers per
// thread; dynamic shared memory as the layout says, for instance at
// L1 (LSTM, B = 16, H = 768; 96 blocks of 8 units): forward 32 x 776 bf16
// of W_hh rows + 16 x 776 of h + 32 x 16 x k_split floats, 83328 bytes;
// backward 32 x 772 floats of W_hh rows + two 16 x 36 float tiles and the
// units' carries, 104576 bytes; both within the H100's 227 KB. The W_hh
// tile is allocated on the register path as well: the fragments are
// loaded from it once.
// Registers (ptxas -v, CUDA 13.0, with the register-resident fragment
// arrays of kForwardFrags = 16 and kBackwardFrags = 24, 64 and 96
// registers), sm_80 / sm_90a, bf16 and fp16 alike except where two are
// given (bf16, fp16); no stack frame and no spills in any of them:
//   forward  lstm 205, 180 / 205, 181   gru 184, 154 / 186, 156
//            rnn  168, 142 / 168, 144
//   backward lstm 202 / 203   gru 196 / 202   rnn 248 / 244.
// Without the arrays (W_hh read from shared memory at every step) they
// were 72 to 212.
#include <atomic>

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "seqkernels/persistent_launch.h"

namespace seqkernels {
namespace {

using persistent::kThreads;

template <typename Cell, typename Args>
__global__ void __launch_bounds__(kThreads, 1)
    persistent_kernel(const Args a) {
  persistent::run<Cell>(a);
}

// A cooperative launch on the current stream: it fails (instead of
// deadlocking) where the blocks cannot all be resident.
template <typename Args>
void launch_cooperative(void (*kernel)(const Args), const Args& args,
                        int blocks, int smem_bytes) {
  C10_CUDA_CHECK(cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  int per_sm = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, kernel, kThreads, smem_bytes));
  TORCH_CHECK(per_sm >= 1,
              "seqkernels: the persistent recurrence kernel does not fit an "
              "SM (", smem_bytes, " bytes of shared memory, ", kThreads,
              " threads); run with SEQKERNELS_RECURRENCE=per_step");
  void* params[] = {const_cast<Args*>(&args)};
  C10_CUDA_CHECK(cudaLaunchCooperativeKernel(
      reinterpret_cast<const void*>(kernel), dim3(blocks), dim3(kThreads),
      params, size_t(smem_bytes), c10::cuda::getCurrentCUDAStream()));
}

// The launch function that run_forward / run_backward call.
template <typename Cell, typename Args>
void launch(Cell, const Args& args, int blocks, int smem_bytes) {
  launch_cooperative<Args>(persistent_kernel<Cell, Args>, args, blocks,
                           smem_bytes);
}

std::atomic<bool> g_w_registers{true};

}  // namespace

void set_cuda_w_registers(bool allow) { g_w_registers = allow; }

DeviceLimits cuda_device_limits(int device) {
  int sms = 0, smem = 0, coop = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(
      &smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
  return DeviceLimits{sms, smem, coop != 0, g_w_registers};
}

bool cuda_persistent_forward(const CellDesc& cell, const SeqForward& seq) {
  const c10::cuda::CUDAGuard guard(seq.y.device());
  return persistent::run_forward(cell, seq,
                                 cuda_device_limits(seq.y.get_device()),
                                 [](auto... a) { launch(a...); });
}

bool cuda_persistent_backward(const CellDesc& cell, const SeqBackward& seq) {
  const c10::cuda::CUDAGuard guard(seq.grad_y.device());
  return persistent::run_backward(cell, seq,
                                  cuda_device_limits(seq.grad_y.get_device()),
                                  [](auto... a) { launch(a...); });
}

}  // namespace seqkernels
