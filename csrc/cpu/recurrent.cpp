// CPU kernels of the recurrent cells (LSTM, GRU, RNN): the steps of the
// sequence driver (csrc/recurrent_host.cpp) and the pointwise cell ops.
//
// On the CPU the recurrent product is a GEMM (gemm.h: oneDNN in float32)
// followed by the shared pointwise cell math of cell_math.h. The sequence
// steps and the pointwise cell ops run that math row by row in loops the
// compiler vectorizes (forward_row, backward_row), compiled for AVX-512,
// AVX2 and the baseline with one chosen at load time (cpu_isa.h).
//
// float16 and bfloat16 (recurrent_host.h): the math runs in float32, the
// accumulation dtype. The recurrent GEMM runs in float32 too, on w_hh
// converted once per op by the driver (SeqSteps::acc_weights) and h
// converted per step, so the gate pre-activations are never rounded to 16
// bits; the rows read and write each tensor in its own dtype.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "seqkernels/cpu_cell_rows.h"
#include "seqkernels/cpu_isa.h"
#include "seqkernels/cpu_persistent.h"
#include "seqkernels/gemm.h"
#include "seqkernels/recurrent_host.h"

namespace seqkernels {
namespace {

// Rows of a task of the pointwise loops: at least 16K gate values, so that
// a small layer's rows run on the calling thread (waking the other threads
// for a step of B=8, H=64 costs more than the step's arithmetic).
int64_t row_grain(int gates, int64_t H) {
  return std::max<int64_t>(1, 16384 / (gates * H));
}

// ---------------------------------------------------------------------------
// Sequence steps (contract in recurrent_host.h)
// ---------------------------------------------------------------------------

void forward_step(const CellDesc& cell, const ForwardStep& step) {
  const int64_t s = step.s;
  // w_hh and b_hh come in the accumulation dtype (acc_weights).
  const at::Tensor hg =
      gemm(step.h_in.to(acc_dtype(step.h_in.scalar_type())), step.w_hh.t(),
           step.b_hh);
  const int64_t B = step.out.size(0), H = step.out.size(1);
  const int64_t P = step.h_in.size(1);
  const int64_t* len = lengths_ptr(step.lengths);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, step.out.scalar_type(), "seq_forward_cpu",
      [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_cell(cell.kind, [&](auto cell_tag) {
      using Cell = decltype(cell_tag);
      constexpr int G = Cell::kGates, S = Cell::kSaved;
      const acc_t* xp = ptr<acc_t>(step.xg);
      const acc_t* hp = ptr<acc_t>(hg);
      const scalar_t* hi = ptr<scalar_t>(step.h_in);
      acc_t* c = ptr<acc_t>(step.c_state);
      acc_t* sv = ptr<acc_t>(step.saved);
      acc_t* cs = ptr<acc_t>(step.cell_state);
      scalar_t* out = ptr<scalar_t>(step.out);
      scalar_t* ho = ptr<scalar_t>(step.h_out);
      at::parallel_for(0, B, row_grain(G, H), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          acc_t* saved = sv + b * S * H;
          scalar_t* out_b = out + b * H;
          if (!active(len, b, s)) {
            std::fill(saved, saved + S * H, acc_t(0));
            if (cs != nullptr) {
              std::fill(cs + b * H, cs + (b + 1) * H, acc_t(0));
            }
            std::fill(out_b, out_b + H, scalar_t(0));
          } else {
            acc_t* c_b = c != nullptr ? c + b * H : nullptr;
            forward_row<Cell>(cell.act, H, H, xp + b * G * H, hp + b * G * H, H,
                              hi + b * P, c_b, c_b,
                              cs != nullptr ? cs + b * H : nullptr, saved,
                              out_b);
          }
          if (ho != nullptr) {
            const bool on = active(len, b, s);
            for (int64_t k = 0; k < P; ++k) {
              ho[b * P + k] = on ? out[b * H + k] : hi[b * P + k];
            }
          }
        }
      });
    });
  });
}

