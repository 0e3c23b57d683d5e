"""The recurrent sequence machinery in PyTorch, for every cell (LSTM, GRU,
RNN with tanh, relu or identity), with the same forward/backward split as
the compiled kernels (csrc/recurrent_host.cpp; shapes are documented in
csrc/include/seqkernels/recurrent_host.h).

The driver (:func:`forward`, :func:`backward`) is the sequence machinery of
the Python backends. It takes the cell (a :class:`Cell`) and the step
functions as arguments: the ``reference`` backend runs it with
:class:`TorchSteps`, the ``triton`` backend with the Triton steps of
``seqkernels.triton_kernels.recurrent``. Steps write their results into the
tensors they are given.

Time runs forward; a row ``b`` is active at step ``s`` while
``s < lengths[b]``. Reversed directions are reversed by the caller.
"""

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch
from torch import Tensor

from . import gru_cell as _gru
from . import lstm_cell as _lstm
from . import rnn_cell as _rnn
from .lstm_cell import acc_dtype


@dataclass(frozen=True)
class Cell:
    """What the machinery needs to know of a cell: the numbers of the
    traits in cell_math.h, and its pointwise math on whole tensors.

    ``forward(xg, hg, h_prev, c_prev) -> (saved, c, h)``: ``xg``, ``hg``
    the input and recurrent side of the pre-activations ``[B, G*H]``;
    ``h_prev`` (``direct_h`` cells) and ``c_prev`` (``has_c``) ``[B, H]``.

    ``backward(saved, h_prev, c_prev, c, dh, carry) -> (dxg, dhg, carry)``:
    ``dh`` the whole gradient reaching h; ``carry`` in: the gradient
    reaching c (``has_c``); out: the gradient of c_prev (``has_c``) or of
    h_prev through the pointwise path (``direct_h``), else None. ``dhg`` is
    ``dxg`` unless ``split_grad``.
    """

    kind: str              # "lstm", "gru" or "rnn"
    gates: int             # G: gate blocks of H rows in w_ih, w_hh
    saved: int             # S: saved values per unit and step
    has_c: bool            # a cell state c (LSTM)
    split_grad: bool       # input and recurrent side gradients differ (GRU)
    direct_h: bool         # h' depends on h pointwise (GRU)
    act: str               # the RNN's nonlinearity ("tanh" for the others)
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


LSTM = Cell("lstm", 4, 4, True, False, False, "tanh", _lstm_forward,
            _lstm_backward)
GRU = Cell("gru", 3, 4, False, True, True, "tanh", _gru_forward,
           _gru_backward)


def rnn(nonlinearity: str) -> Cell:
    """The vanilla RNN cell with ``nonlinearity`` ("tanh", "relu" or
    "identity")."""
    _rnn.check_nonlinearity(nonlinearity)
    return _RNN[nonlinearity]


def _rnn_cell(act: str) -> Cell:
    def fwd(xg, hg, h_prev, c_prev):
        h = _rnn.activate(xg + hg, act)
        return h, None, h

    def bwd(saved, h_prev, c_prev, c, dh, carry):
        d = _rnn.activate_backward(saved, dh, act)
        return d, d, None

    return Cell("rnn", 1, 1, False, False, False, act, fwd, bwd)


_RNN = {act: _rnn_cell(act) for act in _rnn.NONLINEARITIES}


class SeqSteps(Protocol):
    """The two per-step functions a backend provides; the contract is the
    one of ``SeqSteps`` in csrc/include/seqkernels/recurrent_host.h."""

    def forward(self, cell: Cell, s: int, xg_s: Tensor, h_in: Tensor,
                w_hh: Tensor, b_hh: Optional[Tensor],
                c_state: Optional[Tensor], lengths: Optional[Tensor],
                saved_s: Tensor, cs_s: Optional[Tensor], out_s: Tensor,
                h_out: Optional[Tensor]) -> None: ...

    def backward(self, cell: Cell, s: int, grad_hg_next: Optional[Tensor],
                 w_hh: Optional[Tensor], dh_carry: Optional[Tensor],
                 dh_in: Tensor, carry: Optional[Tensor], saved_s: Tensor,
                 h_prev: Optional[Tensor], c_prev: Optional[Tensor],
                 cs_s: Optional[Tensor], lengths: Optional[Tensor],
                 grad_xg_s: Tensor, grad_hg_s: Tensor) -> None: ...


def _active(lengths: Optional[Tensor], s: int) -> Optional[Tensor]:
    return None if lengths is None else (lengths > s).unsqueeze(1)


