// The dense products of the recurrent machinery: a @ b (+ bias).
//
// On the CPU in float32 they run on oneDNN, the library behind nn.LSTM's own
// CPU path, through torch's mkldnn::_linear_pointwise op: on the AMD
// development machine oneDNN reaches about 470 GFLOP/s where ATen's mm
// (MKL, which takes its AVX2 path there) reaches about 210. Elsewhere
// (CUDA, float64, float16 and bfloat16, a torch without oneDNN or with
// torch.backends.mkldnn.enabled = False) they are ATen's mm and addmm.
// Both follow torch's float32 matmul precision settings as torch.mm does.
#pragma once

#include <ATen/ATen.h>

namespace seqkernels {

// a [M,K] @ b [K,N] + bias [N] (bias undefined: none). b may be a
// transposed view: a weight [N,K] passed as w.t() is used in place.
at::Tensor gemm(const at::Tensor& a, const at::Tensor& b,
                const at::Tensor& bias = at::Tensor());

}  // namespace seqkernels
