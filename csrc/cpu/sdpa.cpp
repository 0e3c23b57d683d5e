// CPU kernels of scaled dot-product attention (the op sdpa), flash style.
// Semantics: seqkernels/reference/sdpa.py.
//
// Forward: one work item per (b, h, block of kBlockQ query rows); it walks
// the keys in blocks of kBlockK with an online softmax, so at most a
// kBlockQ x kBlockK tile of scores exists at a time, and saves the
// log-sum-exp per row.
//
// Backward, in two passes that each recompute P = exp(S - lse) tile by tile:
//   1. per (b, h, query block): delta = rowsum(dO * O), dP = dO V^T,
//      dS = P * (dropout(dP) - delta), dQ = scale * dS K;
//   2. per (b, kv head, key block): dV = sum P_dropped^T dO and
//      dK = scale * sum dS^T Q over the query heads of the group and all
//      query rows, in a fixed order.
// Each gradient element is written by one work item only, and every sum runs
// in an order fixed by the shapes: the results are bitwise reproducible and
// independent of the number of threads.
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

template <typename T>
struct SdpaInputs {
  AttentionDims d;
  const T* q;  // [B, Hq, Tq, D]
  const T* k;  // [B, Hk, Tk, D]
  const T* v;  // [B, Hk, Tk, Dv]
  cpu::MaskView<T> mask;
  cpu::DropoutView<T> drop;
  bool is_causal;
  T scale;
};

template <typename T>
void sdpa_forward_kernel(const SdpaInputs<T>& in, T* out, T* lse) {
  const AttentionDims& d = in.d;
  const std::vector<T> kt = cpu::transposed_blocks(in.k, d.B * d.Hk, d.Tk, d.D);
  const int64_t items = d.B * d.Hq * cpu::query_blocks(d.Tq);
  at::parallel_for(0, items, 1, [&](int64_t w0, int64_t w1) {
    std::vector<T> s(kBlockQ * kBlockK);
    std::vector<T> acc(kBlockQ * d.Dv), m(kBlockQ), l(kBlockQ);
    for (int64_t w = w0; w < w1; ++w) {
      const auto [bh, b, h, i0, nq, kvh] = cpu::query_block(w, d);
      const T* qr = in.q + (bh * d.Tq + i0) * d.D;
      const T* vh = in.v + kvh * d.Tk * d.Dv;
      std::fill(acc.begin(), acc.end(), T(0));
      std::fill(m.begin(), m.end(), cpu::neg_inf<T>());
      std::fill(l.begin(), l.end(), T(0));
      const int64_t key_end = cpu::causal_keys(in.is_causal, i0 + nq - 1, d.Tk);
      for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
        const int64_t nk = std::min(kBlockK, key_end - j0);
        const T* ktb = kt.data() + cpu::block_offset(
            kvh * cpu::key_blocks(d.Tk) + j0 / kBlockK, d.D);
        cpu::block_gemm(nq, nk, d.D, qr, d.D, 1, ktb, kBlockK, s.data(),
                        kBlockK, false);
        for (int64_t r = 0; r < nq; ++r) {
          const int64_t i = i0 + r;
          T* sr = s.data() + r * kBlockK;
          cpu::scale_and_mask(sr, nk, in.scale, in.mask, in.mask.row(b, h, i),
                              i, j0, in.is_causal);
          const T alpha = cpu::online_softmax_update(sr, nk, m[r], l[r]);
          if (alpha != T(1)) {
            T* ar = acc.data() + r * d.Dv;
            for (int64_t c = 0; c < d.Dv; ++c) ar[c] *= alpha;
          }
          if (in.drop.on) {
            const int64_t base = (bh * d.Tq + i) * d.Tk + j0;
            for (int64_t jj = 0; jj < nk; ++jj) {
              sr[jj] = in.drop.apply(sr[jj], base + jj);
            }
          }
        }
        cpu::block_gemm(nq, d.Dv, nk, s.data(), kBlockK, 1, vh + j0 * d.Dv,
                        d.Dv, acc.data(), d.Dv, true);
      }
      for (int64_t r = 0; r < nq; ++r) {
        lse[bh * d.Tq + i0 + r] = cpu::row_lse(m[r], l[r]);
        T* o = out + (bh * d.Tq + i0 + r) * d.Dv;
        const T* ar = acc.data() + r * d.Dv;
        for (int64_t c = 0; c < d.Dv; ++c) {
          o[c] = l[r] > T(0) ? ar[c] / l[r] : T(0);
        }
      }
    }
  });
}

