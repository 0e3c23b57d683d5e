"""LSTM benchmarks: providers, configurations, work counts, target rows.

Providers (``provider`` column)
    seqkernels-<backend>   seqkernels.LSTM / LSTMCell / ops.lstm_cell with
                           backend= cuda, triton, auto (CUDA) or cpu, auto
                           (CPU). Triton is not run on CPU: the interpreter is
                           a test tool, not a benchmark. The sequence rows
                           run the backend's default recurrence (the
                           persistent kernel on the CPU where its rule says
                           so, per-step on the GPU).
    seqkernels-<backend>-persistent
                           seqkernels.LSTM with backend= cuda or triton and
                           the persistent recurrence asked for (sequence
                           rows on the GPU; plan.py says how, and what the
                           ``algorithm`` column holds).
    seqkernels-cpu-per-step
                           seqkernels.LSTM with backend=cpu and the per-step
                           recurrence asked for (sequence rows on the CPU).
    torch-nn-lstm          torch.nn.LSTM: cuDNN on GPU (bf16, and fp16 for
                           the anchor rows), torch's own kernels on CPU.
    torch-lstmcell-loop    torch.nn.LSTMCell stepped in a Python loop over T
                           (torch's fused cell; two GEMMs per step).
    torch-compile-loop     a plain PyTorch LSTM (input GEMM for all steps,
                           then per step matmul + sigmoid/tanh), with the step
                           compiled by torch.compile (fullgraph, static
                           shapes) and the loop over T in Python. The step
                           is compiled, not the loop: unrolling T = 1024..2048
                           steps into one graph takes longer to compile than
                           the whole benchmark. Compiled once, before timing
                           (the compile time is in the row's note).
    torch-lstmcell         one torch.nn.LSTMCell step (target L6).
    torch-fused-cell       aten._thnn_fused_lstm_cell, the pointwise kernel
                           inside nn.LSTMCell (CUDA only; no CPU kernel).
    torch-eager-pointwise  the same pointwise math in eager PyTorch.
    flashrnn-cuda_fused    FlashRNN's fused CUDA LSTM (flashrnn_anchor.py),
                           at L1 and L2 (target F1).

Configurations: the LSTM target rows L1..L6 (targets.py; bf16 on GPU) and
sweeps over batch and hidden size on the GPU; on the CPU (float32) the LSTM
cells of the CPU grid (target C1, ``grid-lstm-B<B>-H<H>``; its B=32 H=256
cell is also the CPU target row), and with --full a cell step, its
pointwise part and sweeps. ``configs(device, full)`` lists them; run.py
filters and times them.

Work counts: an LSTM layer-direction's forward does 2*tokens*4H*(I_l + P)
FLOPs (+ 2*tokens*H*P for a projection), tokens = T*B, or the sum of the
lengths for packed input (the real work, so packed and padded rows compare
as useful throughput); the backward about twice that. The pointwise cell
rows count bytes instead (see ``pointwise_bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence

from . import flashrnn_anchor
from .cases import PRODUCTS, Case, uniform_weights_
from .compiled import compile_now, compiled
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

KERNEL = "lstm"
SEED = 0


# --------------------------------------------------------------------------
# Configurations


@dataclass(frozen=True)
class Config:
    name: str
    B: int
    H: int
    I: int = 0                       # 0: same as H
    T: int = 1
    kind: str = "seq"                # "seq", "cell" or "pointwise"
    layers: int = 1
    bidirectional: bool = False
    packed: bool = False             # lengths uniform in [1, T]
    modes: tuple[str, ...] = ("fwd+bwd",)
    inference: bool = False          # fwd under torch.no_grad, eval mode
    target: str = ""                 # target id (targets.py)
    sweep: str = ""                  # sweep name, for plots
    sweep_x: int = 0                 # this point's value of the swept size
    seq_providers: Optional[tuple[str, ...]] = None  # None: all that apply
    flashrnn: bool = False           # FlashRNN's benchmark shape (F1)

    @property
    def input_size(self) -> int:
        return self.I or self.H

    @property
    def train(self) -> bool:
        return not self.inference

    @property
    def shape(self) -> str:
        if self.kind == "pointwise":
            return f"B={self.B} H={self.H}"
        if self.kind == "cell":
            return f"B={self.B} I={self.input_size} H={self.H}"
        s = f"B={self.B} I={self.input_size} H={self.H} T={self.T}"
        if self.layers > 1:
            s += f" layers={self.layers}"
        if self.bidirectional:
            s += " bidir"
        if self.packed:
            s += " packed"
        if self.inference:
            s += " no_grad"
        return s


def _sweep(name: str, values: Sequence[int], **fixed) -> list[Config]:
    field_name = {"batch": "B", "hidden": "H"}[name]
    return [Config(name=f"{name}-{v}", sweep=name, sweep_x=v,
                   **{**fixed, field_name: v}) for v in values]


CORE = ("seqkernels", "torch-nn-lstm")  # providers of sweep points
CPU_ROW = (32, 256)     # (B, H) of the CPU target row, a cell of the grid


def configs(device: torch.device, full: bool) -> list[Config]:
    """The configurations of ``device``: full or quick."""
    if device.type == "cuda":
        l1 = dict(B=16, I=768, H=768, T=1024)
        rows = [
            Config("L1", **l1, modes=("fwd",), target="L1/F1",
                   flashrnn=True),
            Config("L2", **l1, modes=("fwd+bwd", "bwd"), target="L2/F1",
                   flashrnn=True),
            Config("L3", B=64, I=1024, H=1024, T=512, layers=2,
                   bidirectional=True, target="L3"),
            Config("L4", B=1, I=1024, H=1024, T=2048, modes=("fwd",),
                   inference=True, target="L4"),
            Config("L5-packed", B=64, I=512, H=512, T=512, packed=True,
                   modes=("fwd+bwd", "fwd"), target="L5"),
            Config("L5-padded", B=64, I=512, H=512, T=512,
                   modes=("fwd+bwd", "fwd"), target="L5", seq_providers=CORE),
            Config("L6", kind="cell", B=4096, I=1024, H=1024, target="L6"),
            Config("L6-pointwise", kind="pointwise", B=4096, H=1024,
                   target="L6"),
        ]
        if full:
            rows += _sweep("batch", (1, 2, 4, 8, 16, 32, 64, 128, 256),
                           I=768, H=768, T=256, seq_providers=CORE)
            rows += _sweep("hidden", (128, 256, 512, 768, 1024, 1536, 2048),
                           B=16, T=256, seq_providers=CORE)
        return rows
    # The grid cell of the CPU target row serves both ids, with that row's
    # anchors (every one); the other cells are set beside nn.LSTM alone.
    grid = [Config(grid_name("lstm", B, H), B=B, H=H, T=T,
                   modes=CPU_GRID_MODES,
                   target=(f"{CPU_GRID_TARGET}/CPU" if (B, H) == CPU_ROW
                           else CPU_GRID_TARGET),
                   seq_providers=None if (B, H) == CPU_ROW else CORE)
            for B, H, T in CPU_GRID]
    if not full:
        return grid
    return (grid
            + [Config("cell-cpu", kind="cell", B=256, I=256, H=256),
               Config("pointwise-cpu", kind="pointwise", B=256, H=256)]
            + _sweep("batch", (1, 4, 16, 64, 256), H=256, T=64,
                     seq_providers=CORE)
            + _sweep("hidden", (64, 128, 256, 512, 1024), B=16, T=64,
                     seq_providers=CORE))


# --------------------------------------------------------------------------
# Jobs: which provider runs which configuration in which dtype


def plan(device: torch.device, config_list: Sequence[Config], *,
         compile: bool) -> list[Job]:
    """Every (config, provider, dtype) to run. ``compile=False`` lists the
    torch.compile provider as skipped, with the reason."""
    cuda = device.type == "cuda"
    low, anchor_dtypes = recurrent_dtypes(device)
    jobs = []
    for cfg in config_list:
        jobs += seqkernels_jobs(cfg, device, "seqkernels-", low,
                                recurrent=cfg.kind == "seq")
        sweep_point = cfg.sweep != ""
        if cfg.kind == "seq":
            for dt in ((low,) if sweep_point else anchor_dtypes):
                jobs.append(Job(cfg, "torch-nn-lstm", dt))
            if cfg.seq_providers is None and not cfg.packed:
                for dt in anchor_dtypes:
                    jobs.append(Job(cfg, "torch-lstmcell-loop", dt))
                jobs.append(Job(
                    cfg, "torch-compile-loop", low,
                    "" if compile else "torch.compile skipped "
                    "(--no-compile)"))
            if cfg.flashrnn:
                jobs.append(Job(cfg, flashrnn_anchor.PROVIDER, low,
                                flashrnn_anchor.skip_reason(device)))
        elif cfg.kind == "cell":
            for dt in anchor_dtypes:
                jobs.append(Job(cfg, "torch-lstmcell", dt))
        elif cfg.kind == "pointwise":
            if cuda:
                for dt in anchor_dtypes:
                    jobs.append(Job(cfg, "torch-fused-cell", dt))
            jobs.append(Job(cfg, "torch-eager-pointwise", low))
    return jobs


# --------------------------------------------------------------------------
# Inputs and weights, the same for every provider of a configuration


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(SEED)


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> Tensor:
    return torch.randn(*shape, generator=g) * scale


def _reference_lstm(cfg: Config) -> torch.nn.LSTM:
    """The float32 CPU nn.LSTM whose weights every provider copies."""
    m = torch.nn.LSTM(cfg.input_size, cfg.H, num_layers=cfg.layers,
                      bidirectional=cfg.bidirectional)
    return uniform_weights_(m, cfg.H ** -0.5, _generator())


def _reference_cell(cfg: Config) -> torch.nn.LSTMCell:
    m = torch.nn.LSTMCell(cfg.input_size, cfg.H)
    return uniform_weights_(m, cfg.H ** -0.5, _generator())


@dataclass
class SeqInputs:
    x: Tensor                        # [T, B, I] float32 on the device
    h0: Tensor                       # [L*D, B, H]
    c0: Tensor
    lengths: Optional[Tensor]        # [B] int64 on the CPU, or None


def _seq_inputs(cfg: Config, device: torch.device) -> SeqInputs:
    g = torch.Generator().manual_seed(SEED + 1)
    D = 2 if cfg.bidirectional else 1
    x = _randn(g, cfg.T, cfg.B, cfg.input_size)
    h0 = _randn(g, cfg.layers * D, cfg.B, cfg.H, scale=0.5)
    c0 = _randn(g, cfg.layers * D, cfg.B, cfg.H, scale=0.5)
    lengths = None
    if cfg.packed:
        lengths = torch.randint(1, cfg.T + 1, (cfg.B,), generator=g)
    return SeqInputs(x.to(device), h0.to(device), c0.to(device), lengths)


def lstm_step(xw_t: Tensor, h: Tensor, c: Tensor,
              w_hh: Tensor) -> tuple[Tensor, Tensor]:
    """One LSTM step in plain PyTorch; ``xw_t`` = x_t W_ih^T + biases."""
    gates = xw_t + torch.matmul(h, w_hh.t())
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


# --------------------------------------------------------------------------
# Building a provider's case


def _seq_module_case(cfg: Config, module: torch.nn.Module, dtype, device,
                     inputs: SeqInputs, provider: str = "") -> Case:
    """The case of ``module`` on ``inputs``; for a seqkernels ``provider``,
    with its recurrence algorithm (plan.recurrent_case)."""
    module.load_state_dict(_reference_lstm(cfg).state_dict())
    module.to(device=device, dtype=dtype)
    if cfg.inference:
        module.eval()
        module.requires_grad_(False)
    if isinstance(module, torch.nn.LSTM) and device.type == "cuda":
        module.flatten_parameters()
    x = inputs.x.to(dtype).requires_grad_(cfg.train)
    hx = (inputs.h0.to(dtype), inputs.c0.to(dtype))
    lengths = inputs.lengths

    if lengths is not None:
        def forward():
            packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
            out, (h, c) = module(packed, hx)
            return [out.data, h, c]
    else:
        def forward():
            out, (h, c) = module(x, hx)
            return [out, h, c]
    leaves = {} if cfg.inference else {"input": x, **dict(module.named_parameters())}
    case = Case(forward, leaves, inference=cfg.inference)
    return recurrent_case(case, provider, module, x) if provider else case


def _direction_weights(cfg: Config, dtype, device) -> list[dict[str, Tensor]]:
    """Per layer and direction, the reference weights as leaves named as in
    torch.nn.LSTM (so check.py can compare their gradients)."""
    ref = dict(_reference_lstm(cfg).named_parameters())
    D = 2 if cfg.bidirectional else 1
    out = []
    for layer in range(cfg.layers):
        for d in range(D):
            suffix = f"_l{layer}" + ("_reverse" if d else "")
            out.append({
                name + suffix: ref[name + suffix].detach().to(device, dtype)
                .requires_grad_(cfg.train)
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    return out


def _stack(cfg: Config, x: Tensor, h0: Tensor, c0: Tensor, run_direction):
    """Layers and directions around ``run_direction(k, inp, h, c, reverse)``
    which returns ``(ys [T,B,H], h_T, c_T)``."""
    D = 2 if cfg.bidirectional else 1
    layer_in, hs, cs = x, [], []
    for layer in range(cfg.layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            ys, h, c = run_direction(k, layer_in, h0[k], c0[k], d == 1)
            outs.append(ys)
            hs.append(h)
            cs.append(c)
        layer_in = outs[0] if D == 1 else torch.cat(outs, dim=2)
    return [layer_in, torch.stack(hs), torch.stack(cs)]


def _loop_case(cfg: Config, dtype, device, inputs: SeqInputs,
               weights: list[dict[str, Tensor]], direction) -> Case:
    """An LSTM stepped in a Python loop over T. ``direction(k, inp)`` gives,
    for layer-direction ``k`` and its input ``inp``, ``(per_step, step)``:
    ``step(per_step[t], h, c)`` returns the next ``(h, c)``."""
    x = inputs.x.to(dtype).requires_grad_(cfg.train)
    h0, c0 = inputs.h0.to(dtype), inputs.c0.to(dtype)
    T = cfg.T

    def run_direction(k, inp, h, c, reverse):
        per_step, step = direction(k, inp)
        ys = [None] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            h, c = step(per_step[t], h, c)
            ys[t] = h
        return torch.stack(ys), h, c

    def forward():
        return _stack(cfg, x, h0, c0, run_direction)
    leaves = {} if cfg.inference else {"input": x}
    if cfg.train:
        for w in weights:
            leaves.update(w)
    return Case(forward, leaves, inference=cfg.inference)


def _lstmcell_loop_case(cfg: Config, dtype, device, inputs: SeqInputs) -> Case:
    weights = _direction_weights(cfg, dtype, device)
    cells = []
    for w in weights:
        w_ih, w_hh, b_ih, b_hh = w.values()
        cell = torch.nn.LSTMCell(w_ih.shape[1], cfg.H, device=device,
                                 dtype=dtype)
        # The cell uses the leaf tensors themselves, so their .grad is set.
        del cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
        cell.weight_ih, cell.weight_hh = w_ih, w_hh
        cell.bias_ih, cell.bias_hh = b_ih, b_hh
        cells.append(cell)

    def direction(k, inp):
        return inp, lambda x_t, h, c: cells[k](x_t, (h, c))
    return _loop_case(cfg, dtype, device, inputs, weights, direction)


def _compile_loop_case(cfg: Config, dtype, device, inputs: SeqInputs) -> Case:
    weights = _direction_weights(cfg, dtype, device)
    step = compiled(lstm_step)

    def direction(k, inp):
        w_ih, w_hh, b_ih, b_hh = weights[k].values()
        xw = torch.matmul(inp, w_ih.t()) + (b_ih + b_hh)
        return xw, lambda xw_t, h, c: step(xw_t, h, c, w_hh)
    case = _loop_case(cfg, dtype, device, inputs, weights, direction)
    compile_now(case, device)
    return case


def _cell_case(cfg: Config, provider: str, dtype, device) -> Case:
    import seqkernels
    g = torch.Generator().manual_seed(SEED + 2)
    ref = _reference_cell(cfg)
    if provider == "torch-lstmcell":
        cell = torch.nn.LSTMCell(cfg.input_size, cfg.H)
    else:
        cell = seqkernels.LSTMCell(cfg.input_size, cfg.H,
                                   backend=seqkernels_provider(provider)[0])
    cell.load_state_dict(ref.state_dict())
    cell.to(device=device, dtype=dtype)
    x = _randn(g, cfg.B, cfg.input_size).to(device, dtype).requires_grad_()
    h = _randn(g, cfg.B, cfg.H, scale=0.5).to(device, dtype).requires_grad_()
    c = _randn(g, cfg.B, cfg.H, scale=0.5).to(device, dtype).requires_grad_()

    def forward():
        return list(cell(x, (h, c)))
    return Case(forward, {"input": x, "hx": h, "cx": c,
                          **dict(cell.named_parameters())})


def _pointwise_inputs(cfg: Config, dtype, device) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(SEED + 3)
    B, H = cfg.B, cfg.H
    shapes = {"x_proj": (B, 4 * H), "h_proj": (B, 4 * H), "c": (B, H),
              "b_ih": (4 * H,), "b_hh": (4 * H,)}
    return {name: _randn(g, *s).to(device, dtype).requires_grad_()
            for name, s in shapes.items()}


def _pointwise_case(cfg: Config, provider: str, dtype, device) -> Case:
    leaves = _pointwise_inputs(cfg, dtype, device)
    xp, hp, c, b_ih, b_hh = leaves.values()
    if provider.startswith("seqkernels-"):
        from seqkernels.ops import lstm_cell
        backend = seqkernels_provider(provider)[0]

        def forward():
            return list(lstm_cell(xp, hp, c, b_ih + b_hh, backend=backend))
    elif provider == "torch-fused-cell":
        def forward():
            h, c_new, _ = torch.ops.aten._thnn_fused_lstm_cell(
                xp, hp, c, b_ih, b_hh)
            return [h, c_new]
    elif provider == "torch-eager-pointwise":
        def forward():
            gates = xp + hp + b_ih + b_hh
            i, f, g, o = gates.chunk(4, dim=1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return [torch.sigmoid(o) * torch.tanh(c_new), c_new]
    else:
        raise ValueError(f"unknown pointwise provider {provider!r}")
    return Case(forward, leaves)


def build(job: Job, device: torch.device) -> Case:
    """The case of ``job``, ready to time. Only seqkernels' own providers
    import seqkernels (scripts/flashrnn_warmup.py builds the FlashRNN case
    while seqkernels is still being built)."""
    cfg, provider, dtype = job.config, job.provider, job.dtype
    if cfg.kind == "cell":
        return _cell_case(cfg, provider, dtype, device)
    if cfg.kind == "pointwise":
        return _pointwise_case(cfg, provider, dtype, device)
    inputs = _seq_inputs(cfg, device)
    kw = dict(num_layers=cfg.layers, bidirectional=cfg.bidirectional)
    if provider.startswith("seqkernels-"):
        import seqkernels
        module = seqkernels.LSTM(cfg.input_size, cfg.H, **kw,
                                 backend=seqkernels_provider(provider)[0])
        return _seq_module_case(cfg, module, dtype, device, inputs, provider)
    if provider == "torch-nn-lstm":
        module = torch.nn.LSTM(cfg.input_size, cfg.H, **kw)
        return _seq_module_case(cfg, module, dtype, device, inputs)
    if provider == "torch-lstmcell-loop":
        return _lstmcell_loop_case(cfg, dtype, device, inputs)
    if provider == "torch-compile-loop":
        return _compile_loop_case(cfg, dtype, device, inputs)
    if provider == flashrnn_anchor.PROVIDER:
        x = inputs.x.to(dtype).requires_grad_(cfg.train)
        return flashrnn_anchor.lstm_case(
            cfg, dtype, device, x, inputs.h0.to(dtype), inputs.c0.to(dtype),
            _direction_weights(cfg, dtype, device)[0])
    raise ValueError(f"unknown LSTM provider {provider!r}")


def reference(job: Job, device: torch.device) -> Case:
    """The float32 PyTorch case that ``job``'s outputs are checked against."""
    provider = {"seq": "torch-nn-lstm", "cell": "torch-lstmcell",
                "pointwise": "torch-eager-pointwise"}[job.config.kind]
    cfg = job.config
    if cfg.inference:
        cfg = replace(cfg, inference=False)  # the check runs the same math
    return build(Job(cfg, provider, torch.float32), device)


