// Pointwise LSTM cell math, forward and backward, written once.
//
// These functions are __host__ __device__ so that the CPU kernels (csrc/cpu)
// and the CUDA kernels (csrc/cuda) run the very same arithmetic: the CPU tests
// then exercise the math that the GPU runs. T is the accumulation type
// (float for float/half/bfloat16 storage, double for double).
//
// Gate order follows torch.nn.LSTM: input (i), forget (f), cell (g), output (o).
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define SK_HD __host__ __device__ __forceinline__
#else
#define SK_HD inline
#endif

namespace seqkernels {

SK_HD float sk_exp(float x) { return expf(x); }
SK_HD double sk_exp(double x) { return exp(x); }
SK_HD float sk_tanh(float x) { return tanhf(x); }
SK_HD double sk_tanh(double x) { return tanh(x); }

template <typename T>
SK_HD T sk_sigmoid(T x) {
  return T(1) / (T(1) + sk_exp(-x));
}

// Activated gates of one hidden unit, kept for the backward pass.
template <typename T>
struct LstmGates {
  T i, f, g, o;
};

// Forward of one hidden unit.
//   pre_*:  gate pre-activations (x W_ih^T + h W_hh^T + bias) for this unit
//   c_prev: cell state before the step
// Writes the activated gates, the new cell state c and the cell output
// h = o * tanh(c) (before any projection).
template <typename T>
SK_HD void lstm_cell_forward(T pre_i, T pre_f, T pre_g, T pre_o, T c_prev,
                             LstmGates<T>& gates, T& c, T& h) {
  gates.i = sk_sigmoid(pre_i);
  gates.f = sk_sigmoid(pre_f);
  gates.g = sk_tanh(pre_g);
  gates.o = sk_sigmoid(pre_o);
  c = gates.f * c_prev + gates.i * gates.g;
  h = gates.o * sk_tanh(c);
}

// Backward of one hidden unit.
//   gates, c_prev, c: what the forward saw and produced
//   dh: gradient reaching the cell output h of this step
//   dc: gradient reaching the new cell state c from later steps
// Writes the gradients of the four gate pre-activations and of c_prev.
// tanh(c) is recomputed rather than stored: one transcendental is cheaper
// than another [T, B, H] tensor in memory.
template <typename T>
SK_HD void lstm_cell_backward(const LstmGates<T>& gates, T c_prev, T c, T dh,
                              T dc, T& dpre_i, T& dpre_f, T& dpre_g,
                              T& dpre_o, T& dc_prev) {
  const T tanh_c = sk_tanh(c);
  const T dc_total = dc + dh * gates.o * (T(1) - tanh_c * tanh_c);
  const T do_ = dh * tanh_c;
  const T di = dc_total * gates.g;
  const T df = dc_total * c_prev;
  const T dg = dc_total * gates.i;
  dpre_i = di * gates.i * (T(1) - gates.i);
  dpre_f = df * gates.f * (T(1) - gates.f);
  dpre_g = dg * (T(1) - gates.g * gates.g);
  dpre_o = do_ * gates.o * (T(1) - gates.o);
  dc_prev = dc_total * gates.f;
}

}  // namespace seqkernels
