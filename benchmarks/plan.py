"""Planning: the jobs of a kernel family's plan, which seqkernels backends
a device can serve, and the dtype each provider runs in.

Dtypes: seqkernels' providers, and every attention provider, run in
bfloat16 on the GPU and float32 on the CPU. The recurrent anchors (cuDNN)
run in bfloat16 and also in float16, cuDNN's fastest; float32 on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass
class Job:
    """One (configuration, provider, dtype) of a kernel family's plan."""
    config: object
    provider: str
    dtype: torch.dtype
    skip: str = ""          # why this job does not run, if it does not


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``bfloat16``: the CSV's dtype column."""
    return str(dtype).replace("torch.", "")


def benchmark_dtype(device: torch.device) -> torch.dtype:
    """The dtype of our providers (and of the attention anchors)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def recurrent_dtypes(device: torch.device):
    """(ours, the anchors') dtypes of the recurrent rows."""
    if device.type == "cuda":
        return benchmark_dtype(device), (torch.bfloat16, torch.float16)
    return benchmark_dtype(device), (torch.float32,)


def seqkernels_jobs(config: object, device: torch.device, prefix: str,
                    dtype: torch.dtype, extra: Sequence[str] = ()) -> list[Job]:
    """A job per seqkernels backend the device can serve (plus ``extra``
    backends), named ``prefix + backend``; a backend this build or machine
    lacks is listed as skipped, with the reason."""
    from seqkernels import _backend
    backends = (["cuda", "triton", "auto"] if device.type == "cuda"
                else ["cpu", "auto"]) + list(extra)
    jobs = []
    for b in backends:
        skip = ""
        if b == "cuda" and not _backend.CUDA_BUILT:
            skip = "the extension was built without CUDA kernels"
        if b == "triton" and not _backend.TRITON_INSTALLED:
            skip = "triton is not installed"
        jobs.append(Job(config, prefix + b, dtype, skip))
    return jobs
