"""Functional API: whole recurrent stacks (LSTM, GRU, vanilla RNN: layers,
directions, variable lengths, dropout between layers) over the single-layer
ops ``lstm_seq``, ``gru_seq`` and ``rnn_seq``; the fused cells over
``lstm_cell``, ``gru_cell`` and ``rnn_cell``; scaled dot-product attention,
attention probabilities and additive (Bahdanau) attention over their fused
ops.
"""

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _backend
from .ops._variants import op as _op
from .ops import gru_cell as _gru_cell_op
from .ops import gru_seq as _gru_seq_op
from .ops import lstm_cell as _lstm_cell_op
from .ops import lstm_seq as _lstm_seq_op
from .ops import rnn_cell as _rnn_cell_op
from .ops import rnn_seq as _rnn_seq_op
from .reference.rnn_cell import check_nonlinearity

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
    if bool((lengths < 1).any()) or bool((lengths > T).any()):
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
            if t.dtype != x.dtype or t.device != x.device:
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
    H = weights[0][1].shape[1] if weights else 0

    def layer(seq, states, w, lengths):
        w_ih, w_hh, b_ih, b_hh = w[:4]
        y, h = _gru_seq_op(seq, states[0], w_ih, w_hh, b_ih, b_hh, lengths,
                           backend=backend)
        return y, (h,)

    out, (h_n,) = _stack(
        layer, input, None if hx is None else (hx,), (("hx", H),), weights,
        num_layers=num_layers, bidirectional=bidirectional,
        batch_first=batch_first, dropout=dropout, training=training,
        lengths=lengths)
    return out, h_n


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
    H = weights[0][1].shape[1] if weights else 0

    def layer(seq, states, w, lengths):
        w_ih, w_hh, b_ih, b_hh = w[:4]
        bias = b_ih + b_hh if b_ih is not None else b_hh
        y, h = _rnn_seq_op(seq, states[0], w_ih, w_hh, bias, lengths,
                           nonlinearity, backend=backend)
        return y, (h,)

    out, (h_n,) = _stack(
        layer, input, None if hx is None else (hx,), (("hx", H),), weights,
        num_layers=num_layers, bidirectional=bidirectional,
        batch_first=batch_first, dropout=dropout, training=training,
        lengths=lengths)
    return out, h_n


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


# ---------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------

def _heads_4d(t: Tensor, name: str) -> Tensor:
    """[N, L, E] -> [N, 1, L, E]; [..., H, L, E] -> [prod(...), H, L, E]."""
    if t.dim() == 3:
        return t.unsqueeze(1)
    if t.dim() == 4:
        return t
    if t.dim() > 4:
        return t.reshape(-1, *t.shape[-3:])
    raise ValueError(
        f"seqkernels: {name} must have at least 3 dims (N, L, E), got shape "
        f"{tuple(t.shape)}")


def _check_same(name: str, t: Tensor, ref: Tensor) -> None:
    if t.dtype != ref.dtype or t.device != ref.device:
        raise ValueError(
            f"seqkernels: {name} must have query's dtype and device "
            f"({ref.dtype}, {ref.device}), got ({t.dtype}, {t.device})")


def _broadcast_mask(attn_mask: Optional[Tensor], target: tuple[int, ...],
                    query: Tensor) -> Optional[Tensor]:
    """The mask broadcast (a view, no copy) to ``target``."""
    if attn_mask is None:
        return None
    if attn_mask.dtype != torch.bool and attn_mask.dtype != query.dtype:
        raise ValueError(
            f"seqkernels: attn_mask must be bool or query's dtype "
            f"({query.dtype}), got {attn_mask.dtype}")
    if attn_mask.device != query.device:
        raise ValueError(
            f"seqkernels: attn_mask must be on query's device ({query.device}), "
            f"got {attn_mask.device}")
    if attn_mask.requires_grad:
        raise ValueError(
            "seqkernels: gradients for attn_mask are not supported; detach it")
    try:
        torch.broadcast_shapes(attn_mask.shape, target)
        return attn_mask.expand(target)
    except RuntimeError:
        raise ValueError(
            f"seqkernels: attn_mask of shape {tuple(attn_mask.shape)} does not "
            f"broadcast to {target}") from None


