"""Helpers shared by the Python side of every op family (the reference and
Triton backends, the fakes): the dtype rule, block sizes, device guards.
Their C++ twins are in csrc/include/seqkernels/checks.h."""

import contextlib

import torch
from torch import Tensor


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of a storage dtype: float32 for half and bfloat16,
    else the dtype itself (as ``acc_dtype`` in checks.h)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(n - 1, 0).bit_length()


def device_guard(t: Tensor):
    """Launch on ``t``'s GPU (Triton launches on the current device)."""
    if t.is_cuda:
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()
