// The block- and grid-level primitives of the persistent kernels and the
// tensor-core attention (sdpa_tensor_core.h), for the GPU (nvcc) and for
// the host emulation that runs the same kernel source on the CPU in CI
// (host_emulation.h): thread and block indices, the block barrier, dynamic
// shared memory, 16-byte copies (plain, and asynchronous: cp.async), L2
// loads, the release/acquire flags between blocks, and the tensor-core
// tiles (nvcuda::wmma). The warp-level primitives (fragments of mma.sync)
// are in warp_mma.h.
//
// cp.async (sm_80+; PTX ISA, "Data Movement and Conversion Instructions:
// cp.async"): cp_async16 issues a 16-byte copy from global to shared
// memory that the thread does not wait for, so that a block can load its
// next tile while it computes on the current one; out-of-range chunks are
// zero-filled by the same instruction (src-size 0: nothing is read).
// cp_async_commit closes the thread's copies issued since the last commit
// into a group; cp_async_wait<N> waits until at most the N most recent of
// the thread's committed groups are pending. Both act on the calling
// thread's own copies only: a copy is visible to the thread that issued it
// after its covering wait, and to the block's other threads after a block
// barrier that follows that wait. Until then the destination holds
// either its old or its new contents, and writing it, or reading it, is a
// race. The host emulation models the two extremes the ISA allows
// (host_emulation.h: a copy lands at the covering wait, or at issue).
//
// Why WMMA rather than CuTe's mma.sync atoms: a block's recurrent product is
// a handful of 16x16 tiles per warp per step, which WMMA's m16n16k16
// (bf16/fp16) and m16n16k8 (tf32) shapes express directly and which
// compile to the same HMMA instructions on sm_80 and sm_90; WMMA fragments
// are opaque, so the host emulation can hold whole tiles and be exact by
// construction, where CuTe's atoms would have to be re-emulated lane by lane
// from their layouts; and it needs no header beyond the toolkit's.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>

#if defined(__CUDACC__)
#include <cuda/atomic>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#define SK_DEVICE __device__ __forceinline__
#define SK_UNROLL _Pragma("unroll")
#else
#include <atomic>
#include <cstring>

#include "seqkernels/host_emulation.h"
#define SK_DEVICE inline
#define SK_UNROLL
#endif

namespace seqkernels {
namespace blk {

#if defined(__CUDACC__)

namespace wmma = nvcuda::wmma;

SK_DEVICE int thread_index() { return int(threadIdx.x); }
SK_DEVICE int block_index() { return int(blockIdx.x); }
SK_DEVICE void sync() { __syncthreads(); }
SK_DEVICE unsigned char* smem() {
  extern __shared__ __align__(128) unsigned char sk_dynamic_smem[];
  return sk_dynamic_smem;
}

// 16 bytes from src to dst, both 16-byte aligned: one vector load and store.
SK_DEVICE void copy16(void* dst, const void* src) {
  *static_cast<uint4*>(dst) = *static_cast<const uint4*>(src);
}
SK_DEVICE void zero16(void* dst) {
  *static_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
}

// cp.async.cg: the copy bypasses L1 (a block reads each tile once; L2
// serves the other blocks of the same head). src must be a valid global
// address even where !in_range (src-size 0 reads nothing, but the operand
// is still an address), dst 16-byte aligned shared memory.
SK_DEVICE void cp_async16(void* dst, const void* src, bool in_range) {
  const unsigned d = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n"
               :
               : "r"(d), "l"(src), "r"(in_range ? 16 : 0)
               : "memory");
}
SK_DEVICE void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int N>
SK_DEVICE void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// A load served by L2 (ld.global.cg): data another block has published is
// never read from a stale line of this SM's L1.
SK_DEVICE float load_l2(const float* p) { return __ldcg(p); }
template <typename T>
SK_DEVICE T load_l2(const T* p) {
  static_assert(sizeof(T) == 2, "16-bit storage types only");
  return T(__ldcg(reinterpret_cast<const unsigned short*>(p)),
           T::from_bits());
}

// The element type that WMMA takes for a storage type.
template <typename T>
struct MmaType;
template <>
struct MmaType<c10::Half> {
  using type = __half;
};
template <>
struct MmaType<c10::BFloat16> {
  using type = __nv_bfloat16;
};
template <typename T>
SK_DEVICE const typename MmaType<T>::type* mma_ptr(const T* p) {
  return reinterpret_cast<const typename MmaType<T>::type*>(p);
}

// Publishes `value` in *flag: every write of the block before the barrier
// that precedes this call is visible to a block that reads the value with
// wait_at_least (release at GPU scope, after a fence that makes the block's
// other threads' writes, ordered by the barrier, cumulative).
SK_DEVICE void publish(int* flag, int value) {
  cuda::atomic_thread_fence(cuda::memory_order_release,
                            cuda::thread_scope_device);
  cuda::atomic_ref<int, cuda::thread_scope_device>(*flag).store(
      value, cuda::memory_order_release);
}

// Waits until *flag >= value (acquire loads). A wait that does not end is a
// protocol bug: after about 2^26 sleeps (seconds) the kernel traps, which
// the host sees as a CUDA error instead of a hung GPU.
SK_DEVICE void wait_at_least(const int* flag, int value) {
  cuda::atomic_ref<int, cuda::thread_scope_device> f(*const_cast<int*>(flag));
  for (unsigned spins = 0; f.load(cuda::memory_order_acquire) < value;
       ++spins) {
    if (spins > 1024u) __nanosleep(64);
    if (spins > (1u << 26)) __trap();
  }
}

#else  // host emulation

namespace wmma = emu::wmma;

inline int thread_index() { return int(emu::context().thread_idx.x); }
inline int block_index() { return int(emu::context().block_idx.x); }
inline void sync() { emu::sync_block(); }
inline unsigned char* smem() { return emu::context().smem; }

// The GPU's 16-byte accesses fault when misaligned: so does the emulation.
inline void check_aligned16(const void* p) {
  if (reinterpret_cast<uintptr_t>(p) % 16 != 0) {
    std::fprintf(stderr, "seqkernels host emulation: 16-byte access at %p "
                 "is not 16-byte aligned\n", p);
    std::abort();
  }
}
inline void copy16(void* dst, const void* src) {
  check_aligned16(dst);
  check_aligned16(src);
  std::memcpy(dst, src, 16);
}
inline void zero16(void* dst) {
  check_aligned16(dst);
  std::memset(dst, 0, 16);
}

inline void cp_async16(void* dst, const void* src, bool in_range) {
  emu::cp_async16(dst, src, in_range);
}
inline void cp_async_commit() { emu::cp_async_commit(); }
template <int N>
inline void cp_async_wait() {
  static_assert(N >= 0, "a count of groups");
  emu::cp_async_wait(N);
}

template <typename T>
inline T load_l2(const T* p) {
  return *p;
}

template <typename T>
struct MmaType {
  using type = T;
};
template <typename T>
inline const T* mma_ptr(const T* p) {
  return p;
}

inline void publish(int* flag, int value) {
  std::atomic_thread_fence(std::memory_order_release);
  __atomic_store_n(flag, value, __ATOMIC_RELEASE);
}

inline void wait_at_least(const int* flag, int value) {
  emu::Spin spin;
  while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) < value) spin.pause("a flag");
}

#endif

inline constexpr int kWarpSize = 32;

SK_DEVICE int warp_index() { return thread_index() / kWarpSize; }

}  // namespace blk
}  // namespace seqkernels
