// The tensor-core forward of the attention probabilities
// (attention_scores_tensor_core.h), compiled for the host and run by the
// host emulation (host_emulation.h, warp_mma.h): tests only.
#include <limits>

#include "seqkernels/attention_scores_tensor_core.h"

namespace seqkernels {

at::Tensor emulated_attention_scores(
    const at::Tensor& q_in, const at::Tensor& k_in,
    const c10::optional<at::Tensor>& attn_mask, bool is_causal,
    double scale) {
  TORCH_CHECK(q_in.device().is_cpu(), "seqkernels: the emulated "
              "attention_scores takes CPU tensors; q is on ", q_in.device());
  const AttentionDims d = check_attention_scores(q_in, k_in, attn_mask);
  TORCH_CHECK(sdpa_tc::serves(q_in.scalar_type(), d.D, 1),
              "seqkernels: the tensor-core attention_scores serves float16 "
              "and bfloat16 q with head dim D <= ", sdpa_tc::kMaxDim,
              "; got ", q_in.scalar_type(), ", D = ", d.D);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous();
  // NaN first: an element the kernel does not write fails the tests.
  at::Tensor probs =
      at::full({d.B, d.Hq, d.Tq, d.Tk},
               std::numeric_limits<double>::quiet_NaN(), q.options());
  if (probs.numel() == 0) return probs;
  const attn::FlashParams<float> p =
      sdpa_tc::make_params(d, 0.0, is_causal, scale);
  const attn::MaskView mask = attn::make_mask_view(attn_mask);
  const int blocks = static_cast<int>(p.n_blocks * d.B * d.Hq);
  sdpa_tc::dispatch_probs(q.scalar_type(), d.D, [&](auto type, auto dp) {
    using scalar_t = decltype(type);
    constexpr int DP = decltype(dp)::value;
    emu::launch(blocks, sdpa_tc::kThreads, sdpa_tc::ProbsSmem<DP>::kBytes,
                [&] {
                  sdpa_tc::probs_forward<scalar_t, DP>(
                      p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                      mask, probs.data_ptr<scalar_t>());
                });
  });
  return probs;
}

}  // namespace seqkernels
