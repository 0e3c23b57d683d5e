"""Registration shared by every op family.

An op family is ``<op>`` and ``<op>_backward`` in three variants each, with
one schema (csrc/ops.cpp, where ``define_variants`` adds the suffixes): the
compiled kernels (``<op>``, dispatched on device to csrc/cpu or csrc/cuda),
the Triton kernels (``<op>_triton``) and pure PyTorch (``<op>_reference``).
All variants share one fake function and one autograd formula, which calls
the backward op of the same variant. Each op's module in this package names
its Python implementations directly; :func:`register_family` binds them.
"""

from dataclasses import dataclass
from typing import Any, Callable

import torch

from ._autocast import LIB, register_autocast

# The variants' suffixes, as csrc/ops.cpp defines them.
_SUFFIXES = ("", "_triton", "_reference")


@dataclass(frozen=True)
class Variants:
    """The forward and backward ops of one family, per variant."""

    forward: dict[str, Any]
    backward: dict[str, Any]

    def op(self, backend: str):
        """The forward op that runs on the resolved ``backend``."""
        return self.forward[backend]


# Every registered family by its forward op's name (for tests and tools that
# walk all ops; the faces hold their own Variants).
FAMILIES: dict[str, Variants] = {}


def op(name: str, backend: str):
    """The forward op of family ``name`` on the resolved ``backend``."""
    return FAMILIES[name].op(backend)


def _by_backend(name: str) -> dict[str, Any]:
    ops = [getattr(torch.ops.seqkernels, name + s) for s in _SUFFIXES]
    return {"cuda": ops[0], "cpu": ops[0], "triton": ops[1],
            "reference": ops[2]}


def _with_defaults(op: torch._ops.OpOverload) -> Callable:
    # args -> args with the trailing defaults the dispatcher left out (it
    # drops trailing arguments equal to their defaults, e.g. keep_saved=True
    # of the sequence ops, when it calls a Python kernel). Our schemas have
    # no keyword-only arguments.
    arguments = op._schema.arguments
    if any(a.kwarg_only for a in arguments):
        raise TypeError(f"{op}: the ops' Python kernels take positional "
                        "arguments only")
    defaults = tuple(a.default_value for a in arguments)

    def full(args: tuple) -> tuple:
        return args if len(args) == len(defaults) else (
            args + defaults[len(args):])
    return full


def _autograd_kernel(op: torch._ops.OpOverload, setup_context: Callable,
                     backward: Callable) -> Callable:
    # The Autograd kernel of a forward op: what torch.library.register_autograd
    # builds, without its per-call work that our schemas do not need (it
    # rebuilt the argument list from the schema on every call, filling
    # defaults and splitting keyword-only arguments: 14 us of a 60 us LSTM
    # layer call at B=1, H=64 on the CPU).
    full = _with_defaults(op)
    below = torch._C._after_autograd_keyset

    def forward(ctx, keyset, *args):
        with torch._C._AutoDispatchBelowAutograd():
            output = op.redispatch(keyset & below, *args)
        # Outputs that nothing differentiated (the saved gates, or h_n when
        # only y is used) reach the backward formulas as None rather than as
        # zero tensors that the autograd engine allocates and fills (16 MB of
        # gates for an LSTM layer at B=32, H=256, T=128); each formula makes
        # zeros only for the gradients its backward op reads.
        ctx.set_materialize_grads(False)
        setup_context(ctx, args, output)
        return output

    def backward_with_keyset(ctx, *grads):
        return (None, *backward(ctx, *grads))

    function = type(f"{op._opname}_autograd", (torch.autograd.Function,),
                    {"forward": staticmethod(forward),
                     "backward": staticmethod(backward_with_keyset)})

    def kernel(keyset, *args):
        args = full(args)
        if torch.is_grad_enabled() and torch._C._any_requires_grad(*args):
            return function.apply(keyset, *args)
        with torch._C._AutoDispatchBelowAutograd():
            return op.redispatch(keyset & below, *args)
    return kernel


def _checked(op: torch._ops.OpOverload, check: Callable,
             kernel: Callable) -> Callable:
    # The Python variants run the compiled kernels' argument checks first
    # (_C.check_<op>), so a bad input gets the same message on every backend.
    full = _with_defaults(op)

    def run(*args):
        args = full(args)
        check(*args)
        return kernel(*args)
    return run


def _at_first_use(kernels: Callable[[], tuple], which: int) -> Callable:
    # The Triton kernels' module is imported at the first call (importing
    # seqkernels must not need triton), once: later calls reuse the kernel.
    found: list[Callable] = []

    def run(*args):
        if not found:
            found.append(kernels()[which])
        return found[0](*args)
    return run


def register_family(name: str, fake: tuple[Callable, Callable],
                    setup_context: Callable, backward: Callable, *,
                    reference: tuple[Callable, Callable],
                    triton: Callable[[], tuple[Callable, Callable]],
                    check: tuple[Callable, Callable]) -> Variants:
    """Register fakes, autograd, autocast (``_autocast.py``) and the Python
    variants' kernels of the op family ``name``; return its ops by backend.

    ``fake`` holds the fake functions of the forward and the backward op.
    ``backward(ctx, backward_op, *grads)`` receives the backward op of the
    variant that ran the forward. ``reference`` holds the forward and
    backward in PyTorch; ``triton()`` returns the Triton forward and
    backward (it imports their module). ``check`` holds the argument checks
    of the forward and backward, run before the Python variants' kernels.
    """
    variants = Variants(_by_backend(name), _by_backend(name + "_backward"))
    for backend in ("cpu", "triton", "reference"):
        fwd, bwd = variants.forward[backend], variants.backward[backend]
        torch.library.register_fake(fwd.default, fake[0])
        torch.library.register_fake(bwd.default, fake[1])
        LIB.impl(fwd.default.name().split("::", 1)[1],
                 _autograd_kernel(fwd.default, setup_context,
                                  lambda ctx, *grads, _op=bwd:
                                  backward(ctx, _op, *grads)),
                 "Autograd", with_keyset=True)
        register_autocast(fwd)
    for i, ops in enumerate((variants.forward, variants.backward)):
        torch.library.impl(ops["reference"].default.name(), "default",
                           _checked(ops["reference"].default, check[i],
                                    reference[i]))
        torch.library.impl(ops["triton"].default.name(), ("cpu", "cuda"),
                           _checked(ops["triton"].default, check[i],
                                    _at_first_use(triton, i)))
    FAMILIES[name] = variants
    return variants
