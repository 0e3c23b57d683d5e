// Warp-level tensor-core primitives for the GPU (inline PTX) and for the
// host emulation (host_emulation.h), which computes every lane's result
// from the layouts that the PTX ISA documents, so that a kernel written on
// them runs on the CPU in CI with the very fragments it holds on the GPU:
//   - mma_16816: mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,
//     f16}.f32, D = A B + C with A 16x16, B 16x8, C and D 16x8 in float;
//   - ldmatrix_x4 / ldmatrix_x4_trans: ldmatrix.sync.aligned.m8n8.x4
//     {,.trans}.shared.b16, four 8x8 matrices of 16-bit elements from shared
//     memory;
//   - shfl_xor: __shfl_xor_sync over the full warp;
//   - pack2: two floats rounded to a 16-bit type, packed into one register.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16" with
// floating-point types; the same as CuTe's SM80_16x8x16 MMA_Traits):
// lane = 4 g + t (g = lane / 4, t = lane % 4); a .b32 register holds two
// 16-bit elements, the lower-indexed one in bits 0..15.
//   A (16 x 16, row-major, 4 registers): a0 = (row g, cols 2t, 2t+1),
//     a1 = (row g+8, cols 2t, 2t+1), a2 = (row g, cols 2t+8, 2t+9),
//     a3 = (row g+8, cols 2t+8, 2t+9);
//   B (16 x 8, k x n, 2 registers): b0 = (k 2t, 2t+1; n g),
//     b1 = (k 2t+8, 2t+9; n g);
//   C, D (16 x 8 float, 4 registers): c0, c1 = (row g, cols 2t, 2t+1),
//     c2, c3 = (row g+8, cols 2t, 2t+1).
// ldmatrix .x4: lanes 8i .. 8i+7 give the addresses of rows 0..7 of matrix
// i (16 bytes each, 16-byte aligned); register i of every lane receives two
// elements of matrix i: (row g, cols 2t, 2t+1), or with .trans (rows 2t,
// 2t+1; col g), the fragment of the transposed matrix.
//
// Why hand-written PTX rather than WMMA or CuTe: the attention kernel reuses
// the S accumulators as the A operand of P V, which needs the fragments'
// element layout (WMMA's is opaque by contract); CuTe's atoms issue the same
// instructions, so the emulation would still model them lane by lane, and
// CUTLASS's headers would be a new build dependency for four instructions
// whose layouts the PTX ISA documents.
//
// The emulated mma adds in a fixed order: for each element of D, c, then
// the products k = 0, 1, ..., 15 one at a time in float (every product of
// two bf16 or two f16 values is exact in float). The tensor core's own
// order and internal precision are not modelled.
#pragma once

#include <cstdint>
#include <type_traits>

#include "seqkernels/block_primitives.h"

