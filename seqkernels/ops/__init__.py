"""The ops' Python faces: backend choice, fake implementations, autograd.

Importing this package registers, for every op, the fake (meta) function
and the autograd formula of its three variants (see csrc/ops.cpp).
"""

from .additive_attention import additive_attention
from .attention_scores import attention_scores
from .gru_cell import gru_cell
from .gru_seq import gru_seq
from .lstm_cell import lstm_cell
from .lstm_seq import lstm_seq
from .rnn_cell import rnn_cell
from .rnn_seq import rnn_seq
from .sdpa import sdpa

__all__ = ["lstm_cell", "lstm_seq", "gru_cell", "gru_seq", "rnn_cell",
           "rnn_seq", "sdpa", "attention_scores", "additive_attention"]
