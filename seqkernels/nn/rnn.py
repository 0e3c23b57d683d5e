"""``seqkernels.GRU``, ``seqkernels.RNN``, ``seqkernels.GRUCell`` and
``seqkernels.RNNCell``: torch.nn.GRU, RNN, GRUCell and RNNCell with fused
kernels, on the same recurrent machinery as the LSTM.

``GRU`` and ``RNN`` subclass torch.nn.RNNBase in mode "GRU" / "RNN_TANH" /
"RNN_RELU", exactly as torch.nn.GRU and torch.nn.RNN do, so constructor,
parameter names, state_dict and initialization are torch's own (and
torch.compile traces them, which it refuses for torch.nn.GRU/RNN
instances). The cells subclass torch.nn.GRUCell and torch.nn.RNNCell.

Beyond torch, the vanilla RNN takes ``nonlinearity="identity"``: a linear
dynamical system ``h' = W_ih x + b_ih + W_hh h + b_hh``.
"""

from typing import Optional, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .. import functional as F
from ..cell_table import NONLINEARITIES
from ._recurrent import RecurrentBase, run_cell

# RNNBase modes of the vanilla RNN. torch has no mode for "identity"; an
# identity RNN is built in mode RNN_TANH (parameters, state_dict and init do
# not depend on the nonlinearity) and keeps its nonlinearity in
# ``self.nonlinearity``, which is what seqkernels runs.
_RNN_MODES = {"tanh": "RNN_TANH", "relu": "RNN_RELU", "identity": "RNN_TANH"}


def _check_nonlinearity(name: str, nonlinearity: str) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(
            f"{name}: unknown nonlinearity {nonlinearity!r}; select from "
            f"'tanh', 'relu' or 'identity'")


class _HiddenStateOnly(RecurrentBase):
    """The forward of the modules whose only state is h (GRU, RNN):
    ``hx`` is ``h0`` and the result ``(output, h_n)``, as in torch."""

    def forward(self, input: Union[Tensor, PackedSequence],
                hx: Optional[Tensor] = None):
        out, (h_n,) = self._run(input, None if hx is None else (hx,),
                                self._stack)
        return out, h_n


class GRU(_HiddenStateOnly):
    """torch.nn.GRU, run by seqkernels.

    Takes every argument of :class:`torch.nn.GRU` and ``backend`` (one of
    ``seqkernels.BACKENDS``; None reads ``SEQKERNELS_BACKEND``, default
    "auto"). Batched and unbatched input, ``h0``, and PackedSequence (sorted
    or not) in and out, as torch.nn.GRU. Packed input runs padded with its
    lengths: each sequence stops at its own length.
    """

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError(
                "proj_size argument is only supported for LSTM, not RNN or "
                "GRU")
        super().__init__("GRU", *args, **kwargs)
        self.backend = backend

    def _stack(self, input, hx, lengths, batch_first):
        out, h_n = F.gru(
            input, None if hx is None else hx[0], self._layer_weights(),
            num_layers=self.num_layers, bidirectional=self.bidirectional,
            batch_first=batch_first, dropout=self.dropout,
            training=self.training, lengths=lengths, backend=self.backend)
        return out, (h_n,)


