"""The op ``lstm_seq`` in PyTorch: the LSTM cell on the shared sequence
machinery of :mod:`seqkernels.reference.recurrent` (shapes in
csrc/include/seqkernels/recurrent_host.h).

``steps`` picks the backend of the steps: :class:`TorchSteps` (the
``reference`` backend) or the Triton steps.
"""

from typing import Optional

from torch import Tensor

from . import recurrent
from .recurrent import SeqSteps, TorchSteps

__all__ = ["forward", "backward", "SeqSteps", "TorchSteps"]


def forward(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
            bias: Optional[Tensor], w_hr: Optional[Tensor],
            lengths: Optional[Tensor], steps: SeqSteps = TorchSteps):
    """Forward of ``lstm_seq``: returns (y, h_n, c_n, gates, cs, ms)."""
    return recurrent.forward(recurrent.LSTM, x, h0, c0, w_ih, w_hh, bias,
                             None, w_hr, lengths, steps)


def backward(grad_y: Tensor, grad_h_n: Tensor, grad_c_n: Tensor, x: Tensor,
             h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
             w_hr: Optional[Tensor], lengths: Optional[Tensor], y: Tensor,
             gates: Tensor, cs: Tensor, ms: Tensor, has_bias: bool,
             steps: SeqSteps = TorchSteps):
    """Backward of ``lstm_seq``: returns (grad_x, grad_h0, grad_c0,
    grad_w_ih, grad_w_hh, grad_bias, grad_w_hr); absent ones are empty."""
    gx, gh0, gc0, gw_ih, gw_hh, gb, _, gw_hr = recurrent.backward(
        recurrent.LSTM, grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih, w_hh,
        w_hr, lengths, y, gates, cs, ms, has_bias, steps)
    return gx, gh0, gc0, gw_ih, gw_hh, gb, gw_hr