void backward_step(const CellDesc& cell, const BackwardStep& step) {
  const int64_t s = step.s;
  at::Tensor from_next;
  if (step.w_hh.defined() && step.grad_hg_next.defined()) {
    from_next = gemm(step.grad_hg_next, step.w_hh);
  }
  const int64_t B = step.dh_in.size(0), H = step.dh_in.size(1);
  const int64_t* len = lengths_ptr(step.lengths);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, step.dh_in.scalar_type(), "seq_backward_cpu",
      [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_cell(cell.kind, [&](auto cell_tag) {
      using Cell = decltype(cell_tag);
      constexpr int G = Cell::kGates, S = Cell::kSaved;
      const acc_t* fn = ptr<acc_t>(from_next);
      acc_t* dhc = step.w_hh.defined() ? ptr<acc_t>(step.dh_carry) : nullptr;
      const scalar_t* dhi = ptr<scalar_t>(step.dh_in);
      acc_t* carry = ptr<acc_t>(step.carry);
      const acc_t* sv = ptr<acc_t>(step.saved);
      const scalar_t* hp = ptr<scalar_t>(step.h_prev);
      const acc_t* cp = ptr<acc_t>(step.c_prev);
      const acc_t* cs = ptr<acc_t>(step.cell_state);
      acc_t* gx = ptr<acc_t>(step.grad_xg);
      acc_t* gh = ptr<acc_t>(step.grad_hg);
      at::parallel_for(0, B, row_grain(G, H), [&](int64_t b0, int64_t b1) {
        // The gradient from later steps where the step has none (no w_hh:
        // the projection path feeds it through dh_in).
        const std::vector<acc_t> zeros(dhc == nullptr ? H : 0, acc_t(0));
        for (int64_t b = b0; b < b1; ++b) {
          acc_t* dhc_b = dhc != nullptr ? dhc + b * H : nullptr;
          if (dhc_b != nullptr && fn != nullptr && active(len, b, s + 1)) {
            const acc_t* fn_b = fn + b * H;
            for (int64_t j = 0; j < H; ++j) {
              acc_t from_later = fn_b[j];
              if constexpr (Cell::kDirectH) from_later += carry[b * H + j];
              dhc_b[j] = from_later;
            }
          }
          acc_t* gx_b = gx + b * G * H;
          acc_t* gh_b = Cell::kSplitGrad ? gh + b * G * H : nullptr;
          if (!active(len, b, s)) {
            std::fill(gx_b, gx_b + G * H, acc_t(0));
            if (gh_b != nullptr) std::fill(gh_b, gh_b + G * H, acc_t(0));
            continue;
          }
          backward_row<Cell>(
              cell.act, H, H, sv + b * S * H, hp != nullptr ? hp + b * H : nullptr,
              cp != nullptr ? cp + b * H : nullptr,
              cs != nullptr ? cs + b * H : nullptr, dhi + b * H,
              dhc_b != nullptr ? dhc_b : zeros.data(),
              carry != nullptr ? carry + b * H : nullptr, gx_b, gh_b);
        }
      });
    });
  });
}

// ---------------------------------------------------------------------------
// Pointwise cell kernels (contract in recurrent_host.h)
// ---------------------------------------------------------------------------

void cell_forward(const CellDesc& cell, const at::Tensor& x_proj,
                  const at::Tensor& h_proj, const at::Tensor& b_x,
                  const at::Tensor& b_h, const at::Tensor& h,
                  const at::Tensor& c, at::Tensor& h_new, at::Tensor& c_new,
                  at::Tensor& saved) {
  const int64_t B = h_new.size(0), H = h_new.size(1);
  // The biases join their side first, in the accumulation dtype (as the
  // CUDA kernel adds them), so the rows run forward_row.
  const at::ScalarType acc = acc_dtype(x_proj.scalar_type());
  const at::Tensor x_acc = x_proj.to(acc), h_acc = h_proj.to(acc);
  const at::Tensor xg = b_x.defined() ? x_acc + b_x : x_acc;
  const at::Tensor hg = b_h.defined() ? h_acc + b_h : h_acc;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x_proj.scalar_type(), "cell_forward_cpu",
      [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_cell(cell.kind, [&](auto cell_tag) {
      using Cell = decltype(cell_tag);
      constexpr int G = Cell::kGates, S = Cell::kSaved;
      const acc_t* xp = ptr<acc_t>(xg);
      const acc_t* hp = ptr<acc_t>(hg);
      const scalar_t* hv = ptr<scalar_t>(h);
      const scalar_t* cv = ptr<scalar_t>(c);
      scalar_t* hn = ptr<scalar_t>(h_new);
      scalar_t* cn = ptr<scalar_t>(c_new);
      acc_t* sv = ptr<acc_t>(saved);
      at::parallel_for(0, B, row_grain(G, H), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          scalar_t* cn_b = cn != nullptr ? cn + b * H : nullptr;
          forward_row<Cell>(cell.act, H, H, xp + b * G * H, hp + b * G * H, H,
                            hv != nullptr ? hv + b * H : nullptr,
                            cv != nullptr ? cv + b * H : nullptr, cn_b, cn_b,
                            sv + b * S * H, hn + b * H);
        }
      });
    });
  });
}

