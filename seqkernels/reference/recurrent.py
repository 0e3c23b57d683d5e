"""The recurrent steps in PyTorch: the pointwise math of each cell on whole
tensors (:mod:`.lstm_cell`, :mod:`.gru_cell`, :mod:`.rnn_cell`) and
:class:`TorchSteps`, the steps that the shared sequence driver
(:mod:`seqkernels.sequence_driver`) runs for the ``reference`` backend.

The reference implementations of the sequence ops (``lstm_seq``,
``lstm_seq_backward``, ``gru_seq``, ...) are the driver's ops on these
steps.
"""

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from .. import sequence_driver
from ..cell_table import NONLINEARITIES, CellDesc
from ..sequence_driver import BackwardStep, ForwardStep, active_rows
from . import gru_cell as _gru
from . import lstm_cell as _lstm
from . import rnn_cell as _rnn


@dataclass(frozen=True)
class CellMath:
    """A cell's pointwise math on whole tensors.

    ``forward(xg, hg, h_prev, c_prev) -> (saved, c, h)``: ``xg``, ``hg``
    the input and recurrent side of the pre-activations ``[B, G*H]``;
    ``h_prev`` (``direct_h`` cells) and ``c_prev`` (``has_c``) ``[B, H]``.

    ``backward(saved, h_prev, c_prev, c, dh, carry) -> (dxg, dhg, carry)``:
    ``dh`` the whole gradient reaching h; ``carry`` in: the gradient
    reaching c (``has_c``); out: the gradient of c_prev (``has_c``) or of
    h_prev through the pointwise path (``direct_h``), else None. ``dhg`` is
    ``dxg`` unless ``split_grad``.
    """

    forward: Callable
    backward: Callable


def _lstm_forward(xg, hg, h_prev, c_prev):
    gates, c, h = _lstm.cell_forward(xg + hg, c_prev)
    return gates, c, h


def _lstm_backward(saved, h_prev, c_prev, c, dh, carry):
    dpre, dc_prev = _lstm.cell_backward(saved, c_prev, c, dh, carry)
    return dpre, dpre, dc_prev


def _gru_forward(xg, hg, h_prev, c_prev):
    saved, h = _gru.cell_forward(xg, hg, h_prev)
    return saved, None, h


def _gru_backward(saved, h_prev, c_prev, c, dh, carry):
    return _gru.cell_backward(saved, h_prev, dh)


def _rnn_math(act: str) -> CellMath:
    def forward(xg, hg, h_prev, c_prev):
        h = _rnn.activate(xg + hg, act)
        return h, None, h

    def backward(saved, h_prev, c_prev, c, dh, carry):
        d = _rnn.activate_backward(saved, dh, act)
        return d, d, None

    return CellMath(forward, backward)


_MATH = {("lstm", "tanh"): CellMath(_lstm_forward, _lstm_backward),
         ("gru", "tanh"): CellMath(_gru_forward, _gru_backward)}
_MATH.update({("rnn", act): _rnn_math(act) for act in NONLINEARITIES})


def _math(cell: CellDesc) -> CellMath:
    return _MATH[cell.kind, cell.act]


class TorchSteps:
    """The steps of the sequence driver in plain PyTorch: the oracle."""

    # Each step computes a unit's saved values from whole tensors before it
    # writes any of them.
    saved_over_xg = True

    @staticmethod
    def forward(cell: CellDesc, step: ForwardStep) -> None:
        # The recurrent product in the accumulation dtype, as the kernels
        # accumulate it (and never round it to the storage dtype).
        acc = step.saved.dtype
        hg = step.h_in.to(acc) @ step.w_hh.to(acc).t()
        if step.b_hh is not None:
            hg = hg + step.b_hh.to(acc)
        saved, c, h = _math(cell).forward(
            step.xg, hg,
            step.h_in.to(acc) if cell.direct_h else None, step.c_state)
        active = active_rows(step.lengths, step.s)
        if step.h_out is not None:  # before h is masked: inactive rows keep
            step.h_out.copy_(h if active is None  # h_in
                             else torch.where(active, h.to(step.h_in.dtype),
                                              step.h_in))
        if active is not None:
            saved = torch.where(active, saved, 0)
            h = torch.where(active, h, 0)
            if c is not None:
                c_kept = torch.where(active, c, step.c_state)
                c = torch.where(active, c, 0)
        elif c is not None:
            c_kept = c
        step.saved.copy_(saved)
        step.out.copy_(h)
        if c is not None:
            step.cell_state.copy_(c)
            step.c_state.copy_(c_kept)

    @staticmethod
    def backward(cell: CellDesc, step: BackwardStep) -> None:
        acc = step.saved.dtype
        dh_from_later = torch.zeros((), dtype=acc, device=step.saved.device)
        if step.w_hh is not None:
            dh_from_later = step.dh_carry
            if step.grad_hg_next is not None:
                from_next = step.grad_hg_next @ step.w_hh.to(acc)
                if cell.direct_h:
                    from_next = from_next + step.carry
                next_active = active_rows(step.lengths, step.s + 1)
                dh_from_later = (
                    from_next if next_active is None
                    else torch.where(next_active, from_next, step.dh_carry))
            step.dh_carry.copy_(dh_from_later)
        h_prev = step.h_prev.to(acc) if step.h_prev is not None else None
        dxg, dhg, carry_out = _math(cell).backward(
            step.saved, h_prev, step.c_prev, step.cell_state,
            step.dh_in.to(acc) + dh_from_later,
            step.carry if cell.has_c else None)
        active = active_rows(step.lengths, step.s)
        if active is not None:
            dxg = torch.where(active, dxg, 0)
            dhg = torch.where(active, dhg, 0)
            if carry_out is not None:
                carry_out = torch.where(active, carry_out, step.carry)
        step.grad_xg.copy_(dxg)
        if cell.split_grad:
            step.grad_hg.copy_(dhg)
        if carry_out is not None:
            step.carry.copy_(carry_out)


# The reference backend's sequence ops: the driver on the PyTorch steps.
lstm_seq = functools.partial(sequence_driver.lstm_seq, steps=TorchSteps)
lstm_seq_backward = functools.partial(sequence_driver.lstm_seq_backward,
                                      steps=TorchSteps)
gru_seq = functools.partial(sequence_driver.gru_seq, steps=TorchSteps)
gru_seq_backward = functools.partial(sequence_driver.gru_seq_backward,
                                     steps=TorchSteps)
rnn_seq = functools.partial(sequence_driver.rnn_seq, steps=TorchSteps)
rnn_seq_backward = functools.partial(sequence_driver.rnn_seq_backward,
                                     steps=TorchSteps)
