"""``seqkernels.explain``: which recurrence algorithm each recurrent layer of
a model runs for an input, on which backend, and why.

A recurrent layer runs either step by step (``per_step``: one fused kernel
launch per time step) or in one persistent kernel per layer and direction
(``persistent``), where the backend's rule says that kernel serves the
layer; elsewhere the per-step kernels run, with the same results (README,
"Persistent recurrence"). The persistent kernels run where
``SEQKERNELS_RECURRENCE=persistent`` asks for them, and on the ``cpu``
backend also by default (the variable unset) where its rule says they are
faster. The rules are the backends' own: ``cpu_persistent_plan`` of
``csrc/include/seqkernels/cpu_persistent.h`` (``_C.cpu_persistent_plan``)
for ``cpu``, ``plan_persistent`` of
``csrc/include/seqkernels/persistent_launch.h`` (``_C.persistent_plan``) for
``cuda``, ``persistent_plan`` of ``triton_kernels/persistent.py`` for
``triton``; the ``reference`` backend has no persistent kernel. This module asks those
rules with the shapes a call would hand them, so what it says is what the
call runs; the forward and the backward of a layer take the same decision.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from . import _C, _backend
from .cell_table import cell_desc
from .nn._recurrent import RecurrentBase
from .sequence_driver import RECURRENCE_ALGORITHMS, recurrence_algorithm

__all__ = ["Explanation", "LayerPlan", "explain"]


@dataclass(frozen=True)
class LayerPlan:
    """What one layer and direction of a recurrent module runs.

    ``module``: the module's name in the model (``""`` for the module
    explained itself); ``backend``: the backend that runs it (``"torch"``
    for a torch.nn module that seqkernels does not run); ``algorithm``:
    ``"persistent"``, ``"per_step"`` or ``"torch"``; ``reason``: why, in
    the words of the rule that decided.
    """
    module: str
    layer: int
    direction: str
    backend: str
    algorithm: str
    reason: str


@dataclass(frozen=True)
class Explanation:
    """The :class:`LayerPlan` of every recurrent layer and direction, in the
    order the modules were called; ``str()`` gives a table."""
    layers: tuple[LayerPlan, ...]

    @property
    def algorithm(self) -> str:
        """``"persistent"`` or ``"per_step"`` where every layer runs that
        algorithm, ``"mixed"`` where they differ, ``"none"`` without
        recurrent layers."""
        names = {p.algorithm for p in self.layers}
        if not names:
            return "none"
        return names.pop() if len(names) == 1 else "mixed"

    def summary(self) -> str:
        """One line: the algorithm, and for layers that did not get the
        persistent kernel although it was asked for, the first reason."""
        declined = [p for p in self.layers if p.algorithm == "per_step"
                    and p.reason.startswith(_DECLINED)]
        if declined and self.algorithm != "per_step":
            return (f"mixed: {len(declined)} of {len(self.layers)} per_step "
                    f"({declined[0].reason})")
        if declined:
            return f"per_step ({declined[0].reason})"
        return self.algorithm

    def __str__(self) -> str:
        head = ("module", "layer", "direction", "backend", "algorithm",
                "reason")
        rows = [head] + [(p.module or "(self)", str(p.layer), p.direction,
                          p.backend, p.algorithm, p.reason)
                         for p in self.layers]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
            for r in rows)


# The start of a reason for per_step where the persistent kernel was asked
# for and its rule declined the layer (summary() reports those).
_DECLINED = "persistent declined: "


def explain(module: torch.nn.Module, *args: Any,
            recurrence: Optional[str] = None, **kwargs: Any) -> Explanation:
    """Which algorithm each recurrent layer of ``module`` runs for the input.

    ``module`` is a seqkernels recurrent module (``seqkernels.LSTM``,
    ``GRU``, ``RNN``), explained from ``args[0]``, its input (a tensor or a
    PackedSequence) without running it; or any model, which is then called
    as ``module(*args, **kwargs)`` under ``torch.no_grad()`` so that every
    recurrent module inside is explained with the input it receives.
    torch.nn.LSTM/GRU/RNN modules inside run torch's kernels, and are listed
    so (``seqkernels.convert(model)`` swaps them).

    ``recurrence``: the algorithm to explain for, one of
    ``RECURRENCE_ALGORITHMS``; None reads ``SEQKERNELS_RECURRENCE`` as a
    call does.

    Errors are the call's: a backend that cannot serve the input raises the
    ValueError the call would raise.

    Example::

        >>> import torch, seqkernels
        >>> lstm = seqkernels.LSTM(8, 16, num_layers=2, backend="cpu")
        >>> plans = seqkernels.explain(lstm, torch.randn(5, 3, 8))
        >>> [(p.layer, p.algorithm) for p in plans.layers]
        [(0, 'persistent'), (1, 'persistent')]
        >>> x64 = torch.randn(5, 3, 8, dtype=torch.float64)
        >>> seqkernels.explain(lstm.double(), x64).layers[0].reason
        'float64: the persistent kernel computes in float32 (float32, ...)'
    """
    if recurrence is None:
        recurrence = recurrence_algorithm()
    elif recurrence not in RECURRENCE_ALGORITHMS:
        raise ValueError(
            f"seqkernels.explain: recurrence must be one of "
            f"{RECURRENCE_ALGORITHMS}, got {recurrence!r}")
    if isinstance(module, RecurrentBase):
        if not args:
            raise TypeError(
                "seqkernels.explain: a recurrent module needs its input, "
                "explain(module, input)")
        return Explanation(tuple(_module_plans("", module, args[0],
                                               recurrence)))
    plans: list[LayerPlan] = []
    names = {m: n for n, m in module.named_modules()}

    def record(m, inputs):
        if inputs:
            plans.extend(_module_plans(names[m], m, inputs[0], recurrence))

    with contextlib.ExitStack() as hooks, torch.no_grad():
        for m in names:
            if isinstance(m, torch.nn.RNNBase):
                hooks.enter_context(m.register_forward_pre_hook(record))
        module(*args, **kwargs)
    return Explanation(tuple(plans))


def _module_plans(name: str, module: torch.nn.RNNBase,
                  input: Union[Tensor, PackedSequence], recurrence: str
                  ) -> list[LayerPlan]:
    """The plans of every layer and direction of ``module`` for ``input``."""
    T, B, x = _steps_and_batch(module, input)
    directions = ("forward", "reverse")[: 2 if module.bidirectional else 1]
    # Every layer and direction has the same T, B, H, dtype and device, so
    # the rule decides once for the module.
    if isinstance(module, RecurrentBase):
        backend = _backend.resolve(module.backend, x.device)
        kind, nonlinearity = _cell(module)
        algorithm, reason = _layer_algorithm(
            backend, kind, nonlinearity, T, B, module.hidden_size, x.dtype,
            x.device, getattr(module, "proj_size", 0) > 0, recurrence)
    else:
        backend = algorithm = "torch"
        cls = type(module)
        reason = (f"{cls.__module__}.{cls.__name__} runs torch's kernels; "
                  "seqkernels.convert(model) swaps it")
    return [LayerPlan(name, layer, direction, backend, algorithm, reason)
            for layer in range(module.num_layers) for direction in directions]


def _steps_and_batch(module: torch.nn.RNNBase,
                     input: Union[Tensor, PackedSequence]
                     ) -> tuple[int, int, Tensor]:
    """(T, B, a tensor of the input's dtype and device) as the module's
    forward hands them to its layers (padded steps of a PackedSequence,
    unbatched input as B = 1)."""
    if isinstance(input, PackedSequence):
        return (int(input.batch_sizes.numel()), int(input.batch_sizes[0]),
                input.data)
    if not isinstance(input, Tensor) or input.dim() not in (2, 3):
        raise ValueError(
            "seqkernels.explain: the input of a recurrent module must be a "
            "2-D (unbatched) or 3-D tensor or a PackedSequence, got "
            f"{getattr(input, 'shape', type(input).__name__)}")
    if input.dim() == 2:
        return input.shape[0], 1, input
    T, B = input.shape[:2]
    return (B, T, input) if module.batch_first else (T, B, input)


def _cell(module: RecurrentBase) -> tuple[str, str]:
    """(kind, nonlinearity) of the cell table for a seqkernels module."""
    if module.mode == "LSTM":
        return "lstm", "tanh"
    if module.mode == "GRU":
        return "gru", "tanh"
    return "rnn", module.nonlinearity


def _layer_algorithm(backend: str, kind: str, nonlinearity: str, T: int,
                     B: int, H: int, dtype: torch.dtype,
                     device: torch.device, projection: bool,
                     recurrence: str) -> tuple[str, str]:
    """(algorithm, reason) of one layer and direction, from the rule of the
    backend that runs it (module docstring)."""
    if recurrence == "per_step":
        return "per_step", ("the per-step kernels were asked for "
                            "(SEQKERNELS_RECURRENCE=per_step)")
    declined = _DECLINED if recurrence == "persistent" else ""
    if backend == "reference":
        return "per_step", (f"{declined}the reference backend has no "
                            "persistent kernel")
    if projection:
        return "per_step", (f"{declined}proj_size > 0: the persistent "
                            "kernels have no projection")
    if backend == "cpu":
        plan = _C.cpu_persistent_plan(kind, B, H, dtype, recurrence)
        if plan["serves"]:
            return "persistent", plan["reason"]
        return "per_step", declined + plan["reason"]
    if recurrence == "default":
        return "per_step", ("the per-step kernels are the default on the "
                            "GPU (SEQKERNELS_RECURRENCE=persistent asks for "
                            "the persistent kernels, opt-in until a GPU run "
                            "has passed them)")
    if backend == "cuda":
        index = device.index if device.index is not None \
            else torch.cuda.current_device()
        plan = _C.persistent_plan(kind, nonlinearity, T, B, H, dtype,
                                  **_C.cuda_device_limits(index))
        serves, reason = plan["serves"], plan["reason"]
    else:
        from triton_kernels.persistent import persistent_plan
        plan = persistent_plan(cell_desc(kind, nonlinearity), T, B, H, dtype,
                               device)
        serves, reason = plan.serves, plan.reason
    if serves:
        return "persistent", reason
    return "per_step", _DECLINED + reason
