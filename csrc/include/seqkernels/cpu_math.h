// exp and tanh in float32 for the CPU kernels, written so that the compiler
// vectorizes the loops that call them: straight-line arithmetic, selects
// instead of branches, no calls into libm (whose expf/tanhf are scalar
// calls the loop cannot vectorize around, and took about half of the CPU
// LSTM's time). float64 keeps std::exp and std::tanh.
//
// Accuracy (float32), measured against float64 over 2e7 arguments uniform
// in [-10, 10]: exp within 1.0 ulp; tanh within 2.1 ulp and 0.27 ulp on
// average, as glibc's tanhf. tanh takes an odd series to x^11 below
// |x| = 0.25 (truncation under 1e-10) and expm1(2|x|) / (expm1(2|x|) + 2)
// above, which has no cancellation (the (1 - e) / (1 + e) form of
// e = exp(-2|x|) lost up to a bit and a half near 0.25: 0.48 ulp on
// average). NaN propagates, -0 stays -0, exp(-inf) = 0, tanh(+-inf) = +-1.
// exp returns +inf from x > 88 (the exact value overflows only past 88.72):
// the callers take it in 1 / (1 + exp(x)) or with x <= 0.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace seqkernels {
namespace cpu_math {

// x = n ln 2 + r with n = round(x / ln 2) and ln 2 in two parts (Cody and
// Waite), |r| <= ln(2) / 2; returns r and sets scale = 2^n. x must keep 2^n
// a normal float.
inline float reduce_ln2(float x, float& scale) {
  // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
  constexpr float kShift = 12582912.0f;
  constexpr int32_t kShiftBits = 0x4B400000;
  const float t = x * 1.44269504088896341f + kShift;
  const float n = t - kShift;
  int32_t t_bits;
  std::memcpy(&t_bits, &t, sizeof t_bits);
  const int32_t scale_bits = (t_bits - kShiftBits + 127) << 23;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  return (x - n * 0.693359375f) + n * 2.12194440e-4f;
}

// exp(r) - 1 for |r| <= ln(2) / 2, by its series without the constant term
// to r^9 (truncation 7e-10 relative): the part that exp and expm1 share.
inline float expm1_reduced(float r) {
  float q = 1.0f / 40320.0f;
  q = q * r + 1.0f / 5040.0f;
  q = q * r + 1.0f / 720.0f;
  q = q * r + 1.0f / 120.0f;
  q = q * r + 1.0f / 24.0f;
  q = q * r + 1.0f / 6.0f;
  q = q * r + 0.5f;
  return r + r * r * q;
}

inline float exp(float x) {
  // exp(x) = 2^n exp(r). The clamp keeps 2^n a normal float; comparisons
  // with NaN are false, so NaN passes through.
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  float scale;
  const float r = reduce_ln2(xc, scale);
  float y = scale * (1.0f + expm1_reduced(r));
  y = x < -87.0f ? 0.0f : y;
  y = x > 88.0f ? std::numeric_limits<float>::infinity() : y;
  return y;
}

// expm1(y) for y in [0, 18]: 2^n (exp(r) - 1) + (2^n - 1), the last term
// exact.
inline float expm1_nonneg(float y) {
  float scale;
  const float r = reduce_ln2(y, scale);
  return scale * expm1_reduced(r) + (scale - 1.0f);
}

inline float tanh(float x) {
  const float a = x < 0.0f ? -x : x;
  const float z = a * a;
  float p = -1382.0f / 155925.0f;
  p = p * z + 62.0f / 2835.0f;
  p = p * z - 17.0f / 315.0f;
  p = p * z + 2.0f / 15.0f;
  p = p * z - 1.0f / 3.0f;
  const float small = a + a * z * p;
  // tanh(9) rounds to 1 in float; the clamp keeps expm1 finite (and NaN
  // passes: the comparisons are false).
  const float e = expm1_nonneg(2.0f * (a > 9.0f ? 9.0f : a));
  const float large = a > 9.0f ? 1.0f : e / (e + 2.0f);
  return std::copysign(a < 0.25f ? small : large, x);
}

inline double exp(double x) { return std::exp(x); }
inline double tanh(double x) { return std::tanh(x); }

}  // namespace cpu_math
}  // namespace seqkernels
