// CPU kernels of additive (Bahdanau) attention (the op additive_attention).
// Semantics: seqkernels/reference/additive_attention.py.
//
// Scores s_ij = sum_h v_h tanh(q_ih + k_jh + bias_h) are computed on the fly
// and the [B, Tq, Tk, H] tensor of tanh values is never stored.
//
// Forward: one work item per (b, block of kQRows query rows), walking the
// keys in blocks with an online softmax (context = P value); the weights,
// when asked for, hold the raw scores until the row's maximum m and sum l of
// exp(s - m) are known. (m, l) are saved for the backward, which recomputes
// p = exp(s - m) / l (cpu::probs_from_max says why not exp(s - lse)).
//
// Backward recomputes tanh, in two passes:
//   A. per (b, query block): dP_ij = dctx_i . value_j (+ gw_ij),
//      delta_i = sum_j p_ij dP_ij, dS_ij = p_ij (dP_ij - delta_i) and
//      dq_ih = sum_j dS_ij v_h (1 - t_ijh^2);
//   B. per (b, key block): dk_jh = sum_i dS_ij v_h (1 - t_ijh^2),
//      dvalue_j = sum_i p_ij dctx_i, and the block's partial sum of
//      dv_h = sum_ij dS_ij t_ijh.
// With at most kQRows query rows (a decoder step) and few pairs, one item
// per batch row runs both passes and pass B reuses pass A's tanh values.
// dv and dbias are then summed over the blocks (over the rows of dq) in a
// fixed order: every result is bitwise reproducible and independent of the
// number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "seqkernels/attention_checks.h"
#include "seqkernels/attention_cpu.h"

namespace seqkernels {
namespace {

constexpr int64_t kQRows = 8;   // query rows of a forward / pass-A item
constexpr int64_t kKeys = 16;   // keys of a block (and of a pass-B item)
// The most (query, key, unit) tanh values the backward keeps for a batch
// row where it runs both passes in one item (256 KB of float32).
constexpr int64_t kFusedPairs = 65536;

template <typename T>
struct AdditiveInputs {
  AdditiveDims d;
  const T* q;      // [B, Tq, H]
  const T* k;      // [B, Tk, H]
  const T* value;  // [B, Tk, Dv]
  const T* v;      // [H]
  const T* bias;   // [H] or null
  cpu::MaskView<T> mask;

  // t[h] = tanh(q_ih + k_jh + bias_h) of batch b, and the score v . t,
  // without the mask. q_i and k_j point at their rows.
  SK_CPU_KERNEL T tanh_score(const T* qi, const T* kj, T* t) const {
    const int64_t H = d.H;
    if (bias != nullptr) {
      for (int64_t h = 0; h < H; ++h) t[h] = cpu_math::tanh(qi[h] + kj[h] + bias[h]);
    } else {
      for (int64_t h = 0; h < H; ++h) t[h] = cpu_math::tanh(qi[h] + kj[h]);
    }
    // The dot product over H accumulates in double: a long float sum would
    // round worse than the blocked matmul that PyTorch uses for v . t.
    double s = 0;
    for (int64_t h = 0; h < H; ++h) s += double(v[h]) * double(t[h]);
    return T(s);
  }

