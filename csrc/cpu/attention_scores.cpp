// CPU kernels of the attention probabilities (the op attention_scores):
// P = softmax(q k^T * scale + mask). Semantics:
// seqkernels/reference/attention_scores.py.
//
// Forward: one work item per (b, h, block of kBlockQ query rows). Where the
// item's rows of P fit in L2 (kInPlaceBytes), its score tiles are written
// into P and each row's softmax runs there in place, while the row is in
// cache: one product per tile. Otherwise pass 1 walks the keys in blocks
// and keeps the running max and sum of each row (its log-sum-exp), and
// pass 2 recomputes the score tiles and writes each element of P once.
//
// Backward: delta = rowsum(dP * P) and dS = P * (dP - delta); pass 1 per
// (b, h, query block) gives dQ = scale * dS K, pass 2 per (b, kv head, key
// block) gives dK = scale * sum dS^T Q over the group's query heads and all
// query rows in a fixed order (deterministic, independent of the threads).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "seqkernels/attention_checks.h"
#include "seqkernels/attention_cpu.h"

namespace seqkernels {
namespace {

using cpu::kBlockK;
using cpu::kBlockQ;

// A work item's rows of P, at most, for the one-pass forward: a quarter of
// a 1 MB L2 (512 KB on some CPUs CI runs on), beside the item's K tiles.
constexpr int64_t kInPlaceBytes = 256 * 1024;

template <typename T>
void scores_forward_kernel(const AttentionDims& d, const T* q, const T* k,
                           const cpu::MaskView<T>& mask, bool is_causal,
                           T scale, T* p) {
  const std::vector<T> kt = cpu::transposed_blocks(k, d.B * d.Hk, d.Tk, d.D);
  const int64_t items = d.B * d.Hq * cpu::query_blocks(d.Tq);
  const bool in_place = kBlockQ * d.Tk * int64_t(sizeof(T)) <= kInPlaceBytes;
  at::parallel_for(0, items, 1, [&](int64_t w0, int64_t w1) {
    std::vector<T> s(kBlockQ * kBlockK);
    std::vector<T> m(kBlockQ), l(kBlockQ);
    for (int64_t w = w0; w < w1; ++w) {
      const auto [bh, b, h, i0, nq, kvh] = cpu::query_block(w, d);
      const T* qr = q + (bh * d.Tq + i0) * d.D;
      T* pr = p + (bh * d.Tq + i0) * d.Tk;
      const int64_t key_end = cpu::causal_keys(is_causal, i0 + nq - 1, d.Tk);
      // The tile of scores of keys j0 .. j0+nk-1, scaled and masked.
      auto scores = [&](int64_t j0, int64_t nk) {
        const T* ktb = kt.data() + cpu::block_offset(
            kvh * cpu::key_blocks(d.Tk) + j0 / kBlockK, d.D);
        cpu::block_gemm(nq, nk, d.D, qr, d.D, 1, ktb, kBlockK, s.data(),
                        kBlockK, false);
        for (int64_t r = 0; r < nq; ++r) {
          cpu::scale_and_mask(s.data() + r * kBlockK, nk, scale, mask,
                              mask.row(b, h, i0 + r), i0 + r, j0, is_causal);
        }
      };
      if (in_place) {
        for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
          const int64_t nk = std::min(kBlockK, key_end - j0);
          const T* ktb = kt.data() + cpu::block_offset(
              kvh * cpu::key_blocks(d.Tk) + j0 / kBlockK, d.D);
          cpu::block_gemm(nq, nk, d.D, qr, d.D, 1, ktb, kBlockK, pr + j0,
                          d.Tk, false);
          for (int64_t r = 0; r < nq; ++r) {
            cpu::scale_and_mask(pr + r * d.Tk + j0, nk, scale, mask,
                                mask.row(b, h, i0 + r), i0 + r, j0,
                                is_causal);
          }
        }
        for (int64_t r = 0; r < nq; ++r) {
          cpu::softmax_in_place(pr + r * d.Tk, key_end);
          std::fill(pr + r * d.Tk + key_end, pr + (r + 1) * d.Tk, T(0));
        }
        continue;
      }
      // Pass 1: the maximum m and the sum l of exp(s - m) of each row.
      std::fill(m.begin(), m.end(), cpu::neg_inf<T>());
      std::fill(l.begin(), l.end(), T(0));
      for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
        const int64_t nk = std::min(kBlockK, key_end - j0);
        scores(j0, nk);
        for (int64_t r = 0; r < nq; ++r) {
          cpu::online_softmax_update(s.data() + r * kBlockK, nk, m[r], l[r]);
        }
      }
      // Pass 2: P = exp(s - m) / l, each element written once (see
      // cpu::probs_from_max for why not exp(s - lse)).
      for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
        const int64_t nk = std::min(kBlockK, key_end - j0);
        scores(j0, nk);
        for (int64_t r = 0; r < nq; ++r) {
          cpu::probs_from_max(pr + r * d.Tk + j0, s.data() + r * kBlockK, nk,
                              m[r], l[r]);
        }
      }
      for (int64_t r = 0; r < nq; ++r) {  // keys past the causal limit
        std::fill(pr + r * d.Tk + key_end, pr + (r + 1) * d.Tk, T(0));
      }
    }
  });
}

