"""The attention half of the functional API: scaled dot-product attention,
attention probabilities and additive (Bahdanau) attention with torch's
signatures and conventions (shapes with any leading batch dims, masks that
broadcast, key padding), over the ops ``sdpa``, ``attention_scores`` and
``additive_attention`` (``seqkernels/ops/``).
"""

import math
from typing import Optional

import torch
from torch import Tensor

from .._common import op_dtype
from ..ops import additive_attention as _additive_attention_op
from ..ops import attention_scores as _attention_scores_op
from ..ops import sdpa as _sdpa_op

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
    if op_dtype(t) != op_dtype(ref) or t.device != ref.device:
        raise ValueError(
            f"seqkernels: {name} must have query's dtype and device "
            f"({ref.dtype}, {ref.device}), got ({t.dtype}, {t.device})")


def _broadcast_mask(attn_mask: Optional[Tensor], target: tuple[int, ...],
                    query: Tensor) -> Optional[Tensor]:
    """The mask broadcast (a view, no copy) to ``target``."""
    if attn_mask is None:
        return None
    if attn_mask.dtype != torch.bool and op_dtype(attn_mask) != op_dtype(query):
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
    out = _sdpa_op(q, k, v, mask, float(dropout_p), bool(is_causal), scale,
                   rng, backend=backend)
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
    p = _attention_scores_op(q, k, mask, bool(is_causal), scale,
                             backend=backend)
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
    context, weights = _additive_attention_op(
        q, k, value, v, bias, mask, bool(need_weights), backend=backend)
    if step:
        context = context.squeeze(1)
        weights = weights.squeeze(1) if need_weights else weights
    return context, (weights if need_weights else None)
