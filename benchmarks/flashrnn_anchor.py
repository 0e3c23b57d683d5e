"""FlashRNN (NX-AI, ``pip install flashrnn``) as an LSTM provider: the
anchor of target row F1.

Provider ``flashrnn-cuda_fused``: one LSTM layer through FlashRNN's fused
CUDA kernel, at the L1 and L2 configurations, which are FlashRNN's own
benchmark shape (B=16, T=1024, 768 units in one head). It computes the
same function as nn.LSTM and ours:

    xg = x W_ih^T + b_ih                      (torch, in the row's dtype)
    flashrnn(xg, W_hh, b_hh, states=(h0, c0), function="lstm",
             backend="cuda_fused")

FlashRNN's layouts (its defaults): the gate inputs Wx [B, T, G, N, D]; the
recurrent weights R [G, N, D, P], where R[g, n, d, p] multiplies input unit
p into output unit d of gate g, head n, so with one head R[:, 0] is
W_hh.view(4, H, H); the bias b [G, N, D]; the states [S, B, 1, N, D] with
S = 2 (h, c). Its gates come in torch's order (i, f, g, o). It returns the
states of every step [S, B, T, N, D] and the last ones [S, B, 1, N, D].
The input projection is timed with the recurrence (FlashRNN's published
figures time the recurrence alone), so the row is the same work as ours.

First call: FlashRNN builds its CUDA kernels at the first call for a shape
and dtype (torch.utils.cpp_extension.load, with an autotuning search that
may build and try several variants), cached in TORCH_EXTENSIONS_DIR. The
case runs that call when it is built, outside the clock, and its note says
how long it took. scripts/gpu_check_recurrence.sh makes that call earlier,
in a process of its own and under a time budget
(scripts/flashrnn_warmup.py), so the benchmark's first call only loads
the cache; where it failed, the script sets ``SEQKERNELS_BENCH_FLASHRNN_SKIP``
to the reason and the jobs are listed as skipped with it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os

import torch
from torch import Tensor

from .cases import Case
from .compiled import compile_now

PROVIDER = "flashrnn-cuda_fused"
SKIP_ENV = "SEQKERNELS_BENCH_FLASHRNN_SKIP"
_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16"}


def skip_reason(device: torch.device) -> str:
    """Why the FlashRNN provider cannot run on ``device`` here ("" if it
    can)."""
    if device.type != "cuda":
        return f"FlashRNN runs on CUDA only (this run: {device.type})"
    if os.environ.get(SKIP_ENV):
        return os.environ[SKIP_ENV]
    if importlib.util.find_spec("flashrnn") is None:
        return ("flashrnn is not installed (pip install flashrnn; on the GPU "
                "machine, carry its wheel in .whl/)")
    if not torch.cuda.is_available():
        return "no CUDA device on this machine"
    return ""


def lstm_case(cfg, dtype: torch.dtype, device: torch.device, x: Tensor,
              h0: Tensor, c0: Tensor, weights: dict[str, Tensor]) -> Case:
    """The FlashRNN case of a one-layer unidirectional LSTM configuration
    ``cfg``: ``x`` [T, B, I] (requires grad when training), ``h0``, ``c0``
    [1, B, H], ``weights`` the layer's leaves named as in nn.LSTM. Runs the
    first call (module docstring) before it returns."""
    from flashrnn import flashrnn
    if cfg.layers != 1 or cfg.bidirectional or cfg.packed:
        raise ValueError("the FlashRNN provider runs one unidirectional layer "
                         "on padded input")
    if dtype not in _DTYPES:
        raise ValueError(f"the FlashRNN provider runs bfloat16 or float16, "
                         f"not {dtype}")
    T, B, H = cfg.T, cfg.B, cfg.H
    w_ih, w_hh, b_ih, b_hh = (weights[name + "_l0"] for name in (
        "weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    states = torch.stack([h0[0], c0[0]]).view(2, B, 1, 1, H)

    def forward():
        xg = torch.addmm(b_ih, x.reshape(T * B, -1), w_ih.t())
        wx = xg.view(T, B, 4, 1, H).transpose(0, 1)
        every, last = flashrnn(wx, w_hh.view(4, 1, H, H), b_hh.view(4, 1, H),
                               states=states, function="lstm",
                               backend="cuda_fused", dtype=_DTYPES[dtype])
        y = every[0].reshape(B, T, H).transpose(0, 1)
        return [y, last[0].reshape(1, B, H), last[1].reshape(1, B, H)]

    leaves = {} if cfg.inference else {"input": x, **weights}
    case = Case(forward, leaves, inference=cfg.inference)
    version = importlib.metadata.version("flashrnn")
    compile_now(case, device, f"flashrnn {version}: first call (builds or "
                              f"loads its CUDA kernels)")
    return case
