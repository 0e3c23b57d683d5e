"""``seqkernels.LSTM`` and ``seqkernels.LSTMCell``: torch.nn.LSTM and
torch.nn.LSTMCell with fused kernels.

``LSTM`` subclasses torch.nn.RNNBase in its "LSTM" mode, exactly as
torch.nn.LSTM does, so the constructor, parameter names, state_dict and
initialization are torch's own; only ``forward`` differs, plus a
``backend=`` keyword. (Not torch.nn.LSTM itself: torch.compile refuses to
trace any instance of torch.nn.LSTM.) ``LSTMCell`` subclasses
torch.nn.LSTMCell.
"""

from typing import Optional, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .. import functional as F
from ._recurrent import RecurrentBase, run_cell

HiddenState = tuple[Tensor, Tensor]


class LSTM(RecurrentBase):
    """torch.nn.LSTM, run by seqkernels.

    Takes every argument of :class:`torch.nn.LSTM` and ``backend`` (one of
    ``seqkernels.BACKENDS``; None reads ``SEQKERNELS_BACKEND``, default
    "auto"). Batched and unbatched input, ``(h0, c0)``, and PackedSequence
    (sorted or not) in and out, as torch.nn.LSTM. Packed input runs padded
    with its lengths: each sequence stops at its own length.
    """

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__("LSTM", *args, **kwargs)
        self.backend = backend

    def _stack(self, input, hx, lengths, batch_first):
        return F.lstm(
            input, hx, self._layer_weights(), num_layers=self.num_layers,
            bidirectional=self.bidirectional, batch_first=batch_first,
            dropout=self.dropout, training=self.training, lengths=lengths,
            backend=self.backend)

    def forward(self, input: Union[Tensor, PackedSequence],
                hx: Optional[HiddenState] = None):
        out, (h_n, c_n) = self._run(input, hx, self._stack)
        return out, (h_n, c_n)


class LSTMCell(torch.nn.LSTMCell):
    """torch.nn.LSTMCell with the fused cell kernel; takes ``backend=`` too."""

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend

    def forward(self, input: Tensor,
                hx: Optional[HiddenState] = None) -> HiddenState:
        def step(x, states):
            return F.lstm_cell(x, states, self.weight_ih, self.weight_hh,
                               self.bias_ih, self.bias_hh,
                               backend=self.backend)

        h, c = run_cell("seqkernels.LSTMCell", input, hx, step)
        return h, c
