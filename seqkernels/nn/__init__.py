"""Drop-in replacements for torch.nn modules, and additive attention."""

from .attention import AdditiveAttention, MultiheadAttention
from .lstm import LSTM, LSTMCell
from .rnn import GRU, RNN, GRUCell, RNNCell

__all__ = ["LSTM", "LSTMCell", "GRU", "GRUCell", "RNN", "RNNCell",
           "MultiheadAttention", "AdditiveAttention"]
