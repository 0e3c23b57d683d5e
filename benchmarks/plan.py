"""Planning: the jobs of a kernel family's plan, which seqkernels backends
a device can serve, and the dtype each provider runs in.

Dtypes: seqkernels' providers, and every attention provider, run in
bfloat16 on the GPU and float32 on the CPU. The recurrent anchors (cuDNN)
run in bfloat16 and also in float16, cuDNN's fastest; float32 on the CPU.

Recurrence algorithms: seqkernels runs a recurrent layer either step by step
(``per_step``, one fused launch per time step) or in one persistent kernel
per layer (``persistent``), as ``SEQKERNELS_RECURRENCE`` says at each call:
``default`` leaves the choice to the backend (on ``cpu`` the persistent
kernel where its rule says it is faster, on cuda and triton the per-step
kernels). The recurrent providers name the algorithm they ask for:
``seqkernels-<backend>`` the backend's default (what a user gets),
``seqkernels-<backend>-persistent`` (cuda and triton, on the GPU) the
persistent kernel, ``seqkernels-cpu-per-step`` (on the CPU) the per-step
kernels, so that each device's table shows both algorithms. Each sets the
variable around its calls (:func:`recurrent_case`), so a value exported in
the shell cannot relabel a row. A backend takes the persistent kernel only
where its rule says the kernel serves the shape, else the per-step kernels:
which one ran goes into the ``algorithm`` column, from ``seqkernels.explain``
(the backends' own rules), with the rule's reason where the default ran the
per-step kernels (:func:`algorithm_column`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .cases import Case

if TYPE_CHECKING:  # seqkernels is imported by its providers only (lstm.build)
    from seqkernels.explain import Explanation

RECURRENCE_ENV = "SEQKERNELS_RECURRENCE"
# Provider-name suffix -> (the recurrence algorithm it asks for, the
# backends that get such a provider: the algorithm that is not already
# their default). No suffix asks for the backend's default.
ALGORITHM_SUFFIXES = {
    "-persistent": ("persistent", ("cuda", "triton")),
    "-per-step": ("per_step", ("cpu",)),
}


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
                    recurrent: bool = False) -> list[Job]:
    """A job per seqkernels backend the device can serve (plus ``extra``
    backends), named ``prefix + backend`` (the backend's default recurrence
    algorithm), and for a ``recurrent`` configuration one more per backend
    of ``ALGORITHM_SUFFIXES``, named ``prefix + backend + suffix``, that
    asks for the other algorithm; a backend this build or machine lacks is
    listed as skipped, with the reason."""
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
        if recurrent:
            jobs += [Job(config, prefix + b + suffix, dtype, skip)
                     for suffix, (_, served) in ALGORITHM_SUFFIXES.items()
                     if b in served]
    return jobs


def seqkernels_provider(provider: str) -> tuple[str, str]:
    """``(backend, recurrence algorithm)`` of a seqkernels provider:
    ``seqkernels-cuda`` -> ``("cuda", "default")``,
    ``seqkernels-triton-persistent`` -> ``("triton", "persistent")``,
    ``seqkernels-cpu-per-step`` -> ``("cpu", "per_step")``."""
    name = provider.split("-", 1)[1]
    for suffix, (algorithm, _) in ALGORITHM_SUFFIXES.items():
        if name.endswith(suffix):
            return name[:-len(suffix)], algorithm
    return name, "default"


def algorithm_column(explanation: Explanation, algorithm: str) -> str:
    """The ``algorithm`` column of a run that asked for ``algorithm``:
    ``explanation.summary()`` (seqkernels.explain's), and where the default
    ran the per-step kernels, the rule's reason too (the summary gives a
    reason only where the persistent kernel was asked for and declined),
    so a row says why its backend chose as it did."""
    summary = explanation.summary()
    if algorithm == "default" and summary == "per_step":
        return f"per_step ({explanation.layers[0].reason})"
    return summary


def recurrent_case(case: Case, provider: str, module: torch.nn.Module,
                   input: Any) -> Case:
    """``case`` of the recurrent seqkernels provider ``provider``, set to
    run the recurrence algorithm its name asks for, its ``algorithm``
    column from ``seqkernels.explain(module, input)`` for that algorithm
    (module docstring)."""
    import seqkernels
    algorithm = seqkernels_provider(provider)[1]
    case.env[RECURRENCE_ENV] = algorithm
    case.algorithm = lambda: algorithm_column(
        seqkernels.explain(module, input, recurrence=algorithm), algorithm)
    return case
