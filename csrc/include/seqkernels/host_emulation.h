// A host emulation of the few CUDA features the persistent kernels use, so
// that their very source runs on the CPU in CI (test infrastructure; see
// block_primitives.h for how a kernel reaches either these or the real ones).
//
// What is emulated, from the features' documented semantics:
//   - a grid of blocks, every thread a host thread, all blocks resident at
//     once (as a cooperative launch guarantees on the GPU); threadIdx,
//     blockIdx, blockDim, gridDim as thread-local values; 1-D blocks only;
//   - __syncthreads as a barrier of the block's threads (Barrier below);
//   - dynamic shared memory, one zero-filled buffer per block;
//   - the inter-block flags as atomic accesses with the kernel's own orders
//     (release stores, acquire loads, release/acquire fences; the
//     compiler's __atomic builtins, since the C++17 that older torch builds
//     use has no std::atomic_ref);
//   - nvcuda::wmma fragments. Their element layout is opaque by contract
//     (code may only touch fragment elements through whole-fragment loops),
//     so each thread holds the whole tile: load_matrix_sync reads the tile,
//     mma_sync computes the full tile product in float, store_matrix_sync
//     writes the tile, each lane a disjoint share of its elements (lane l the
//     elements l, l + 32, ...), so that no lane may read the tile before a
//     barrier, as on the GPU. __float_to_tf32 rounds as cvt.rna.tf32.f32;
//   - warp collectives (shuffles, ldmatrix, mma.sync: warp_mma.h) through
//     warp_exchange: every lane deposits its operands, the warp's 32 lanes
//     meet at a barrier, and every lane computes its own result from the
//     deposits, as the instruction's documented semantics define it;
//   - cp.async (block_primitives.h): each thread keeps its own copies, the
//     open ones and its committed groups, and a wait_group completes the
//     thread's oldest groups down to N. Where a copy's 16 bytes land is
//     either extreme that the PTX ISA allows (CpAsyncMode, chosen per
//     launch with set_cp_async_mode): kLate, at the wait that covers them
//     (a read of the destination before that wait sees its old contents),
//     or kEarly, at issue (a copy into a buffer that other warps still read
//     overwrites it under them). A kernel correct in both orders the
//     copies against the reads as the ISA requires, up to the races below.
//     A copy's source is read at issue (the kernels copy inputs that no
//     thread writes); its destination must be the block's shared memory,
//     16-byte aligned. A thread that returns with copies no wait covered
//     aborts the process: a prefetch nobody waits for is a bug here.
//
// What is not modelled: memory ordering beyond what the C++ memory model
// gives the same acquire/release operations (the GPU's weak ordering of
// plain accesses without a barrier or fence may be weaker), warp-level
// convergence (a collective here needs only every lane to call it, in the
// same order), the order in which a tensor core adds the products of a
// tile (here: k = 0, 1, ... in float), ldmatrix's shared state space (any
// host address is taken; only its 16-byte alignment is checked), bank
// conflicts, occupancy, register limits and timing; for cp.async, the
// moments between issue and wait (a copy lands whole, at one of the two
// ends), and whether a missing barrier between one thread's wait and
// another thread's read of the copy is caught: that is a race between host
// threads, which a test sees only when they happen to interleave so. A
// wait that never ends aborts the process with a message after
// kSpinSeconds instead of hanging.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace seqkernels {
namespace emu {

struct Dim3 {
  unsigned int x = 1, y = 1, z = 1;
};

// A reusable barrier of n threads (C++17 has no std::barrier): the last
// arrival of a generation wakes the others. The mutex orders every access
// before arrive_and_wait before every access after it, in all n threads.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const uint64_t generation = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  const int n_;
  int arrived_ = 0;
  uint64_t generation_ = 0;
};

inline constexpr int kWarpLanes = 32;

// Where the 32 lanes of a warp meet for a collective: a barrier of the warp
// and two deposit buffers, used in turn. One barrier per collective is
// enough: a lane can write a buffer again only two collectives later, after
// the barrier of the collective in between, which every lane reaches only
// once it has copied out the deposits of the earlier one.
struct WarpStage {
  static constexpr size_t kSlotBytes = 32;  // the largest deposit
  Barrier barrier{kWarpLanes};
  alignas(16) unsigned char slots[2][kWarpLanes][kSlotBytes];
};

// Where a cp.async copy's 16 bytes land (see the file comment): at the
// wait_group that covers it, or at issue.
enum class CpAsyncMode : int { kLate = 0, kEarly = 1 };

// The mode of the next launches (process-wide; a launch reads it once, so
// that a kernel runs wholly in one mode). Default kLate.
inline std::atomic<int>& cp_async_mode_slot() {
  static std::atomic<int> mode{int(CpAsyncMode::kLate)};
  return mode;
}
inline void set_cp_async_mode(CpAsyncMode mode) {
  cp_async_mode_slot().store(int(mode));
}
inline CpAsyncMode cp_async_mode() {
  return CpAsyncMode(cp_async_mode_slot().load());
}

