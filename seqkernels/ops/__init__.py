"""The ops' Python faces: backend choice, fake implementations, autograd.

Importing this package registers, for every op, the fake (meta) function
and the autograd formula of its three variants (see csrc/ops.cpp).
"""

from . import additive_attention, attention_scores, sdpa  # noqa: F401
from .gru_cell import gru_cell
from .gru_seq import gru_seq
from .lstm_cell import lstm_cell
from .lstm_seq import lstm_seq
from .rnn_cell import rnn_cell
from .rnn_seq import rnn_seq

__all__ = ["lstm_cell", "lstm_seq", "gru_cell", "gru_seq", "rnn_cell",
           "rnn_seq"]
