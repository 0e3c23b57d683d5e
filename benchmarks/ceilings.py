"""The device's ceilings, measured in the same run and reported beside every
figure: how fast a GEMM and a copy go on this machine now.

CUDA: a bf16 GEMM (8192^3 by default) in TFLOP/s, and a device-to-device
``copy_`` of a 1 GiB tensor in GB/s, counting read plus write bytes.
CPU: a float32 GEMM in TFLOP/s (tiny numbers: GFLOP/s / 1000), the faster
of MKL (torch.matmul) and oneDNN (nn.LSTM's library; twice MKL's rate on
the AMD CPU we measured), and a memcpy-like ``copy_`` of a tensor larger
than the last-level cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .harness import Settings, bench, gbps, tflops


@dataclass
class Ceilings:
    gemm_tflops: float
    gemm_desc: str
    gemm_ms: float
    copy_gbps: float
    copy_desc: str
    copy_ms: float


def measure_ceilings(device: torch.device, settings: Settings = Settings(),
                     gemm_n: Optional[int] = None,
                     copy_mb: Optional[int] = None) -> Ceilings:
    """The GEMM rate and the copy bandwidth of ``device``, measured now.

    Defaults: CUDA bf16 8192^3 and a 1 GiB copy; CPU float32 1024^3 and a
    256 MiB copy (larger than any last-level cache of a CPU we run on).
    """
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    n = gemm_n or (8192 if cuda else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    t = bench(lambda: torch.matmul(a, b), device, settings)
    library = "cuBLAS" if cuda else "MKL"
    if not cuda and torch.backends.mkldnn.is_available():
        # torch.matmul goes to MKL, which on some CPUs (AMD) takes a slower
        # path than oneDNN, the library behind nn.LSTM on CPU: the ceiling
        # is the faster of the two.
        am, bm = a.to_mkldnn(), b.to_mkldnn()
        t2 = bench(lambda: torch._C._nn.mkldnn_linear(am, bm), device,
                   settings)
        if t2.median_ms < t.median_ms:
            t, library = t2, "oneDNN"
        del am, bm
    gemm = tflops(2.0 * n ** 3, t.median_ms)
    del a, b
    size = (copy_mb or (1024 if cuda else 256)) * 2**20
    src = torch.randn(size // 4, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    c = bench(lambda: dst.copy_(src), device, settings)
    copy = gbps(2.0 * size, c.median_ms)
    del src, dst
    if cuda:
        torch.cuda.empty_cache()
    name = "bf16" if cuda else "fp32"
    return Ceilings(gemm, f"{name} GEMM {n}^3 ({library})", t.median_ms, copy,
                    f"copy_ {size // 2**20} MiB (read+write)", c.median_ms)
