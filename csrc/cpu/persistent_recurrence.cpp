// The CPU's persistent recurrence (contract and rule in cpu_persistent.h).
//
// A forward task owns a block of hidden units (all gates) of a chunk of
// rows. Per step it computes, R rows at a time, the recurrent product of
// those rows and units in registers (products: for each k, V vectors of U
// packed weights times the broadcast h[r, k]), then runs the cell on them
// (forward_cells) and publishes the new h of its units. A backward task
// owns a block of units likewise: it computes the carried gradient dh of
// its units from the whole recurrent-side gradient of the step after (the
// same products over the transposed packing) and runs the cell backward on
// them. V is 4 (3 for the GRU's forward): the forward's vectors are the
// gates of U units, the RNN's forward and every backward take 4U units a
// block, so that each k loads V weight vectors and R broadcasts for V * R
// FMAs (one vector and R broadcasts would leave the FMAs waiting on loads).
//
// The products sum over k in order, in float32 with FMA, split into a few
// independent partial sums where the rows and gates alone give too few
// chains of FMAs to hide their latency; the split depends only on the
// number of rows of the block (R) and the chunks of k on the layout alone
// (chunk), so a result does not depend on the number of threads
// (test_persistent_cpu.py; before chunk took the rows of a task, a block
// of one row summed in a thread-dependent order).
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
// AVX-512, else one AVX2 register (the results do not depend on it), or
// what set_cpu_unit_width asked for (tests).
std::atomic<int> g_width{0};

int unit_width() {
  const int asked = g_width.load(std::memory_order_relaxed);
  if (asked != 0) return asked;
#if defined(__x86_64__) && defined(__GNUC__)
  static const int u = __builtin_cpu_supports("avx512f") ? 16 : 8;
  return u;
#else
  return 8;
#endif
}

// Rows per register block of the product: R * V accumulators of U floats
// plus V weight vectors fit the 32 AVX-512 or 16 AVX2 registers.
constexpr int block_rows(int V, int U) {
  return std::max(1, (U == 16 ? 24 : 12) / V);
}
constexpr int kMaxRows = 8;
// A task runs its rows in groups of at most kGroupRows (whole register
// blocks), and the products of a group over k (n in the backward) in chunks
// whose weights and operand rows fit L1 together (kL1Floats: 32 KB of the
// 48 KB of the development machine), so that each chunk of weights comes
// from L2 once per group and the group's rows reuse it from L1.
constexpr int64_t kGroupRows = 64;
constexpr int64_t kL1Floats = 8192;

// The row stride of the products' operand rows (h, the gate gradients) in
// the kernel's own copies: n rounded up to 16 floats, plus 16, so that the
// rows of a group, read together, do not fall into the same few L1 sets as
// rows of a power-of-two stride would (H = 256, 512).
int64_t padded_stride(int64_t n) { return (n + 15) / 16 * 16 + 16; }

// The chunk of k of a product over K whose weights take `per_k` floats per
// k, for groups of up to `rows` rows: K in equal chunks (multiples of 8, at
// least 8) whose weights and rows fit kL1Floats together. It depends on the
// layout alone, not on the rows a task got, so that where products splits
// its sums (S > 1) the order of additions does not depend on the number of
// threads; equal chunks leave no short last one.
int64_t chunk(int64_t per_k, int64_t rows, int64_t K) {
  const int64_t most =
      std::max<int64_t>(8, kL1Floats / (per_k + rows) / 8 * 8);
  const int64_t pieces = (K + most - 1) / most;
  return ((K + pieces - 1) / pieces + 7) / 8 * 8;
}

// The rule's numbers (cpu_persistent_plan).
constexpr int64_t kPerStepBatch = 64, kPerStepHidden = 512;
constexpr int64_t kThreadWork = 16384;