// Given the raw tile products s = Q K^T and dp = dO V^T of query rows
// i0 .. i0+nq-1 (query head h) and keys j0 .. j0+nk-1: dp becomes
// dS = P * (dropout(dP) - delta) and, with keep_p, s becomes
// dropout(P), the probabilities that multiplied V in the forward (without
// keep_p, s is left as scratch).
template <typename T>
SK_CPU_KERNEL void tile_backward(const SdpaInputs<T>& in, int64_t b, int64_t h, int64_t i0,
                   int64_t nq, int64_t j0, int64_t nk, const T* lse,
                   const T* delta, T* s, T* dp, bool keep_p) {
  const AttentionDims& d = in.d;
  const int64_t bh = b * d.Hq + h;
  for (int64_t r = 0; r < nq; ++r) {
    const int64_t i = i0 + r;
    T* sr = s + r * kBlockK;
    T* dr = dp + r * kBlockK;
    const T li = lse[bh * d.Tq + i];
    if (li == cpu::neg_inf<T>()) {  // no allowed key: P = 0
      std::fill(sr, sr + nk, T(0));
      std::fill(dr, dr + nk, T(0));
      continue;
    }
    cpu::scale_and_mask(sr, nk, in.scale, in.mask, in.mask.row(b, h, i), i,
                        j0, in.is_causal);
    const T di = delta[bh * d.Tq + i];
    const int64_t base = (bh * d.Tq + i) * d.Tk + j0;
    if (in.drop.on) {
      for (int64_t jj = 0; jj < nk; ++jj) {
        const T p = cpu_math::exp(sr[jj] - li);
        dr[jj] = p * (in.drop.apply(dr[jj], base + jj) - di);
        if (keep_p) sr[jj] = in.drop.apply(p, base + jj);
      }
    } else {
      // Without dropout, branch-free loops that the compiler vectorizes.
      for (int64_t jj = 0; jj < nk; ++jj) sr[jj] = cpu_math::exp(sr[jj] - li);
      for (int64_t jj = 0; jj < nk; ++jj) dr[jj] = sr[jj] * (dr[jj] - di);
    }
  }
}

