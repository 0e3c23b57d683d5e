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


# The device types whose autocast the ops follow (ops/_autocast.py).
AUTOCAST_DEVICE_TYPES = ("cpu", "cuda")


def autocast_dtype(t: Tensor) -> "torch.dtype | None":
    """The dtype the ops cast ``t`` to under ``torch.autocast``
    (ops/_autocast.py): autocast's dtype where autocast is on for ``t``'s
    device type and ``t`` is a floating-point tensor other than float64
    (which autocast never casts), else None."""
    kind = t.device.type
    if (kind in AUTOCAST_DEVICE_TYPES and t.is_floating_point()
            and t.dtype != torch.float64 and torch.is_autocast_enabled(kind)):
        return torch.get_autocast_dtype(kind)
    return None


def op_dtype(t: Tensor) -> torch.dtype:
    """The dtype an op computes ``t`` in: :func:`autocast_dtype`, else
    ``t``'s own. The argument checks that run before an op compare these."""
    return autocast_dtype(t) or t.dtype


def saved_needed(*tensors: "Tensor | None") -> bool:
    """The ``keep_saved`` argument of a sequence op call: whether its
    backward may run, that is grad mode is on and one of ``tensors`` (the
    op's inputs) requires grad. Without it the op returns no saved values,
    and the CPU runs the sequence in chunks (csrc/include/seqkernels/
    recurrent_host.h, SeqSteps::chunk_bytes)."""
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors)


def no_saved_values(op: str) -> RuntimeError:
    """The error of a backward through a sequence op that ran with
    ``keep_saved=False``."""
    return RuntimeError(
        f"seqkernels: {op} ran with keep_saved=False, so it kept nothing for "
        f"a backward; call it with keep_saved=True where a gradient is needed")


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (1 for n <= 1)."""
    return 1 << max(n - 1, 0).bit_length()


def device_guard(t: Tensor):
    """Launch on ``t``'s GPU (Triton launches on the current device)."""
    if t.is_cuda:
        return torch.cuda.device(t.device)
    return contextlib.nullcontext()
