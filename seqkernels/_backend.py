"""Backend choice: ``backend=`` on every module and function, or the
``SEQKERNELS_BACKEND`` environment variable.

=========== ============================================ ==========================
name        what runs                                     where
=========== ============================================ ==========================
cuda        CUDA C++ kernels of the compiled extension    CUDA tensors
triton      Triton kernels                                CUDA tensors; CPU tensors
                                                          only under TRITON_INTERPRET=1
cpu         C++ kernels of the compiled extension         CPU tensors
reference   pure PyTorch, same hand-written backward      anywhere
auto        the fastest available for the device          anywhere
=========== ============================================ ==========================

A backend that cannot serve the input is an error, never a silent switch.
"""

import importlib.util
import os
from typing import Optional

import torch

from . import _C

BACKENDS = ("auto", "cuda", "triton", "cpu", "reference")

CUDA_BUILT: bool = bool(_C.build_info()["cuda"])
TRITON_INSTALLED: bool = importlib.util.find_spec("triton") is not None


def _triton_interpreted() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve(backend: Optional[str], device: torch.device) -> str:
    """The concrete backend ("cuda", "triton", "cpu" or "reference") that
    serves tensors on ``device``, or a ValueError saying why none can."""
    if backend is None:
        backend = os.environ.get("SEQKERNELS_BACKEND", "auto")
    if backend not in BACKENDS:
        raise ValueError(
            f"seqkernels: backend must be one of {BACKENDS}, got {backend!r}")
    kind = device.type
    if backend == "auto":
        if kind == "cpu":
            return "cpu"
        if kind == "cuda":
            if CUDA_BUILT:
                return "cuda"
            if TRITON_INSTALLED:
                return "triton"
        return "reference"
    if backend == "cuda":
        if kind != "cuda":
            raise ValueError(
                f"seqkernels: backend='cuda' needs CUDA tensors, got {device}")
        if not CUDA_BUILT:
            raise ValueError(
                "seqkernels: backend='cuda' but the extension was built "
                "without CUDA kernels (no nvcc at install time)")
    elif backend == "cpu":
        if kind != "cpu":
            raise ValueError(
                f"seqkernels: backend='cpu' needs CPU tensors, got {device}")
    elif backend == "triton":
        if not TRITON_INSTALLED:
            raise ValueError(
                "seqkernels: backend='triton' but triton is not installed")
        if kind == "cpu" and not _triton_interpreted():
            raise ValueError(
                "seqkernels: backend='triton' runs CPU tensors only under "
                "TRITON_INTERPRET=1 (set before importing seqkernels)")
        if kind not in ("cpu", "cuda"):
            raise ValueError(
                f"seqkernels: backend='triton' needs CUDA tensors, got {device}")
    return backend