  // The masked score of (b, i, j), with t as above; -inf (t unset) where a
  // bool mask forbids the key.
  T score(int64_t b, int64_t i, int64_t j, T* t) const {
    const int64_t row = mask.row(b, 0, i);
    if (!mask.key_allowed(row, j)) return cpu::neg_inf<T>();
    T s = tanh_score(q + (b * d.Tq + i) * d.H, k + (b * d.Tk + j) * d.H, t);
    if (mask.added != nullptr) s += mask.added[row + j * mask.sj];
    return s;
  }
};

template <typename T>
void additive_forward_kernel(const AdditiveInputs<T>& in, T* context,
                             T* weights, T* stats) {
  const AdditiveDims& d = in.d;
  const int64_t n_qblocks = (d.Tq + kQRows - 1) / kQRows;
  const int64_t grain =
      std::max<int64_t>(1, 4096 / std::max<int64_t>(1, d.Tk * d.H));
  at::parallel_for(0, d.B * n_qblocks, grain, [&](int64_t w0, int64_t w1) {
    std::vector<T> t(d.H), s(kQRows * kKeys), acc(kQRows * d.Dv);
    std::vector<T> m(kQRows), l(kQRows);
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t b = w / n_qblocks, i0 = (w % n_qblocks) * kQRows;
      const int64_t nq = std::min(kQRows, d.Tq - i0);
      std::fill(acc.begin(), acc.end(), T(0));
      std::fill(m.begin(), m.end(), cpu::neg_inf<T>());
      std::fill(l.begin(), l.end(), T(0));
      for (int64_t j0 = 0; j0 < d.Tk; j0 += kKeys) {
        const int64_t nk = std::min(kKeys, d.Tk - j0);
        for (int64_t r = 0; r < nq; ++r) {
          T* sr = s.data() + r * kKeys;
          for (int64_t jj = 0; jj < nk; ++jj) {
            sr[jj] = in.score(b, i0 + r, j0 + jj, t.data());
          }
          if (weights != nullptr) {  // raw scores, normalized below
            std::copy(sr, sr + nk, weights + (b * d.Tq + i0 + r) * d.Tk + j0);
          }
          const T alpha = cpu::online_softmax_update(sr, nk, m[r], l[r]);
          if (alpha != T(1)) {
            T* ar = acc.data() + r * d.Dv;
            for (int64_t c = 0; c < d.Dv; ++c) ar[c] *= alpha;
          }
        }
        cpu::block_gemm(nq, d.Dv, nk, s.data(), kKeys, 1,
                        in.value + (b * d.Tk + j0) * d.Dv, d.Dv, acc.data(),
                        d.Dv, true);
      }
      for (int64_t r = 0; r < nq; ++r) {
        const int64_t row = b * d.Tq + i0 + r;
        stats[2 * row] = m[r];
        stats[2 * row + 1] = l[r];
        T* ctx = context + row * d.Dv;
        const T* ar = acc.data() + r * d.Dv;
        for (int64_t c = 0; c < d.Dv; ++c) {
          ctx[c] = l[r] > T(0) ? ar[c] / l[r] : T(0);
        }
        if (weights != nullptr) {  // in place: the raw scores become P
          T* wr = weights + row * d.Tk;
          cpu::probs_from_max(wr, wr, d.Tk, m[r], l[r]);
        }
      }
    }
  });
}

template <typename T>
SK_CPU_KERNEL T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t x = 0; x < n; ++x) s += a[x] * b[x];
  return s;
}

// y += a * x over n elements.
template <typename T>
SK_CPU_KERNEL void axpy(T* __restrict__ y, T a, const T* __restrict__ x,
                        int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] += a * x[c];
}

// g += ds * v * (1 - t^2) over H: the gradient that the score's dS sends
// back through tanh to q_i (or k_j), t the pair's tanh values.
template <typename T>
SK_CPU_KERNEL void add_tanh_grad(T* __restrict__ g, T ds,
                                 const T* __restrict__ v,
                                 const T* __restrict__ t, int64_t H) {
  for (int64_t h = 0; h < H; ++h) g[h] += ds * v[h] * (1 - t[h] * t[h]);
}

// p, dP and the tanh values of one (query, key) pair in the backward.
template <typename T>
struct PairGrad {
  T p, dp;
  const T* t;  // [H]
};

