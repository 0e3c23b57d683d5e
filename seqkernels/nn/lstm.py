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
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, \
    pad_packed_sequence

from .. import functional as F

HiddenState = tuple[Tensor, Tensor]


class LSTM(torch.nn.RNNBase):
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

    def _layer_weights(self) -> list[F.LayerWeights]:
        weights = []
        for layer in range(self.num_layers):
            for suffix in ("", "_reverse")[: 2 if self.bidirectional else 1]:
                s = f"_l{layer}{suffix}"
                weights.append((
                    getattr(self, "weight_ih" + s),
                    getattr(self, "weight_hh" + s),
                    getattr(self, "bias_ih" + s) if self.bias else None,
                    getattr(self, "bias_hh" + s) if self.bias else None,
                    getattr(self, "weight_hr" + s) if self.proj_size > 0 else None,
                ))
        return weights

    def forward(self, input: Union[Tensor, PackedSequence],
                hx: Optional[HiddenState] = None):
        packed = isinstance(input, PackedSequence)
        lengths = None
        batch_first = self.batch_first
        if packed:
            packed_input = input
            input, lengths = pad_packed_sequence(packed_input)
            batch_first = False
        elif input.dim() not in (2, 3):
            raise ValueError(
                f"seqkernels.LSTM: input must be 2-D (unbatched) or 3-D, got "
                f"shape {tuple(input.shape)}")
        unbatched = not packed and input.dim() == 2
        if unbatched:
            input = input.unsqueeze(1)
            batch_first = False
            if hx is not None:
                if hx[0].dim() != 2 or hx[1].dim() != 2:
                    raise ValueError(
                        "seqkernels.LSTM: for unbatched input, hx must hold "
                        f"2-D tensors, got shapes {tuple(hx[0].shape)} and "
                        f"{tuple(hx[1].shape)}")
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        out, (h_n, c_n) = F.lstm(
            input, hx, self._layer_weights(), num_layers=self.num_layers,
            bidirectional=self.bidirectional, batch_first=batch_first,
            dropout=self.dropout, training=self.training, lengths=lengths,
            backend=self.backend)
        if packed:
            order = packed_input.sorted_indices
            if order is not None:
                out, lengths = out.index_select(1, order), lengths[order]
            data = pack_padded_sequence(out, lengths).data
            out = PackedSequence(data, packed_input.batch_sizes,
                                 packed_input.sorted_indices,
                                 packed_input.unsorted_indices)
        elif unbatched:
            out, h_n, c_n = out.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
        return out, (h_n, c_n)


class LSTMCell(torch.nn.LSTMCell):
    """torch.nn.LSTMCell with the fused cell kernel; takes ``backend=`` too."""

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend

    def forward(self, input: Tensor,
                hx: Optional[HiddenState] = None) -> HiddenState:
        if input.dim() not in (1, 2):
            raise ValueError(
                f"seqkernels.LSTMCell: input must be 1-D (unbatched) or 2-D, "
                f"got shape {tuple(input.shape)}")
        unbatched = input.dim() == 1
        if unbatched:
            input = input.unsqueeze(0)
            if hx is not None:
                hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
        h, c = F.lstm_cell(input, hx, self.weight_ih, self.weight_hh,
                           self.bias_ih, self.bias_hh, backend=self.backend)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)
