"""Drop-in replacements for torch.nn modules, and additive attention."""

from .attention import AdditiveAttention, MultiheadAttention
from .lstm import LSTM, LSTMCell

__all__ = ["LSTM", "LSTMCell", "MultiheadAttention", "AdditiveAttention"]