// out[r * ldo + v * U + l] = (accumulate ? out[..] : 0)
//                           + sum_k h[r * ldh + k] w[(k * V + v) * U + l]
//                           (+ bias[v * U + l] where bias is given)
template <int V, int U, int R>
SK_CPU_KERNEL void products(int64_t K, const float* __restrict__ w,
                            const float* __restrict__ bias,
                            const float* __restrict__ h, int64_t ldh,
                            float* __restrict__ out, int64_t ldo,
                            bool accumulate) {
  using Vf = typename Vec<U>::type;
  // Partial sums over k: 8 chains of FMAs in flight hide their latency.
  constexpr int S = R * V >= 8 ? 1 : R * V >= 4 ? 2 : 4;
  Vf acc[S][R][V];
  for (int q = 0; q < S; ++q)
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < V; ++v) {
        acc[q][r][v] = q == 0 && accumulate
                           ? vload<Vf>(out + r * ldo + v * U)
                           : Vf{};
      }
  int64_t k = 0;
  for (; k + S <= K; k += S) {
    for (int q = 0; q < S; ++q) {
      Vf wv[V];
      for (int v = 0; v < V; ++v) {
        wv[v] = vload<Vf>(w + ((k + q) * V + v) * U);
      }
      for (int r = 0; r < R; ++r) {
        const float hv = h[r * ldh + k + q];
        for (int v = 0; v < V; ++v) acc[q][r][v] += hv * wv[v];
      }
    }
  }
  for (; k < K; ++k) {
    for (int v = 0; v < V; ++v) {
      const Vf wv = vload<Vf>(w + (k * V + v) * U);
      for (int r = 0; r < R; ++r) acc[0][r][v] += h[r * ldh + k] * wv;
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int v = 0; v < V; ++v) {
      Vf sum = acc[0][r][v];
      for (int q = 1; q < S; ++q) sum += acc[q][r][v];
      if (bias != nullptr) sum += vload<Vf>(bias + v * U);
      vstore(out + r * ldo + v * U, sum);
    }
  }
}

using ProductFn = void (*)(int64_t, const float*, const float*, const float*,
                           int64_t, float*, int64_t, bool);

// The products for 1 .. R rows: entry r - 1 takes r rows.
template <int V, int U, int... r>
std::array<ProductFn, kMaxRows> product_table(std::integer_sequence<int, r...>) {
  return {&products<V, U, std::min(r + 1, block_rows(V, U))>...};
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

// At least this many weights per parallel chunk of a packing: smaller
// layers pack on the calling thread (a wake-up of the pool costs more).
constexpr int64_t kPackGrain = 1 << 16;

// w [G*H, K] (storage type, contiguous; rows grouped [G][H]) as float32
// [blocks][K][G][UB], the units beyond H zero: for each k, a block's gates
// of its UB units side by side, as the forward's products read them. A
// loop of our own: as a permuted copy through TensorIterator the inner
// dimension (a unit) has stride K, and that copy took longer than the
// recurrence of a short sequence (2 ms at H = 512).
template <typename scalar_t>
at::Tensor pack_gates(const at::Tensor& w, int G, int64_t H, int UB) {
  const int64_t K = w.size(1), blocks = (H + UB - 1) / UB;
  at::Tensor out = at::empty({blocks, K, G, UB}, w.options().dtype(at::kFloat));
  const scalar_t* src = w.data_ptr<scalar_t>();
  float* dst = out.data_ptr<float>();
  const int64_t pitch = int64_t(G) * UB;  // between consecutive k
  const int64_t grain = std::max<int64_t>(1, kPackGrain / (K * UB));
  at::parallel_for(0, blocks * G, grain, [&](int64_t begin, int64_t end) {
    for (int64_t bg = begin; bg < end; ++bg) {
      const int64_t b = bg / G, g = bg % G;
      float* o = dst + b * K * pitch + g * UB;
      // Unit by unit: a row is read in order; the K output lines it writes
      // (UB floats apart) stay in L1 for the block's next unit.
      for (int u = 0; u < UB; ++u) {
        const int64_t j = b * UB + u;
        if (j < H) {
          const scalar_t* row = src + (g * H + j) * K;
          for (int64_t k = 0; k < K; ++k) o[k * pitch + u] = float(row[k]);
        } else {
          for (int64_t k = 0; k < K; ++k) o[k * pitch + u] = 0.0f;
        }
      }
    }
  });
  return out;
}

// w [rows, H] (storage type, contiguous) as float32 [blocks][rows][UB]:
// block b holds the columns b*UB .. b*UB + UB of every row, zero beyond H,
// as the backward's products read them.
template <typename scalar_t>
at::Tensor pack_columns(const at::Tensor& w, int64_t H, int UB) {
  const int64_t rows = w.size(0), blocks = (H + UB - 1) / UB;
  at::Tensor out = at::empty({blocks, rows, UB}, w.options().dtype(at::kFloat));
  const scalar_t* src = w.data_ptr<scalar_t>();
  float* dst = out.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(1, kPackGrain / (rows * UB));
  at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t j0 = b * UB, n = std::min<int64_t>(UB, H - j0);
      for (int64_t r = 0; r < rows; ++r) {
        const scalar_t* in = src + r * H + j0;
        float* o = dst + (b * rows + r) * UB;
        for (int64_t u = 0; u < n; ++u) o[u] = float(in[u]);
        for (int64_t u = n; u < UB; ++u) o[u] = 0.0f;
      }
    }
  });
  return out;
}