namespace seqkernels {
namespace warp {

inline constexpr int kLanes = 32;

SK_DEVICE int lane() { return blk::thread_index() % kLanes; }

// A 16-bit storage type's bits, and back (c10::Half, c10::BFloat16).
template <typename T>
SK_DEVICE uint16_t bits_of(T x) {
  return x.x;
}
template <typename T>
SK_DEVICE float float_of_bits(uint16_t b) {
  return static_cast<float>(T(b, T::from_bits()));
}

// lo and hi rounded to T (to nearest, ties to even), lo in bits 0..15.
template <typename T>
SK_DEVICE uint32_t pack2(float lo, float hi) {
  return uint32_t(bits_of(T(lo))) | (uint32_t(bits_of(T(hi))) << 16);
}

// The (row, col) of a 16 x 16 tile of 16-bit elements whose address this
// lane gives to ldmatrix .x4 (lane L gives row L % 8 of matrix L / 8).
struct TileCoord {
  int row, col;
};
// Matrices (rows 0-7, cols 0-7), (rows 8-15, cols 0-7), (rows 0-7, cols
// 8-15), (rows 8-15, cols 8-15): of a row-major A tile, registers a0..a3;
// with .trans, of a row-major k x n tile, b0, b1 of the B fragments of
// columns n 0-7, then b0, b1 of columns n 8-15.
SK_DEVICE TileCoord x4_rows_a(int lane) {
  return {lane % 8 + 8 * ((lane / 8) % 2), 8 * (lane / 16)};
}
// Matrices (rows 0-7, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols
// 0-7), (rows 8-15, cols 8-15) of an n x k tile (row n is column n of B),
// without .trans: b0, b1 of columns n 0-7, then b0, b1 of columns n 8-15.
SK_DEVICE TileCoord x4_rows_bt(int lane) {
  return {lane % 8 + 8 * (lane / 16), 8 * ((lane / 8) % 2)};
}

// The A fragment (rounded to T) of a 16 x 16 product held as two C
// fragments, lo its columns 0-7 and hi its columns 8-15: C's (row g, cols
// 2t, 2t+1) and (row g+8, ...) are A's a0, a1 for lo and a2, a3 for hi.
template <typename T>
SK_DEVICE void a_from_c(uint32_t (&a)[4], const float (&lo)[4],
                        const float (&hi)[4]) {
  a[0] = pack2<T>(lo[0], lo[1]);
  a[1] = pack2<T>(lo[2], lo[3]);
  a[2] = pack2<T>(hi[0], hi[1]);
  a[3] = pack2<T>(hi[2], hi[3]);
}

#if defined(__CUDACC__)

SK_DEVICE float shfl_xor(float x, int mask) {
  return __shfl_xor_sync(0xffffffffu, x, mask);
}

SK_DEVICE void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* row) {
  const unsigned addr =
      static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile(
      "ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "r"(addr));
}

SK_DEVICE void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t* row) {
  const unsigned addr =
      static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile(
      "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, "
      "[%4];\n"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "r"(addr));
}

// d += a b, T = c10::BFloat16 or c10::Half (the operands' type).
template <typename T>
SK_DEVICE void mma_16816(float (&d)[4], const uint32_t (&a)[4],
                         const uint32_t (&b)[2]) {
  if constexpr (std::is_same<T, c10::BFloat16>::value) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    static_assert(std::is_same<T, c10::Half>::value, "bf16 or f16 operands");
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

#else  // host emulation

inline float shfl_xor(float x, int mask) {
  return emu::warp_exchange(x)[lane() ^ mask];
}

// The 16-bit element e (0 or 1) of register r, and a register of two
// elements.
inline uint16_t half_of(uint32_t r, int e) {
  return static_cast<uint16_t>(r >> (16 * e));
}
inline uint32_t join(uint16_t lo, uint16_t hi) {
  return uint32_t(lo) | (uint32_t(hi) << 16);
}

// Matrix i's rows come from the addresses of lanes 8i .. 8i+7.
inline void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* row) {
  blk::check_aligned16(row);  // rows of 16 bytes, 16-byte aligned
  const auto rows = emu::warp_exchange(row);
  const int g = lane() / 4, t = lane() % 4;
  for (int i = 0; i < 4; ++i) {
    const uint16_t* m = rows[8 * i + g];  // row g of matrix i
    r[i] = join(m[2 * t], m[2 * t + 1]);
  }
}

inline void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t* row) {
  blk::check_aligned16(row);  // rows of 16 bytes, 16-byte aligned
  const auto rows = emu::warp_exchange(row);
  const int g = lane() / 4, t = lane() % 4;
  for (int i = 0; i < 4; ++i) {
    // (rows 2t, 2t+1; col g) of matrix i
    r[i] = join(rows[8 * i + 2 * t][g], rows[8 * i + 2 * t + 1][g]);
  }
}

template <typename T>
void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  struct Operands {
    uint32_t a[4], b[2];
  };
  Operands mine;
  for (int r = 0; r < 4; ++r) mine.a[r] = a[r];
  for (int r = 0; r < 2; ++r) mine.b[r] = b[r];
  const auto all = emu::warp_exchange(mine);
  // A(row, k): register (row / 8) + 2 (k / 8) of lane 4 (row % 8) +
  // (k % 8) / 2, element k % 2. B(k, n): register k / 8 of lane
  // 4 n + (k % 8) / 2, element k % 2.
  auto A = [&](int row, int k) {
    const Operands& o = all[4 * (row % 8) + (k % 8) / 2];
    return float_of_bits<T>(half_of(o.a[row / 8 + 2 * (k / 8)], k % 2));
  };
  auto B = [&](int k, int n) {
    const Operands& o = all[4 * n + (k % 8) / 2];
    return float_of_bits<T>(half_of(o.b[k / 8], k % 2));
  };
  const int g = lane() / 4, t = lane() % 4;
  for (int r = 0; r < 4; ++r) {
    const int row = g + 8 * (r / 2), col = 2 * t + r % 2;
    float acc = d[r];
    for (int k = 0; k < 16; ++k) acc += A(row, k) * B(k, col);
    d[r] = acc;
  }
}

#endif

}  // namespace warp
}  // namespace seqkernels
