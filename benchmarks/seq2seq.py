"""Seq2seq training steps: target row E1, the models of the examples
against the same models built from torch.nn.

Models
    dates      examples/dates.py's translator (Bahdanau attention): a
               2-layer bidirectional GRU encoder over packed sources, a
               GRUCell decoder with additive attention, 11 output steps.
    climate    examples/climate.py's forecaster: an LSTM encoder over 36
               months, an LSTMCell decoder with additive attention, 12
               output steps.

Providers (``provider`` column)
    seqkernels-<backend>   the example's model as written (seqkernels.GRU,
                           GRUCell, LSTM, LSTMCell, AdditiveAttention), each
                           seqkernels module set to backend= cuda, triton,
                           auto (CUDA) or cpu, auto (CPU).
    torch-nn               the same model, the same initial weights, with
                           torch.nn's modules: ``seqkernels.convert(model,
                           to="torch")`` for the recurrent ones, and the
                           additive attention in torch operations as a
                           framework writes it (``TorchAdditiveAttention``:
                           the [B, Tq, Tk, H] tanh tensor is built).

Mode ``step`` (cases.py): the forward to the loss, its backward and an Adam
step; float32 on both devices, the examples' dtype. Inputs: a batch of
generated dates in every format (dates) and windows of random values
(climate: the timing needs the shapes, not the series, nor statsmodels),
128 sequences each, as the examples train. No work counts: the rows are
times only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from .cases import Case
from .plan import Job, seqkernels_jobs, seqkernels_provider
from .targets import Pairing

KERNEL = "seq2seq"
SEED = 0
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MODELS = ("dates", "climate")


@dataclass(frozen=True)
class Config:
    name: str
    model: str                       # "dates" or "climate"
    B: int = 128
    modes: tuple[str, ...] = ("step",)
    target: str = "E1"
    sweep: str = ""                  # no sweeps here; run.py reads both
    sweep_x: int = 0
    train: bool = True

    @property
    def shape(self) -> str:
        return f"examples/{self.model}.py B={self.B}"


def configs(device: torch.device, full: bool) -> list[Config]:
    """The example models' training steps (the same quick and full; the CPU
    rows' names end in -cpu, as their target differs)."""
    suffix = "" if device.type == "cuda" else "-cpu"
    return [Config(f"E1-{m}{suffix}", m) for m in MODELS]


def plan(device: torch.device, config_list: Sequence[Config], *,
         compile: bool) -> list[Job]:
    """Every (config, provider) to run, in float32. No torch.compile
    provider: ``compile`` is accepted for run.py's one calling convention."""
    jobs = []
    for cfg in config_list:
        jobs += seqkernels_jobs(cfg, device, "seqkernels-", torch.float32)
        jobs.append(Job(cfg, "torch-nn", torch.float32))
    return jobs


class TorchAdditiveAttention(torch.nn.Module):
    """seqkernels.AdditiveAttention's contract (the parts the examples use:
    a decoder step's query, key as value, ``key_padding_mask``,
    ``need_weights``) in torch operations, holding the same parameters."""

    def __init__(self, twin: torch.nn.Module):
        super().__init__()
        self.w_query, self.w_key = twin.w_query, twin.w_key
        self.v, self.bias = twin.v, twin.bias

    def forward(self, query: Tensor, key: Tensor,
                key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = False):
        q = query @ self.w_query.t()                             # [B, H]
        k = key @ self.w_key.t()                                 # [B, Tk, H]
        scores = torch.tanh(q.unsqueeze(1) + k + self.bias) @ self.v
        if key_padding_mask is not None:
            scores = scores.masked_fill(key_padding_mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)                  # [B, Tk]
        context = (weights.unsqueeze(1) @ key).squeeze(1)
        return context, weights if need_weights else None


def _example(name: str):
    """The module examples/<name>.py."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return __import__(name)


def _torch_twin(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with torch.nn modules and TorchAdditiveAttention in place of
    seqkernels' (the same parameter objects and names)."""
    import seqkernels
    model = seqkernels.convert(model, to="torch")
    for name, module in list(model.named_modules()):
        if isinstance(module, seqkernels.AdditiveAttention):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr,
                    TorchAdditiveAttention(module))
    return model


def _model(cfg: Config, provider: str, device: torch.device):
    """The model of ``cfg`` for ``provider`` and its loss on a fixed batch
    (a function of no arguments)."""
    torch.manual_seed(SEED)
    example = _example(cfg.model)
    g = torch.Generator().manual_seed(SEED + 1)
    if cfg.model == "dates":
        import random
        model = example.Translator()
        rng = random.Random(SEED)
        formats = list(example.NUMERIC.values()) + list(
            example.WORDS.values())
        src, _, lengths, tgt = example.batch(
            example.random_dates(cfg.B, rng, False), formats, rng, device)

        def loss_of(m):
            return lambda: m.loss(src, lengths, tgt)
    elif cfg.model == "climate":
        model = example.Forecaster()
        past = torch.randn(cfg.B, example.WINDOW, 1, generator=g).to(device)
        future = torch.randn(cfg.B, example.HORIZON, generator=g).to(device)

        def loss_of(m):
            return lambda: ((m(past)[0] - future) ** 2).mean()
    else:
        raise ValueError(f"unknown seq2seq model {cfg.model!r}")
    if provider.startswith("seqkernels-"):
        backend = seqkernels_provider(provider)[0]
        for module in model.modules():
            if type(module).__module__.startswith("seqkernels."):
                module.backend = backend
    elif provider == "torch-nn":
        model = _torch_twin(model)
    else:
        raise ValueError(f"unknown seq2seq provider {provider!r}")
    model.to(device)
    if device.type == "cuda":
        for module in model.modules():
            if isinstance(module, torch.nn.RNNBase):
                module.flatten_parameters()
    return model, loss_of(model)


def build(job: Job, device: torch.device) -> Case:
    """The case of ``job``: its forward returns the loss; its optimizer is
    Adam over the model's parameters."""
    model, loss = _model(job.config, job.provider, device)
    case = Case(lambda: [loss()], dict(model.named_parameters()))
    case.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return case


def reference(job: Job, device: torch.device) -> Case:
    """The float32 torch.nn case that ``job``'s loss and gradients are
    checked against."""
    return build(Job(job.config, "torch-nn", torch.float32), device)


def flops(cfg: Config, mode: str) -> float:
    """Not counted: the rows are times (module docstring)."""
    return 0.0


def pointwise_bytes(cfg: Config, mode: str, dtype: torch.dtype) -> float:
    """No row here is counted in bytes."""
    return 0.0


PAIRINGS = tuple(
    Pairing("E1", f"training step of examples/{m}.py, B=128, {where}", "step",
            f"E1-{m}{suffix}", f"E1-{m}{suffix}", "torch-nn", text, threshold)
    for where, suffix, text, threshold in (("GPU", "", ">= 2x", 2.0),
                                           ("CPU", "-cpu", ">= 1.0x", 1.0))
    for m in MODELS)
