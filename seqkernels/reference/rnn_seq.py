"""The op ``rnn_seq`` in PyTorch: the vanilla RNN cell (:mod:`.rnn_cell`,
nonlinearity "tanh", "relu" or "identity") on the shared sequence machinery
of :mod:`seqkernels.reference.recurrent`.

Shapes: ``x [T,B,I]``, ``h0 [B,H]``, ``w_ih [H,I]``, ``w_hh [H,H]``,
``bias [H]`` (b_ih + b_hh), ``lengths [B]``. Saved: ``gates [T,B,H]``, the
outputs in the accumulation dtype.
"""

from typing import Optional

from torch import Tensor

from . import recurrent
from .recurrent import SeqSteps, TorchSteps


def forward(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
            bias: Optional[Tensor], lengths: Optional[Tensor],
            nonlinearity: str, steps: SeqSteps = TorchSteps):
    """Forward of ``rnn_seq``: returns (y, h_n, gates)."""
    y, h_n, _, saved, _, _ = recurrent.forward(
        recurrent.rnn(nonlinearity), x, h0, None, w_ih, w_hh, bias, None,
        None, lengths, steps)
    return y, h_n, saved


def backward(grad_y: Tensor, grad_h_n: Tensor, x: Tensor, h0: Tensor,
             w_ih: Tensor, w_hh: Tensor, lengths: Optional[Tensor],
             y: Tensor, gates: Tensor, has_bias: bool, nonlinearity: str,
             steps: SeqSteps = TorchSteps):
    """Backward of ``rnn_seq``: returns (grad_x, grad_h0, grad_w_ih,
    grad_w_hh, grad_bias); grad_bias is empty without ``has_bias``."""
    empty = x.new_empty(0)
    gx, gh0, _, gw_ih, gw_hh, gb, _, _ = recurrent.backward(
        recurrent.rnn(nonlinearity), grad_y, grad_h_n, None, x, h0, None,
        w_ih, w_hh, None, lengths, y, gates, empty, empty, has_bias, steps)
    return gx, gh0, gw_ih, gw_hh, gb
