// The CPU's persistent recurrence (contract and rule in cpu_persistent.h).
//
// A forward task owns U hidden units (all gates) of a chunk of rows. Per
// step it computes, R rows at a time, the recurrent product of those rows
// and units in registers (gate_products: for each k, G vectors of U packed
// weights times the broadcast h[r, k]), then runs the cell on them
// (forward_row) and publishes the new h of its units. A backward task
// owns the same units: it computes the carried gradient dh of its units
// from the whole recurrent-side gradient of the step after (carry_products
// over the transposed packing) and runs the cell backward on them.
//
// The products sum over k in order, in float32 with FMA, split into a few
// independent partial sums where the rows and gates alone give too few
// chains of FMAs to hide their latency; the split depends only on the
// number of rows of the block (R), so a result does not depend on the
// number of threads.
#include "seqkernels/cpu_persistent.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <type_traits>
#include <utility>

#include "seqkernels/cpu_cell_rows.h"
#include "seqkernels/cpu_isa.h"
#include "seqkernels/cpu_step_team.h"

namespace seqkernels {
namespace {

template <int U>
struct Vec;
template <>
struct Vec<8> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vec<16> {
  typedef float type __attribute__((vector_size(64)));
};

// GCC's vector types: the helpers below are inlined into each instruction
// set's copy of the kernels (flatten), so no vector crosses a call and the
// ABI note of -Wpsabi does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
template <typename V>
inline V vload(const float* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V>
inline void vstore(float* p, const V& v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// Units per block: one AVX-512 register of floats where the CPU has
// AVX-512, else one AVX2 register (the results do not depend on it).
int unit_width() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const int u = __builtin_cpu_supports("avx512f") ? 16 : 8;
  return u;
#else
  return 8;
#endif
}

// Rows per register block of the forward product: R * G accumulators of U
// floats plus G weight vectors fit the 32 AVX-512 or 16 AVX2 registers.
constexpr int forward_rows(int G, int U) {
  return std::max(1, (U == 16 ? 24 : 12) / G);
}
constexpr int kBackwardRows = 8;
constexpr int kMaxRows = 24;
// A task runs its rows in groups of at most kGroupRows (whole register
// blocks), and the products of a group over k (n in the backward) in chunks
// whose weights and operand rows fit L1 together (kL1Floats: 32 KB of the
// 48 KB of the development machine), so that each chunk of weights comes
// from L2 once per group and the group's rows reuse it from L1.
constexpr int64_t kGroupRows = 64;
constexpr int64_t kL1Floats = 8192;

// The chunk of k for a group of `rows` rows whose weights take `per_k`
// floats per k: a multiple of 8, at least 8.
int64_t chunk(int64_t per_k, int64_t rows) {
  return std::max<int64_t>(8, kL1Floats / (per_k + rows) / 8 * 8);
}

// The rule's numbers (cpu_persistent_plan).
constexpr int64_t kPerStepBatch = 128, kPerStepHidden = 512;
constexpr int64_t kThreadWork = 16384;

// out[r * ldo + g * U + l] = (accumulate ? out[..] : 0)
//                           + sum_k h[r * ldh + k] w[(k * G + g) * U + l]
//                           (+ bias[g * U + l] where bias is given)
template <int G, int U, int R>
SK_CPU_KERNEL void gate_products(int64_t K, const float* __restrict__ w,
                                 const float* __restrict__ bias,
                                 const float* __restrict__ h, int64_t ldh,
                                 float* __restrict__ out, int64_t ldo,
                                 bool accumulate) {
  using V = typename Vec<U>::type;
  // Partial sums over k: 8 chains of FMAs in flight hide their latency.
  constexpr int S = R * G >= 8 ? 1 : R * G >= 4 ? 2 : 4;
  V acc[S][R][G];
  for (int q = 0; q < S; ++q)
    for (int r = 0; r < R; ++r)
      for (int g = 0; g < G; ++g) {
        acc[q][r][g] = q == 0 && accumulate
                           ? vload<V>(out + r * ldo + g * U)
                           : V{};
      }
  int64_t k = 0;
  for (; k + S <= K; k += S) {
    for (int q = 0; q < S; ++q) {
      V wv[G];
      for (int g = 0; g < G; ++g) wv[g] = vload<V>(w + ((k + q) * G + g) * U);
      for (int r = 0; r < R; ++r) {
        const float hv = h[r * ldh + k + q];
        for (int g = 0; g < G; ++g) acc[q][r][g] += hv * wv[g];
      }
    }
  }
  for (; k < K; ++k) {
    for (int g = 0; g < G; ++g) {
      const V wv = vload<V>(w + (k * G + g) * U);
      for (int r = 0; r < R; ++r) acc[0][r][g] += h[r * ldh + k] * wv;
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int g = 0; g < G; ++g) {
      V sum = acc[0][r][g];
      for (int q = 1; q < S; ++q) sum += acc[q][r][g];
      if (bias != nullptr) sum += vload<V>(bias + g * U);
      vstore(out + r * ldo + g * U, sum);
    }
  }
}

// out[r * ldo + l] = (accumulate ? out[..] : 0)
//                     + sum_n g[r * ldg + n] wt[n * U + l]
template <int U, int R>
SK_CPU_KERNEL void carry_products(int64_t N, const float* __restrict__ wt,
                                  const float* __restrict__ g, int64_t ldg,
                                  float* __restrict__ out, int64_t ldo,
                                  bool accumulate) {
  using V = typename Vec<U>::type;
  constexpr int S = std::max(1, 8 / R);
  V acc[S][R];
  for (int q = 0; q < S; ++q)
    for (int r = 0; r < R; ++r) {
      acc[q][r] = q == 0 && accumulate ? vload<V>(out + r * ldo) : V{};
    }
  int64_t n = 0;
  for (; n + S <= N; n += S) {
    for (int q = 0; q < S; ++q) {
      const V wv = vload<V>(wt + (n + q) * U);
      for (int r = 0; r < R; ++r) acc[q][r] += g[r * ldg + n + q] * wv;
    }
  }
  for (; n < N; ++n) {
    const V wv = vload<V>(wt + n * U);
    for (int r = 0; r < R; ++r) acc[0][r] += g[r * ldg + n] * wv;
  }
  for (int r = 0; r < R; ++r) {
    V sum = acc[0][r];
    for (int q = 1; q < S; ++q) sum += acc[q][r];
    vstore(out + r * ldo, sum);
  }
}

using GateFn = void (*)(int64_t, const float*, const float*, const float*,
                        int64_t, float*, int64_t, bool);
using CarryFn = void (*)(int64_t, const float*, const float*, int64_t, float*,
                         int64_t, bool);

// The products for 1 .. kMaxRows rows: entry R - 1 takes R rows.
template <int G, int U, int... R>
std::array<GateFn, sizeof...(R)> gate_table(std::integer_sequence<int, R...>) {
  return {&gate_products<G, U, std::min(R + 1, forward_rows(G, U))>...};
}
template <int U, int... R>
std::array<CarryFn, sizeof...(R)> carry_table(
    std::integer_sequence<int, R...>) {
  return {&carry_products<U, std::min(R + 1, kBackwardRows)>...};
}

bool active(const int64_t* lengths, int64_t b, int64_t s) {
  return lengths == nullptr || lengths[b] > s;
}

// The tasks of a step: blocks of units times chunks of rows. Rows are split
// only where the blocks of units alone would leave threads idle.
struct Split {
  int64_t blocks, chunks, chunk_rows;
  int64_t tasks() const { return blocks * chunks; }
};

Split split(int64_t B, int64_t H, int U, int R, int threads) {
  const int64_t blocks = (H + U - 1) / U;
  const int64_t row_blocks = (B + R - 1) / R;
  const int64_t want = threads > 1 ? (2 * threads + blocks - 1) / blocks : 1;
  const int64_t chunks = std::max<int64_t>(1, std::min(want, row_blocks));
  const int64_t chunk_rows = (row_blocks + chunks - 1) / chunks * R;
  return {blocks, (B + chunk_rows - 1) / chunk_rows, chunk_rows};
}

// w [rows, K] as float32 with rows = G * H grouped [G][H]: [blocks][K][G][U],
// the units beyond H zero.
at::Tensor pack_gates(const at::Tensor& w, int G, int64_t H, int U) {
  const int64_t K = w.size(1), blocks = (H + U - 1) / U;
  at::Tensor grouped = w.view({G, H, K});
  if (blocks * U != H) {
    grouped = at::constant_pad_nd(grouped, {0, 0, 0, blocks * U - H});
  }
  // One copy for float32 weights (to() keeps the permuted strides).
  return grouped.view({G, blocks, U, K})
      .permute({1, 3, 0, 2})
      .to(at::kFloat)
      .contiguous();
}

// The forward of a whole sequence (SeqForward), T the storage dtype.
template <typename Cell, typename T, int U>
struct ForwardJob {
  static constexpr int G = Cell::kGates, S = Cell::kSaved;
  static constexpr int R = forward_rows(G, U);
  int64_t steps, B, H;
  Split sp;
  Activation act;
  const float* w;     // [blocks][H][G][U]
  const float* bias;  // [blocks][G][U] or null
  const float* xg;    // [T][B][G*H]
  const int64_t* lengths;
  float* c;      // [B][H] (kHasC)
  float* saved;  // [T][B][S*H] (may be xg)
  float* cs;     // [T][B][H] (kHasC)
  T* y;          // [T][B][H]
  T* h[2];       // [B][H] ping-pong: h of the step before, of this one
  float* hf[2];  // the same as float32, the product's operand
  std::array<GateFn, kMaxRows> products;

  void operator()(int64_t task, int64_t s) const {
    const int64_t u = task % sp.blocks, j0 = u * U;
    const int64_t n = std::min<int64_t>(U, H - j0);
    const int64_t r0 = task / sp.blocks * sp.chunk_rows;
    const int64_t r1 = std::min(B, r0 + sp.chunk_rows);
    const T* h_in = h[s % 2];
    T* h_out = h[(s + 1) % 2];
    const float* hf_in = hf[s % 2];
    float* hf_out = hf[(s + 1) % 2];
    constexpr int64_t kRows = std::max<int64_t>(R, kGroupRows / R * R);
    float hg[kRows * G * U];
    for (int64_t g0 = r0; g0 < r1; g0 += kRows) {
      const int64_t g1 = std::min(r1, g0 + kRows);
      const int64_t step_k = chunk(G * U, g1 - g0);
      for (int64_t k0 = 0; k0 < H; k0 += step_k) {
        const int64_t kc = std::min(step_k, H - k0);
        for (int64_t b = g0; b < g1; b += R) {
          products[std::min<int64_t>(R, g1 - b) - 1](
              kc, w + (u * H + k0) * G * U,
              bias != nullptr && k0 + kc == H ? bias + u * G * U : nullptr,
              hf_in + b * H + k0, H, hg + (b - g0) * G * U, G * U, k0 > 0);
        }
      }
      for (int64_t row = g0; row < g1; ++row) {
        const int64_t at = s * B + row, hj = row * H + j0;
        float* sv = saved + at * S * H + j0;
        T* yo = y + at * H + j0;
        if (active(lengths, row, s)) {
          float* c_row = Cell::kHasC ? c + hj : nullptr;
          forward_row<Cell>(act, n, H, xg + at * G * H + j0,
                            hg + (row - g0) * G * U, U, h_in + hj, c_row,
                            c_row, Cell::kHasC ? cs + at * H + j0 : nullptr,
                            sv, h_out + hj);
          for (int64_t l = 0; l < n; ++l) {
            yo[l] = h_out[hj + l];
            hf_out[hj + l] = static_cast<float>(h_out[hj + l]);
          }
        } else {
          for (int k = 0; k < S; ++k) {
            std::fill(sv + k * H, sv + k * H + n, 0.f);
          }
          if (Cell::kHasC) {
            std::fill(cs + at * H + j0, cs + at * H + j0 + n, 0.f);
          }
          std::fill(yo, yo + n, T(0));
          std::copy(h_in + hj, h_in + hj + n, h_out + hj);
          std::copy(hf_in + hj, hf_in + hj + n, hf_out + hj);
        }
      }
    }
  }
};

// The backward of a whole sequence (SeqBackward); task i runs step
// T - 1 - i.
template <typename Cell, typename T, int U>
struct BackwardJob {
  static constexpr int G = Cell::kGates, S = Cell::kSaved;
  static constexpr int R = kBackwardRows;
  int64_t steps, B, H;
  Split sp;
  Activation act;
  const float* wt;      // [blocks][G*H][U]
  const T* grad_y;      // [T][B][H]
  float* dh_carry;      // [B][H]
  float* carry;         // [B][H] (kHasC, kDirectH)
  const float* saved;   // [T][B][S*H]
  const T* h_prev;      // [T][B][H] (kDirectH)
  const float* c0;      // [B][H] (kHasC)
  const float* cs;      // [T][B][H] (kHasC)
  const int64_t* lengths;
  float* gx;            // [T][B][G*H]
  float* gh;            // [T][B][G*H] (kSplitGrad; else gx)
  std::array<CarryFn, kMaxRows> products;

  void operator()(int64_t task, int64_t i) const {
    const int64_t s = steps - 1 - i;
    const int64_t u = task % sp.blocks, j0 = u * U;
    const int64_t n = std::min<int64_t>(U, H - j0);
    const int64_t r0 = task / sp.blocks * sp.chunk_rows;
    const int64_t r1 = std::min(B, r0 + sp.chunk_rows);
    constexpr int64_t kRows = std::max<int64_t>(R, kGroupRows / R * R);
    float prod[kRows * U];
    const int64_t N = G * H;
    for (int64_t g0 = r0; g0 < r1; g0 += kRows) {
      const int64_t g1 = std::min(r1, g0 + kRows);
      const int64_t step_n = chunk(U, g1 - g0);
      if (s + 1 < steps) {
        for (int64_t n0 = 0; n0 < N; n0 += step_n) {
          const int64_t nc = std::min(step_n, N - n0);
          for (int64_t b = g0; b < g1; b += R) {
            products[std::min<int64_t>(R, g1 - b) - 1](
                nc, wt + (u * N + n0) * U, gh + ((s + 1) * B + b) * N + n0,
                N, prod + (b - g0) * U, U, n0 > 0);
          }
        }
        for (int64_t row = g0; row < g1; ++row) {
          if (!active(lengths, row, s + 1)) continue;
          float* d = dh_carry + row * H + j0;
          const float* p = prod + (row - g0) * U;
          for (int64_t l = 0; l < n; ++l) {
            d[l] = p[l];
            if constexpr (Cell::kDirectH) d[l] += carry[row * H + j0 + l];
          }
        }
      }
      for (int64_t row = g0; row < g1; ++row) {
        const int64_t at = s * B + row;
        float* gx_row = gx + at * G * H + j0;
        float* gh_row = Cell::kSplitGrad ? gh + at * G * H + j0 : nullptr;
        if (!active(lengths, row, s)) {
          for (int g = 0; g < G; ++g) {
            std::fill(gx_row + g * H, gx_row + g * H + n, 0.f);
            if (gh_row != nullptr) std::fill(gh_row + g * H, gh_row + g * H + n, 0.f);
          }
          continue;
        }
        const int64_t hj = row * H + j0;
        const float* c_prev = nullptr;
        if constexpr (Cell::kHasC) {
          c_prev = s > 0 ? cs + ((s - 1) * B + row) * H + j0 : c0 + hj;
        }
        backward_row<Cell>(
            act, n, H, saved + at * S * H + j0,
            Cell::kDirectH ? h_prev + at * H + j0 : nullptr, c_prev,
            Cell::kHasC ? cs + at * H + j0 : nullptr, grad_y + at * H + j0,
            dh_carry + hj,
            Cell::kHasC || Cell::kDirectH ? carry + hj : nullptr, gx_row,
            gh_row);
      }
    }
  }
};

std::atomic<int64_t> g_runs{0};

template <typename T>
T* data(const at::Tensor& t) {
  return t.defined() && t.numel() > 0 ? t.data_ptr<T>() : nullptr;
}

// f(scalar_t{}) with the storage dtype: float32, float16 or bfloat16 (the
// plan declines the others).
template <typename F>
void dispatch_storage(at::ScalarType dtype, F&& f) {
  switch (dtype) {
    case at::kHalf:
      f(at::Half{});
      break;
    case at::kBFloat16:
      f(at::BFloat16{});
      break;
    default:
      TORCH_INTERNAL_ASSERT(dtype == at::kFloat);
      f(float{});
  }
}

template <typename F>
void dispatch_width(F&& f) {
  if (unit_width() == 16) {
    f(std::integral_constant<int, 16>{});
  } else {
    f(std::integral_constant<int, 8>{});
  }
}

}  // namespace

CpuPersistentPlan cpu_persistent_plan(CellKind kind, int64_t B, int64_t H,
                                      at::ScalarType dtype,
                                      Recurrence asked) {
  if (asked == Recurrence::kPerStep) {
    return {false, 1,
            "the per-step kernels were asked for (SEQKERNELS_RECURRENCE="
            "per_step)"};
  }
  if (dtype != at::kFloat && dtype != at::kHalf && dtype != at::kBFloat16) {
    return {false, 1,
            (dtype == at::kDouble ? std::string("float64")
                                  : std::string(c10::toString(dtype))) +
                ": the persistent kernel computes in float32 (float32, "
                "float16 and bfloat16 storage)"};
  }
  // Measured (README, "CPU recurrence"): from B = 128 at H = 512 up, the
  // per-step GEMMs of oneDNN are as fast or faster; below, the persistent
  // kernel is, by up to 10x on small layers.
  if (asked == Recurrence::kDefault && B >= kPerStepBatch &&
      H >= kPerStepHidden) {
    return {false, 1,
            "B = " + std::to_string(B) + " >= " +
                std::to_string(kPerStepBatch) + " and H = " +
                std::to_string(H) + " >= " + std::to_string(kPerStepHidden) +
                ": the per-step GEMMs are as fast there"};
  }
  // A second thread pays from about this much work per step on (measured:
  // an LSTM of H = 64 at B = 1, 16K multiply-adds, broke even).
  const int64_t work = B * cell_desc(kind).gates * H * H;
  const int threads = work < kThreadWork ? 1 : at::get_num_threads();
  return {true, threads,
          "w_hh packed once, every step in one parallel region of " +
              std::to_string(threads) + (threads == 1 ? " thread" : " threads")};
}

int64_t cpu_persistent_runs() { return g_runs; }

bool cpu_forward_seq(const CellDesc& cell, const SeqForward& seq) {
  const int64_t T = seq.xg.size(0), B = seq.xg.size(1), H = seq.h0.size(1);
  const CpuPersistentPlan plan = cpu_persistent_plan(
      cell.kind, B, H, seq.y.scalar_type(), recurrence_algorithm());
  if (!plan.serves) return false;
  const int G = cell.gates;
  dispatch_storage(seq.y.scalar_type(), [&](auto storage) {
    using scalar_t = decltype(storage);
    dispatch_cell(cell.kind, [&](auto cell_tag) {
      using Cell = decltype(cell_tag);
      dispatch_width([&](auto width) {
        constexpr int U = decltype(width)::value;
        using Job = ForwardJob<Cell, scalar_t, U>;
        const at::Tensor w = pack_gates(seq.w_hh, G, H, U);
        at::Tensor bias;
        if (seq.b_hh.defined()) {
          bias = pack_gates(seq.b_hh.view({G * H, 1}), G, H, U);
        }
        const at::Tensor h = at::empty({2, B, H}, seq.y.options());
        h[0].copy_(seq.h0);
        const at::Tensor hf =
            std::is_same_v<scalar_t, float> ? h : at::empty({2, B, H}, seq.xg.options());
        if (!std::is_same_v<scalar_t, float>) hf[0].copy_(seq.h0);
        const Split sp = split(B, H, U, Job::R, plan.threads);
        Job job{T, B, H, sp, cell.act, data<float>(w), data<float>(bias),
                data<float>(seq.xg),
                seq.lengths.has_value() ? seq.lengths->data_ptr<int64_t>() : nullptr,
                data<float>(seq.c_state), data<float>(seq.saved),
                data<float>(seq.cell_states), data<scalar_t>(seq.y),
                {data<scalar_t>(h[0]), data<scalar_t>(h[1])},
                {data<float>(hf[0]), data<float>(hf[1])},
                gate_table<Cell::kGates, U>(std::make_integer_sequence<int, kMaxRows>{})};
        run_steps(T, sp.tasks(), plan.threads, job);
        seq.h_n.copy_(h[T % 2]);
        ++g_runs;
      });
    });
  });
  return true;
}

bool cpu_backward_seq(const CellDesc& cell, const SeqBackward& seq) {
  const int64_t T = seq.grad_y.size(0), B = seq.grad_y.size(1),
                H = seq.grad_y.size(2);
  const CpuPersistentPlan plan = cpu_persistent_plan(
      cell.kind, B, H, seq.grad_y.scalar_type(), recurrence_algorithm());
  if (!plan.serves) return false;
  const int G = cell.gates;
  dispatch_storage(seq.grad_y.scalar_type(), [&](auto storage) {
    using scalar_t = decltype(storage);
    dispatch_cell(cell.kind, [&](auto cell_tag) {
      using Cell = decltype(cell_tag);
      dispatch_width([&](auto width) {
        constexpr int U = decltype(width)::value;
        using Job = BackwardJob<Cell, scalar_t, U>;
        // w_hh [G*H, H] -> [blocks][G*H][U]: the columns of each block.
        const int64_t blocks = (H + U - 1) / U;
        at::Tensor padded = seq.w_hh;
        if (blocks * U != H) {
          padded = at::constant_pad_nd(padded, {0, blocks * U - H});
        }
        const at::Tensor wt = padded.view({G * H, blocks, U})
                                  .permute({1, 0, 2})
                                  .to(at::kFloat)
                                  .contiguous();
        const Split sp = split(B, H, U, Job::R, plan.threads);
        Job job{T, B, H, sp, cell.act, data<float>(wt),
                data<scalar_t>(seq.grad_y), data<float>(seq.dh_carry),
                data<float>(seq.carry), data<float>(seq.saved),
                data<scalar_t>(seq.h_prev), data<float>(seq.c0),
                data<float>(seq.cell_states),
                seq.lengths.has_value() ? seq.lengths->data_ptr<int64_t>() : nullptr,
                data<float>(seq.grad_xg), data<float>(seq.grad_hg),
                carry_table<U>(std::make_integer_sequence<int, kMaxRows>{})};
        run_steps(T, sp.tasks(), plan.threads, job);
        ++g_runs;
      });
    });
  });
  return true;
}

}  // namespace seqkernels