def _attention_inputs(query: Tensor, key: Tensor, value: Optional[Tensor],
                      attn_mask: Optional[Tensor], is_causal: bool,
                      scale: Optional[float], enable_gqa: bool):
    """Checks shared by sdpa and attention_scores; returns 4-D views, the
    broadcast mask and the scale."""
    for name, t in (("key", key), ("value", value)):
        if t is not None:
            _check_same(name, t, query)
            if t.dim() != query.dim():
                raise ValueError(
                    f"seqkernels: {name} must have query's number of dims "
                    f"({query.dim()}), got shape {tuple(t.shape)}")
    if not query.is_floating_point():
        raise TypeError(f"seqkernels: query must be floating point, got "
                        f"{query.dtype}")
    if attn_mask is not None and is_causal:
        raise ValueError(
            "seqkernels: give attn_mask or is_causal=True, not both")
    q, k = _heads_4d(query, "query"), _heads_4d(key, "key")
    v = _heads_4d(value, "value") if value is not None else None
    if q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"seqkernels: key {tuple(key.shape)} must match query "
            f"{tuple(query.shape)} in batch dims and head dim")
    if v is not None and (v.shape[:3] != k.shape[:3]):
        raise ValueError(
            f"seqkernels: value {tuple(value.shape)} must match key "
            f"{tuple(key.shape)} in all dims but the last")
    Hq, Hk = q.shape[1], k.shape[1]
    if Hq != Hk and not (enable_gqa and Hq % Hk == 0):
        raise ValueError(
            f"seqkernels: query has {Hq} heads and key {Hk}: different head "
            f"counts need enable_gqa=True and a query head count that is a "
            f"multiple of the key's")
    target = tuple(query.shape[:-1]) + (key.shape[-2],)
    mask = _broadcast_mask(attn_mask, target, query)
    if mask is not None:
        mask = _heads_4d(mask, "attn_mask") if mask.dim() != 3 else mask.unsqueeze(1)
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    return q, k, v, mask, float(scale)


def scaled_dot_product_attention(
        query: Tensor, key: Tensor, value: Tensor,
        attn_mask: Optional[Tensor] = None, dropout_p: float = 0.0,
        is_causal: bool = False, scale: Optional[float] = None,
        enable_gqa: bool = False, *, backend: Optional[str] = None) -> Tensor:
    """torch.nn.functional.scaled_dot_product_attention, fused.

    ``query (N..., Hq, L, E)``, ``key (N..., Hk, S, E)``, ``value (N..., Hk,
    S, Ev)``; a bool ``attn_mask`` is True where attention is allowed, a
    float one is added to the scores; ``is_causal`` lets query i see keys
    j <= i. A query row with no allowed key gives zeros (not NaN). Dropout
    keeps each probability with chance 1 - dropout_p and scales it by
    1 / (1 - dropout_p); the backward reuses the same mask.
    """
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(
            f"seqkernels: dropout_p must be in [0, 1), got {dropout_p}")
    q, k, v, mask, scale = _attention_inputs(query, key, value, attn_mask,
                                             is_causal, scale, enable_gqa)
    rng = None
    if dropout_p > 0.0:
        rng = torch.randint(0, 2**62, (2,), dtype=torch.int64,
                            device=query.device)
    which = _backend.resolve(backend, query.device)
    out, _ = _op("sdpa", which)(q, k, v, mask, float(dropout_p),
                                bool(is_causal), scale, rng)
    return out.view(*query.shape[:-1], value.shape[-1])


def attention_scores(query: Tensor, key: Tensor,
                     attn_mask: Optional[Tensor] = None,
                     is_causal: bool = False, scale: Optional[float] = None,
                     enable_gqa: bool = False, *,
                     backend: Optional[str] = None) -> Tensor:
    """The attention probabilities ``softmax(query key^T * scale + mask)``,
    shape ``(N..., Hq, L, S)``, from a fused kernel (the scores are never
    written before the softmax), differentiable in query and key. Masks and
    shapes as in :func:`scaled_dot_product_attention`."""
    q, k, _, mask, scale = _attention_inputs(query, key, None, attn_mask,
                                             is_causal, scale, enable_gqa)
    which = _backend.resolve(backend, query.device)
    p = _op("attention_scores", which)(q, k, mask, bool(is_causal), scale)
    return p.view(*query.shape[:-1], key.shape[-2])


