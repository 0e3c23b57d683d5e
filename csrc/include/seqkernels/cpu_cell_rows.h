// The pointwise cell math of one row of a step on the CPU, forward and
// backward (and the small accessors of the step tensors the row loops use): shared by the per-step kernels and the cell ops
// (csrc/cpu/recurrent.cpp) and the persistent recurrence
// (csrc/cpu/persistent_recurrence.cpp), so that all of them run the same
// arithmetic.
//
// A row holds n hidden units; the gate blocks of a unit's values (xg, hg,
// saved, gx, gh) lie ld apart (H for a whole row, as in the step tensors;
// a block of units of a row passes n < ld; forward_row's hg has its own
// stride ldh). Each loop runs over the units
// with plain unit-stride accesses and no branches, so that the compiler
// vectorizes it (cell_math.h's float exp and tanh come from cpu_math.h),
// compiled per instruction set (cpu_isa.h). A caller compiled with
// SK_CPU_KERNEL calls the copy of its own instruction set directly.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <type_traits>

#include "seqkernels/cell_math.h"
#include "seqkernels/cpu_isa.h"

namespace seqkernels {
namespace {  // each file gets its own copies (target_clones resolvers)

// A step tensor's data, null where the tensor is absent (undefined).
template <typename T>
T* ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Whether row b is active at step s (lengths null: every row).
inline bool active(const int64_t* lengths, int64_t b, int64_t s) {
  return lengths == nullptr || lengths[b] > s;
}

inline const int64_t* lengths_ptr(const c10::optional<at::Tensor>& lengths) {
  return lengths.has_value() ? lengths->data_ptr<int64_t>() : nullptr;
}

// The cell forward of one row. c_in, c_out and cs (kHasC) may be the same
// row, and so may xg and saved (SeqSteps::saved_over_xg): each unit reads
// c_in and xg before it writes the others, and ivdep says no other unit's
// values are involved.
// Dtypes: A, the accumulation dtype, of the pre-activations, the saved
// values and the math; T, the storage dtype, of h; C, of the cell state:
// A in a sequence step, T in the cell op.
template <typename Cell, Activation kAct, typename A, typename T, typename C>
inline void forward_units(int64_t n, int64_t ld, const A* xg,
                          const A* __restrict__ hg, int64_t ldh,
                          const T* __restrict__ h_prev, const C* c_in,
                          C* c_out, C* cs, A* saved, T* __restrict__ out) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
#pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) {
    A x[G], h[G], sk[S];
    for (int g = 0; g < G; ++g) {
      x[g] = xg[g * ld + j];
      h[g] = hg[g * ldh + j];
    }
    A hp = 0, cv = 0, hv;
    if constexpr (Cell::kDirectH) hp = static_cast<A>(h_prev[j]);
    if constexpr (Cell::kHasC) cv = static_cast<A>(c_in[j]);
    Cell::forward(x, h, hp, kAct, cv, sk, hv);
    for (int k = 0; k < S; ++k) saved[k * ld + j] = sk[k];
    if constexpr (Cell::kHasC) c_out[j] = cs[j] = static_cast<C>(cv);
    out[j] = static_cast<T>(hv);
  }
}

// Calls f(std::integral_constant<Activation, act>{}): the RNN's activation
// as a constant in each copy of a loop (a switch inside the loop kept the
// compiler from vectorizing it: the RNN's tanh ran one unit at a time); the
// other cells have none.
template <typename Cell, typename F>
inline void with_activation(Activation act, F&& f) {
  using A = Activation;
  if constexpr (std::is_same_v<Cell, RnnCell>) {
    switch (act) {
      case A::kTanh:
        return f(std::integral_constant<A, A::kTanh>{});
      case A::kRelu:
        return f(std::integral_constant<A, A::kRelu>{});
      default:
        return f(std::integral_constant<A, A::kIdentity>{});
    }
  } else {
    f(std::integral_constant<A, A::kTanh>{});
  }
}

template <typename Cell, typename A, typename T, typename C>
SK_CPU_KERNEL void forward_row(Activation act, int64_t n, int64_t ld,
                               const A* xg, const A* __restrict__ hg,
                               int64_t ldh,
                               const T* __restrict__ h_prev, const C* c_in,
                               C* c_out, C* cs, A* saved,
                               T* __restrict__ out) {
  with_activation<Cell>(act, [&](auto k) {
    forward_units<Cell, decltype(k)::value>(n, ld, xg, hg, ldh, h_prev, c_in,
                                            c_out, cs, saved, out);
  });
}

// The cell backward of one row. dh_later: the gradient reaching h from
// later steps; carry as in Cell::backward, in place.
// Dtypes: A of the saved values and the math; T of h and dh_in; C of the
// cell states, dh_later, the carry and the gate gradients: A in a sequence
// step, T in the cell op.
template <typename Cell, Activation kAct, typename A, typename T, typename C>
inline void backward_units(
    int64_t n, int64_t ld, const A* __restrict__ saved,
    const T* __restrict__ h_prev, const C* __restrict__ c_prev,
    const C* __restrict__ c, const T* __restrict__ dh_in,
    const C* __restrict__ dh_later, C* __restrict__ carry,
    C* __restrict__ gx, C* __restrict__ gh) {
  constexpr int G = Cell::kGates, S = Cell::kSaved;
  constexpr bool kCarry = Cell::kHasC || Cell::kDirectH;
#pragma GCC ivdep
  for (int64_t j = 0; j < n; ++j) {
    A sk[S], dxg[G], dhg[G];
    for (int k = 0; k < S; ++k) sk[k] = saved[k * ld + j];
    A hp = 0, cp = 0, cv = 0, pc = 0;
    if constexpr (Cell::kDirectH) hp = static_cast<A>(h_prev[j]);
    if constexpr (Cell::kHasC) {
      cp = static_cast<A>(c_prev[j]);
      cv = static_cast<A>(c[j]);
    }
    if constexpr (kCarry) pc = static_cast<A>(carry[j]);
    Cell::backward(sk, hp, cp, cv,
                   static_cast<A>(dh_in[j]) + static_cast<A>(dh_later[j]),
                   kAct, pc, dxg, dhg);
    for (int g = 0; g < G; ++g) {
      gx[g * ld + j] = static_cast<C>(dxg[g]);
      if constexpr (Cell::kSplitGrad) gh[g * ld + j] = static_cast<C>(dhg[g]);
    }
    if constexpr (kCarry) carry[j] = static_cast<C>(pc);
  }
}

template <typename Cell, typename A, typename T, typename C>
SK_CPU_KERNEL void backward_row(
    Activation act, int64_t n, int64_t ld, const A* __restrict__ saved,
    const T* __restrict__ h_prev, const C* __restrict__ c_prev,
    const C* __restrict__ c, const T* __restrict__ dh_in,
    const C* __restrict__ dh_later, C* __restrict__ carry,
    C* __restrict__ gx, C* __restrict__ gh) {
  with_activation<Cell>(act, [&](auto k) {
    backward_units<Cell, decltype(k)::value>(n, ld, saved, h_prev, c_prev, c,
                                             dh_in, dh_later, carry, gx, gh);
  });
}

}  // namespace
}  // namespace seqkernels
