// The launcher of the tensor-core forward of the attention probabilities
// (the kernel, its layout: seqkernels/attention_scores_tensor_core.h; the
// rule that selects it: sdpa_tensor_core.h), called by the CUDA
// attention_scores (csrc/cuda/attention_scores.cu) when the rule picks it.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "seqkernels/attention_cuda.cuh"
#include "seqkernels/attention_scores_tensor_core.h"

namespace seqkernels {
namespace sdpa_tc {
namespace {

template <typename scalar_t, int DP>
__global__ void __launch_bounds__(kThreads)
    attention_scores_tc_forward_kernel(const attn::FlashParams<float> p,
                                       const scalar_t* __restrict__ q,
                                       const scalar_t* __restrict__ k,
                                       const attn::MaskView mask,
                                       scalar_t* __restrict__ probs) {
  probs_forward<scalar_t, DP>(p, q, k, mask, probs);
}

}  // namespace

// q, k contiguous, checked by the CUDA attention_scores; probs allocated
// (at::empty: 16-byte aligned, so rows take 16-byte stores when Tk % 8 ==
// 0).
void launch_probs_forward(const at::Tensor& q, const at::Tensor& k,
                          const attn::MaskView& mask, const AttentionDims& d,
                          bool is_causal, double scale, at::Tensor& probs) {
  const attn::FlashParams<float> p = make_params(d, 0.0, is_causal, scale);
  const unsigned int blocks =
      attn::grid_blocks(p.n_blocks * d.B * d.Hq, "attention_scores");
  dispatch_probs(q.scalar_type(), d.D, [&](auto type, auto dp) {
    using scalar_t = decltype(type);
    constexpr int DP = decltype(dp)::value;
    // Launch budget: kThreads = 128 threads; ProbsSmem<DP>::kBytes of
    // dynamic shared memory (18,432 bytes at DP = 64, 26,624 at 128: under
    // the 48 KB default, no opt-in); registers (ptxas -v, no spills, no
    // stack): sm_90a 232 (DP = 64) and 251 (DP = 128), sm_80 229 and 250,
    // so a block takes at most 32,128 of an SM's 65,536 (2 blocks, 8 warps
    // per SM). __launch_bounds__(kThreads, 3) spills (112 to 184 bytes).
    attention_scores_tc_forward_kernel<scalar_t, DP>
        <<<blocks, kThreads, ProbsSmem<DP>::kBytes,
           c10::cuda::getCurrentCUDAStream()>>>(
            p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), mask,
            probs.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace sdpa_tc
}  // namespace seqkernels
