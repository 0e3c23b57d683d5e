// Counter-based dropout: whether element `index` of an attention matrix is
// kept is a pure function of (seed, offset, index), so the backward pass
// regenerates the forward's mask instead of storing it, and every backend
// (CPU, CUDA, Triton, reference) draws the very same mask.
//
// All arithmetic is on uint32 and wraps. The same steps, in the same order,
// are written in seqkernels/reference/dropout.py and triton_kernels/
// dropout.py; change one, change all three.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SK_HD_HASH __host__ __device__ __forceinline__
#else
#define SK_HD_HASH inline
#endif

namespace seqkernels {

// A 32-bit integer finalizer: every input bit affects every output bit.
SK_HD_HASH uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Per-launch key from the generator state (seed, offset).
SK_HD_HASH uint32_t dropout_key(int64_t seed, int64_t offset) {
  return mix32(static_cast<uint32_t>(seed) ^
               mix32(static_cast<uint32_t>(offset) ^ 0x9e3779b9U));
}

// Uniform in [0, 1) with 24 random bits, for element `index`.
SK_HD_HASH float dropout_uniform(uint32_t key, int64_t index) {
  const uint64_t i = static_cast<uint64_t>(index);
  const uint32_t k = mix32(static_cast<uint32_t>(i >> 32) ^ key);
  const uint32_t r = mix32(static_cast<uint32_t>(i) ^ k);
  return static_cast<float>(r >> 8) * (1.0f / 16777216.0f);
}

// Element kept (and scaled by 1 / (1 - p)) when its uniform is >= p.
SK_HD_HASH bool dropout_keep(uint32_t key, int64_t index, float p) {
  return dropout_uniform(key, index) >= p;
}

}  // namespace seqkernels