template <typename T>
void additive_backward_kernel(const AdditiveInputs<T>& in, const T* dctx,
                              const T* gw, const T* stats, T* dq,
                              T* dk, T* dvalue, T* dv, T* dbias) {
  const AdditiveDims& d = in.d;
  const int64_t H = d.H;
  // Per query row: delta_i, and 1 / l_i of the forward's statistics.
  std::vector<T> delta(d.B * d.Tq), inv_l(d.B * d.Tq);
  const int64_t n_qblocks = (d.Tq + kQRows - 1) / kQRows;
  const int64_t n_kblocks = (d.Tk + kKeys - 1) / kKeys;
  std::vector<T> dv_part(d.B * n_kblocks * H);

  // p_ij (0 where masked or negligible) and dP_ij, with the tanh values
  // into t, of a row that has an allowed key (inv_l set).
  const auto pair = [&](int64_t b, int64_t i, int64_t j, T* t) -> PairGrad<T> {
    const int64_t row = b * d.Tq + i;
    const T p =
        cpu_math::exp(in.score(b, i, j, t) - stats[2 * row]) * inv_l[row];
    T dp = 0;
    if (p != T(0)) {  // masked (or negligible): dS = 0
      dp = dot(dctx + row * d.Dv, in.value + (b * d.Tk + j) * d.Dv, d.Dv);
      if (gw != nullptr) dp += gw[row * d.Tk + j];
    }
    return {p, dp, t};
  };

  // Pass A for query row i of batch b: delta_i and dq_i; the row's pairs
  // (their tanh values in t_row [Tk][H]) are left in pg [Tk], unless the
  // row has no allowed key (no gradient).
  const auto pass_a_row = [&](int64_t b, int64_t i, T* t_row,
                              PairGrad<T>* pg) {
    const int64_t row = b * d.Tq + i;
    T* dqi = dq + row * H;
    std::fill(dqi, dqi + H, T(0));
    const T li = stats[2 * row + 1];
    if (!(li > T(0))) {
      delta[row] = 0;
      return;
    }
    inv_l[row] = T(1) / li;
    // delta_i = sum_j p_ij dP_ij, as torch's softmax backward takes it:
    // then sum_j dS_ij vanishes up to rounding. (rowsum(dctx * ctx) would
    // carry the forward's rounding of ctx into a per-row offset of dS,
    // which dv and dbias, sums over every row and key, collect.)
    T di = 0;
    for (int64_t j = 0; j < d.Tk; ++j) {
      pg[j] = pair(b, i, j, t_row + j * H);
      di += pg[j].p * pg[j].dp;
    }
    delta[row] = di;
    for (int64_t j = 0; j < d.Tk; ++j) {
      if (pg[j].p == T(0)) continue;
      add_tanh_grad(dqi, pg[j].p * (pg[j].dp - di), in.v, pg[j].t, H);
    }
  };

  // Pass B for key block kb of batch b: dk, dvalue and the block's partial
  // dv, from the pairs that pair_of(i, j) gives (rows without an allowed
  // key skipped), in a fixed order: rows, then keys.
  const auto pass_b_block = [&](int64_t b, int64_t kb, const auto& pair_of) {
    const int64_t j0 = kb * kKeys, nk = std::min(kKeys, d.Tk - j0);
    T* dkr = dk + (b * d.Tk + j0) * H;
    T* dvr = dvalue + (b * d.Tk + j0) * d.Dv;
    T* part = dv_part.data() + (b * n_kblocks + kb) * H;
    std::fill(dkr, dkr + nk * H, T(0));
    std::fill(dvr, dvr + nk * d.Dv, T(0));
    std::fill(part, part + H, T(0));
    for (int64_t i = 0; i < d.Tq; ++i) {
      const int64_t row = b * d.Tq + i;
      if (!(stats[2 * row + 1] > T(0))) continue;
      const T* gi = dctx + row * d.Dv;
      for (int64_t jj = 0; jj < nk; ++jj) {
        const PairGrad<T> g = pair_of(i, j0 + jj);
        if (g.p == T(0)) continue;
        const T ds = g.p * (g.dp - delta[row]);
        add_tanh_grad(dkr + jj * H, ds, in.v, g.t, H);
        axpy(part, ds, g.t, H);
        axpy(dvr + jj * d.Dv, g.p, gi, d.Dv);
      }
    }
  };

  if (n_qblocks == 1 && d.Tq * d.Tk * H <= kFusedPairs) {
    // Few query rows (a decoder step): one item per batch row runs both
    // passes, pass B on the pairs pass A kept, so each tanh is computed
    // once instead of three times. The same values in the same order as
    // the two passes below: the same results, bit for bit.
    at::parallel_for(0, d.B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<T> t_all(d.Tq * d.Tk * H);
      std::vector<PairGrad<T>> pg(d.Tq * d.Tk);
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t i = 0; i < d.Tq; ++i) {
          pass_a_row(b, i, t_all.data() + i * d.Tk * H, pg.data() + i * d.Tk);
        }
        for (int64_t kb = 0; kb < n_kblocks; ++kb) {
          pass_b_block(b, kb, [&](int64_t i, int64_t j) {
            return pg[i * d.Tk + j];
          });
        }
      }
    });
  } else {
    // Pass A: delta and dq, one item per (b, query block).
    const int64_t grain =
        std::max<int64_t>(1, 4096 / std::max<int64_t>(1, d.Tk * H));
    at::parallel_for(0, d.B * n_qblocks, grain, [&](int64_t w0, int64_t w1) {
      std::vector<T> t_row(d.Tk * H);
      std::vector<PairGrad<T>> pg(d.Tk);
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t b = w / n_qblocks, i0 = (w % n_qblocks) * kQRows;
        for (int64_t i = i0; i < std::min(d.Tq, i0 + kQRows); ++i) {
          pass_a_row(b, i, t_row.data(), pg.data());
        }
      }
    });
    // Pass B: dk, dvalue and partial dv, one item per (b, key block),
    // recomputing each pair.
    const int64_t grain_b =
        std::max<int64_t>(1, 4096 / std::max<int64_t>(1, d.Tq * kKeys * H));
    at::parallel_for(0, d.B * n_kblocks, grain_b, [&](int64_t w0, int64_t w1) {
      std::vector<T> t(H);
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t b = w / n_kblocks;
        pass_b_block(b, w % n_kblocks, [&](int64_t i, int64_t j) {
          return pair(b, i, j, t.data());
        });
      }
    });
  }

  // dv = sum of the blocks' partials, dbias = sum of dq over all rows, each
  // in a fixed order.
  std::fill(dv, dv + H, T(0));
  for (int64_t w = 0; w < d.B * n_kblocks; ++w) {
    for (int64_t h = 0; h < H; ++h) dv[h] += dv_part[w * H + h];
  }
  if (dbias != nullptr) {
    std::fill(dbias, dbias + H, T(0));
    for (int64_t row = 0; row < d.B * d.Tq; ++row) {
      for (int64_t h = 0; h < H; ++h) dbias[h] += dq[row * H + h];
    }
  }
}

template <typename T>
AdditiveInputs<T> make_inputs(const AdditiveDims& d, const at::Tensor& q,
                              const at::Tensor& k, const at::Tensor& value,
                              const at::Tensor& v, const at::Tensor& bias,
                              const c10::optional<at::Tensor>& attn_mask) {
  return AdditiveInputs<T>{d,
                           q.data_ptr<T>(),
                           k.data_ptr<T>(),
                           value.data_ptr<T>(),
                           v.data_ptr<T>(),
                           bias.defined() ? bias.data_ptr<T>() : nullptr,
                           cpu::MaskView<T>::make(attn_mask)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> additive_attention_cpu(
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& value_in,
    const at::Tensor& v_in, const c10::optional<at::Tensor>& bias_in,
    const c10::optional<at::Tensor>& attn_mask, bool need_weights) {
  check_cpu_dtype(q_in, "q");
  const AdditiveDims d =
      check_additive_attention(q_in, k_in, value_in, v_in, bias_in, attn_mask);
  // In the accumulation dtype (attention_cpu.h): context and weights are
  // rounded to q's dtype at the end, stats stay.
  const at::Tensor q = cpu::to_acc(q_in), k = cpu::to_acc(k_in);
  const at::Tensor value = cpu::to_acc(value_in), v = cpu::to_acc(v_in);
  const at::Tensor bias =
      bias_in.has_value() ? cpu::to_acc(*bias_in) : at::Tensor();
  const auto mask = cpu::mask_to_acc(attn_mask);
  at::Tensor context = at::empty({d.B, d.Tq, d.Dv}, q.options());
  at::Tensor weights = need_weights
                           ? at::empty({d.B, d.Tq, d.Tk}, q.options())
                           : at::empty({0}, q.options());
  at::Tensor stats = at::empty({d.B, d.Tq, 2}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "additive_attention_cpu", [&] {
    const auto in = make_inputs<scalar_t>(d, q, k, value, v, bias, mask);
    additive_forward_kernel(
        in, context.data_ptr<scalar_t>(),
        need_weights ? weights.data_ptr<scalar_t>() : nullptr,
        stats.data_ptr<scalar_t>());
  });
  const at::ScalarType st = q_in.scalar_type();
  return {context.to(st), weights.to(st), stats};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
additive_attention_backward_cpu(
    const at::Tensor& grad_context_in,
    const c10::optional<at::Tensor>& grad_weights_in, const at::Tensor& q_in,
    const at::Tensor& k_in, const at::Tensor& value_in, const at::Tensor& v_in,
    const c10::optional<at::Tensor>& bias_in,
    const c10::optional<at::Tensor>& attn_mask, const at::Tensor& context_in,
    const at::Tensor& stats_in) {
  check_cpu_dtype(q_in, "q");
  const AdditiveDims d = check_additive_attention_backward(
      grad_context_in, grad_weights_in, q_in, k_in, value_in, v_in, bias_in,
      attn_mask, context_in, stats_in);
  // In the accumulation dtype (attention_cpu.h); the gradients are rounded
  // to q's dtype at the end.
  const at::Tensor q = cpu::to_acc(q_in), k = cpu::to_acc(k_in);
  const at::Tensor value = cpu::to_acc(value_in), v = cpu::to_acc(v_in);
  const at::Tensor bias =
      bias_in.has_value() ? cpu::to_acc(*bias_in) : at::Tensor();
  const auto mask = cpu::mask_to_acc(attn_mask);
  const at::Tensor dctx = cpu::to_acc(grad_context_in);
  const at::Tensor gw = grad_weights_in.has_value()
                            ? cpu::to_acc(*grad_weights_in)
                            : at::Tensor();
  // context (checked above) is not read: delta comes from P and dP.
  const at::Tensor stats = stats_in.contiguous();
  at::Tensor grad_q = at::empty(q.sizes(), q.options());
  at::Tensor grad_k = at::empty(k.sizes(), k.options());
  at::Tensor grad_value = at::empty(value.sizes(), value.options());
  at::Tensor grad_v = at::empty(v.sizes(), v.options());
  at::Tensor grad_bias = bias.defined() ? at::empty(bias.sizes(), q.options())
                                        : at::empty({0}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "additive_attention_backward_cpu",
                             [&] {
    const auto in = make_inputs<scalar_t>(d, q, k, value, v, bias, mask);
    additive_backward_kernel(
        in, dctx.data_ptr<scalar_t>(),
        gw.defined() ? gw.data_ptr<scalar_t>() : nullptr,
        stats.data_ptr<scalar_t>(),
        grad_q.data_ptr<scalar_t>(), grad_k.data_ptr<scalar_t>(),
        grad_value.data_ptr<scalar_t>(), grad_v.data_ptr<scalar_t>(),
        bias.defined() ? grad_bias.data_ptr<scalar_t>() : nullptr);
  });
  const at::ScalarType st = q_in.scalar_type();
  return {grad_q.to(st), grad_k.to(st), grad_value.to(st), grad_v.to(st),
          grad_bias.to(st)};
}

}  // namespace
}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CPU, m) {
  m.impl("additive_attention", &seqkernels::additive_attention_cpu);
  m.impl("additive_attention_backward",
         &seqkernels::additive_attention_backward_cpu);
}