# --------------------------------------------------------------------------
# Work counts


def flops(cfg: Config, mode: str) -> float:
    """Floating-point operations of ``cfg`` in ``mode`` (0 where bytes count)."""
    if cfg.kind == "pointwise":
        return 0.0
    if cfg.kind == "cell":
        fwd = 2.0 * cfg.B * 4 * cfg.H * (cfg.input_size + cfg.H)
    else:
        if cfg.packed:
            tokens = float(_seq_inputs_lengths(cfg).sum())
        else:
            tokens = float(cfg.T * cfg.B)
        D = 2 if cfg.bidirectional else 1
        fwd = 0.0
        for layer in range(cfg.layers):
            in_size = cfg.input_size if layer == 0 else D * cfg.H
            fwd += D * 2.0 * tokens * 4 * cfg.H * (in_size + cfg.H)
    return fwd * PRODUCTS[mode]


def _seq_inputs_lengths(cfg: Config) -> Tensor:
    return _seq_inputs(cfg, torch.device("cpu")).lengths


def pointwise_bytes(cfg: Config, mode: str, dtype: torch.dtype) -> float:
    """Bytes the fused pointwise cell must move, per the model (elements of
    [B] rows, in the storage dtype; the [4H] bias is left out):

    forward   reads x_proj, h_proj (4H each) and c (H); writes h, c (H
              each) and the activated gates it saves (4H): 15H
    backward  reads grad_h, grad_c, c, c_new (H each) and the gates (4H);
              writes grad_gates (4H) and grad_c_prev (H): 13H

    The same nominal count for every provider, so GB/s compare like time.
    """
    if cfg.kind != "pointwise":
        return 0.0
    per_row = {"fwd": 15, "bwd": 13, "fwd+bwd": 28}[mode] * cfg.H
    return float(per_row * cfg.B * torch.empty((), dtype=dtype).element_size())


