"""Target rows: which of our timings is set beside which anchor's.

A target is a speed ratio, anchor time / seqkernels time, both measured
side by side in one process on the same GPU (report.target_table draws the
table). The ids, as the configurations and ``PAIRINGS`` of lstm.py,
gru_rnn.py, attention.py and seq2seq.py carry them (each pairing states its
threshold):

    L1   LSTM layer, B=16, I=H=768, T=1024, forward, against cuDNN
    L2   the L1 shape, forward+backward
    L3   LSTM, B=64, I=H=1024, T=512, 2 layers, bidirectional, fwd+bwd
    L4   LSTM inference, B=1, H=1024, T=2048
    L5   packed batch, B=64, H=512, lengths uniform in [1, 512], against
         our own padded run of the same batch
    L6   one LSTM cell step, B=4096, H=1024, fwd+bwd, against torch's fused
         cell (and its pointwise part against the copy bandwidth)
    L7   GRU and vanilla RNN at the L1 shape, against cuDNN
    F1   FlashRNN's own benchmark (an LSTM with B=16, T=1024, 768 units: the
         L1 and L2 configurations), fwd and fwd+bwd, against FlashRNN's
         fused CUDA kernel (flashrnn_anchor.py)
    A1   scaled dot-product attention forward, head dims 64 and 128,
         against torch's flash backend
    A2   the A1 rows, forward+backward
    A3   attention probabilities, B=8, 16 heads, T=2048, head dim 64,
         against matmul + softmax
    A4   additive attention fwd+bwd, B=32, Tq=Tk=512, H=256, against the
         eager naive version and torch.compile (and a peak-memory bound)
    A5   masked SDPA: the A1/A2 rows at T=4096 (not causal) with a boolean
         documents mask, fwd and fwd+bwd, against the same kernel without
         the mask (>= 0.9x) and FlexAttention with the same mask (>= 1.0x)
    E1   a training step (forward, backward, Adam) of the examples' seq2seq
         models, examples/dates.py and examples/climate.py, B=128, float32,
         against the same models built from torch.nn: >= 2x on the GPU,
         >= 1.0x on the CPU
    C1   the CPU grid of issue 15: LSTM, GRU and RNN (tanh) layers at
         (B, H, T) = (1, 64, 64), (8, 128, 64), (32, 256, 128),
         (64, 512, 64), I = H, float32, inference (the forward under
         no_grad), training forward and fwd+bwd, against torch.nn
         (torch's own CPU kernels): every cell >= 1.0x torch (``CPU_GRID``;
         report.grid_worst_line prints the worst cell)
    CPU  the CPU rows, float32, for reference
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# Target C1: the (B, H, T) cells of the CPU grid (I = H, float32), run for
# every recurrent cell (lstm.py: LSTM; gru_rnn.py: GRU and RNN) in
# CPU_GRID_MODES, quick and full alike.
CPU_GRID = ((1, 64, 64), (8, 128, 64), (32, 256, 128), (64, 512, 64))
# "infer" beside "fwd": a CPU user serves under no_grad, where both sides
# drop what a backward would need (torch.nn takes oneDNN's inference RNN),
# and the training forward alone was no measure of that.
CPU_GRID_MODES = ("infer", "fwd", "fwd+bwd")
CPU_GRID_TARGET = "C1"


@dataclass(frozen=True)
class Pairing:
    """A target row: which of our timings is set beside which anchor's."""
    target: str                 # target id (table above)
    workload: str
    mode: str
    ours_config: str
    anchor_config: str
    anchor_provider: Optional[str]   # None: the same provider as ours
    target_text: str
    threshold: Optional[float]       # met when anchor/ours >= threshold
    metric: str = "time"             # "time"; "copy": ours GB/s / copy
    #                                  ceiling >= threshold; "memory": ours
    #                                  peak / io_mem_mb <= threshold
    tflops: bool = False             # "time" rows: each side's TFLOP/s
    #                                  and share of the GEMM ceiling too


def grid_name(cell: str, B: int, H: int) -> str:
    """The configuration name of a CPU grid cell: ``grid-lstm-B8-H128``."""
    return f"grid-{cell}-B{B}-H{H}"


def grid_pairings(cell: str, anchor_provider: str) -> tuple[Pairing, ...]:
    """The C1 target rows of ``cell`` ("lstm", "gru" or "rnn"): each grid
    cell and mode beside ``anchor_provider`` (torch.nn's module)."""
    return tuple(
        Pairing(CPU_GRID_TARGET,
                f"CPU grid {cell.upper()} B={B} I=H={H} T={T}, {mode}", mode,
                grid_name(cell, B, H), grid_name(cell, B, H), anchor_provider,
                ">= 1.0x", 1.0)
        for B, H, T in CPU_GRID for mode in CPU_GRID_MODES)
