"""A loose correctness check of a provider before it is timed, so that a
fast but wrong kernel cannot look good in the table.

The provider's case runs once (forward, and backward from fixed random
output gradients when the configuration trains) and every output and every
leaf gradient is compared with a float32 PyTorch reference (TF32 off) built
from the same weights and inputs. The error is measured relative to the
reference's largest magnitude (floor 1), and must stay under a loose
tolerance for the provider's dtype. This is a guard, not the test suite:
the strict accuracy rule is the tests' (assert_matches in tests/conftest.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor

from .cases import Case, environment, random_grads

TOLERANCE = {
    torch.float64: 1e-6,
    torch.float32: 2e-3,
    torch.float16: 3e-2,
    torch.bfloat16: 1e-1,
}
GRAD_SEED = 1234


@dataclass
class CheckResult:
    ok: bool
    err: float       # worst relative error over outputs and gradients
    tol: float
    detail: str      # "ok", or which tensor is off and by how much

    @property
    def status(self) -> str:
        return "ok" if self.ok else "MISMATCH"


@contextlib.contextmanager
def _no_tf32():
    matmul = torch.backends.cuda.matmul.allow_tf32
    cudnn = torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


def results(case: Case, train: bool) -> dict[str, Tensor]:
    """Outputs (``out0``, ``out1``, ...) and leaf gradients (by leaf name) of
    one run of ``case`` (inside its ``env``), as float64 on the CPU."""
    with environment(case.env):
        return _results(case, train)


def _results(case: Case, train: bool) -> dict[str, Tensor]:
    for leaf in case.leaves.values():
        leaf.grad = None
    ctx = torch.no_grad() if (case.inference or not train) else \
        contextlib.nullcontext()
    with ctx:
        outputs = list(case.forward())
    found = {f"out{i}": o.detach().double().cpu() for i, o in enumerate(outputs)}
    if train and not case.inference:
        differentiable = [o for o in outputs if o.requires_grad]
        grads = random_grads(differentiable,
                             torch.Generator().manual_seed(GRAD_SEED))
        torch.autograd.backward(differentiable, grads)
        for name, leaf in case.leaves.items():
            if leaf.grad is not None:
                found["grad_" + name] = leaf.grad.detach().double().cpu()
            leaf.grad = None
    return found


def compare(ours: dict[str, Tensor], ref: dict[str, Tensor],
            dtype: torch.dtype) -> CheckResult:
    tol = TOLERANCE[dtype]
    worst, worst_name = 0.0, ""
    for name, r in ref.items():
        if name not in ours:
            return CheckResult(False, float("inf"), tol, f"{name} missing")
        o = ours[name]
        if o.shape != r.shape:
            return CheckResult(False, float("inf"), tol,
                               f"{name} shape {tuple(o.shape)} != "
                               f"{tuple(r.shape)}")
        if not torch.isfinite(o).all():
            return CheckResult(False, float("inf"), tol, f"{name} not finite")
        if r.numel() == 0:
            continue
        scale = max(1.0, r.abs().max().item())
        err = (o - r).abs().max().item() / scale
        if err > worst:
            worst, worst_name = err, name
    if worst > tol:
        return CheckResult(False, worst, tol,
                           f"{worst_name} rel. err {worst:.2e} > {tol:.0e}")
    return CheckResult(True, worst, tol, "ok")


def check(case: Case, reference: Case, dtype: torch.dtype,
          train: bool) -> CheckResult:
    """Run ``case`` and ``reference`` once each and compare them."""
    with _no_tf32():
        ref = results(reference, train)
    ours = results(case, train)
    return compare(ours, ref, dtype)