// The forward of a whole sequence (SeqForward), T the storage dtype.
template <typename Cell, typename T, int U>
struct ForwardJob {
  using CellType = Cell;
  using Storage = T;
  static constexpr int kU = U;
  static constexpr int G = Cell::kGates, S = Cell::kSaved;
  // Vectors per k, units per block (module comment).
  static constexpr int V = G == 1 ? 4 : G, UB = U * V / G;
  static constexpr int R = block_rows(V, U);
  int64_t steps, B, H;
  Split sp;
  Activation act;
  const float* w;     // [blocks][H][G][UB]
  const float* bias;  // [blocks][G][UB] or null
  const float* xg;    // [T][B][G*H]
  const int64_t* lengths;
  float* c;      // [B][H] (kHasC)
  float* saved;  // [T][B][S*H] (may be xg)
  float* cs;     // [T][B][H] (kHasC)
  T* y;          // [T][B][H]
  T* h[2];       // [B][H] ping-pong: h of the step before, of this one
  float* hf[2];  // [B][ldh]: the same as float32, the product's operand
  int64_t ldh;
  std::array<ProductFn, kMaxRows> product;

  void operator()(int64_t task, int64_t s) const {
    const int64_t u = task % sp.blocks, j0 = u * UB;
    const int64_t n = std::min<int64_t>(UB, H - j0);
    const int64_t r0 = task / sp.blocks * sp.chunk_rows;
    const int64_t r1 = std::min(B, r0 + sp.chunk_rows);
    const float* hf_in = hf[s % 2];
    constexpr int64_t kRows = std::max<int64_t>(R, kGroupRows / R * R);
    float hg[kRows * V * U];
    for (int64_t g0 = r0; g0 < r1; g0 += kRows) {
      const int64_t g1 = std::min(r1, g0 + kRows);
      const int64_t step_k = chunk(V * U, kRows, H);
      for (int64_t k0 = 0; k0 < H; k0 += step_k) {
        const int64_t kc = std::min(step_k, H - k0);
        for (int64_t b = g0; b < g1; b += R) {
          product[std::min<int64_t>(R, g1 - b) - 1](
              kc, w + (u * H + k0) * V * U,
              bias != nullptr && k0 + kc == H ? bias + u * V * U : nullptr,
              hf_in + b * ldh + k0, ldh, hg + (b - g0) * V * U, V * U,
              k0 > 0);
        }
      }
      forward_cells(*this, s, g0, g1, j0, n, hg);
    }
  }
};

