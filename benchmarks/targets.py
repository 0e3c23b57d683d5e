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
    E1   a training step (forward, backward, Adam) of the examples' seq2seq
         models, examples/dates.py and examples/climate.py, B=128, float32,
         against the same models built from torch.nn: >= 2x on the GPU,
         >= 1.0x on the CPU
    CPU  the CPU rows, float32, for reference

Targets without a configuration in benchmarks/ yet: A5 (masked SDPA
against FlexAttention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


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