# --------------------------------------------------------------------------
# Target rows: which timing is set beside which


PAIRINGS = (
    Pairing("L1", "LSTM layer B=16 I=H=768 T=1024, fwd", "fwd", "L1", "L1",
            "torch-nn-lstm", ">= 1.25x (moonshot 2x)", 1.25),
    Pairing("L2", "same, fwd+bwd", "fwd+bwd", "L2", "L2", "torch-nn-lstm",
            ">= 1.25x", 1.25),
    Pairing("L2", "same, bwd alone", "bwd", "L2", "L2", "torch-nn-lstm",
            "(for reference)", None),
    Pairing("F1", "FlashRNN's benchmark: LSTM B=16 T=1024 768 units, fwd",
            "fwd", "L1", "L1", flashrnn_anchor.PROVIDER, ">= 3x", 3.0),
    Pairing("F1", "same, fwd+bwd", "fwd+bwd", "L2", "L2",
            flashrnn_anchor.PROVIDER, ">= 3x", 3.0),
    Pairing("L3", "B=64 I=H=1024 T=512, 2 layers bidir, fwd+bwd", "fwd+bwd",
            "L3", "L3", "torch-nn-lstm", ">= 1.0x", 1.0),
    Pairing("L4", "inference B=1 H=1024 T=2048", "fwd", "L4", "L4",
            "torch-nn-lstm", ">= 1.5x", 1.5),
    Pairing("L5", "packed B=64 H=512 T<=512 vs our padded, fwd+bwd",
            "fwd+bwd", "L5-packed", "L5-padded", None,
            "packed <= 1.1x padded (x >= 0.91)", 1 / 1.1),
    Pairing("L5", "packed vs our padded, fwd", "fwd", "L5-packed",
            "L5-padded", None, "packed <= 1.1x padded (x >= 0.91)", 1 / 1.1),
    Pairing("L5", "packed, vs nn.LSTM packed, fwd+bwd", "fwd+bwd",
            "L5-packed", "L5-packed", "torch-nn-lstm", "(comparison)", None),
    Pairing("L6", "cell step B=4096 H=1024, fwd+bwd", "fwd+bwd", "L6", "L6",
            "torch-lstmcell", ">= 1.0x", 1.0),
    Pairing("L6", "pointwise part of the cell, fwd+bwd", "fwd+bwd",
            "L6-pointwise", "L6-pointwise", None,
            ">= 80% of copy bandwidth", 0.8, metric="copy"),
    Pairing("L6", "pointwise part, vs torch's fused cell", "fwd+bwd",
            "L6-pointwise", "L6-pointwise", "torch-fused-cell",
            "(comparison)", None),
    Pairing("CPU", "CPU B=32 I=H=256 T=128, fwd+bwd, fp32", "fwd+bwd",
            grid_name("lstm", *CPU_ROW), grid_name("lstm", *CPU_ROW),
            "torch-nn-lstm", ">= 1.0x", 1.0),
    Pairing("CPU", "same, fwd", "fwd", grid_name("lstm", *CPU_ROW),
            grid_name("lstm", *CPU_ROW), "torch-nn-lstm", "(for reference)",
            None),
    *grid_pairings("lstm", "torch-nn-lstm"),
)