// dS = P * (dP - delta) of rows i0 .. i0+nq-1 of head bh, keys j0.. (nk).
template <typename T>
SK_CPU_KERNEL void ds_tile(const AttentionDims& d, const T* gp, const T* p,
                           const T* delta, int64_t bh, int64_t i0, int64_t nq,
                           int64_t j0, int64_t nk, T* ds) {
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t row = (bh * d.Tq + i0 + r) * d.Tk + j0;
    const T dr = delta[bh * d.Tq + i0 + r];
    T* o = ds + r * kBlockK;
    for (int64_t jj = 0; jj < nk; ++jj) {
      o[jj] = p[row + jj] * (gp[row + jj] - dr);
    }
  }
}

template <typename T>
void scores_backward_kernel(const AttentionDims& d, const T* gp, const T* q,
                            const T* k, const T* p, T scale, T* dq, T* dk) {
  const int64_t group = d.Hq / d.Hk;
  std::vector<T> delta(d.B * d.Hq * d.Tq);

  // Pass 1: delta and dQ, one item per (b, h, query block).
  const int64_t items = d.B * d.Hq * cpu::query_blocks(d.Tq);
  at::parallel_for(0, items, 1, [&](int64_t w0, int64_t w1) {
    std::vector<T> ds(kBlockQ * kBlockK), acc(kBlockQ * d.D);
    for (int64_t w = w0; w < w1; ++w) {
      const auto [bh, b, h, i0, nq, kvh] = cpu::query_block(w, d);
      const T* kh = k + kvh * d.Tk * d.D;
      for (int64_t r = 0; r < nq; ++r) {
        const int64_t row = (bh * d.Tq + i0 + r) * d.Tk;
        T sum = 0;
        for (int64_t j = 0; j < d.Tk; ++j) sum += gp[row + j] * p[row + j];
        delta[bh * d.Tq + i0 + r] = sum;
      }
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t j0 = 0; j0 < d.Tk; j0 += kBlockK) {
        const int64_t nk = std::min(kBlockK, d.Tk - j0);
        ds_tile(d, gp, p, delta.data(), bh, i0, nq, j0, nk, ds.data());
        cpu::block_gemm(nq, d.D, nk, ds.data(), kBlockK, 1, kh + j0 * d.D,
                        d.D, acc.data(), d.D, true);
      }
      T* dqr = dq + (bh * d.Tq + i0) * d.D;
      for (int64_t x = 0; x < nq * d.D; ++x) dqr[x] = acc[x] * scale;
    }
  });

  // Pass 2: dK, one item per (b, kv head, key block).
  const int64_t n_kblocks = (d.Tk + kBlockK - 1) / kBlockK;
  at::parallel_for(0, d.B * d.Hk * n_kblocks, 1, [&](int64_t w0, int64_t w1) {
    std::vector<T> ds(kBlockQ * kBlockK), acc(kBlockK * d.D);
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t kvh = w / n_kblocks, b = kvh / d.Hk;
      const int64_t j0 = (w % n_kblocks) * kBlockK;
      const int64_t nk = std::min(kBlockK, d.Tk - j0);
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t t = 0; t < group; ++t) {
        const int64_t bh = b * d.Hq + (kvh % d.Hk) * group + t;
        for (int64_t i0 = 0; i0 < d.Tq; i0 += kBlockQ) {
          const int64_t nq = std::min(kBlockQ, d.Tq - i0);
          ds_tile(d, gp, p, delta.data(), bh, i0, nq, j0, nk, ds.data());
          cpu::block_gemm(nk, d.D, nq, ds.data(), 1, kBlockK,
                          q + (bh * d.Tq + i0) * d.D, d.D, acc.data(), d.D,
                          true);
        }
      }
      T* dkr = dk + (kvh * d.Tk + j0) * d.D;
      for (int64_t x = 0; x < nk * d.D; ++x) dkr[x] = acc[x] * scale;
    }
  });
}