class TorchSteps:
    """The steps in plain PyTorch: the oracle."""

    @staticmethod
    def forward(cell, s, xg_s, h_in, w_hh, b_hh, c_state, lengths, saved_s,
                cs_s, out_s, h_out):
        # The recurrent product in the accumulation dtype, as the kernels
        # accumulate it (and never round it to the storage dtype).
        acc = saved_s.dtype
        hg = h_in.to(acc) @ w_hh.to(acc).t()
        if b_hh is not None:
            hg = hg + b_hh.to(acc)
        saved, c, h = cell.forward(
            xg_s, hg,
            h_in.to(acc) if cell.direct_h else None, c_state)
        active = _active(lengths, s)
        if h_out is not None:  # before h is masked: inactive rows keep h_in
            h_out.copy_(h if active is None
                        else torch.where(active, h.to(h_in.dtype), h_in))
        if active is not None:
            saved = torch.where(active, saved, 0)
            h = torch.where(active, h, 0)
            if c is not None:
                c_kept = torch.where(active, c, c_state)
                c = torch.where(active, c, 0)
        elif c is not None:
            c_kept = c
        saved_s.copy_(saved)
        out_s.copy_(h)
        if c is not None:
            cs_s.copy_(c)
            c_state.copy_(c_kept)

    @staticmethod
    def backward(cell, s, grad_hg_next, w_hh, dh_carry, dh_in, carry,
                 saved_s, h_prev, c_prev, cs_s, lengths, grad_xg_s,
                 grad_hg_s):
        acc = saved_s.dtype
        dh_from_later = torch.zeros((), dtype=acc, device=saved_s.device)
        if w_hh is not None:
            dh_from_later = dh_carry
            if grad_hg_next is not None:
                from_next = grad_hg_next @ w_hh.to(acc)
                if cell.direct_h:
                    from_next = from_next + carry
                next_active = _active(lengths, s + 1)
                dh_from_later = (
                    from_next if next_active is None
                    else torch.where(next_active, from_next, dh_carry))
            dh_carry.copy_(dh_from_later)
        dxg, dhg, carry_out = cell.backward(
            saved_s, h_prev.to(acc) if h_prev is not None else None, c_prev,
            cs_s, dh_in.to(acc) + dh_from_later,
            carry if cell.has_c else None)
        active = _active(lengths, s)
        if active is not None:
            dxg = torch.where(active, dxg, 0)
            dhg = torch.where(active, dhg, 0)
            if carry_out is not None:
                carry_out = torch.where(active, carry_out, carry)
        grad_xg_s.copy_(dxg)
        if cell.split_grad:
            grad_hg_s.copy_(dhg)
        if carry_out is not None:
            carry.copy_(carry_out)


def forward(cell: Cell, x: Tensor, h0: Tensor, c0: Optional[Tensor],
            w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor],
            b_hh: Optional[Tensor], w_hr: Optional[Tensor],
            lengths: Optional[Tensor], steps: SeqSteps = TorchSteps):
    """The sequence forward: returns (y, h_n, c_n, saved, cs, ms); absent
    ones are empty tensors."""
    T, B, I = x.shape
    G = cell.gates
    H = w_ih.shape[0] // G
    P = h0.shape[1]
    acc = acc_dtype(x.dtype)
    x = x.contiguous()
    w_hh = w_hh.contiguous()
    # The recurrent bias joins the input side's where the cell sees only
    # the sum of both sides; the GRU gets it in its step.
    b_x = b_ih.to(acc) if b_ih is not None else None
    b_h = None
    if b_hh is not None:
        if cell.split_grad:
            b_h = b_hh.contiguous()
        else:
            b_x = b_hh.to(acc) if b_x is None else b_x + b_hh.to(acc)
    # The input projection stays in the accumulation dtype (as cuDNN keeps
    # gate pre-activations in float32): rounded to bfloat16 it would hand
    # the cell a fresh rounding error every step, which the cell state (and
    # the GRU's h) integrates over a long sequence.
    x2 = x.reshape(T * B, I).to(acc)
    w_ih_t = w_ih.to(acc).t()
    xg = (torch.addmm(b_x, x2, w_ih_t) if b_x is not None
          else x2 @ w_ih_t).view(T, B, G * H)
    y = x.new_empty(T, B, P)
    saved = x.new_empty(T, B, cell.saved * H, dtype=acc)
    cs = (x.new_empty(T, B, H, dtype=acc) if cell.has_c
          else x.new_empty(0, dtype=acc))
    ms = x.new_empty(T, B, H) if w_hr is not None else x.new_empty(0)
    c_state = c0.to(acc, copy=True) if cell.has_c else None
    h_state = [h0.contiguous().clone(), x.new_empty(B, P)]
    for s in range(T):
        h_in, h_next = h_state[s % 2], h_state[(s + 1) % 2]
        cs_s = cs[s] if cell.has_c else None
        if w_hr is None:
            steps.forward(cell, s, xg[s], h_in, w_hh, b_h, c_state, lengths,
                          saved[s], cs_s, y[s], h_next)
            continue
        steps.forward(cell, s, xg[s], h_in, w_hh, b_h, c_state, lengths,
                      saved[s], cs_s, ms[s], None)
        h_new = ms[s] @ w_hr.t()
        active = _active(lengths, s)
        if active is None:
            y[s].copy_(h_new)
            h_next.copy_(h_new)
        else:
            y[s].copy_(torch.where(active, h_new, 0))
            h_next.copy_(torch.where(active, h_new, h_in))
    c_n = c_state.to(x.dtype) if cell.has_c else x.new_empty(0)
    return y, h_state[T % 2], c_n, saved, cs, ms


