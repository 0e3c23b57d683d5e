// The launchers of the tensor-core sdpa forward and backward (the kernels,
// their layouts and the rule that selects them: seqkernels/
// sdpa_tensor_core.h, sdpa_tensor_core_backward.h), called by the CUDA sdpa
// and sdpa_backward (csrc/cuda/sdpa.cu) when the rule picks them.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "seqkernels/attention_cuda.cuh"
#include "seqkernels/sdpa_tensor_core.h"
#include "seqkernels/sdpa_tensor_core_backward.h"

namespace seqkernels {
namespace sdpa_tc {
namespace {

// 2 blocks per SM at the least: without it ptxas aimed the 64/64 widths
// at 3 blocks (168 registers) and spilled once the double buffer's copies
// joined the key loop.
template <typename scalar_t, int DP, int DVP>
__global__ void __launch_bounds__(kThreads, 2)
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

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    sdpa_tc_row_dot_kernel(int64_t rows, int64_t n,
                           const scalar_t* __restrict__ a,
                           const scalar_t* __restrict__ b,
                           float* __restrict__ out) {
  row_dot<scalar_t>(rows, n, gridDim.x, a, b, out);
}

template <typename scalar_t, int DP, int DVP>
__global__ void __launch_bounds__(kThreads)
    sdpa_tc_dq_kernel(const attn::FlashParams<float> p,
                      const scalar_t* __restrict__ q,
                      const scalar_t* __restrict__ k,
                      const scalar_t* __restrict__ v,
                      const scalar_t* __restrict__ dout,
                      const float* __restrict__ lse,
                      const float* __restrict__ delta,
                      const attn::MaskView mask,
                      const int64_t* __restrict__ rng,
                      scalar_t* __restrict__ dq) {
  backward_dq<scalar_t, DP, DVP>(p, q, k, v, dout, lse, delta, mask, rng, dq);
}

template <typename scalar_t, int DP, int DVP>
__global__ void __launch_bounds__(kThreads)
    sdpa_tc_dkdv_kernel(const attn::FlashParams<float> p,
                        const scalar_t* __restrict__ q,
                        const scalar_t* __restrict__ k,
                        const scalar_t* __restrict__ v,
                        const scalar_t* __restrict__ dout,
                        const float* __restrict__ lse,
                        const float* __restrict__ delta,
                        const attn::MaskView mask,
                        const int64_t* __restrict__ rng,
                        scalar_t* __restrict__ dk, scalar_t* __restrict__ dv) {
  backward_dkdv<scalar_t, DP, DVP>(p, q, k, v, dout, lse, delta, mask, rng, dk,
                                   dv);
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
    // dynamic shared memory, two stages of the K and V tiles (36,864 bytes
    // at 64/64, 53,248 at 64/128 and 128/64, 69,632 at 128/128): above the
    // 48 KB default, the launch opts in to kBytes. Per block sm_80 allows
    // 163 KB, sm_86/sm_89 99 KB, sm_90 227 KB; per SM 164 KB, 100 KB and
    // 228 KB, so 2 blocks fit an SM on sm_80 and sm_90 at every width, 1 at
    // 53,248 and above on sm_86/sm_89. Registers (ptxas -v, no spills, no
    // stack): sm_90a 238 to 255, sm_80 230 to 255 (64/64 the fewest), so a
    // block takes at most 32,640 of an SM's 65,536 (2 blocks, 8 warps per
    // SM, the launch bounds' minimum).
    constexpr int kSmemBytes = Smem<DP, DVP>::kBytes;
    static_assert(kSmemBytes <= 99 * 1024,
                  "above the smallest per-block limit of sm_80 and later "
                  "(sm_86, sm_89)");
    if constexpr (kSmemBytes > 48 * 1024) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(
          sdpa_tc_forward_kernel<scalar_t, DP, DVP>,
          cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes));
    }
    sdpa_tc_forward_kernel<scalar_t, DP, DVP>
        <<<blocks, kThreads, kSmemBytes,
           c10::cuda::getCurrentCUDAStream()>>>(
            p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
            v.data_ptr<scalar_t>(), mask, attn::ptr_or_null<int64_t>(rng_c),
            out.data_ptr<scalar_t>(), lse.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

// dout, q, k, v, out contiguous, checked by the CUDA sdpa_backward; lse
// contiguous float; delta, grad_q, grad_k, grad_v allocated; rng_c in
// device memory, or undefined without dropout.
void launch_backward(const at::Tensor& dout, const at::Tensor& q,
                     const at::Tensor& k, const at::Tensor& v,
                     const at::Tensor& out, const at::Tensor& lse,
                     const attn::MaskView& mask, const at::Tensor& rng_c,
                     const AttentionDims& d, double dropout_p,
                     bool is_causal, double scale, at::Tensor& delta,
                     at::Tensor& grad_q, at::Tensor& grad_k,
                     at::Tensor& grad_v) {
  const BackwardPlan plan =
      make_backward_plan(d, dropout_p, is_causal, scale);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t* rng_p = attn::ptr_or_null<int64_t>(rng_c);
  dispatch(q.scalar_type(), d.D, d.Dv, [&](auto type, auto dp, auto dvp) {
    using scalar_t = decltype(type);
    constexpr int DP = decltype(dp)::value, DVP = decltype(dvp)::value;
    const scalar_t* qp = q.data_ptr<scalar_t>();
    const scalar_t* kp = k.data_ptr<scalar_t>();
    const scalar_t* vp = v.data_ptr<scalar_t>();
    const scalar_t* dop = dout.data_ptr<scalar_t>();
    const float* lsep = lse.data_ptr<float>();
    float* deltap = delta.data_ptr<float>();
    // Launch budget: kThreads = 128 threads each. row_dot: no shared
    // memory, 30 (sm_80) / 31 (sm_90a) registers. dQ: DqSmem<DP, DVP>::
    // kBytes of dynamic shared memory, two stages of the K and V tiles
    // with Q and dO staged from the second on (18,432 bytes at 64/64,
    // 30,720 at 64/128 and 128/64, 34,816 at 128/128), registers sm_90a
    // 196 to 248, sm_80 168 to 255. dK/dV:
    // DkvSmem<DP, DVP>::kBytes (23,168 at 64/64 to 43,648 at 128/128),
    // registers sm_90a 136 to 252, sm_80 197 to 248. All under the 48 KB
    // that needs no opt-in; ptxas -v: no spills, no stack; at 252
    // registers a block holds half of an SM's 65,536 (2 blocks per SM).
    static_assert(DqSmem<DP, DVP>::kBytes <= 48 * 1024 &&
                      DkvSmem<DP, DVP>::kBytes <= 48 * 1024,
                  "dynamic shared memory above 48 KB needs an opt-in");
    if (plan.rows > 0) {
      sdpa_tc_row_dot_kernel<scalar_t>
          <<<attn::warp_per_row_blocks(plan.rows, "sdpa_backward"), kThreads,
             0, stream>>>(plan.rows, d.Dv, dop, out.data_ptr<scalar_t>(),
                          deltap);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      sdpa_tc_dq_kernel<scalar_t, DP, DVP>
          <<<attn::grid_blocks(plan.dq_blocks, "sdpa_backward"), kThreads,
             DqSmem<DP, DVP>::kBytes, stream>>>(plan.dq, qp, kp, vp, dop, lsep, deltap,
                                 mask, rng_p, grad_q.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    // Runs even without query rows: it writes the zero dK, dV.
    if (plan.dkdv_blocks > 0) {
      sdpa_tc_dkdv_kernel<scalar_t, DP, DVP>
          <<<attn::grid_blocks(plan.dkdv_blocks, "sdpa_backward"), kThreads,
             DkvSmem<DP, DVP>::kBytes, stream>>>(plan.dkdv, qp, kp, vp, dop, lsep, deltap,
                                  mask, rng_p, grad_k.data_ptr<scalar_t>(),
                                  grad_v.data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

}  // namespace sdpa_tc
}  // namespace seqkernels