template <typename T>
void sdpa_backward_kernel(const SdpaInputs<T>& in, const T* dout,
                          const T* out, const T* lse, T* dq, T* dk, T* dv) {
  const AttentionDims& d = in.d;
  const int64_t group = d.Hq / d.Hk;
  std::vector<T> delta(d.B * d.Hq * d.Tq);

  // Pass 1: delta and dQ, one item per (b, h, query block).
  const std::vector<T> kt = cpu::transposed_blocks(in.k, d.B * d.Hk, d.Tk, d.D);
  const std::vector<T> vt =
      cpu::transposed_blocks(in.v, d.B * d.Hk, d.Tk, d.Dv);
  const int64_t items = d.B * d.Hq * cpu::query_blocks(d.Tq);
  at::parallel_for(0, items, 1, [&](int64_t w0, int64_t w1) {
    std::vector<T> s(kBlockQ * kBlockK), dp(kBlockQ * kBlockK);
    std::vector<T> acc(kBlockQ * d.D);
    for (int64_t w = w0; w < w1; ++w) {
      const auto [bh, b, h, i0, nq, kvh] = cpu::query_block(w, d);
      const T* qr = in.q + (bh * d.Tq + i0) * d.D;
      const T* dor = dout + (bh * d.Tq + i0) * d.Dv;
      const T* kh = in.k + kvh * d.Tk * d.D;
      for (int64_t r = 0; r < nq; ++r) {
        const T* o = out + (bh * d.Tq + i0 + r) * d.Dv;
        const T* g = dor + r * d.Dv;
        T sum = 0;
        for (int64_t c = 0; c < d.Dv; ++c) sum += g[c] * o[c];
        delta[bh * d.Tq + i0 + r] = sum;
      }
      std::fill(acc.begin(), acc.end(), T(0));
      const int64_t key_end = cpu::causal_keys(in.is_causal, i0 + nq - 1, d.Tk);
      for (int64_t j0 = 0; j0 < key_end; j0 += kBlockK) {
        const int64_t nk = std::min(kBlockK, key_end - j0);
        const int64_t block = kvh * cpu::key_blocks(d.Tk) + j0 / kBlockK;
        cpu::block_gemm(nq, nk, d.D, qr, d.D, 1,
                        kt.data() + cpu::block_offset(block, d.D), kBlockK,
                        s.data(), kBlockK, false);
        cpu::block_gemm(nq, nk, d.Dv, dor, d.Dv, 1,
                        vt.data() + cpu::block_offset(block, d.Dv), kBlockK,
                        dp.data(), kBlockK, false);
        tile_backward(in, b, h, i0, nq, j0, nk, lse, delta.data(), s.data(),
                      dp.data(), false);
        cpu::block_gemm(nq, d.D, nk, dp.data(), kBlockK, 1, kh + j0 * d.D,
                        d.D, acc.data(), d.D, true);
      }
      T* dqr = dq + (bh * d.Tq + i0) * d.D;
      for (int64_t x = 0; x < nq * d.D; ++x) dqr[x] = acc[x] * in.scale;
    }
  });

  // Pass 2: dK and dV, one item per (b, kv head, key block), summing over
  // the group's query heads and every query row in a fixed order.
  const int64_t n_kblocks = (d.Tk + kBlockK - 1) / kBlockK;
  at::parallel_for(0, d.B * d.Hk * n_kblocks, 1, [&](int64_t w0, int64_t w1) {
    std::vector<T> s(kBlockQ * kBlockK), dp(kBlockQ * kBlockK);
    std::vector<T> dk_acc(kBlockK * d.D), dv_acc(kBlockK * d.Dv);
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t kvh = w / n_kblocks, b = kvh / d.Hk;
      const int64_t j0 = (w % n_kblocks) * kBlockK;
      const int64_t nk = std::min(kBlockK, d.Tk - j0);
      const T* ktb = kt.data() + cpu::block_offset(w, d.D);
      const T* vtb = vt.data() + cpu::block_offset(w, d.Dv);
      std::fill(dk_acc.begin(), dk_acc.end(), T(0));
      std::fill(dv_acc.begin(), dv_acc.end(), T(0));
      // Rows before j0 see none of these keys under the causal rule.
      const int64_t q_begin = in.is_causal ? std::min(j0, d.Tq) : 0;
      for (int64_t t = 0; t < group; ++t) {
        const int64_t h = (kvh % d.Hk) * group + t;
        const int64_t bh = b * d.Hq + h;
        for (int64_t i0 = q_begin; i0 < d.Tq; i0 += kBlockQ) {
          const int64_t nq = std::min(kBlockQ, d.Tq - i0);
          const T* qr = in.q + (bh * d.Tq + i0) * d.D;
          const T* dor = dout + (bh * d.Tq + i0) * d.Dv;
          cpu::block_gemm(nq, nk, d.D, qr, d.D, 1, ktb, kBlockK, s.data(),
                          kBlockK, false);
          cpu::block_gemm(nq, nk, d.Dv, dor, d.Dv, 1, vtb, kBlockK,
                          dp.data(), kBlockK, false);
          tile_backward(in, b, h, i0, nq, j0, nk, lse, delta.data(), s.data(),
                        dp.data(), true);
          // dV += P_dropped^T dO, dK += dS^T Q (the tiles read transposed).
          cpu::block_gemm(nk, d.Dv, nq, s.data(), 1, kBlockK, dor, d.Dv,
                          dv_acc.data(), d.Dv, true);
          cpu::block_gemm(nk, d.D, nq, dp.data(), 1, kBlockK, qr, d.D,
                          dk_acc.data(), d.D, true);
        }
      }
      T* dkr = dk + (kvh * d.Tk + j0) * d.D;
      T* dvr = dv + (kvh * d.Tk + j0) * d.Dv;
      for (int64_t x = 0; x < nk * d.D; ++x) dkr[x] = dk_acc[x] * in.scale;
      std::copy(dv_acc.begin(), dv_acc.begin() + nk * d.Dv, dvr);
    }
  });
}

