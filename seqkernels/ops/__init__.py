"""The ops' Python faces: backend choice, fake implementations, autograd.

Importing this package registers, for every op, the fake (meta) function
and the autograd formula of its three variants (see csrc/ops.cpp).
"""

from . import additive_attention, attention_scores, sdpa  # noqa: F401
from .lstm_cell import lstm_cell
from .lstm_seq import lstm_seq

__all__ = ["lstm_cell", "lstm_seq"]
