"""The recurrent half of the functional API: whole recurrent stacks (LSTM,
GRU, vanilla RNN: layers, directions, variable lengths, dropout between
layers) over the single-layer ops ``lstm_seq``, ``gru_seq`` and ``rnn_seq``,
and the fused cells over ``lstm_cell``, ``gru_cell`` and ``rnn_cell``.
"""

from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._common import op_dtype
from ..cell_table import check_nonlinearity
from ..ops import gru_cell as _gru_cell_op
from ..ops import gru_seq as _gru_seq_op
from ..ops import lstm_cell as _lstm_cell_op
from ..ops import lstm_seq as _lstm_seq_op
from ..ops import rnn_cell as _rnn_cell_op
from ..ops import rnn_seq as _rnn_seq_op

# Per layer and direction: (w_ih, w_hh, b_ih, b_hh, w_hr), None where absent.
LayerWeights = tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor],
                     Optional[Tensor]]
# GRU and RNN: (w_ih, w_hh, b_ih, b_hh), None where absent (a fifth entry,
# w_hr, is accepted if None).
CellWeights = tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]


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
    if torch.compiler.is_compiling():
        # torch.compile and torch.export trace without the values: the graph
        # checks them when it runs, as eager code does here, rather than
        # give results for lengths that do not fit the padded input.
        torch._assert_async(((lengths >= 1) & (lengths <= T)).all(),
                            "seqkernels: every length must be in [1, T], T "
                            "the padded length")
    elif bool((lengths < 1).any()) or bool((lengths > T).any()):
        raise ValueError(
            f"seqkernels: every length must be in [1, {T}] (the padded "
            f"length), got {lengths.tolist()}")


# One layer in one direction: (seq [T,B,I], initial states, the layer's
# weights, lengths) -> (y [T,B,*], final states). Time runs forward.
LayerFn = Callable[[Tensor, tuple[Tensor, ...], tuple, Optional[Tensor]],
                   tuple[Tensor, tuple[Tensor, ...]]]


def _stack(layer_fn: LayerFn, input: Tensor,
           hx: Optional[tuple[Tensor, ...]],
           states: Sequence[tuple[str, int]], weights: Sequence[tuple], *,
           num_layers: int, bidirectional: bool, batch_first: bool,
           dropout: float, training: bool, lengths: Optional[Tensor]
           ) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The layer/direction/lengths stacking shared by every recurrent cell.

    ``states``: (name, size) of each recurrent state, e.g. ``(("hx[0]", P),
    ("hx[1]", H))`` for the LSTM; ``hx`` holds them as ``[L*D, B, size]``
    tensors, or is None for zeros. Returns the output (batch_first if asked)
    and the final states, stacked ``[L*D, B, size]``.
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
    if hx is None:
        hx = tuple(x.new_zeros(num_layers * D, B, size) for _, size in states)
    else:
        for (name, size), t in zip(states, hx):
            if tuple(t.shape) != (num_layers * D, B, size):
                raise ValueError(
                    f"seqkernels: {name} must have shape "
                    f"{(num_layers * D, B, size)}, got {tuple(t.shape)}")
            if op_dtype(t) != op_dtype(x) or t.device != x.device:
                raise ValueError(
                    f"seqkernels: {name} must have input's dtype and device "
                    f"({x.dtype}, {x.device}), got ({t.dtype}, {t.device})")
    if lengths is not None:
        _check_lengths(lengths, T, B)
        lengths = lengths.to(device=x.device, dtype=torch.int64)

    finals: list[list[Tensor]] = [[] for _ in states]
    layer_in = x
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            k = layer * D + d
            seq = reverse_padded(layer_in, lengths) if d == 1 else layer_in
            y, last = layer_fn(seq, tuple(t[k] for t in hx), weights[k],
                               lengths)
            outs.append(reverse_padded(y, lengths) if d == 1 else y)
            for acc, t in zip(finals, last):
                acc.append(t)
        layer_in = outs[0] if D == 1 else torch.cat(outs, dim=2)
        if dropout > 0 and training and layer < num_layers - 1:
            layer_in = F.dropout(layer_in, dropout, training=True)
    out = layer_in.transpose(0, 1) if batch_first else layer_in
    return out, tuple(torch.stack(f) for f in finals)


def _stack_h_only(layer_fn: LayerFn, input: Tensor, hx: Optional[Tensor],
                  weights: Sequence[tuple], **options
                  ) -> tuple[Tensor, Tensor]:
    """:func:`_stack` for the cells whose only state is h (GRU, RNN):
    ``hx`` is ``h0 [L*D, B, H]`` or None; returns (output, h_n)."""
    H = weights[0][1].shape[1] if weights else 0
    out, (h_n,) = _stack(layer_fn, input, None if hx is None else (hx,),
                         (("hx", H),), weights, **options)
    return out, h_n


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
    H = weights[0][1].shape[0] // 4 if weights else 0
    P = weights[0][1].shape[1] if weights else 0

    def layer(seq, states, w, lengths):
        w_ih, w_hh, b_ih, b_hh, w_hr = w
        bias = b_ih + b_hh if b_ih is not None else None
        y, h, c = _lstm_seq_op(seq, states[0], states[1], w_ih, w_hh, bias,
                               w_hr, lengths, backend=backend)
        return y, (h, c)

    out, (h_n, c_n) = _stack(
        layer, input, hx, (("hx[0]", P), ("hx[1]", H)), weights,
        num_layers=num_layers, bidirectional=bidirectional,
        batch_first=batch_first, dropout=dropout, training=training,
        lengths=lengths)
    return out, (h_n, c_n)


