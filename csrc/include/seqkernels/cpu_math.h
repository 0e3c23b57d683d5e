// exp and tanh in float32 for the CPU kernels, written so that the compiler
// vectorizes the loops that call them: straight-line arithmetic, selects
// instead of branches, no calls into libm (whose expf/tanhf are scalar
// calls the loop cannot vectorize around, and took about half of the CPU
// LSTM's time). float64 keeps std::exp and std::tanh.
//
// Accuracy (float32): exp within about 1 ulp; tanh within about 2 ulp
// (its (1 - t) / (1 + t) form loses at most two bits for |x| >= 0.25, below
// that an odd series to x^11 with a truncation error under 1e-10). NaN
// propagates, -0 stays -0, exp(-inf) = 0.
// exp returns +inf from x > 88 (the exact value overflows only past 88.72):
// the callers take it in 1 / (1 + exp(x)) or with x <= 0.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace seqkernels {
namespace cpu_math {

inline float exp(float x) {
  // exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 with ln 2 in
  // two parts (Cody and Waite), |r| <= ln(2) / 2, exp(r) by its Taylor
  // series to r^7 (truncation 5e-9 relative). The clamp keeps 2^n a normal
  // float; comparisons with NaN are false, so NaN passes through.
  const float xc = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
  constexpr float kShift = 12582912.0f;
  constexpr int32_t kShiftBits = 0x4B400000;
  const float t = xc * 1.44269504088896341f + kShift;
  const float n = t - kShift;
  const float r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  int32_t t_bits;
  std::memcpy(&t_bits, &t, sizeof t_bits);
  const int32_t scale_bits = (t_bits - kShiftBits + 127) << 23;
  float scale;
  std::memcpy(&scale, &scale_bits, sizeof scale);
  float y = p * scale;
  y = x < -87.0f ? 0.0f : y;
  y = x > 88.0f ? std::numeric_limits<float>::infinity() : y;
  return y;
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
  const float t = exp(-2.0f * a);
  const float large = (1.0f - t) / (1.0f + t);
  const float r = a < 0.25f ? small : large;
  return x < 0.0f ? -r : r;
}

inline double exp(double x) { return std::exp(x); }
inline double tanh(double x) { return std::tanh(x); }

}  // namespace cpu_math
}  // namespace seqkernels
