"""Planning: the jobs of a kernel family's plan, which seqkernels backends
a device can serve, and the dtype each provider runs in.

Dtypes: seqkernels' providers, and every attention provider, run in
bfloat16 on the GPU and float32 on the CPU. The recurrent anchors (cuDNN)
run in bfloat16 and also in float16, cuDNN's fastest; float32 on the CPU.

Recurrence algorithms: seqkernels runs a recurrent layer either step by step
(``per_step``, one fused launch per time step) or in one persistent kernel
per layer (``persistent``, opt-in), as ``SEQKERNELS_RECURRENCE`` says at each
call. The recurrent providers name the algorithm they ask for:
``seqkernels-<backend>`` asks for per_step, ``seqkernels-<backend>-persistent``
(cuda and triton, on the GPU) for persistent, and each sets the variable
around its calls (:func:`recurrent_case`), so a value exported in the shell
cannot relabel a row. A backend takes the persistent kernel only where its
rule says the kernel serves the shape, else the per-step kernels: which one
ran goes into the ``algorithm`` column, from ``seqkernels.explain`` (the
backends' own rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .cases import Case

RECURRENCE_ENV = "SEQKERNELS_RECURRENCE"
PERSISTENT_SUFFIX = "-persistent"
PERSISTENT_BACKENDS = ("cuda", "triton")

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
                    dtype: torch.dtype, extra: Sequence[str] = (),
                    persistent: bool = False) -> list[Job]:
    """A job per seqkernels backend the device can serve (plus ``extra``
    backends), named ``prefix + backend``, and with ``persistent`` (a
    recurrent configuration on the GPU) one per persistent-capable backend,
    named ``prefix + backend + "-persistent"``; a backend this build or
    machine lacks is listed as skipped, with the reason."""
    from seqkernels import _backend
    cuda = device.type == "cuda"
    backends = (["cuda", "triton", "auto"] if cuda
                else ["cpu", "auto"]) + list(extra)
    jobs = []
    for b in backends:
        skip = ""
        if b == "cuda" and not _backend.CUDA_BUILT:
            skip = "the extension was built without CUDA kernels"
        if b == "triton" and not _backend.TRITON_INSTALLED:
            skip = "triton is not installed"
        jobs.append(Job(config, prefix + b, dtype, skip))
        if persistent and cuda and b in PERSISTENT_BACKENDS:
            jobs.append(Job(config, prefix + b + PERSISTENT_SUFFIX, dtype,
                            skip))
    return jobs


def seqkernels_provider(provider: str) -> tuple[str, str]:
    """``(backend, recurrence algorithm)`` of a seqkernels provider:
    ``seqkernels-cuda`` -> ``("cuda", "per_step")``,
    ``seqkernels-triton-persistent`` -> ``("triton", "persistent")``."""
    name = provider.split("-", 1)[1]
    if name.endswith(PERSISTENT_SUFFIX):
        return name[:-len(PERSISTENT_SUFFIX)], "persistent"
    return name, "per_step"


def recurrent_case(case: Case, provider: str, module: torch.nn.Module,
                   input: Any) -> Case:
    """``case`` of the recurrent seqkernels provider ``provider``, set to
    run the recurrence algorithm its name asks for, its ``algorithm``
    column from ``seqkernels.explain(module, input)`` for that algorithm
    (module docstring)."""
    import seqkernels
    backend, algorithm = seqkernels_provider(provider)
    case.env[RECURRENCE_ENV] = algorithm
    case.algorithm = lambda: seqkernels.explain(
        module, input, recurrence=algorithm).summary()
    return case