def gru(input: Tensor, hx: Optional[Tensor], weights: Sequence[CellWeights],
        *, num_layers: int, bidirectional: bool = False,
        batch_first: bool = False, dropout: float = 0.0,
        training: bool = False, lengths: Optional[Tensor] = None,
        backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """A multi-layer, optionally bidirectional GRU, as torch.nn.GRU computes.

    Args as :func:`lstm`, with ``hx = h0 [L*D, B, H]`` (or None) and
    ``weights`` tuples ``(w_ih [3H, I], w_hh [3H, H], b_ih, b_hh)``.

    Returns:
        ``output [T, B, D*H]`` (batch_first if asked) and ``h_n``.
    """

    def layer(seq, states, w, lengths):
        w_ih, w_hh, b_ih, b_hh = w[:4]
        y, h = _gru_seq_op(seq, states[0], w_ih, w_hh, b_ih, b_hh, lengths,
                           backend=backend)
        return y, (h,)

    return _stack_h_only(
        layer, input, hx, weights, num_layers=num_layers,
        bidirectional=bidirectional, batch_first=batch_first,
        dropout=dropout, training=training, lengths=lengths)


def rnn(input: Tensor, hx: Optional[Tensor], weights: Sequence[CellWeights],
        *, num_layers: int, nonlinearity: str = "tanh",
        bidirectional: bool = False, batch_first: bool = False,
        dropout: float = 0.0, training: bool = False,
        lengths: Optional[Tensor] = None,
        backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """A multi-layer, optionally bidirectional vanilla RNN, as torch.nn.RNN
    computes: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)`` with
    ``nonlinearity`` "tanh", "relu" or "identity" (a linear dynamical
    system, which torch.nn.RNN does not offer).

    Args as :func:`gru`, with ``weights`` tuples ``(w_ih [H, I],
    w_hh [H, H], b_ih, b_hh)``.

    Returns:
        ``output [T, B, D*H]`` (batch_first if asked) and ``h_n``.
    """
    check_nonlinearity(nonlinearity)

    def layer(seq, states, w, lengths):
        w_ih, w_hh, b_ih, b_hh = w[:4]
        bias = b_ih + b_hh if b_ih is not None else b_hh
        y, h = _rnn_seq_op(seq, states[0], w_ih, w_hh, bias, lengths,
                           nonlinearity, backend=backend)
        return y, (h,)

    return _stack_h_only(
        layer, input, hx, weights, num_layers=num_layers,
        bidirectional=bidirectional, batch_first=batch_first,
        dropout=dropout, training=training, lengths=lengths)


def _cell_states(input: Tensor, hx: Optional[tuple[Tensor, ...]],
                 names: Sequence[str], H: int) -> tuple[Tensor, ...]:
    """Checks a cell's input [B, I] and states [B, H] (zeros for None)."""
    if input.dim() != 2:
        raise ValueError(
            f"seqkernels: input must be [B, input_size], got shape "
            f"{tuple(input.shape)}")
    if hx is None:
        zeros = input.new_zeros(input.shape[0], H)
        return tuple(zeros for _ in names)
    for name, t in zip(names, hx):
        if tuple(t.shape) != (input.shape[0], H):
            raise ValueError(
                f"seqkernels: {name} must have shape {(input.shape[0], H)}, "
                f"got {tuple(t.shape)}")
    return tuple(hx)


def lstm_cell(input: Tensor, hx: Optional[tuple[Tensor, Tensor]],
              w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor] = None,
              b_hh: Optional[Tensor] = None, *,
              backend: Optional[str] = None) -> tuple[Tensor, Tensor]:
    """One LSTM cell step, as torch.nn.LSTMCell computes: ``input [B, I]``,
    ``hx = (h [B, H], c [B, H])`` or None for zeros; returns ``(h', c')``."""
    h, c = _cell_states(input, hx, ("hx[0]", "hx[1]"), w_hh.shape[1])
    bias = b_ih + b_hh if b_ih is not None else None
    return _lstm_cell_op(input @ w_ih.t(), h @ w_hh.t(), c, bias,
                         backend=backend)


def gru_cell(input: Tensor, hx: Optional[Tensor], w_ih: Tensor,
             w_hh: Tensor, b_ih: Optional[Tensor] = None,
             b_hh: Optional[Tensor] = None, *,
             backend: Optional[str] = None) -> Tensor:
    """One GRU cell step, as torch.nn.GRUCell computes: ``input [B, I]``,
    ``hx [B, H]`` or None for zeros; returns ``h'``."""
    (h,) = _cell_states(input, None if hx is None else (hx,), ("hx",),
                        w_hh.shape[1])
    return _gru_cell_op(input @ w_ih.t(), h @ w_hh.t(), h, b_ih, b_hh,
                        backend=backend)


def rnn_cell(input: Tensor, hx: Optional[Tensor], w_ih: Tensor,
             w_hh: Tensor, b_ih: Optional[Tensor] = None,
             b_hh: Optional[Tensor] = None, *, nonlinearity: str = "tanh",
             backend: Optional[str] = None) -> Tensor:
    """One vanilla RNN cell step, as torch.nn.RNNCell computes, with
    ``nonlinearity`` "tanh", "relu" or "identity"; returns ``h'``."""
    check_nonlinearity(nonlinearity)
    (h,) = _cell_states(input, None if hx is None else (hx,), ("hx",),
                        w_hh.shape[1])
    bias = b_ih + b_hh if b_ih is not None else b_hh
    return _rnn_cell_op(input @ w_ih.t(), h @ w_hh.t(), bias, nonlinearity,
                        backend=backend)
