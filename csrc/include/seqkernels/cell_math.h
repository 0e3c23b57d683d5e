// Pointwise math of every recurrent cell (LSTM, GRU, vanilla RNN), forward
// and backward, written once.
//
// These functions are __host__ __device__ so that the CPU kernels (csrc/cpu)
// and the CUDA kernels (csrc/cuda) run the very same arithmetic (only exp and
// tanh themselves differ: CUDA's on the GPU, cpu_math.h's on the CPU): the
// CPU tests then exercise the math that the GPU runs. T is the accumulation type
// (float for float/half/bfloat16 storage, double for double).
//
// Each cell is a traits struct that the generic kernels are templated on
// (see recurrent_host.h for the sequence machinery):
//
//   kGates      gate blocks of H rows in w_ih / w_hh: 4 LSTM, 3 GRU, 1 RNN
//   kSaved      values per hidden unit and step saved for the backward
//               (accumulation type)
//   kHasC       a cell state c besides h (LSTM)
//   kSplitGrad  the gradients of the input-side and the recurrent-side
//               pre-activations differ (GRU: n = tanh(xn + r * hn))
//   kDirectH    h' depends on h pointwise, not only through w_hh (GRU:
//               h' = (1 - z) n + z h); the gradient of that path is carried
//               pointwise from step to step, beside the one through w_hh
//
//   forward(xg, hg, h_prev, act, c, saved, h)
//     xg[kGates]: input side of the pre-activations (x W_ih^T + b_ih) of
//       this unit; hg[kGates]: recurrent side (h W_hh^T + b_hh);
//       h_prev: this unit of the previous h (read by kDirectH cells);
//       c: the cell state, updated in place (kHasC cells);
//       writes saved[kSaved] and the cell output h.
//   backward(saved, h_prev, c_prev, c, dh, act, carry, dxg, dhg)
//     dh: the whole gradient reaching this step's h;
//     carry: kHasC: in, the gradient reaching c from later steps; out, the
//       gradient of c_prev. kDirectH: out, the gradient of h_prev through
//       the pointwise path. Otherwise untouched.
//     writes dxg[kGates], and dhg[kGates] for kSplitGrad cells (else the
//       recurrent side's gradient is dxg).
#pragma once

#include <cmath>

#include "seqkernels/cpu_math.h"
#include "seqkernels/host_device.h"

namespace seqkernels {

// On the GPU CUDA's expf / tanhf; on the CPU the vectorizable versions of
// cpu_math.h (float64: std::exp / std::tanh either way).
SK_HD float sk_exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return cpu_math::exp(x);
#endif
}
SK_HD double sk_exp(double x) { return exp(x); }
SK_HD float sk_tanh(float x) {
#if defined(__CUDA_ARCH__)
  return tanhf(x);
#else
  return cpu_math::tanh(x);
#endif
}
SK_HD double sk_tanh(double x) { return tanh(x); }

template <typename T>
SK_HD T sk_sigmoid(T x) {
  return T(1) / (T(1) + sk_exp(-x));
}

// The nonlinearity of the vanilla RNN cell. "identity" makes the RNN a
// linear dynamical system, h' = W_ih x + W_hh h + b.
enum class Activation : int { kTanh = 0, kRelu = 1, kIdentity = 2 };

template <typename T>
SK_HD T activate(Activation act, T x) {
  switch (act) {
    case Activation::kTanh:
      return sk_tanh(x);
    case Activation::kRelu:
      return x < T(0) ? T(0) : x;  // NaN passes, as torch.relu
    default:
      return x;
  }
}

// The derivative of the activation, from its output y = act(x).
template <typename T>
SK_HD T activate_grad(Activation act, T y) {
  switch (act) {
    case Activation::kTanh:
      return T(1) - y * y;
    case Activation::kRelu:
      return y <= T(0) ? T(0) : T(1);  // torch's threshold_backward
    default:
      return T(1);
  }
}

// ---------------------------------------------------------------------------
// LSTM. Gate order follows torch.nn.LSTM: input (i), forget (f), cell (g),
// output (o).
// ---------------------------------------------------------------------------

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

// Saved: the activated gates i, f, g, o.
struct LstmCell {
  static constexpr int kGates = 4;
  static constexpr int kSaved = 4;
  static constexpr bool kHasC = true;
  static constexpr bool kSplitGrad = false;
  static constexpr bool kDirectH = false;