// The cells of rows g0 .. g1 of a forward task's block of units at step s,
// hg its products, and what the step publishes: one call per group of
// rows, compiled per instruction set with the copies into y and hf (a call
// of forward_row per row went through the ifunc each time, and a row's
// cell is one vector of units: its chain of an exp, a division and a tanh
// after them is latency, which the next row's cell can overlap only within
// one loop).
template <typename Job>
SK_CPU_KERNEL void forward_cells(const Job& job, int64_t s, int64_t g0,
                                 int64_t g1, int64_t j0, int64_t n,
                                 const float* hg) {
  using Cell = typename Job::CellType;
  using T = typename Job::Storage;
  constexpr int G = Job::G, S = Job::S, VU = Job::V * Job::kU;
  const int64_t B = job.B, H = job.H, ldh = job.ldh;
  const T* h_in = job.h[s % 2];
  T* h_out = job.h[(s + 1) % 2];
  const float* hf_in = job.hf[s % 2];
  float* hf_out = job.hf[(s + 1) % 2];
  with_activation<Cell>(job.act, [&](auto act) {
    for (int64_t row = g0; row < g1; ++row) {
      const int64_t at = s * B + row, hj = row * H + j0;
      float* sv = job.saved + at * S * H + j0;
      T* yo = job.y + at * H + j0;
      if (active(job.lengths, row, s)) {
        float* c_row = Cell::kHasC ? job.c + hj : nullptr;
        forward_units<Cell, decltype(act)::value>(
            n, H, job.xg + at * G * H + j0, hg + (row - g0) * VU, Job::UB,
            h_in + hj, c_row, c_row,
            Cell::kHasC ? job.cs + at * H + j0 : nullptr, sv, h_out + hj);
        for (int64_t l = 0; l < n; ++l) {
          yo[l] = h_out[hj + l];
          hf_out[row * ldh + j0 + l] = static_cast<float>(h_out[hj + l]);
        }
      } else {
        for (int k = 0; k < S; ++k) {
          std::fill(sv + k * H, sv + k * H + n, 0.f);
        }
        if (Cell::kHasC) {
          std::fill(job.cs + at * H + j0, job.cs + at * H + j0 + n, 0.f);
        }
        std::fill(yo, yo + n, T(0));
        std::copy(h_in + hj, h_in + hj + n, h_out + hj);
        std::copy(hf_in + row * ldh + j0, hf_in + row * ldh + j0 + n,
                  hf_out + row * ldh + j0);
      }
    }
  });
}

// The backward of a whole sequence (SeqBackward); task i runs step
// T - 1 - i.
template <typename Cell, typename T, int U>
struct BackwardJob {
  static constexpr int G = Cell::kGates, S = Cell::kSaved;
  static constexpr int V = 4, UB = V * U;
  static constexpr int R = block_rows(V, U);
  int64_t steps, B, H;
  Split sp;
  Activation act;
  const float* wt;      // [blocks][G*H][UB]
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
  float* gp[2];         // [B][ldg] ping-pong: a copy of gh[s], the product's
  int64_t ldg;          // operand at step s - 1
  std::array<ProductFn, kMaxRows> product;

