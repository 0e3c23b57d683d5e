"""What is timed: a case (one provider on one configuration, ready to run)
and the runners that run it in each mode.

Modes (``runner``)
    ``fwd``      the forward; with autograd recording (a training forward,
                 which saves what the backward needs) unless the case is an
                 inference case, which runs under ``torch.no_grad``.
    ``infer``    the forward under ``torch.no_grad`` whatever the case: what
                 a user serving the model runs (seqkernels then keeps no
                 saved values; torch.nn takes its inference paths), beside
                 the training forward of the same case.
    ``fwd+bwd``  forward, then backward from random output gradients.
    ``bwd``      the backward alone. The forward runs once, outside the clock,
                 and each repetition calls ``backward(retain_graph=True)`` on
                 that graph. We chose this over "time(fwd+bwd) - time(fwd)":
                 a difference of two medians carries the noise of both, can
                 come out negative for short workloads, and hides a forward
                 that is slower in training mode. The cost: the graph must
                 support a second backward. Every hand-written backward here
                 reads its saved tensors without freeing them, which is all
                 retain_graph asks; torch.compile's donated buffers do not
                 allow it, so compiled.py turns them off for the compiled
                 providers. Gradients are reset to None before each
                 repetition so no accumulation kernel is timed.
    ``step``     a training step (target E1): the forward, whose one output
                 is the loss, its backward, and the case's optimizer step.
                 Not in ``MODES``: only a case with an ``optimizer`` runs it.

Environment: a case's ``env`` (say ``SEQKERNELS_RECURRENCE=persistent``,
which seqkernels reads at every call, forward and backward) is set around
everything a runner runs and restored after each call; ``algorithm``, where
given, says after a run which algorithm ran (plan.py's recurrent
providers).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Optional, Sequence

import torch
from torch import Tensor

MODES = ("fwd", "infer", "bwd", "fwd+bwd")
# The products (multiply-adds) of each mode in forwards' worth, for the
# layers whose work is their matrix products: the backward computes two per
# product of the forward (the gradients of its input and of its weights).
PRODUCTS = {"fwd": 1.0, "infer": 1.0, "bwd": 2.0, "fwd+bwd": 3.0}
TRAIN_STEP = "step"


@dataclass
class Case:
    """One provider on one configuration, ready to run.

    ``forward()`` returns the outputs, always in the same order for every
    provider of a kernel (so check.py can compare them); ``leaves`` are the
    tensors that require grad, by name (the same names across providers).
    ``env``: environment variables set while the case runs (module
    docstring); ``algorithm``: called after a run, it names the algorithm
    that ran (the ``algorithm`` column; None: nothing to say).
    ``optimizer``: the optimizer of the leaves, for the mode ``step`` (a
    case whose forward returns the loss).
    """
    forward: Callable[[], Sequence[Tensor]]
    leaves: dict[str, Tensor] = field(default_factory=dict)
    inference: bool = False
    note: str = ""
    env: dict[str, str] = field(default_factory=dict)
    algorithm: Optional[Callable[[], str]] = None
    optimizer: Optional[torch.optim.Optimizer] = None


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` set in ``os.environ`` for the block; each variable's previous
    value (or its absence) restored after it."""
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _in_environment(fn: Callable[[], object],
                    env: Mapping[str, str]) -> Callable[[], None]:
    """``fn`` run inside ``environment(env)`` (``fn`` itself if env is
    empty)."""
    if not env:
        return fn

    def run():
        with environment(env):
            fn()
    return run


def clear_grads(tensors: Sequence[Tensor]) -> None:
    for t in tensors:
        t.grad = None


def uniform_weights_(module: torch.nn.Module, bound: float,
                     generator: torch.Generator) -> torch.nn.Module:
    """Every parameter of ``module`` drawn from U(-bound, bound) with
    ``generator``, in parameter order: the seeded weights that every
    provider of a configuration copies."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) * 2 * bound
                    - bound)
    return module


def random_grads(outputs: Sequence[Tensor],
                 generator: Optional[torch.Generator] = None) -> list[Tensor]:
    """Random (never zero) output gradients, one per differentiable output."""
    grads = []
    for out in outputs:
        if out.requires_grad:
            g = torch.randn(out.shape, generator=generator, dtype=torch.float32,
                            device="cpu")
            grads.append(g.to(device=out.device, dtype=out.dtype))
    return grads


def _differentiable(outputs: Sequence[Tensor]) -> list[Tensor]:
    return [o for o in outputs if o.requires_grad]


def runner(case: Case, mode: str) -> tuple[Callable[[], None], list[Tensor]]:
    """``(fn, grad_to_none)`` that runs ``case`` in ``mode``, inside the
    case's ``env``."""
    fn, leaves = _runner(case, mode)
    return _in_environment(fn, case.env), leaves


def _runner(case: Case, mode: str) -> tuple[Callable[[], None], list[Tensor]]:
    leaves = list(case.leaves.values())
    if mode == "infer":
        def infer():
            with torch.no_grad():
                case.forward()
        return infer, []
    if mode == "fwd":
        if case.inference:
            def fwd():
                with torch.no_grad():
                    case.forward()
            return fwd, []

        def fwd_train():
            case.forward()
        return fwd_train, leaves
    if case.inference:
        raise ValueError(f"mode {mode!r} needs a training case")
    if mode == TRAIN_STEP:
        if case.optimizer is None:
            raise ValueError(f"mode {mode!r} needs a case with an optimizer")

        def step():
            (loss,) = case.forward()
            loss.backward()
            case.optimizer.step()
        return step, leaves
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES + (TRAIN_STEP,)}, "
                         f"got {mode!r}")
    with environment(case.env):
        outputs = _differentiable(case.forward())
    if not outputs:
        raise ValueError("the case's outputs do not require grad")
    grads = random_grads(outputs)
    if mode == "fwd+bwd":
        del outputs

        def fwd_bwd():
            torch.autograd.backward(_differentiable(case.forward()), grads)
        return fwd_bwd, leaves

    def bwd():  # the forward ran once, above; its graph is kept
        torch.autograd.backward(outputs, grads, retain_graph=True)
    return bwd, leaves