// One cp.async copy: its destination and the 16 bytes it writes there.
struct AsyncCopy {
  unsigned char* dst;
  unsigned char bytes[16];
};

// The calling host thread's place in the emulated grid.
struct ThreadContext {
  Dim3 thread_idx, block_idx, block_dim, grid_dim;
  unsigned char* smem = nullptr;
  size_t smem_bytes = 0;
  Barrier* block_barrier = nullptr;
  WarpStage* warp_stage = nullptr;
  int stage_turn = 0;  // the buffer of warp_stage the next collective uses
  CpAsyncMode cp_async_mode = CpAsyncMode::kLate;
  std::vector<AsyncCopy> open_copies;  // issued since the last commit
  std::deque<std::vector<AsyncCopy>> copy_groups;  // committed, oldest first
};

inline ThreadContext& context() {
  static thread_local ThreadContext ctx;
  return ctx;
}

[[noreturn]] inline void fail(const char* what, const void* p) {
  std::fprintf(stderr, "seqkernels host emulation: %s (%p)\n", what, p);
  std::abort();
}

// cp.async.cg.shared.global [dst], [src], 16, in_range ? 16 : 0.
inline void cp_async16(void* dst, const void* src, bool in_range) {
  ThreadContext& ctx = context();
  unsigned char* d = static_cast<unsigned char*>(dst);
  if (d < ctx.smem || d + 16 > ctx.smem + ctx.smem_bytes) {
    fail("cp.async's destination is not the block's shared memory", dst);
  }
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(src) % 16 != 0) {
    fail("cp.async of 16 bytes at an address that is not 16-byte aligned",
         reinterpret_cast<uintptr_t>(dst) % 16 != 0 ? dst : src);
  }
  AsyncCopy copy;
  copy.dst = d;
  if (in_range) {
    std::memcpy(copy.bytes, src, 16);
  } else {
    std::memset(copy.bytes, 0, 16);  // src-size 0: zero-filled, src unread
  }
  if (ctx.cp_async_mode == CpAsyncMode::kEarly) {
    std::memcpy(d, copy.bytes, 16);
  }
  ctx.open_copies.push_back(copy);
}

// cp.async.commit_group: the open copies become the newest group (none
// makes an empty group, as on the GPU).
inline void cp_async_commit() {
  ThreadContext& ctx = context();
  ctx.copy_groups.push_back(std::move(ctx.open_copies));
  ctx.open_copies.clear();
}

// cp.async.wait_group n: the thread's groups older than its n most recent
// complete (under kLate their copies land now, oldest first); the open
// copies are in no group and stay pending.
inline void cp_async_wait(int n) {
  ThreadContext& ctx = context();
  while (ctx.copy_groups.size() > size_t(n)) {
    if (ctx.cp_async_mode == CpAsyncMode::kLate) {
      for (const AsyncCopy& copy : ctx.copy_groups.front()) {
        std::memcpy(copy.dst, copy.bytes, 16);
      }
    }
    ctx.copy_groups.pop_front();
  }
}

// Whether the thread has copies that no wait has covered.
inline bool cp_async_pending() {
  const ThreadContext& ctx = context();
  if (!ctx.open_copies.empty()) return true;
  for (const auto& group : ctx.copy_groups) {
    if (!group.empty()) return true;
  }
  return false;
}

inline constexpr double kSpinSeconds = 30.0;

// Runs body() as a grid of `blocks` blocks of `threads` host threads each
// (whole warps), with `smem_bytes` of zeroed dynamic shared memory per
// block, and returns when every thread has returned.
inline void launch(int blocks, int threads, size_t smem_bytes,
                   const std::function<void()>& body) {
  if (threads % kWarpLanes != 0) {
    std::fprintf(stderr, "seqkernels host emulation: %d threads per block "
                 "is not a whole number of warps\n", threads);
    std::abort();
  }
  const int warps = threads / kWarpLanes;
  const CpAsyncMode mode = cp_async_mode();
  std::vector<std::unique_ptr<unsigned char[]>> smem(blocks);
  std::vector<std::unique_ptr<Barrier>> barriers(blocks);
  std::vector<std::unique_ptr<WarpStage[]>> stages(blocks);
  for (int b = 0; b < blocks; ++b) {
    smem[b] = std::make_unique<unsigned char[]>(smem_bytes);
    std::memset(smem[b].get(), 0, smem_bytes);
    barriers[b] = std::make_unique<Barrier>(threads);
    stages[b] = std::make_unique<WarpStage[]>(warps);
  }
  std::vector<std::thread> pool;
  pool.reserve(size_t(blocks) * threads);
  for (int b = 0; b < blocks; ++b) {
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&, b, t] {
        ThreadContext& ctx = context();
        ctx.thread_idx = Dim3{unsigned(t), 1, 1};
        ctx.block_idx = Dim3{unsigned(b), 1, 1};
        ctx.block_dim = Dim3{unsigned(threads), 1, 1};
        ctx.grid_dim = Dim3{unsigned(blocks), 1, 1};
        ctx.smem = smem[b].get();
        ctx.smem_bytes = smem_bytes;
        ctx.block_barrier = barriers[b].get();
        ctx.warp_stage = &stages[b][t / kWarpLanes];
        ctx.stage_turn = 0;
        ctx.cp_async_mode = mode;
        body();
        if (cp_async_pending()) {
          fail("a thread returned with cp.async copies that no wait_group "
               "covered", ctx.smem);
        }
      });
    }
  }
  for (auto& th : pool) th.join();
}

