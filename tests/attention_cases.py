"""Attention configurations shared by the attention tests: odd sizes,
Tq != Tk, causal both ways, masks of every kind (with fully masked rows),
grouped-query attention, value dim != head dim, 3-D input."""

import torch

# name: (B, Hq, Hk, Tq, Tk, D, Dv, mask kind, is_causal)
SDPA_CASES = {
    "basic": (2, 2, 2, 16, 16, 16, 16, None, False),
    "odd_sizes": (1, 2, 2, 97, 33, 59, 59, None, False),
    "causal_short_q": (2, 2, 2, 5, 9, 8, 8, None, True),
    "causal_long_q": (2, 2, 2, 9, 5, 8, 8, None, True),
    "bool_mask_broadcast": (2, 2, 2, 6, 7, 8, 8, "bool", False),
    "float_mask": (2, 2, 2, 6, 7, 8, 8, "float", False),
    "gqa": (2, 4, 2, 6, 7, 8, 8, None, False),
    "value_dim": (2, 2, 2, 6, 7, 5, 7, None, False),
    "three_dim": (3, None, None, 6, 7, 8, 8, None, False),
}


def make_mask(kind, B, H, Tq, Tk, gen):
    """A bool mask (True = allowed) with a fully masked query row and a
    fully masked batch element, broadcast over heads; or a float mask."""
    if kind == "bool":
        mask = torch.rand(B, 1, Tq, Tk, generator=gen) > 0.3
        mask[..., 0] = True               # every row sees a key ...
        mask[0, 0, 1, :] = False          # ... but this one
        return mask
    if kind == "float":
        return torch.randn(1, H, Tq, Tk, generator=gen, dtype=torch.float64)
    return None


def sdpa_inputs(case, seed=0):
    B, Hq, Hk, Tq, Tk, D, Dv, kind, causal = SDPA_CASES[case]
    gen = torch.Generator().manual_seed(seed)
    if Hq is None:  # 3-D (N, L, E)
        q = torch.randn(B, Tq, D, generator=gen, dtype=torch.float64)
        k = torch.randn(B, Tk, D, generator=gen, dtype=torch.float64)
        v = torch.randn(B, Tk, Dv, generator=gen, dtype=torch.float64)
    else:
        q = torch.randn(B, Hq, Tq, D, generator=gen, dtype=torch.float64)
        k = torch.randn(B, Hk, Tk, D, generator=gen, dtype=torch.float64)
        v = torch.randn(B, Hk, Tk, Dv, generator=gen, dtype=torch.float64)
    mask = make_mask(kind, B, Hq or 1, Tq, Tk, gen)
    return q, k, v, mask, causal, (Hq or 1) != (Hk or 1)


# name: (B, Tq, Tk, Dq, Dk, Dv, H, bias, key padding, need_weights)
ADDITIVE_CASES = {
    "basic": (2, 5, 7, 6, 4, 3, 8, True, False, True),
    "no_bias_no_weights": (2, 5, 7, 6, 4, 3, 8, False, False, False),
    "padding": (3, 4, 9, 5, 5, 5, 6, True, True, True),
    "odd_sizes": (1, 13, 29, 7, 11, 5, 59, True, True, True),
}