void cell_backward(const CellDesc& cell, const at::Tensor& grad_h,
                   const at::Tensor& grad_c, const at::Tensor& saved,
                   const at::Tensor& h, const at::Tensor& c,
                   const at::Tensor& c_new, at::Tensor& grad_xg,
                   at::Tensor& grad_hg, at::Tensor& grad_carry) {
  const int64_t B = grad_h.size(0), H = grad_h.size(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_h.scalar_type(), "cell_backward_cpu",
      [&] {
    using acc_t = at::opmath_type<scalar_t>;
    dispatch_cell(cell.kind, [&](auto cell_tag) {
      using Cell = decltype(cell_tag);
      constexpr int G = Cell::kGates, S = Cell::kSaved;
      const scalar_t* dh = ptr<scalar_t>(grad_h);
      const scalar_t* dc = ptr<scalar_t>(grad_c);
      const acc_t* sv = ptr<acc_t>(saved);
      const scalar_t* hv = ptr<scalar_t>(h);
      const scalar_t* cv = ptr<scalar_t>(c);
      const scalar_t* cn = ptr<scalar_t>(c_new);
      scalar_t* gx = ptr<scalar_t>(grad_xg);
      scalar_t* gh = ptr<scalar_t>(grad_hg);
      scalar_t* gc = ptr<scalar_t>(grad_carry);
      at::parallel_for(0, B, row_grain(G, H), [&](int64_t b0, int64_t b1) {
        // A single step: nothing reaches h from later ones.
        const std::vector<scalar_t> zeros(H, scalar_t(0));
        for (int64_t b = b0; b < b1; ++b) {
          // The carry goes in as dc (LSTM) or 0 (GRU's direct path) and
          // comes out as the gradient of c or of h through that path.
          scalar_t* gc_b = gc != nullptr ? gc + b * H : nullptr;
          if constexpr (Cell::kHasC) {
            std::copy(dc + b * H, dc + (b + 1) * H, gc_b);
          } else if constexpr (Cell::kDirectH) {
            std::fill(gc_b, gc_b + H, scalar_t(0));
          }
          backward_row<Cell>(
              cell.act, H, H, sv + b * S * H, hv != nullptr ? hv + b * H : nullptr,
              cv != nullptr ? cv + b * H : nullptr,
              cn != nullptr ? cn + b * H : nullptr, dh + b * H, zeros.data(),
              gc_b, gx + b * G * H, Cell::kSplitGrad ? gh + b * G * H : nullptr);
        }
      });
    });
  });
}

}  // namespace

// Inference runs in chunks of 1 MB of pre-activations (SeqSteps::
// chunk_bytes): a chunk's input projection is still in L2 when its steps
// read it, and glibc serves a buffer of that size from its heap once one
// has been freed (its mapping threshold rises to the largest mapping freed),
// so every chunk reuses pages already faulted in. With 4 MB chunks the
// buffers were mapped or the heap trimmed and regrown on every call in some
// processes: 700 to 1,500 page faults a call for the LSTM at B=32, H=256,
// T=128, and 12.1 ms where 1 MB chunks take 6.7 (2 threads; 0 faults).
extern const SeqSteps kCpuSteps{check_cpu_dtype,  forward_step,
                                 backward_step,    /*saved_over_xg=*/true,
                                 /*acc_weights=*/true, cpu_forward_seq,
                                 cpu_backward_seq, /*seq_by_default=*/true,
                                 /*chunk_bytes=*/int64_t(1) << 20};
extern const CellKernels kCpuCells{check_cpu_dtype, cell_forward,
                                   cell_backward};

}  // namespace seqkernels

TORCH_LIBRARY_IMPL(seqkernels, CPU, m) {
  seqkernels::register_recurrent_ops<seqkernels::kCpuSteps,
                                     seqkernels::kCpuCells>(m);
}