inline void sync_block() { context().block_barrier->arrive_and_wait(); }

// A warp collective's exchange: every lane of the calling thread's warp
// deposits `mine` and receives the 32 deposits in lane order. All 32 lanes
// must call, in the same order of collectives (as on the GPU, where the
// .sync.aligned instructions require the whole warp).
template <typename T>
std::array<T, kWarpLanes> warp_exchange(const T& mine) {
  static_assert(sizeof(T) <= WarpStage::kSlotBytes &&
                    std::is_trivially_copyable<T>::value,
                "a deposit is a few registers");
  ThreadContext& ctx = context();
  unsigned char(*slots)[WarpStage::kSlotBytes] =
      ctx.warp_stage->slots[ctx.stage_turn];
  ctx.stage_turn ^= 1;
  std::memcpy(slots[ctx.thread_idx.x % kWarpLanes], &mine, sizeof(T));
  ctx.warp_stage->barrier.arrive_and_wait();
  std::array<T, kWarpLanes> all;
  for (int l = 0; l < kWarpLanes; ++l) {
    std::memcpy(&all[l], slots[l], sizeof(T));
  }
  return all;
}

// A spin that yields the core (blocks outnumber cores here) and gives up
// loudly: a wait that does not end is a protocol bug, never a hang.
struct Spin {
  std::chrono::steady_clock::time_point start =
      std::chrono::steady_clock::now();
  void pause(const char* what) {
    std::this_thread::yield();
    const double waited = std::chrono::duration<double>(
                              std::chrono::steady_clock::now() - start)
                              .count();
    if (waited > kSpinSeconds) {
      std::fprintf(stderr,
                   "seqkernels host emulation: block %u waited %.0f s for "
                   "%s; aborting\n",
                   context().block_idx.x, waited, what);
      std::abort();
    }
  }
};

// tf32: 10 explicit mantissa bits, rounded to nearest, ties away from zero
// (cvt.rna.tf32.f32); infinities and NaN pass.
inline float float_to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & ~0x1fffu;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

// nvcuda::wmma, whole-tile (see the file comment).
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };
namespace precision {
struct tf32 {};
}  // namespace precision

template <typename Use, int M, int N, int K>
struct TileShape;
template <int M, int N, int K>
struct TileShape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct TileShape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct TileShape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

// Elements are held in float (every operand type used here converts to
// float exactly), row-major over the tile.
template <typename Use, int M, int N, int K, typename T,
          typename Layout = void>
struct fragment {
  static constexpr int rows = TileShape<Use, M, N, K>::rows;
  static constexpr int cols = TileShape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  using layout = Layout;
  float x[num_elements];
};

template <typename Use, int M, int N, int K, typename T, typename L>
void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
  for (float& e : f.x) e = v;
}

template <typename Layout, typename P>
float element(const P* p, int r, int c, unsigned ld) {
  if constexpr (std::is_same_v<Layout, row_major>) {
    return float(p[size_t(r) * ld + c]);
  } else {
    return float(p[size_t(c) * ld + r]);
  }
}

template <typename Use, int M, int N, int K, typename T, typename L,
          typename P>
void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p,
                      unsigned ld) {
  using F = fragment<Use, M, N, K, T, L>;
  for (int r = 0; r < F::rows; ++r) {
    for (int c = 0; c < F::cols; ++c) {
      f.x[r * F::cols + c] = element<L>(p, r, c, ld);
    }
  }
}

template <int M, int N, int K, typename T>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, T>& f,
                       unsigned ld, layout_t layout) {
  for (int e = int(context().thread_idx.x % 32); e < M * N; e += 32) {
    const int r = e / N, c = e % N;
    if (layout == mem_row_major) {
      p[size_t(r) * ld + c] = f.x[e];
    } else {
      p[size_t(c) * ld + r] = f.x[e];
    }
  }
}

template <int M, int N, int K, typename TA, typename LA, typename TB,
          typename LB, typename TC>
void mma_sync(fragment<accumulator, M, N, K, TC>& d,
              const fragment<matrix_a, M, N, K, TA, LA>& a,
              const fragment<matrix_b, M, N, K, TB, LB>& b,
              const fragment<accumulator, M, N, K, TC>& c) {
  float out[M * N];
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      float acc = c.x[i * N + j];
      for (int k = 0; k < K; ++k) acc += a.x[i * K + k] * b.x[k * N + j];
      out[i * N + j] = acc;
    }
  }
  std::memcpy(d.x, out, sizeof(out));
}

inline float __float_to_tf32(float x) { return float_to_tf32(x); }

}  // namespace wmma
}  // namespace emu
}  // namespace seqkernels