  template <typename T>
  SK_HD static void forward(const T* xg, const T* hg, T /*h_prev*/,
                            Activation, T& c, T* saved, T& h) {
    LstmGates<T> a;
    T c_new;
    lstm_cell_forward(xg[0] + hg[0], xg[1] + hg[1], xg[2] + hg[2],
                      xg[3] + hg[3], c, a, c_new, h);
    saved[0] = a.i;
    saved[1] = a.f;
    saved[2] = a.g;
    saved[3] = a.o;
    c = c_new;
  }

  template <typename T>
  SK_HD static void backward(const T* saved, T /*h_prev*/, T c_prev, T c,
                             T dh, Activation, T& carry, T* dxg,
                             T* /*dhg*/) {
    const LstmGates<T> a{saved[0], saved[1], saved[2], saved[3]};
    T dc_prev;
    lstm_cell_backward(a, c_prev, c, dh, carry, dxg[0], dxg[1], dxg[2],
                       dxg[3], dc_prev);
    carry = dc_prev;
  }
};

// ---------------------------------------------------------------------------
// GRU, torch.nn.GRU's equations and gate order (r, z, n):
//   r  = sigmoid(xr + hr)        xr = W_ir x + b_ir,  hr = W_hr h + b_hr
//   z  = sigmoid(xz + hz)
//   n  = tanh(xn + r * hn)       hn = W_hn h + b_hn (b_hn stays inside)
//   h' = (1 - z) * n + z * h
// Saved: r, z, n and hn.
// ---------------------------------------------------------------------------

struct GruCell {
  static constexpr int kGates = 3;
  static constexpr int kSaved = 4;
  static constexpr bool kHasC = false;
  static constexpr bool kSplitGrad = true;
  static constexpr bool kDirectH = true;

  template <typename T>
  SK_HD static void forward(const T* xg, const T* hg, T h_prev, Activation,
                            T& /*c*/, T* saved, T& h) {
    const T r = sk_sigmoid(xg[0] + hg[0]);
    const T z = sk_sigmoid(xg[1] + hg[1]);
    const T n = sk_tanh(xg[2] + r * hg[2]);
    h = n + z * (h_prev - n);
    saved[0] = r;
    saved[1] = z;
    saved[2] = n;
    saved[3] = hg[2];
  }

  template <typename T>
  SK_HD static void backward(const T* saved, T h_prev, T /*c_prev*/,
                             T /*c*/, T dh, Activation, T& carry, T* dxg,
                             T* dhg) {
    const T r = saved[0], z = saved[1], n = saved[2], hn = saved[3];
    const T dn_pre = dh * (T(1) - z) * (T(1) - n * n);
    const T dr_pre = dn_pre * hn * r * (T(1) - r);
    const T dz_pre = dh * (h_prev - n) * z * (T(1) - z);
    dxg[0] = dhg[0] = dr_pre;
    dxg[1] = dhg[1] = dz_pre;
    dxg[2] = dn_pre;
    dhg[2] = dn_pre * r;
    carry = dh * z;
  }
};

// ---------------------------------------------------------------------------
// Vanilla (Elman) RNN: h' = act(W_ih x + b_ih + W_hh h + b_hh), act one of
// tanh, relu, identity. Saved: h' itself (the derivatives of all three
// activations are functions of their output).
// ---------------------------------------------------------------------------

struct RnnCell {
  static constexpr int kGates = 1;
  static constexpr int kSaved = 1;
  static constexpr bool kHasC = false;
  static constexpr bool kSplitGrad = false;
  static constexpr bool kDirectH = false;

  template <typename T>
  SK_HD static void forward(const T* xg, const T* hg, T /*h_prev*/,
                            Activation act, T& /*c*/, T* saved, T& h) {
    h = activate(act, xg[0] + hg[0]);
    saved[0] = h;
  }

  template <typename T>
  SK_HD static void backward(const T* saved, T /*h_prev*/, T /*c_prev*/,
                             T /*c*/, T dh, Activation act, T& /*carry*/,
                             T* dxg, T* /*dhg*/) {
    dxg[0] = dh * activate_grad(act, saved[0]);
  }
};

}  // namespace seqkernels
