"""seqkernels: fused GPU kernels for sequence models in PyTorch.

Drop-in modules (``seqkernels.LSTM``, ``GRU``, ``RNN``, ``LSTMCell``,
``GRUCell``, ``RNNCell``, ``MultiheadAttention``), ``seqkernels.AdditiveAttention``,
``seqkernels.convert`` (swap the torch.nn modules of a model for these and
back), ``seqkernels.explain`` (which recurrence algorithm each layer runs, and
why), ``seqkernels.serialization_globals`` (what
``torch.load(weights_only=True)`` of a whole model needs), a functional API
(``seqkernels.functional``) and the registered ops underneath
(``torch.ops.seqkernels.*``). See the README for backends and support.
"""

import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (loads the op library)
from . import ops  # noqa: F401  (registers fakes and autograd)
from . import functional
from ._backend import BACKENDS
from .convert import ConvertEntry, ConvertReport, convert
from .explain import explain
from .nn import (GRU, LSTM, RNN, AdditiveAttention, GRUCell, LSTMCell,
                 MultiheadAttention, RNNCell)
from .serialization import serialization_globals

__version__ = "0.1.0"

__all__ = ["LSTM", "LSTMCell", "GRU", "GRUCell", "RNN", "RNNCell",
           "MultiheadAttention", "AdditiveAttention", "convert",
           "ConvertReport", "ConvertEntry", "functional", "ops", "BACKENDS",
           "build_info", "explain", "serialization_globals"]


def build_info() -> dict:
    """How the compiled extension was built: ``{"cuda": bool, "cuda_archs": str}``."""
    return _C.build_info()