  void operator()(int64_t task, int64_t i) const {
    const int64_t s = steps - 1 - i;
    const int64_t u = task % sp.blocks, j0 = u * UB;
    const int64_t n = std::min<int64_t>(UB, H - j0);
    const int64_t r0 = task / sp.blocks * sp.chunk_rows;
    const int64_t r1 = std::min(B, r0 + sp.chunk_rows);
    constexpr int64_t kRows = std::max<int64_t>(R, kGroupRows / R * R);
    float prod[kRows * UB];
    const int64_t N = G * H;
    for (int64_t g0 = r0; g0 < r1; g0 += kRows) {
      const int64_t g1 = std::min(r1, g0 + kRows);
      const int64_t step_n = chunk(UB, kRows, N);
      if (s + 1 < steps) {
        for (int64_t n0 = 0; n0 < N; n0 += step_n) {
          const int64_t nc = std::min(step_n, N - n0);
          for (int64_t b = g0; b < g1; b += R) {
            product[std::min<int64_t>(R, g1 - b) - 1](
                nc, wt + (u * N + n0) * UB, nullptr,
                gp[(s + 1) % 2] + b * ldg + n0, ldg, prod + (b - g0) * UB,
                UB, n0 > 0);
          }
        }
        for (int64_t row = g0; row < g1; ++row) {
          if (!active(lengths, row, s + 1)) continue;
          float* d = dh_carry + row * H + j0;
          const float* p = prod + (row - g0) * UB;
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
        float* gp_row = gp[s % 2] + row * ldg + j0;
        if (!active(lengths, row, s)) {
          for (int g = 0; g < G; ++g) {
            std::fill(gx_row + g * H, gx_row + g * H + n, 0.f);
            if (gh_row != nullptr) std::fill(gh_row + g * H, gh_row + g * H + n, 0.f);
            std::fill(gp_row + g * H, gp_row + g * H + n, 0.f);
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
        const float* written = Cell::kSplitGrad ? gh_row : gx_row;
        for (int g = 0; g < G; ++g) {
          std::copy(written + g * H, written + g * H + n, gp_row + g * H);
        }
      }
    }
  }
};

std::atomic<int64_t> g_runs{0};

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
  // Measured (README, "CPU recurrence"): from B = 64 at H = 512 up, the
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

void set_cpu_unit_width(int units) {
  TORCH_CHECK(units == 0 || units == 8 || units == 16,
              "seqkernels: the CPU kernel's unit width must be 8, 16 or 0 "
              "(the CPU's own), got ", units);
  g_width = units;
}

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
        // Packed once per op call: a chunked call keeps it in
        // seq.prepared for its next chunks.
        at::Tensor w = seq.prepared != nullptr ? *seq.prepared : at::Tensor();
        if (!w.defined()) {
          w = pack_gates<scalar_t>(seq.w_hh, G, H, Job::UB);
          if (seq.prepared != nullptr) *seq.prepared = w;
        }
        at::Tensor bias;
        if (seq.b_hh.defined()) {
          bias = pack_gates<scalar_t>(seq.b_hh.view({G * H, 1}), G, H,
                                         Job::UB);
        }
        const at::Tensor h = at::empty({2, B, H}, seq.y.options());
        h[0].copy_(seq.h0);
        const int64_t ldh = padded_stride(H);
        const at::Tensor hf = at::empty({2, B, ldh}, seq.xg.options());
        hf[0].narrow(1, 0, H).copy_(seq.h0);
        const Split sp = split(B, H, Job::UB, Job::R, plan.threads);
        Job job{T, B, H, sp, cell.act, ptr<float>(w), ptr<float>(bias),
                ptr<float>(seq.xg),
                lengths_ptr(seq.lengths),
                ptr<float>(seq.c_state), ptr<float>(seq.saved),
                ptr<float>(seq.cell_states), ptr<scalar_t>(seq.y),
                {ptr<scalar_t>(h[0]), ptr<scalar_t>(h[1])},
                {ptr<float>(hf[0]), ptr<float>(hf[1])}, ldh,
                product_table<Job::V, U>(
                    std::make_integer_sequence<int, kMaxRows>{})};
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
        constexpr int UB = Job::UB;
        const at::Tensor wt = pack_columns<scalar_t>(seq.w_hh, H, UB);
        const Split sp = split(B, H, UB, Job::R, plan.threads);
        const int64_t ldg = padded_stride(G * H);
        const at::Tensor gp = at::empty({2, B, ldg}, seq.grad_xg.options());
        Job job{T, B, H, sp, cell.act, ptr<float>(wt),
                ptr<scalar_t>(seq.grad_y), ptr<float>(seq.dh_carry),
                ptr<float>(seq.carry), ptr<float>(seq.saved),
                ptr<scalar_t>(seq.h_prev), ptr<float>(seq.c0),
                ptr<float>(seq.cell_states),
                lengths_ptr(seq.lengths),
                ptr<float>(seq.grad_xg), ptr<float>(seq.grad_hg),
                {ptr<float>(gp[0]), ptr<float>(gp[1])}, ldg,
                product_table<Job::V, U>(
                    std::make_integer_sequence<int, kMaxRows>{})};
        run_steps(T, sp.tasks(), plan.threads, job);
        ++g_runs;
      });
    });
  });
  return true;
}

}  // namespace seqkernels
