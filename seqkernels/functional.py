"""Functional API: whole LSTM stacks (layers, directions, variable lengths,
dropout between layers) over the single-layer op ``lstm_seq``, and the
fused cell over the op ``lstm_cell``.
"""

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .ops import lstm_cell as _lstm_cell_op
from .ops import lstm_seq as _lstm_seq_op

# Per layer and direction: (w_ih, w_hh, b_ih, b_hh, w_hr), None where absent.
LayerWeights = tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor],
                     Optional[Tensor]]


def reverse_padded(x: Tensor, lengths: Optional[Tensor]) -> Tensor:
    """Reverse each sequence of ``x [T,B,...]`` within its own length; the
    padding stays where it is. Its own inverse."""
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    steps = torch.arange(T, device=x.device).unsqueeze(1)
    lengths = lengths.unsqueeze(0)
    index = torch.where(steps < lengths, lengths - 1 - steps, steps)
    index = index.view(T, -1, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, index)


def _check_lengths(lengths: Tensor, T: int, B: int) -> None:
    if lengths.dim() != 1 or lengths.shape[0] != B:
        raise ValueError(
            f"seqkernels: lengths must be a 1-D tensor of {B} lengths (one per "
            f"batch element), got shape {tuple(lengths.shape)}")
    if lengths.dtype not in (torch.int32, torch.int64):
        raise ValueError(
            f"seqkernels: lengths must be an integer tensor, got {lengths.dtype}")
    if bool((lengths < 1).any()) or bool((lengths > T).any()):
        raise ValueError(
            f"seqkernels: every length must be in [1, {T}] (the padded "
            f"length), got {lengths.tolist()}")


def lstm(input: Tensor, hx: Optional[tuple[Tensor, Tensor]],
         weights: Sequence[LayerWeights], *, num_layers: int,
         bidirectional: bool = False, batch_first: bool = False,
         dropout: float = 0.0, training: bool = False,
         lengths: Optional[Tensor] = None,
         backend: Optional[str] = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """A multi-layer, optionally bidirectional LSTM, as torch.nn.LSTM computes.

    Args:
        input: ``[T, B, I]`` (``[B, T, I]`` with ``batch_first``), padded when
            ``lengths`` is given.
        hx: ``(h0 [L*D, B, P], c0 [L*D, B, H])`` or None for zeros.
        weights: ``num_layers * D`` tuples ``(w_ih, w_hh, b_ih, b_hh, w_hr)``
            in torch.nn.LSTM's order (layer-major, forward then reverse).
        lengths: ``[B]`` valid lengths, each in ``[1, T]``; steps past a
            sequence's length do no work, give zero output, and the final
            states are those at each sequence's last step.
        backend: see ``seqkernels.BACKENDS``.

    Returns:
        ``output [T, B, D*P]`` (batch_first if asked) and ``(h_n, c_n)``.
    """
    if input.dim() != 3:
        raise ValueError(
            f"seqkernels: input must be 3-D [T, B, input_size] (or batch "
            f"first), got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise TypeError(
            f"seqkernels: input must be floating point, got {input.dtype}")
    x = input.transpose(0, 1) if batch_first else input
    T, B, _ = x.shape
    if T == 0 or B == 0:
        raise ValueError(
            f"seqkernels: input needs at least one step and one batch "
            f"element, got shape {tuple(input.shape)}")
    D = 2 if bidirectional else 1
    if len(weights) != num_layers * D:
        raise ValueError(
            f"seqkernels: weights must hold {num_layers * D} layer tuples, got "
            f"{len(weights)}")
    H = weights[0][1].shape[0] // 4
    P = weights[0][1].shape[1]
    if hx is None:
        h0 = x.new_zeros(num_layers * D, B, P)
        c0 = x.new_zeros(num_layers * D, B, H)
    else:
        h0, c0 = hx
        for name, t, size in (("hx[0]", h0, P), ("hx[1]", c0, H)):
            if tuple(t.shape) != (num_layers * D, B, size):
                raise ValueError(
                    f"seqkernels: {name} must have shape "
                    f"{(num_layers * D, B, size)}, got {tuple(t.shape)}")
            if t.dtype != x.dtype or t.device != x.device:
                raise ValueError(
                    f"seqkernels: {name} must have input's dtype and device "
                    f"({x.dtype}, {x.device}), got ({t.dtype}, {t.device})")
    if lengths is not None:
        _check_lengths(lengths, T, B)
        lengths = lengths.to(device=x.device, dtype=torch.int64)

    h_n, c_n = [], []
    layer_in = x
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            w_ih, w_hh, b_ih, b_hh, w_hr = weights[k]
            bias = b_ih + b_hh if b_ih is not None else None
            seq = reverse_padded(layer_in, lengths) if d == 1 else layer_in
            y, h, c = _lstm_seq_op(seq, h0[k], c0[k], w_ih, w_hh, bias, w_hr,
                                   lengths, backend=backend)
            outs.append(reverse_padded(y, lengths) if d == 1 else y)
            h_n.append(h)
            c_n.append(c)
        layer_in = outs[0] if D == 1 else torch.cat(outs, dim=2)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_in = F.dropout(layer_in, dropout, training=True)
    out = layer_in.transpose(0, 1) if batch_first else layer_in
    return out, (torch.stack(h_n), torch.stack(c_n))


def lstm_cell(input: Tensor, hx: Optional[tuple[Tensor, Tensor]],
              w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
              b_hh: Optional[Tensor] = None, *,
              backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """One LSTM cell step, as torch.nn.LSTMCell computes: ``input [B, I]``,
    ``hx = (h [B, H], c [B, H])`` or None for zeros; returns ``(h', c')``."""
    if input.dim() != 2:
        raise ValueError(
            f"seqkernels: input must be [B, input_size], got shape "
            f"{tuple(input.shape)}")
    H = w_hh.shape[1]
    if hx is None:
        zeros = input.new_zeros(input.shape[0], H)
        hx = (zeros, zeros)
    h, c = hx
    for name, t in (("hx[0]", h), ("hx[1]", c)):
        if tuple(t.shape) != (input.shape[0], H):
            raise ValueError(
                f"seqkernels: {name} must have shape {(input.shape[0], H)}, "
                f"got {tuple(t.shape)}")
    bias = b_ih + b_hh if b_ih is not None else None
    return _lstm_cell_op(input @ w_ih.t(), h @ w_hh.t(), c, bias,
                         backend=backend)
