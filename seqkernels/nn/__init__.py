"""Drop-in replacements for torch.nn modules."""

from .lstm import LSTM, LSTMCell

__all__ = ["LSTM", "LSTMCell"]