at::Tensor attention_scores_cpu(const at::Tensor& q_in, const at::Tensor& k_in,
                                const c10::optional<at::Tensor>& attn_mask,
                                bool is_causal, double scale) {
  check_cpu_dtype(q_in, "q");
  const AttentionDims d = check_attention_scores(q_in, k_in, attn_mask);
  // In the accumulation dtype (attention_cpu.h); p is rounded to q's dtype
  // at the end.
  const at::Tensor q = cpu::to_acc(q_in), k = cpu::to_acc(k_in);
  const auto mask = cpu::mask_to_acc(attn_mask);
  at::Tensor p = at::empty({d.B, d.Hq, d.Tq, d.Tk}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attention_scores_cpu", [&] {
    scores_forward_kernel(d, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                          cpu::MaskView<scalar_t>::make(mask), is_causal,
                          static_cast<scalar_t>(scale),
                          p.data_ptr<scalar_t>());
  });
  return p.to(q_in.scalar_type());
}

std::tuple<at::Tensor, at::Tensor> attention_scores_backward_cpu(
    const at::Tensor& grad_p_in, const at::Tensor& q_in,
    const at::Tensor& k_in, const at::Tensor& p_in, double scale) {
  check_cpu_dtype(q_in, "q");
  const AttentionDims d =
      check_attention_scores_backward(grad_p_in, q_in, k_in, p_in);
  // In the accumulation dtype (attention_cpu.h); the gradients are rounded
  // to q's dtype at the end.
  const at::Tensor q = cpu::to_acc(q_in), k = cpu::to_acc(k_in);
  const at::Tensor gp = cpu::to_acc(grad_p_in), p = cpu::to_acc(p_in);
  at::Tensor grad_q = at::empty(q.sizes(), q.options());
  at::Tensor grad_k = at::empty(k.sizes(), k.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "attention_scores_backward_cpu",
                             [&] {
    scores_backward_kernel(d, gp.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(),
                           k.data_ptr<scalar_t>(), p.data_ptr<scalar_t>(),
                           static_cast<scalar_t>(scale),
                           grad_q.data_ptr<scalar_t>(),
                           grad_k.data_ptr<scalar_t>());
  });
  const at::ScalarType st = q_in.scalar_type();
  return {grad_q.to(st), grad_k.to(st)};
}

}  // namespace
}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CPU, m) {
  m.impl("attention_scores", &seqkernels::attention_scores_cpu);
  m.impl("attention_scores_backward",
         &seqkernels::attention_scores_backward_cpu);
}