def additive_attention(query: Tensor, key: Tensor, value: Optional[Tensor],
                       w_query: Tensor, w_key: Tensor, v: Tensor,
                       bias: Optional[Tensor] = None,
                       key_padding_mask: Optional[Tensor] = None,
                       attn_mask: Optional[Tensor] = None,
                       need_weights: bool = False, *,
                       backend: Optional[str] = None
                       ) -> tuple[Tensor, Optional[Tensor]]:
    """Additive (Bahdanau) attention, fused: the ``(B, Tq, Tk, H)`` tensor
    of tanh values is never stored.

    ``score_ij = v . tanh(w_query query_i + w_key key_j + bias)``, weights =
    softmax over j, ``context_i = sum_j weights_ij value_j``.

    Args:
        query: ``(B, Tq, Dq)``, or ``(B, Dq)`` for one decoder step.
        key: ``(B, Tk, Dk)``; value: ``(B, Tk, Dv)``, None to use key.
        w_query: ``(H, Dq)``; w_key: ``(H, Dk)``; v, bias: ``(H,)``.
        key_padding_mask: ``(B, Tk)`` bool, True marks padding (as in
            torch.nn.MultiheadAttention).
        attn_mask: ``(Tq, Tk)`` or ``(B, Tq, Tk)``: bool True marks a
            disallowed pair (torch.nn.MultiheadAttention's convention), or
            float, added to the scores.
        need_weights: also return the weights ``(B, Tq, Tk)``.

    Returns:
        ``(context (B, Tq, Dv), weights or None)``; a query with every key
        masked gets a zero context and zero weights.
    """
    value = key if value is None else value
    step = query.dim() == 2
    if step:
        query = query.unsqueeze(1)
    if query.dim() != 3 or key.dim() != 3 or value.dim() != 3:
        raise ValueError(
            f"seqkernels: query, key and value must be (B, T, D), got "
            f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
    for name, t in (("key", key), ("value", value), ("w_query", w_query),
                    ("w_key", w_key), ("v", v), ("bias", bias)):
        if t is not None:
            _check_same(name, t, query)
    B, Tq, _ = query.shape
    Tk = key.shape[1]
    H = v.shape[0]
    if key.shape[0] != B or value.shape[:2] != key.shape[:2]:
        raise ValueError(
            f"seqkernels: key {tuple(key.shape)} and value "
            f"{tuple(value.shape)} must share batch and length, with batch "
            f"{B}")
    for name, t, shape in (("w_query", w_query, (H, query.shape[-1])),
                           ("w_key", w_key, (H, key.shape[-1])),
                           ("bias", bias, (H,))):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"seqkernels: {name} must have shape {shape}, got "
                             f"{tuple(t.shape)}")
    mask = None
    if key_padding_mask is not None:
        if (key_padding_mask.dtype != torch.bool
                or tuple(key_padding_mask.shape) != (B, Tk)):
            raise ValueError(
                f"seqkernels: key_padding_mask must be bool of shape {(B, Tk)}, "
                f"got {key_padding_mask.dtype} {tuple(key_padding_mask.shape)}")
        mask = (~key_padding_mask).unsqueeze(1)
    if attn_mask is not None:
        am = _broadcast_mask(attn_mask, (B, Tq, Tk), query)
        if am.dtype == torch.bool:
            mask = ~am if mask is None else mask & ~am
        else:
            mask = am if mask is None else am.masked_fill(~mask, float("-inf"))
    if mask is not None:
        mask = mask.expand(B, Tq, Tk)
    q = query @ w_query.t()
    k = key @ w_key.t()
    which = _backend.resolve(backend, query.device)
    context, weights, _ = _op("additive_attention", which)(
        q, k, value, v, bias, mask, bool(need_weights))
    if step:
        context = context.squeeze(1)
        weights = weights.squeeze(1) if need_weights else weights
    return context, (weights if need_weights else None)
