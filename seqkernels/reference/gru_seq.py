"""The op ``gru_seq`` in PyTorch: the GRU cell (:mod:`.gru_cell`) on the
shared sequence machinery of :mod:`seqkernels.reference.recurrent`.

Shapes: ``x [T,B,I]``, ``h0 [B,H]``, ``w_ih [3H,I]``, ``w_hh [3H,H]``,
``b_ih, b_hh [3H]`` (kept apart: b_hn is multiplied by r), ``lengths [B]``.
Saved: ``gates [T,B,4H]`` = (r, z, n, hn) in the accumulation dtype.
"""

from typing import Optional

from torch import Tensor

from . import recurrent
from .recurrent import SeqSteps, TorchSteps


def forward(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
            b_ih: Optional[Tensor], b_hh: Optional[Tensor],
            lengths: Optional[Tensor], steps: SeqSteps = TorchSteps):
    """Forward of ``gru_seq``: returns (y, h_n, gates)."""
    y, h_n, _, saved, _, _ = recurrent.forward(
        recurrent.GRU, x, h0, None, w_ih, w_hh, b_ih, b_hh, None, lengths,
        steps)
    return y, h_n, saved


def backward(grad_y: Tensor, grad_h_n: Tensor, x: Tensor, h0: Tensor,
             w_ih: Tensor, w_hh: Tensor, lengths: Optional[Tensor],
             y: Tensor, gates: Tensor, has_bias: bool,
             steps: SeqSteps = TorchSteps):
    """Backward of ``gru_seq``: returns (grad_x, grad_h0, grad_w_ih,
    grad_w_hh, grad_b_ih, grad_b_hh); the biases' are empty without
    ``has_bias``."""
    empty = x.new_empty(0)
    gx, gh0, _, gw_ih, gw_hh, gb_ih, gb_hh, _ = recurrent.backward(
        recurrent.GRU, grad_y, grad_h_n, None, x, h0, None, w_ih, w_hh, None,
        lengths, y, gates, empty, empty, has_bias, steps)
    return gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh
