// The tensor-core sdpa forward and backward (sdpa_tensor_core.h,
// sdpa_tensor_core_backward.h), their warp primitives (warp_mma.h) and
// their cp.async copies (block_primitives.h), compiled for the host and run
// by the host emulation, and the switch of its cp.async mode: see
// emulation.h.
#include <algorithm>

#include "seqkernels/emulation.h"
#include "seqkernels/sdpa_tensor_core.h"
#include "seqkernels/sdpa_tensor_core_backward.h"

namespace seqkernels {

namespace {

// The emulated kernels take CPU tensors of the dtypes and head dims the
// tensor-core kernels serve.
void check_emulated(const at::Tensor& q, const AttentionDims& d) {
  TORCH_CHECK(q.device().is_cpu(), "seqkernels: the emulated sdpa takes "
              "CPU tensors; q is on ", q.device());
  TORCH_CHECK(sdpa_tc::serves(q.scalar_type(), d.D, d.Dv),
              "seqkernels: the tensor-core sdpa serves float16 and bfloat16 "
              "q with head dims D, Dv <= ", sdpa_tc::kMaxDim, "; got ",
              q.scalar_type(), ", D = ", d.D, ", Dv = ", d.Dv);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> emulated_sdpa(
    const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
    const c10::optional<at::Tensor>& attn_mask, double dropout_p,
    bool is_causal, double scale, const c10::optional<at::Tensor>& rng) {
  const AttentionDims d =
      check_sdpa(q_in, k_in, v_in, attn_mask, dropout_p, rng);
  check_emulated(q_in, d);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(),
                   v = v_in.contiguous();
  const at::Tensor rng_c = dropout_p > 0.0 ? rng->contiguous() : at::Tensor();
  at::Tensor out = at::empty({d.B, d.Hq, d.Tq, d.Dv}, q.options());
  at::Tensor lse = at::empty({d.B, d.Hq, d.Tq}, q.options().dtype(at::kFloat));
  if (d.B * d.Hq * d.Tq == 0) return {out, lse};
  const attn::FlashParams<float> p =
      sdpa_tc::make_params(d, dropout_p, is_causal, scale);
  const attn::MaskView mask = attn::make_mask_view(attn_mask);
  const int blocks = static_cast<int>(p.n_blocks * d.B * d.Hq);
  sdpa_tc::dispatch(
      q.scalar_type(), d.D, d.Dv, [&](auto type, auto dp, auto dvp) {
        using scalar_t = decltype(type);
        constexpr int DP = decltype(dp)::value, DVP = decltype(dvp)::value;
        emu::launch(blocks, sdpa_tc::kThreads,
                    sdpa_tc::Smem<DP, DVP>::kBytes, [&] {
                      sdpa_tc::forward<scalar_t, DP, DVP>(
                          p, q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(),
                          v.data_ptr<scalar_t>(), mask,
                          attn::ptr_or_null<int64_t>(rng_c),
                          out.data_ptr<scalar_t>(), lse.data_ptr<float>());
                    });
      });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> emulated_sdpa_backward(
    const at::Tensor& grad_out_in, const at::Tensor& q_in,
    const at::Tensor& k_in, const at::Tensor& v_in, const at::Tensor& out_in,
    const at::Tensor& lse_in, const c10::optional<at::Tensor>& attn_mask,
    double dropout_p, bool is_causal, double scale,
    const c10::optional<at::Tensor>& rng) {
  const AttentionDims d =
      check_sdpa_backward(grad_out_in, q_in, k_in, v_in, out_in, lse_in,
                          attn_mask, dropout_p, rng);
  check_emulated(q_in, d);
  const at::Tensor q = q_in.contiguous(), k = k_in.contiguous(),
                   v = v_in.contiguous(), dout = grad_out_in.contiguous(),
                   out = out_in.contiguous(), lse = lse_in.contiguous();
  const at::Tensor rng_c = dropout_p > 0.0 ? rng->contiguous() : at::Tensor();
  at::Tensor grad_q = at::empty(q.sizes(), q.options());
  at::Tensor grad_k = at::empty(k.sizes(), k.options());
  at::Tensor grad_v = at::empty(v.sizes(), v.options());
  at::Tensor delta = at::empty({d.B, d.Hq, d.Tq}, lse.options());
  const sdpa_tc::BackwardPlan plan =
      sdpa_tc::make_backward_plan(d, dropout_p, is_causal, scale);
  const attn::MaskView mask = attn::make_mask_view(attn_mask);
  const int64_t* rng_p = attn::ptr_or_null<int64_t>(rng_c);
  sdpa_tc::dispatch(
      q.scalar_type(), d.D, d.Dv, [&](auto type, auto dp, auto dvp) {
        using scalar_t = decltype(type);
        constexpr int DP = decltype(dp)::value, DVP = decltype(dvp)::value;
        const scalar_t* qp = q.data_ptr<scalar_t>();
        const scalar_t* kp = k.data_ptr<scalar_t>();
        const scalar_t* vp = v.data_ptr<scalar_t>();
        const scalar_t* dop = dout.data_ptr<scalar_t>();
        const float* lsep = lse.data_ptr<float>();
        float* deltap = delta.data_ptr<float>();
        if (plan.rows > 0) {
          // Two blocks at most, so that the rows' grid-stride loop runs.
          const int64_t n_grid = std::min<int64_t>(
              (plan.rows + attn::kWarps - 1) / attn::kWarps, 2);
          emu::launch(static_cast<int>(n_grid), sdpa_tc::kThreads, 0, [&] {
            sdpa_tc::row_dot<scalar_t>(plan.rows, d.Dv, n_grid, dop,
                                       out.data_ptr<scalar_t>(), deltap);
          });
          emu::launch(static_cast<int>(plan.dq_blocks), sdpa_tc::kThreads,
                      sdpa_tc::DqSmem<DP, DVP>::kBytes, [&] {
                        sdpa_tc::backward_dq<scalar_t, DP, DVP>(
                            plan.dq, qp, kp, vp, dop, lsep, deltap, mask,
                            rng_p, grad_q.data_ptr<scalar_t>());
                      });
        }
        if (plan.dkdv_blocks > 0) {
          emu::launch(static_cast<int>(plan.dkdv_blocks), sdpa_tc::kThreads,
                      sdpa_tc::DkvSmem<DP, DVP>::kBytes, [&] {
                        sdpa_tc::backward_dkdv<scalar_t, DP, DVP>(
                            plan.dkdv, qp, kp, vp, dop, lsep, deltap, mask,
                            rng_p, grad_k.data_ptr<scalar_t>(),
                            grad_v.data_ptr<scalar_t>());
                      });
        }
      });
  return {grad_q, grad_k, grad_v};
}

namespace {

constexpr int kTile = 16;
constexpr int kLd = kTile + 8;  // a padded pitch, as the kernel's

// One warp: S = A Bt^T through ldmatrix (A) and ldmatrix (Bt's rows as B's
// columns), P = S rounded to T as an A fragment straight from S's
// accumulators, O = P V through ldmatrix.trans (V row-major, k x n); S and
// O written from the C fragments by their documented layout.
template <typename T>
void warp_tiles(const T* a, const T* bt, const T* v, float* s_out,
                float* o_out) {
  uint16_t* sm = reinterpret_cast<uint16_t*>(blk::smem());
  uint16_t* as = sm;
  uint16_t* bs = as + kTile * kLd;
  uint16_t* vs = bs + kTile * kLd;
  const int lane = warp::lane();
  for (int e = lane; e < kTile * kTile; e += warp::kLanes) {
    const int r = e / kTile, c = e % kTile;
    as[r * kLd + c] = warp::bits_of(a[e]);
    bs[r * kLd + c] = warp::bits_of(bt[e]);
    vs[r * kLd + c] = warp::bits_of(v[e]);
  }
  blk::sync();
  const warp::TileCoord xa = warp::x4_rows_a(lane);
  const warp::TileCoord xb = warp::x4_rows_bt(lane);
  uint32_t af[4], bf[4];
  warp::ldmatrix_x4(af, as + xa.row * kLd + xa.col);
  warp::ldmatrix_x4(bf, bs + xb.row * kLd + xb.col);
  float s[2][4] = {};
  warp::mma_16816<T>(s[0], af, {bf[0], bf[1]});
  warp::mma_16816<T>(s[1], af, {bf[2], bf[3]});
  uint32_t pf[4], vf[4];
  warp::a_from_c<T>(pf, s[0], s[1]);
  warp::ldmatrix_x4_trans(vf, vs + xa.row * kLd + xa.col);
  float o[2][4] = {};
  warp::mma_16816<T>(o[0], pf, {vf[0], vf[1]});
  warp::mma_16816<T>(o[1], pf, {vf[2], vf[3]});
  const int g = lane / 4, t = lane % 4;
  for (int nb = 0; nb < 2; ++nb) {
    for (int r = 0; r < 4; ++r) {
      const int e = (g + 8 * (r / 2)) * kTile + 8 * nb + 2 * t + r % 2;
      s_out[e] = s[nb][r];
      o_out[e] = o[nb][r];
    }
  }
}

}  // namespace

void set_emulated_cp_async_mode(const std::string& mode) {
  TORCH_CHECK(mode == "late" || mode == "early",
              "seqkernels: the emulated cp.async mode must be 'late' or "
              "'early', got '", mode, "'");
  emu::set_cp_async_mode(mode == "late" ? emu::CpAsyncMode::kLate
                                        : emu::CpAsyncMode::kEarly);
}

std::string emulated_cp_async_mode() {
  return emu::cp_async_mode() == emu::CpAsyncMode::kLate ? "late" : "early";
}

namespace {

constexpr int kCopyRow = 8;  // 16-bit elements of a 16-byte copy

// One warp (see emulated_cp_async): each lane touches only its own rows of
// A and B, so no barrier is needed between its copies and its reads.
void cp_async_rows(const int16_t* src, int64_t n_valid, int16_t* snaps) {
  int16_t* sm = reinterpret_cast<int16_t*>(blk::smem());
  const int lane = warp::lane();
  int16_t* rows[2] = {sm + lane * kCopyRow,
                      sm + (warp::kLanes + lane) * kCopyRow};
  for (int16_t* row : rows) std::fill(row, row + kCopyRow, int16_t(-1));
  const bool in_range = lane < n_valid;
  const int16_t* from = src + (in_range ? lane : 0) * kCopyRow;
  for (int16_t* row : rows) {
    blk::cp_async16(row, from, in_range);
    blk::cp_async_commit();
  }
  auto snap = [&](int k) {
    for (int b = 0; b < 2; ++b) {
      std::copy(rows[b], rows[b] + kCopyRow,
                snaps + ((k * 2 + b) * warp::kLanes + lane) * kCopyRow);
    }
  };
  snap(0);
  blk::cp_async_wait<1>();
  snap(1);
  blk::cp_async_wait<0>();
  snap(2);
}

}  // namespace

at::Tensor emulated_cp_async(const at::Tensor& src, int64_t n_valid) {
  check_shape(src, "src", {warp::kLanes, kCopyRow});
  TORCH_CHECK(src.scalar_type() == at::kShort && src.device().is_cpu(),
              "seqkernels: src must be a CPU int16 tensor, got ",
              src.scalar_type(), " on ", src.device());
  const at::Tensor s = src.contiguous();
  at::Tensor snaps = at::empty({3, 2, warp::kLanes, kCopyRow}, s.options());
  emu::launch(1, warp::kLanes, 2 * warp::kLanes * kCopyRow * sizeof(int16_t),
              [&] {
                cp_async_rows(s.data_ptr<int16_t>(), n_valid,
                              snaps.data_ptr<int16_t>());
              });
  return snaps;
}

std::tuple<at::Tensor, at::Tensor> emulated_warp_tiles(const at::Tensor& a,
                                                       const at::Tensor& bt,
                                                       const at::Tensor& v) {
  const at::ScalarType t = a.scalar_type();
  TORCH_CHECK(t == at::kHalf || t == at::kBFloat16,
              "seqkernels: a must be float16 or bfloat16, got ", t);
  auto check = [&](const at::Tensor& x, const char* name) {
    check_shape(x, name, {kTile, kTile});
    TORCH_CHECK(x.scalar_type() == t && x.device().is_cpu(), "seqkernels: ",
                name, " must be a CPU tensor of a's dtype ", t, ", got ",
                x.scalar_type(), " on ", x.device());
  };
  check(a, "a");
  check(bt, "bt");
  check(v, "v");
  const at::Tensor ac = a.contiguous(), bc = bt.contiguous(),
                   vc = v.contiguous();
  at::Tensor s = at::empty({kTile, kTile}, a.options().dtype(at::kFloat));
  at::Tensor o = at::empty({kTile, kTile}, a.options().dtype(at::kFloat));
  auto run = [&](auto type) {
    using T = decltype(type);
    emu::launch(1, warp::kLanes, 3 * kTile * kLd * sizeof(uint16_t), [&] {
      warp_tiles<T>(ac.data_ptr<T>(), bc.data_ptr<T>(), vc.data_ptr<T>(),
                    s.data_ptr<float>(), o.data_ptr<float>());
    });
  };
  if (t == at::kHalf) {
    run(c10::Half());
  } else {
    run(c10::BFloat16());
  }
  return {s, o};
}

}  // namespace seqkernels
