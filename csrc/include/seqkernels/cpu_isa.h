// SK_CPU_KERNEL marks a hot CPU loop to be compiled three times, for
// AVX-512 (x86-64-v4), AVX2 with FMA (x86-64-v3) and the baseline x86-64
// the extension is built for, with the copy that fits the CPU chosen when
// the library loads (GCC's target_clones, an ifunc). flatten inlines the
// loop's callees (cell_math.h, cpu_math.h) into each copy so that they are
// compiled for its instruction set too.
//
// The baseline alone has 4-wide SSE2 without FMA or blends: the LSTM cell's
// forward row measured 11.6 ns per unit there, 3.5 with AVX2 and 1.7 with
// AVX-512 on the AMD development machine. Results may differ between the
// copies by a few units in the last place (FMA contraction), never more.
// Elsewhere (other compilers, older GCC, other architectures) the macro is
// empty and the loop is compiled once, for the target the build asks for.
#pragma once

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && \
    !defined(__clang__) && __GNUC__ >= 11  // x86-64-v3/v4 came in GCC 11
#define SK_CPU_KERNEL \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", \
                               "default"),                          \
                 flatten))
#else
#define SK_CPU_KERNEL
#endif
