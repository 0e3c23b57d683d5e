"""Registration shared by every op family.

An op family is ``<op>`` and ``<op>_backward`` in three variants each: the
compiled kernels (``<op>``, dispatched on device by the C++ library), the
Triton kernels (``<op>_triton``) and pure PyTorch (``<op>_reference``).
All variants share one fake function and one autograd formula, which calls
the backward op of the same variant.
"""

import importlib
from typing import Callable

import torch

_SUFFIX = {"cuda": "", "cpu": "", "triton": "_triton", "reference": "_reference"}


def op(name: str, backend: str):
    """The op that runs ``name`` on the resolved ``backend``."""
    return getattr(torch.ops.seqkernels, name + _SUFFIX[backend])


def _lazy(module: str, attr: str) -> Callable:
    # Triton is imported at first use: importing seqkernels must not need it.
    def run(*args):
        return getattr(importlib.import_module(module), attr)(*args)
    return run


def _unmaterialized(setup_context: Callable) -> Callable:
    # Outputs that nothing differentiated (the saved gates, or h_n when only
    # y is used) reach the backward formulas as None rather than as zero
    # tensors that the autograd engine allocates and fills (16 MB of gates
    # for an LSTM layer at B=32, H=256, T=128); each formula makes zeros only
    # for the gradients its backward op reads.
    def setup(ctx, inputs, output):
        ctx.set_materialize_grads(False)
        setup_context(ctx, inputs, output)
    return setup


def register_family(name: str, fake: tuple[Callable, Callable],
                    setup_context: Callable, backward: Callable,
                    reference: tuple[Callable, Callable],
                    triton_module: str) -> None:
    """Register fakes, autograd and the Python variants' kernels of ``name``.

    ``fake`` holds the fake functions of the forward and the backward op.
    ``backward(ctx, backward_op, *grads)`` receives the backward op of the
    variant that ran the forward. ``reference`` holds the forward and
    backward in PyTorch; ``triton_module`` names the module whose functions
    ``name`` and ``name + "_backward"`` run the Triton variant.
    """
    for suffix in ("", "_triton", "_reference"):
        qual = f"seqkernels::{name}{suffix}"
        backward_op = getattr(torch.ops.seqkernels, f"{name}_backward{suffix}")
        torch.library.register_fake(qual, fake[0])
        torch.library.register_fake(
            f"seqkernels::{name}_backward{suffix}", fake[1])
        torch.library.register_autograd(
            qual,
            lambda ctx, *grads, _op=backward_op: backward(ctx, _op, *grads),
            setup_context=_unmaterialized(setup_context))
    fwd_ref, bwd_ref = reference
    torch.library.impl(f"seqkernels::{name}_reference",
                       "default", fwd_ref)
    torch.library.impl(f"seqkernels::{name}_backward_reference",
                       "default", bwd_ref)
    for fn, qual in ((name, f"{name}_triton"),
                     (f"{name}_backward", f"{name}_backward_triton")):
        torch.library.impl(f"seqkernels::{qual}", ("cpu", "cuda"),
                           _lazy(triton_module, fn))
