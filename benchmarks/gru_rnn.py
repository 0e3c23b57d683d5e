"""GRU and vanilla-RNN benchmarks: target rows L7 (the L1 shape, against
cuDNN's nn.GRU and nn.RNN) and C1 (the CPU grid, against torch's CPU
kernels).

Providers (``provider`` column)
    seqkernels-<backend>   seqkernels.GRU / seqkernels.RNN with backend=
                           cuda, triton, auto (CUDA) or cpu, auto (CPU),
                           running the backend's default recurrence.
    seqkernels-<backend>-persistent
                           the same with backend= cuda or triton and the
                           persistent recurrence asked for (GPU; plan.py).
    seqkernels-cpu-per-step
                           the same with backend=cpu and the per-step
                           recurrence asked for (CPU; plan.py).
    torch-nn-gru           torch.nn.GRU: cuDNN on GPU (bf16 and fp16),
                           torch's own kernels on CPU.
    torch-nn-rnn           torch.nn.RNN (tanh), likewise.

Configurations: L7 on GPU (B=16, I=H=768, T=1024, bf16, fwd and fwd+bwd,
one per cell), and on CPU the GRU and RNN cells of the CPU grid (target C1,
``grid-gru-B<B>-H<H>``, ``grid-rnn-B<B>-H<H>``; float32, fwd and fwd+bwd).
``configs(device, full)`` lists them.

Work counts: a GRU layer's forward does 2*tokens*3H*(I + H) FLOPs, a vanilla
RNN's 2*tokens*H*(I + H) (tokens = T*B); the backward about twice that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .cases import PRODUCTS, Case, uniform_weights_
from .plan import (
    Job,
    recurrent_case,
    recurrent_dtypes,
    seqkernels_jobs,
    seqkernels_provider,
)
from .targets import (
    CPU_GRID,
    CPU_GRID_MODES,
    CPU_GRID_TARGET,
    Pairing,
    grid_name,
    grid_pairings,
)

KERNEL = "gru_rnn"
SEED = 0
GATES = {"gru": 3, "rnn": 1}      # gate blocks in the weights, per cell
CELLS = tuple(GATES)


@dataclass(frozen=True)
class Config:
    name: str
    cell: str                        # "gru" or "rnn" (tanh)
    B: int
    H: int
    T: int
    I: int = 0                       # 0: same as H
    modes: tuple[str, ...] = ("fwd+bwd",)
    target: str = ""                 # target id (targets.py)
    sweep: str = ""                  # no sweeps here; run.py reads both
    sweep_x: int = 0
    train: bool = True

    @property
    def input_size(self) -> int:
        return self.I or self.H

    @property
    def shape(self) -> str:
        return (f"{self.cell.upper()} B={self.B} I={self.input_size} "
                f"H={self.H} T={self.T}")


def configs(device: torch.device, full: bool) -> list[Config]:
    """The configurations of ``device`` (the same quick and full)."""
    if device.type == "cuda":
        l1 = dict(B=16, I=768, H=768, T=1024, modes=("fwd", "fwd+bwd"),
                  target="L7")
        return [Config("L7-gru", "gru", **l1), Config("L7-rnn", "rnn", **l1)]
    return [Config(grid_name(cell, B, H), cell, B=B, H=H, T=T,
                   modes=CPU_GRID_MODES, target=CPU_GRID_TARGET)
            for cell in CELLS for B, H, T in CPU_GRID]


def plan(device: torch.device, config_list: Sequence[Config], *,
         compile: bool) -> list[Job]:
    """Every (config, provider, dtype) to run. No torch.compile provider:
    ``compile`` is accepted for run.py's one calling convention."""
    low, anchor_dtypes = recurrent_dtypes(device)
    jobs = []
    for cfg in config_list:
        jobs += seqkernels_jobs(cfg, device, "seqkernels-", low,
                                recurrent=True)
        for dt in anchor_dtypes:
            jobs.append(Job(cfg, f"torch-nn-{cfg.cell}", dt))
    return jobs


def _reference_module(cfg: Config) -> torch.nn.Module:
    """The float32 CPU torch.nn module whose weights every provider copies."""
    cls = {"gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg.cell]
    return uniform_weights_(cls(cfg.input_size, cfg.H), cfg.H ** -0.5,
                            torch.Generator().manual_seed(SEED))


def build(job: Job, device: torch.device) -> Case:
    """The case of ``job``, ready to time."""
    import seqkernels
    cfg, provider, dtype = job.config, job.provider, job.dtype
    if provider.startswith("seqkernels-"):
        cls = {"gru": seqkernels.GRU, "rnn": seqkernels.RNN}[cfg.cell]
        module = cls(cfg.input_size, cfg.H,
                     backend=seqkernels_provider(provider)[0])
    elif provider == f"torch-nn-{cfg.cell}":
        module = {"gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cfg.cell](
            cfg.input_size, cfg.H)
    else:
        raise ValueError(f"unknown {cfg.cell} provider {provider!r}")
    module.load_state_dict(_reference_module(cfg).state_dict())
    module.to(device=device, dtype=dtype)
    if isinstance(module, torch.nn.RNNBase) and device.type == "cuda":
        module.flatten_parameters()
    g = torch.Generator().manual_seed(SEED + 1)
    x = torch.randn(cfg.T, cfg.B, cfg.input_size, generator=g)
    h0 = torch.randn(1, cfg.B, cfg.H, generator=g) * 0.5
    x = x.to(device, dtype).requires_grad_()
    h0 = h0.to(device, dtype)

    def forward():
        out, h = module(x, h0)
        return [out, h]
    case = Case(forward, {"input": x, **dict(module.named_parameters())})
    return (recurrent_case(case, provider, module, x)
            if provider.startswith("seqkernels-") else case)


def reference(job: Job, device: torch.device) -> Case:
    """The float32 PyTorch case that ``job``'s outputs are checked against."""
    cfg = job.config
    return build(Job(cfg, f"torch-nn-{cfg.cell}", torch.float32), device)


def flops(cfg: Config, mode: str) -> float:
    """Floating-point operations of ``cfg`` in ``mode``."""
    fwd = (2.0 * cfg.T * cfg.B * GATES[cfg.cell] * cfg.H
           * (cfg.input_size + cfg.H))
    return fwd * PRODUCTS[mode]


def pointwise_bytes(cfg: Config, mode: str, dtype: torch.dtype) -> float:
    """No row here is counted in bytes."""
    return 0.0


PAIRINGS = tuple(
    Pairing("L7", f"{cell.upper()} layer B=16 I=H=768 T=1024, {mode}", mode,
            f"L7-{cell}", f"L7-{cell}", f"torch-nn-{cell}", ">= 1.0x", 1.0)
    for cell in CELLS for mode in ("fwd", "fwd+bwd")) + tuple(
    p for cell in CELLS for p in grid_pairings(cell, f"torch-nn-{cell}"))