def backward(cell: Cell, grad_y: Tensor, grad_h_n: Tensor,
             grad_c_n: Optional[Tensor], x: Tensor, h0: Tensor,
             c0: Optional[Tensor], w_ih: Tensor, w_hh: Tensor,
             w_hr: Optional[Tensor], lengths: Optional[Tensor], y: Tensor,
             saved: Tensor, cs: Tensor, ms: Tensor, has_bias: bool,
             steps: SeqSteps = TorchSteps):
    """Backward through time: returns (grad_x, grad_h0, grad_c0, grad_w_ih,
    grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr); absent ones are empty
    (grad_b_hh is given only where it differs from grad_b_ih: GRU)."""
    T, B, I = x.shape
    G = cell.gates
    H = w_ih.shape[0] // G
    P = h0.shape[1]
    acc = acc_dtype(x.dtype)
    x = x.contiguous()
    grad_y = grad_y.contiguous()
    w_hh = w_hh.contiguous()
    # Gate gradients in the accumulation dtype, as the forward's
    # pre-activations: they feed the recurrent product of the step before.
    # The GEMMs over them run in that dtype too.
    grad_xg = x.new_empty(T, B, G * H, dtype=acc)
    grad_hg = (x.new_empty(T, B, G * H, dtype=acc) if cell.split_grad
               else grad_xg)
    w_hh_acc = w_hh.to(acc)
    if cell.has_c:
        carry = grad_c_n.to(acc, copy=True)
        c0_acc = c0.to(acc)
    elif cell.direct_h:
        carry = x.new_zeros(B, H, dtype=acc)
    else:
        carry = None
    # h_{s-1} of every step. Padded steps carry zero gate gradients, so the
    # zeros y holds there do not matter.
    h_prev = torch.cat([h0.unsqueeze(0), y[:-1]])
    if w_hr is None:
        dh_carry = grad_h_n.to(acc, copy=True)
        for s in reversed(range(T)):
            nxt = grad_hg[s + 1] if s + 1 < T else None
            c_prev = (cs[s - 1] if s > 0 else c0_acc) if cell.has_c else None
            steps.backward(cell, s, nxt, w_hh, dh_carry, grad_y[s], carry,
                           saved[s], h_prev[s] if cell.direct_h else None,
                           c_prev, cs[s] if cell.has_c else None, lengths,
                           grad_xg[s], grad_hg[s])
        grad_w_hr = x.new_empty(0)
    else:
        # With a projection (LSTM) the carried gradient lives in the
        # projected (P-dim) space and reaches the cell through w_hr, so the
        # step runs without its GEMM.
        dh_carry = grad_h_n.to(acc, copy=True)
        grad_h_all = x.new_empty(T, B, P, dtype=acc)
        w_hr_acc = w_hr.to(acc)
        for s in reversed(range(T)):
            if s + 1 < T:
                from_next = grad_hg[s + 1] @ w_hh_acc
                active_next = _active(lengths, s + 1)
                dh_carry = (from_next if active_next is None
                            else torch.where(active_next, from_next, dh_carry))
            dh = grad_y[s].to(acc) + dh_carry
            active = _active(lengths, s)
            if active is not None:
                dh = torch.where(active, dh, 0)
            grad_h_all[s].copy_(dh)
            # The steps take dh in the storage dtype.
            steps.backward(cell, s, None, None, None,
                           (dh @ w_hr_acc).to(x.dtype), carry,
                           saved[s], None, cs[s - 1] if s > 0 else c0_acc,
                           cs[s], lengths, grad_xg[s], grad_xg[s])
        grad_w_hr = (grad_h_all.reshape(T * B, P).t()
                     @ ms.reshape(T * B, H).to(acc)).to(x.dtype)
    gx2 = grad_xg.view(T * B, G * H)
    gh2 = grad_hg.view(T * B, G * H)
    grad_h0 = grad_hg[0] @ w_hh_acc  # every row is active at step 0
    if cell.direct_h:
        grad_h0 = grad_h0 + carry
    st = x.dtype
    grad_h0 = grad_h0.to(st)
    grad_x = (gx2 @ w_ih.to(acc)).view(T, B, I).to(st)
    grad_w_ih = (gx2.t() @ x.view(T * B, I).to(acc)).to(st)
    grad_w_hh = (gh2.t() @ h_prev.reshape(T * B, P).to(acc)).to(st)
    grad_b_ih = gx2.sum(0).to(st) if has_bias else x.new_empty(0)
    grad_b_hh = (gh2.sum(0).to(st) if has_bias and cell.split_grad
                 else x.new_empty(0))
    grad_c0 = carry.to(x.dtype) if cell.has_c else x.new_empty(0)
    return (grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b_ih,
            grad_b_hh, grad_w_hr)