template <typename T>
SdpaInputs<T> make_inputs(const AttentionDims& d, const at::Tensor& q,
                          const at::Tensor& k, const at::Tensor& v,
                          const c10::optional<at::Tensor>& attn_mask,
                          double dropout_p, bool is_causal, double scale,
                          const c10::optional<at::Tensor>& rng) {
  return SdpaInputs<T>{d,
                       q.data_ptr<T>(),
                       k.data_ptr<T>(),
                       v.data_ptr<T>(),
                       cpu::MaskView<T>::make(attn_mask),
                       cpu::DropoutView<T>::make(dropout_p, rng),
                       is_causal,
                       static_cast<T>(scale)};
}

std::tuple<at::Tensor, at::Tensor> sdpa_cpu(
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const c10::optional<at::Tensor>& attn_mask, double dropout_p,
    bool is_causal, double scale, const c10::optional<at::Tensor>& rng) {
  check_cpu_dtype(q_in, "q");
  const AttentionDims d =
      check_sdpa(q_in, k_in, v_in, attn_mask, dropout_p, rng);
  // In the accumulation dtype (attention_cpu.h): out is rounded to q's
  // dtype at the end, lse stays.
  const at::Tensor q = cpu::to_acc(q_in), k = cpu::to_acc(k_in);
  const at::Tensor v = cpu::to_acc(v_in);
  const auto mask = cpu::mask_to_acc(attn_mask);
  at::Tensor out = at::empty({d.B, d.Hq, d.Tq, d.Dv}, q.options());
  at::Tensor lse = at::empty({d.B, d.Hq, d.Tq}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "sdpa_cpu", [&] {
    const auto in = make_inputs<scalar_t>(d, q, k, v, mask, dropout_p,
                                          is_causal, scale, rng);
    sdpa_forward_kernel(in, out.data_ptr<scalar_t>(),
                        lse.data_ptr<scalar_t>());
  });
  return {out.to(q_in.scalar_type()), lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> sdpa_backward_cpu(
    const at::Tensor& grad_out_in, const at::Tensor& q_in,
    const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& out_in,
    const at::Tensor& lse_in, const c10::optional<at::Tensor>& attn_mask,
    double dropout_p, bool is_causal, double scale,
    const c10::optional<at::Tensor>& rng) {
  check_cpu_dtype(q_in, "q");
  const AttentionDims d =
      check_sdpa_backward(grad_out_in, q_in, k_in, v_in, out_in, lse_in,
                          attn_mask, dropout_p, rng);
  // In the accumulation dtype (attention_cpu.h); the gradients are rounded
  // to q's dtype at the end.
  const at::Tensor q = cpu::to_acc(q_in), k = cpu::to_acc(k_in);
  const at::Tensor v = cpu::to_acc(v_in), out = cpu::to_acc(out_in);
  const at::Tensor dout = cpu::to_acc(grad_out_in), lse = lse_in.contiguous();
  const auto mask = cpu::mask_to_acc(attn_mask);
  at::Tensor grad_q = at::empty(q.sizes(), q.options());
  at::Tensor grad_k = at::empty(k.sizes(), k.options());
  at::Tensor grad_v = at::empty(v.sizes(), v.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "sdpa_backward_cpu", [&] {
    const auto in = make_inputs<scalar_t>(d, q, k, v, mask, dropout_p,
                                          is_causal, scale, rng);
    sdpa_backward_kernel(in, dout.data_ptr<scalar_t>(),
                         out.data_ptr<scalar_t>(), lse.data_ptr<scalar_t>(),
                         grad_q.data_ptr<scalar_t>(),
                         grad_k.data_ptr<scalar_t>(),
                         grad_v.data_ptr<scalar_t>());
  });
  const at::ScalarType st = q_in.scalar_type();
  return {grad_q.to(st), grad_k.to(st), grad_v.to(st)};
}

}  // namespace
}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CPU, m) {
  m.impl("sdpa", &seqkernels::sdpa_cpu);
  m.impl("sdpa_backward", &seqkernels::sdpa_backward_cpu);
}
