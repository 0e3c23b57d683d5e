"""The torch.compile providers' one policy, and their first run.

Each plain PyTorch function is compiled once per process with static
shapes (one graph per shape, never a silently slower dynamic one),
fullgraph (a graph break is an error), a raised recompile limit that fails
loudly instead of falling back to eager, and no donated buffers, which
would forbid the ``bwd`` mode's retain_graph (cases.py).
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import torch

from .cases import Case, clear_grads, environment
from .harness import synchronize


@functools.cache
def compiled(fn: Callable) -> Callable:
    """``fn`` under torch.compile, with the policy above."""
    import torch._dynamo.config as dynamo_config
    import torch._functorch.config as functorch_config
    functorch_config.donated_buffer = False
    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 256)
    dynamo_config.fail_on_recompile_limit_hit = True
    return torch.compile(fn, dynamic=False, fullgraph=True)


def compile_now(case: Case, device: torch.device,
                what: str = "compile+first run") -> None:
    """Run ``case`` once, outside any timing, so it compiles its forward
    graphs (and its backward graphs when it trains); the time it took goes
    into the case's note, after ``what``. Also used for providers that
    compile their own kernels at the first call (FlashRNN)."""
    start = time.perf_counter()
    with environment(case.env):
        if case.inference:
            with torch.no_grad():
                case.forward()
        else:
            out = case.forward()[0]
            torch.autograd.backward(out, torch.ones_like(out))
            clear_grads(case.leaves.values())
    synchronize(device)
    case.note = f"{what} {time.perf_counter() - start:.1f} s"
