"""``seqkernels.MultiheadAttention`` and ``seqkernels.AdditiveAttention``.

``MultiheadAttention`` subclasses torch.nn.MultiheadAttention: constructor,
parameter names, state_dict and initialization are torch's own; ``forward``
runs the fused ``sdpa`` op, or, when the weights are asked for, the fused
``attention_scores`` op followed by one matmul (never a slow path).
"""

import math
from typing import Optional

import torch
import torch.nn.functional as TF
from torch import Tensor

from .. import functional as F


def _as_additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """torch.nn.MultiheadAttention mask (bool True = disallowed, or float)
    as a float mask to add."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device
                           ).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


class MultiheadAttention(torch.nn.MultiheadAttention):
    """torch.nn.MultiheadAttention with fused attention kernels.

    Takes every argument of torch.nn.MultiheadAttention (``embed_dim,
    num_heads, dropout, bias, add_bias_kv, add_zero_attn, kdim, vdim,
    batch_first, device, dtype``) and ``backend``. ``forward`` has torch's
    contract: ``key_padding_mask`` and ``attn_mask`` (bool True =
    disallowed, or float added), ``need_weights``, ``average_attn_weights``,
    ``is_causal`` (a hint that attn_mask is causal; as in torch it needs
    attn_mask), batched and unbatched input. NestedTensor input is refused
    with a ValueError: pad it and pass a ``key_padding_mask``.
    """

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend

    def _in_projection(self, query, key, value):
        E = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else b.split(E)
        if self._qkv_same_embed_dim:
            wq, wk, wv = self.in_proj_weight.split(E)
        else:
            wq, wk, wv = (self.q_proj_weight, self.k_proj_weight,
                          self.v_proj_weight)
        return TF.linear(query, wq, bq), TF.linear(key, wk, bk), \
            TF.linear(value, wv, bv)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Optional[Tensor] = None,
                need_weights: bool = True,
                attn_mask: Optional[Tensor] = None,
                average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.is_nested:
                # torch.nn.MultiheadAttention, too, takes NestedTensors only
                # on its fused inference path (self-attention, no masks),
                # which is the path seqkernels replaces.
                raise ValueError(
                    f"seqkernels.MultiheadAttention: {name} is a "
                    f"NestedTensor, which it does not take; pass a padded "
                    f"tensor (NestedTensor.to_padded_tensor) with a "
                    f"key_padding_mask instead")
        if query.dim() not in (2, 3):
            raise ValueError(
                f"seqkernels.MultiheadAttention: query must be 2-D "
                f"(unbatched) or 3-D, got shape {tuple(query.shape)}")
        if is_causal and attn_mask is None:
            raise ValueError(
                "seqkernels.MultiheadAttention: is_causal is a hint that "
                "attn_mask is the causal mask; it needs attn_mask (as torch)")
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        N, L, E = query.shape
        H, hd = self.num_heads, self.head_dim
        q, k, v = self._in_projection(query, key, value)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(N, 1, E)], dim=1)
            v = torch.cat([v, self.bias_v.expand(N, 1, E)], dim=1)
            attn_mask, key_padding_mask = self._pad_masks(attn_mask,
                                                          key_padding_mask)
        q, k, v = (t.reshape(N, -1, H, hd).transpose(1, 2) for t in (q, k, v))
        if self.add_zero_attn:
            zeros = k.new_zeros(N, H, 1, hd)
            k = torch.cat([k, zeros], dim=2)
            v = torch.cat([v, zeros], dim=2)
            attn_mask, key_padding_mask = self._pad_masks(attn_mask,
                                                          key_padding_mask)
        S = k.shape[2]
        # In the projections' dtype, which autocast may have lowered.
        mask = self._merged_mask(attn_mask, key_padding_mask, N, L, S,
                                 q.dtype)
        p_drop = self.dropout if self.training else 0.0
        if need_weights:
            w = F.attention_scores(q, k, mask, scale=1.0 / math.sqrt(hd),
                                   backend=self.backend)
            # A Python branch, not training=(p_drop > 0): under
            # torch.compile(dynamic=True) p_drop is symbolic, and dropout
            # takes no symbolic bool.
            out = (TF.dropout(w, p_drop) if p_drop > 0 else w) @ v
        else:
            w = None
            out = F.scaled_dot_product_attention(
                q, k, v, mask, dropout_p=p_drop, backend=self.backend)
        out = out.transpose(1, 2).reshape(N, L, E)
        out = self.out_proj(out)
        if w is not None and average_attn_weights:
            w = w.mean(dim=1)
        if unbatched:
            out = out.squeeze(0)
            w = w.squeeze(0) if w is not None else None
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, w

    @staticmethod
    def _pad_masks(attn_mask, key_padding_mask):
        # One more key (bias_kv or the zero key) that every query may see.
        if attn_mask is not None:
            attn_mask = TF.pad(attn_mask, (0, 1))
        if key_padding_mask is not None:
            key_padding_mask = TF.pad(key_padding_mask, (0, 1))
        return attn_mask, key_padding_mask

    def _merged_mask(self, attn_mask, key_padding_mask, N, L, S, dtype):
        """Both torch masks as one mask for the fused ops, [N, H, L, S]:
        bool True = allowed when both are bool, else float added."""
        H = self.num_heads
        masks = []
        if attn_mask is not None:
            if attn_mask.dim() == 2:
                masks.append(attn_mask.view(1, 1, L, S))
            elif attn_mask.dim() == 3 and attn_mask.shape[0] == N * H:
                masks.append(attn_mask.view(N, H, L, S))
            else:
                raise ValueError(
                    f"seqkernels.MultiheadAttention: attn_mask must be "
                    f"({L}, {S}) or ({N * H}, {L}, {S}), got "
                    f"{tuple(attn_mask.shape)}")
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (N, S):
                raise ValueError(
                    f"seqkernels.MultiheadAttention: key_padding_mask must be "
                    f"({N}, {S}), got {tuple(key_padding_mask.shape)}")
            masks.append(key_padding_mask.view(N, 1, 1, S))
        if not masks:
            return None
        if all(m.dtype == torch.bool for m in masks):
            allowed = ~masks[0]
            for m in masks[1:]:
                allowed = allowed & ~m
            return allowed
        total = _as_additive(masks[0], dtype)
        for m in masks[1:]:
            total = total + _as_additive(m, dtype)
        return total


class AdditiveAttention(torch.nn.Module):
    """Additive (Bahdanau) attention with a fused kernel.

    ``score_ij = v . tanh(W_q query_i + W_k key_j + bias)``, weights =
    softmax over keys, ``context_i = sum_j weights_ij value_j``. The
    ``(B, Tq, Tk, hidden_size)`` tensor of tanh values is never stored.

    Args:
        query_size, key_size: feature sizes of queries and keys.
        hidden_size: size of the attention's hidden layer.
        bias: learn the hidden bias (``bias`` parameter).
        backend: see ``seqkernels.BACKENDS``.

    Parameters: ``w_query (hidden, query_size)``, ``w_key (hidden,
    key_size)``, ``v (hidden,)``, ``bias (hidden,)``.
    """

    def __init__(self, query_size: int, key_size: int, hidden_size: int,
                 bias: bool = True, device=None, dtype=None,
                 backend: Optional[str] = None):
        super().__init__()
        for name, value in (("query_size", query_size), ("key_size", key_size),
                            ("hidden_size", hidden_size)):
            if value <= 0:
                raise ValueError(
                    f"seqkernels.AdditiveAttention: {name} must be positive, "
                    f"got {value}")
        kw = dict(device=device, dtype=dtype)
        self.query_size, self.key_size = query_size, key_size
        self.hidden_size = hidden_size
        self.backend = backend
        self.w_query = torch.nn.Parameter(torch.empty(hidden_size, query_size, **kw))
        self.w_key = torch.nn.Parameter(torch.empty(hidden_size, key_size, **kw))
        self.v = torch.nn.Parameter(torch.empty(hidden_size, **kw))
        self.bias = (torch.nn.Parameter(torch.empty(hidden_size, **kw))
                     if bias else None)
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @classmethod
    def from_linear(cls, w_query: torch.nn.Linear, w_key: torch.nn.Linear,
                    v: torch.nn.Linear, backend: Optional[str] = None
                    ) -> "AdditiveAttention":
        """The attention of three Linear layers, Bahdanau style, as in
        PyTorch's translation tutorial: ``Wa`` (on the query), ``Ua`` (on
        the keys) and ``Va`` (hidden -> 1), ``score = Va(tanh(Wa(query) +
        Ua(keys)))``, weights = softmax of the scores over the keys::

            attention = seqkernels.AdditiveAttention.from_linear(Wa, Ua, Va)
            context, weights = attention(query, keys, need_weights=True)

        The new module holds copies (on the layers' device and dtype):
        ``w_query = Wa.weight``, ``w_key = Ua.weight``, ``v = Va.weight[0]``,
        ``bias = Wa.bias + Ua.bias`` (no bias where neither has one).
        ``Va.bias`` adds the same number to every score of a query, which
        the softmax cancels, so the weights and the context do not depend
        on it (the raw scores, which this module never returns, would).
        """
        for name, layer in (("w_query", w_query), ("w_key", w_key), ("v", v)):
            if not isinstance(layer, torch.nn.Linear):
                raise TypeError(
                    f"seqkernels.AdditiveAttention.from_linear: {name} must "
                    f"be a torch.nn.Linear, got {type(layer).__name__}")
        hidden = w_query.out_features
        if w_key.out_features != hidden:
            raise ValueError(
                f"seqkernels.AdditiveAttention.from_linear: w_key must map "
                f"to w_query's {hidden} features, got out_features="
                f"{w_key.out_features}")
        if (v.in_features, v.out_features) != (hidden, 1):
            raise ValueError(
                f"seqkernels.AdditiveAttention.from_linear: v must be "
                f"Linear({hidden}, 1), got Linear({v.in_features}, "
                f"{v.out_features})")
        weight = w_query.weight
        for name, layer in (("w_key", w_key), ("v", v)):
            if (layer.weight.device, layer.weight.dtype) != (weight.device,
                                                             weight.dtype):
                raise ValueError(
                    f"seqkernels.AdditiveAttention.from_linear: {name} is on "
                    f"{layer.weight.device} in {layer.weight.dtype}, w_query "
                    f"on {weight.device} in {weight.dtype}; they must agree")
        biases = [b for b in (w_query.bias, w_key.bias) if b is not None]
        new = cls(w_query.in_features, w_key.in_features, hidden,
                  bias=bool(biases), device=weight.device, dtype=weight.dtype,
                  backend=backend)
        with torch.no_grad():
            new.w_query.copy_(w_query.weight)
            new.w_key.copy_(w_key.weight)
            new.v.copy_(v.weight[0])
            if biases:
                new.bias.copy_(sum(biases))
        return new

    def reset_parameters(self) -> None:
        """Uniform in +-1/sqrt(fan_in), as torch.nn.Linear; bias zero."""
        for w in (self.w_query, self.w_key):
            bound = 1.0 / math.sqrt(w.shape[1])
            torch.nn.init.uniform_(w, -bound, bound)
        bound = 1.0 / math.sqrt(self.hidden_size)
        torch.nn.init.uniform_(self.v, -bound, bound)
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)

    def forward(self, query: Tensor, key: Tensor,
                value: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                attn_mask: Optional[Tensor] = None,
                need_weights: bool = False) -> tuple[Tensor, Optional[Tensor]]:
        """``query (B, Tq, query_size)`` or ``(B, query_size)``, ``key (B, Tk,
        key_size)``, ``value (B, Tk, Dv)`` (default: key); masks as in
        :func:`seqkernels.functional.additive_attention`. Returns
        ``(context, weights or None)``."""
        return F.additive_attention(
            query, key, value, self.w_query, self.w_key, self.v, self.bias,
            key_padding_mask=key_padding_mask, attn_mask=attn_mask,
            need_weights=need_weights, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"query_size={self.query_size}, key_size={self.key_size}, "
                f"hidden_size={self.hidden_size}, bias={self.bias is not None}")
