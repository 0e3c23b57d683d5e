"""seqkernels: fused GPU kernels for sequence models in PyTorch.

Drop-in modules (``seqkernels.LSTM``, ``GRU``, ``RNN``, ``LSTMCell``,
``GRUCell``, ``RNNCell``, ``MultiheadAttention``), ``seqkernels.AdditiveAttention``,
``seqkernels.convert`` (swap the torch.nn modules of a model for these and
back), ``seqkernels.explain`` (which recurrence algorithm each layer runs, and
why), a functional API (``seqkernels.functional``) and the registered ops
underneath (``torch.ops.seqkernels.*``). See the README for backends and
support.
"""

import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (loads the op library)
from . import ops  # noqa: F401  (registers fakes and autograd)
from . import functional
from ._backend import BACKENDS
from .convert import convert
from .explain import explain
from .nn import (GRU, LSTM, RNN, AdditiveAttention, GRUCell, LSTMCell,
                 MultiheadAttention, RNNCell)

__version__ = "0.1.0"

__all__ = ["LSTM", "LSTMCell", "GRU", "GRUCell", "RNN", "RNNCell",
           "MultiheadAttention", "AdditiveAttention", "convert", "functional",
           "ops", "BACKENDS", "build_info", "explain"]


def build_info() -> dict:
    """How the compiled extension was built: ``{"cuda": bool, "cuda_archs": str}``."""
    return _C.build_info()
