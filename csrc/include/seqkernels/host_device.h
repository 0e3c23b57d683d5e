// SK_HD marks a function that compiles for both the GPU and the host: under
// nvcc __host__ __device__ and inlined, in plain C++ inline. The headers of
// math shared by the CPU and CUDA kernels (cell_math.h) and by the CUDA
// kernels and their host emulation (attention_math.h) use it.
#pragma once

#if defined(__CUDACC__)
#define SK_HD __host__ __device__ __forceinline__
#else
#define SK_HD inline
#endif