class RNN(_HiddenStateOnly):
    r"""torch.nn.RNN, run by seqkernels, with one more nonlinearity.

    Takes every argument of :class:`torch.nn.RNN` (``input_size,
    hidden_size, num_layers, nonlinearity, bias, batch_first, dropout,
    bidirectional, device, dtype``, positional as in torch) and
    ``backend``. ``nonlinearity`` is "tanh", "relu" or "identity".

    With "identity" the layer is a linear dynamical system,
    ``h_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh``. torch.nn.RNNBase has no
    mode for it: the module is built in mode "RNN_TANH" (parameters,
    state_dict and initialization do not depend on the nonlinearity) and
    ``self.nonlinearity`` says what runs. ``seqkernels.convert(...,
    to="torch")`` therefore refuses an identity RNN: torch cannot run it.

    Example: an autoregressive model of order d,
    ``y_t = a_1 y_{t-1} + ... + a_d y_{t-d} + u_t``, in companion-matrix form.
    The state is ``h_t = (y_t, y_{t-1}, ..., y_{t-d+1})``; ``W_hh`` is the
    companion matrix (first row the coefficients, ones below the diagonal)
    and ``W_ih`` feeds the innovation ``u_t`` into the first coordinate::

        >>> import torch, seqkernels
        >>> a = torch.tensor([0.5, -0.2, 0.1])        # a_1, a_2, a_3
        >>> d = a.numel()
        >>> ar = seqkernels.RNN(1, d, nonlinearity="identity", bias=False)
        >>> with torch.no_grad():
        ...     companion = torch.zeros(d, d)
        ...     companion[0] = a                      # y_t from y_{t-1..t-d}
        ...     companion[1:, :-1] = torch.eye(d - 1)  # shift the history
        ...     _ = ar.weight_hh_l0.copy_(companion)
        ...     _ = ar.weight_ih_l0.copy_(torch.eye(d, 1))  # u_t -> y_t
        >>> u = torch.randn(50, 4, 1)                 # [T, B, 1] innovations
        >>> states, h_n = ar(u)                       # [T, B, d]
        >>> y = states[..., 0]                        # the AR(3) series [T, B]
        >>> bool(torch.allclose(y[3], a[0] * y[2] + a[1] * y[1] + a[2] * y[0]
        ...                     + u[3, :, 0], atol=1e-6))
        True

    Fitting the coefficients is then ordinary training of ``weight_hh_l0``
    (mask the gradient of its lower rows to keep the companion form), with
    fused forward and backward through time.
    """

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError(
                "proj_size argument is only supported for LSTM, not RNN or "
                "GRU")
        if len(args) > 3:  # torch.nn.RNN's positional nonlinearity
            nonlinearity = args[3]
            args = args[:3] + args[4:]
        else:
            nonlinearity = kwargs.pop("nonlinearity", "tanh")
        _check_nonlinearity("seqkernels.RNN", nonlinearity)
        super().__init__(_RNN_MODES[nonlinearity], *args, **kwargs)
        self.nonlinearity = nonlinearity
        self.backend = backend

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s

    def _stack(self, input, hx, lengths, batch_first):
        out, h_n = F.rnn(
            input, None if hx is None else hx[0], self._layer_weights(),
            num_layers=self.num_layers, nonlinearity=self.nonlinearity,
            bidirectional=self.bidirectional, batch_first=batch_first,
            dropout=self.dropout, training=self.training, lengths=lengths,
            backend=self.backend)
        return out, (h_n,)


class GRUCell(torch.nn.GRUCell):
    """torch.nn.GRUCell with the fused cell kernel; takes ``backend=`` too."""

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        def step(x, states):
            return (F.gru_cell(x, None if states is None else states[0],
                               self.weight_ih, self.weight_hh, self.bias_ih,
                               self.bias_hh, backend=self.backend),)

        (h,) = run_cell("seqkernels.GRUCell", input,
                        None if hx is None else (hx,), step)
        return h


class RNNCell(torch.nn.RNNCell):
    """torch.nn.RNNCell with the fused cell kernel; takes ``backend=`` and
    ``nonlinearity="identity"`` too (see :class:`RNN`)."""

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        _check_nonlinearity("seqkernels.RNNCell", self.nonlinearity)
        self.backend = backend

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        def step(x, states):
            return (F.rnn_cell(x, None if states is None else states[0],
                               self.weight_ih, self.weight_hh, self.bias_ih,
                               self.bias_hh, nonlinearity=self.nonlinearity,
                               backend=self.backend),)

        (h,) = run_cell("seqkernels.RNNCell", input,
                        None if hx is None else (hx,), step)
        return h
