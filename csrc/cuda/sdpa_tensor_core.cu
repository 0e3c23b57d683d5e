// The launcher of the tensor-core sdpa forward (the kernel, its layout and
// the rule that selects it: seqkernels/sdpa_tensor_core.h), called by the
// CUDA sdpa (csrc/cuda/sdpa.cu) when the rule picks it.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "seqkernels/attention_cuda.cuh"
#include "seqkernels/sdpa_tensor_core.h"

namespace seqkernels {
namespace sdpa_tc {
namespace {

template <typename scalar_t, int DP, int DVP>
__global__ void __launch_bounds__(kThreads)
    sdpa_tc_forward_kernel(const attn::FlashParams<float> p,
                           const scalar_t* __restrict__ q,
                           const scalar_t* __restrict__ k,
                           const scalar_t* __restrict__ v,
                           const attn::MaskView mask,
                           const int64_t* __restrict__ rng,
                           scalar_t* __restrict__ out,
                           float* __restrict__ lse) {
  forward<scalar_t, DP, DVP>(p, q, k, v, mask, rng, out, lse);
}

}  // namespace

// q, k, v contiguous, checked by the CUDA sdpa; out, lse allocated;
// rng_c in device memory, or undefined without dropout.
void launch_forward(const at::Tensor& q, const at::Tensor& k,
                    const at::Tensor& v, const attn::MaskView& mask,
                    const at::Tensor& rng_c, const AttentionDims& d,
                    double dropout_p, bool is_causal, double scale,
                    at::Tensor& out, at::Tensor& lse) {
  const attn::FlashParams<float> p =
      make_params(d, dropout_p, is_causal, scale);
  const unsigned int blocks =
      attn::grid_blocks(p.n_blocks * d.B * d.Hq, "sdpa");
  dispatch(q.scalar_type(), d.D, d.Dv, [&](auto type, auto dp, auto dvp) {
    using scalar_t = decltype(type);
    constexpr int DP = decltype(dp)::value, DVP = decltype(dvp)::value;
    // Launch budget: kThreads = 128 threads; Smem<DP, DVP>::kBytes of
    // dynamic shared memory (17,408 bytes at 64/64 to 34,816 at 128/128:
    // under the 48 KB default, no opt-in); registers (ptxas -v, no spills,
    // no stack): sm_90a 166 to 255, sm_80 168 to 255 (64/64 the fewest),
    // so a block takes at most 32,640 of an SM's 65,536 (2 blocks, 8 warps
    // per SM).
    sdpa_tc_forward_kernel<scalar_t, DP, DVP>
        <<<blocks, kThreads, Smem<DP, DVP>::kBytes,
           c10::cuda::getCurrentCUDAStream()>>>(
            p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
            v.data_ptr<scalar_t>(), mask, attn::ptr_or_null<int64_t>(rng_c),
            out.data_ptr<scalar_t>(), lse.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace sdpa_tc
}  // namespace seqkernels
