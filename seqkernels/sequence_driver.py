"""The sequence driver of the Python backends: one recurrent layer, one
direction, for every cell, with the forward/backward split of the ops.

It is the Python twin of the C++ driver (``recurrent_seq_forward`` and
``recurrent_seq_backward`` in csrc/recurrent_host.cpp; shapes documented in
csrc/include/seqkernels/recurrent_host.h), step for step, and
``tests/test_sequence_driver.py`` holds the two to the same outputs and
saved tensors. A backend gives the driver its per-step functions
(:class:`SeqSteps`): the ``reference`` backend
``seqkernels.reference.recurrent.TorchSteps``, the ``triton`` backend
``TritonSteps`` of ``seqkernels.triton_kernels.recurrent``. Steps write
their results into the tensors they are given.

Time runs forward; a row ``b`` is active at step ``s`` while
``s < lengths[b]``. Reversed directions are reversed by the caller.

A backend may also run a whole layer's recurrence in one kernel (a
persistent kernel: :class:`SeqForward`, :class:`SeqBackward`). The driver
offers it the loop when ``SEQKERNELS_RECURRENCE=persistent``
(:func:`recurrence_algorithm`); the backend takes it where its rule says the
kernel serves the shape (its ``persistent_plan``) and otherwise leaves the
loop to the per-step kernels. The results are the same tensors either way.
"""

import os
from dataclasses import dataclass
from typing import Optional, Protocol

import torch
from torch import Tensor

from ._common import acc_dtype
from .cell_table import CellDesc, cell_desc


@dataclass
class ForwardStep:
    """One forward step ``s``, as the driver hands it to a backend's step:
    rows of step ``s``; None for absent tensors. Fields, shapes and dtypes
    as ``ForwardStep`` in csrc/include/seqkernels/recurrent_host.h."""

    s: int
    xg: Tensor                    # [B, G*H] acc
    h_in: Tensor                  # [B, P]
    w_hh: Tensor                  # [G*H, P]
    b_hh: Optional[Tensor]        # [G*H] (split_grad cells)
    c_state: Optional[Tensor]     # [B, H] acc, in place (has_c)
    lengths: Optional[Tensor]     # [B] int64
    saved: Tensor                 # [B, S*H] acc, written
    cell_state: Optional[Tensor]  # [B, H] acc, written (has_c)
    out: Tensor                   # [B, H], written
    h_out: Optional[Tensor]       # [B, P], written if given


@dataclass
class BackwardStep:
    """One backward step ``s``; fields as ``BackwardStep`` in
    recurrent_host.h."""

    s: int
    grad_hg_next: Optional[Tensor]  # [B, G*H] acc
    w_hh: Optional[Tensor]          # [G*H, P]; None: no recurrent product
    dh_carry: Optional[Tensor]      # [B, H] acc, in place
    dh_in: Tensor                   # [B, H]
    carry: Optional[Tensor]         # [B, H] acc, in place
    saved: Tensor                   # [B, S*H] acc
    h_prev: Optional[Tensor]        # [B, H] (direct_h cells)
    c_prev: Optional[Tensor]        # [B, H] acc (has_c)
    cell_state: Optional[Tensor]    # [B, H] acc (has_c)
    lengths: Optional[Tensor]       # [B] int64
    grad_xg: Tensor                 # [B, G*H] acc, written
    grad_hg: Tensor                 # [B, G*H] acc, written (split_grad)


@dataclass
class SeqForward:
    """A whole forward recurrence without a projection (P == H), for a
    backend's persistent kernel; fields as ``SeqForward`` in
    recurrent_host.h."""

    xg: Tensor                     # [T, B, G*H] acc
    h0: Tensor                     # [B, H]
    w_hh: Tensor                   # [G*H, H]
    b_hh: Optional[Tensor]         # [G*H] (split_grad cells)
    c_state: Optional[Tensor]      # [B, H] acc, in place: c0 in, c_n out
    lengths: Optional[Tensor]      # [B] int64
    saved: Tensor                  # [T, B, S*H] acc, written
    cell_states: Optional[Tensor]  # [T, B, H] acc, written (has_c)
    y: Tensor                      # [T, B, H], written
    h_n: Tensor                    # [B, H], written


@dataclass
class SeqBackward:
    """A whole backward recurrence without a projection; fields as
    ``SeqBackward`` in recurrent_host.h."""

    grad_y: Tensor                 # [T, B, H]
    w_hh: Tensor                   # [G*H, H]
    dh_carry: Tensor               # [B, H] acc, in place: grad_h_n in
    carry: Optional[Tensor]        # [B, H] acc, in place (has_c, direct_h)
    saved: Tensor                  # [T, B, S*H] acc
    h_prev: Optional[Tensor]       # [T, B, H]: h of step s - 1 (direct_h)
    c0: Optional[Tensor]           # [B, H] acc (has_c)
    cell_states: Optional[Tensor]  # [T, B, H] acc (has_c)
    lengths: Optional[Tensor]      # [B] int64
    grad_xg: Tensor                # [T, B, G*H] acc, written
    grad_hg: Tensor                # [T, B, G*H] acc, written (split_grad)


RECURRENCE_ALGORITHMS = ("default", "per_step", "persistent")


def recurrence_algorithm() -> str:
    """The recurrence algorithm asked for by ``SEQKERNELS_RECURRENCE``:
    ``"default"`` (unset: each backend's default, the persistent recurrence
    on the cpu backend where its rule says it is faster, the per-step
    kernels elsewhere), ``"per_step"`` (one fused kernel launch per step
    everywhere) or ``"persistent"`` (one launch per layer where the
    backend's kernel serves the shape; opt-in on the GPU until a GPU run
    has passed it). The C++ driver reads the same variable
    (``recurrence_algorithm`` in recurrent_host.h)."""
    name = os.environ.get("SEQKERNELS_RECURRENCE", "default")
    if name not in RECURRENCE_ALGORITHMS:
        raise ValueError(
            "seqkernels: SEQKERNELS_RECURRENCE must be one of "
            f"{RECURRENCE_ALGORITHMS}, got {name!r}")
    return name


class SeqSteps(Protocol):
    """The two per-step functions a backend provides, and whether its
    forward step may write the saved values over the pre-activations. The
    contract of each (what a step reads and writes, for active and inactive
    rows) is the one of ``SeqSteps`` in
    csrc/include/seqkernels/recurrent_host.h."""

    # forward may write step.saved over step.xg (the same tensor) where the
    # cell saves as many values per unit as it has gates: it reads all of a
    # unit's pre-activations before it writes that unit's saved values.
    saved_over_xg: bool

    def forward(self, cell: CellDesc, step: ForwardStep) -> None: ...

    def backward(self, cell: CellDesc, step: BackwardStep) -> None: ...

    # Optional: a backend with a persistent kernel also has
    #   forward_seq(cell, seq: SeqForward) -> bool
    #   backward_seq(cell, seq: SeqBackward) -> bool
    # which run the whole loop and return True, or return False (nothing
    # written) where the kernel does not serve the shape.


def _persistent(steps: SeqSteps, which: str):
    """The backend's whole-recurrence function ``which`` when the
    persistent algorithm is asked for and the backend has one, else None."""
    if recurrence_algorithm() != "persistent":
        return None
    return getattr(steps, which, None)


def active_rows(lengths: Optional[Tensor], s: int) -> Optional[Tensor]:
    """The rows active at step ``s`` as a ``[B, 1]`` bool mask (None: all)."""
    return None if lengths is None else (lengths > s).unsqueeze(1)


def _sizes(cell: CellDesc, x: Tensor, h0: Tensor, w_ih: Tensor):
    """T, B, I, G, H, P as recurrent_host.h names them."""
    T, B, I = x.shape
    return T, B, I, cell.gates, w_ih.shape[0] // cell.gates, h0.shape[1]


def recurrent_seq_forward(cell: CellDesc, x: Tensor, h0: Tensor,
                          c0: Optional[Tensor], w_ih: Tensor, w_hh: Tensor,
                          b_ih: Optional[Tensor], b_hh: Optional[Tensor],
                          w_hr: Optional[Tensor], lengths: Optional[Tensor],
                          keep_saved: bool, steps: SeqSteps):
    """The sequence forward: returns (y, h_n, c_n, saved, cell_states, cell_outputs); absent
    ones are empty tensors, and so are the last three without ``keep_saved``
    (the C++ driver then also runs the sequence in chunks where its backend
    asks for it; the results are the same)."""
    T, B, I, G, H, P = _sizes(cell, x, h0, w_ih)
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
    # The saved values take the pre-activations' place where the steps allow
    # it (one T*B*G*H buffer fewer to allocate).
    saved = (xg if steps.saved_over_xg and cell.saved == cell.gates
             else x.new_empty(T, B, cell.saved * H, dtype=acc))
    cell_states = (x.new_empty(T, B, H, dtype=acc) if cell.has_c
          else x.new_empty(0, dtype=acc))
    cell_outputs = x.new_empty(T, B, H) if w_hr is not None else x.new_empty(0)
    c_state = c0.to(acc, copy=True) if cell.has_c else None
    h_state = [h0.contiguous().clone(), x.new_empty(B, P)]
    whole = _persistent(steps, "forward_seq") if w_hr is None else None
    ran = whole is not None and whole(cell, SeqForward(
        xg, h_state[0], w_hh, b_h, c_state, lengths, saved,
        cell_states if cell.has_c else None, y, h_state[1]))
    for s in range(0 if ran else T):
        h_in, h_next = h_state[s % 2], h_state[(s + 1) % 2]
        # Without a projection the step writes y and the next h itself; with
        # one it writes the cell output, and the projection follows here.
        proj = w_hr is not None
        steps.forward(cell, ForwardStep(
            s, xg[s], h_in, w_hh, b_h, c_state, lengths, saved[s],
            cell_states[s] if cell.has_c else None, cell_outputs[s] if proj else y[s],
            None if proj else h_next))
        if not proj:
            continue
        h_new = cell_outputs[s] @ w_hr.t()
        active = active_rows(lengths, s)
        if active is None:
            y[s].copy_(h_new)
            h_next.copy_(h_new)
        else:
            y[s].copy_(torch.where(active, h_new, 0))
            h_next.copy_(torch.where(active, h_new, h_in))
    c_n = c_state.to(x.dtype) if cell.has_c else x.new_empty(0)
    if not keep_saved:
        saved = x.new_empty(0, dtype=acc)
        cell_states = x.new_empty(0, dtype=acc)
        cell_outputs = x.new_empty(0)
    return y, h_state[1 if ran else T % 2], c_n, saved, cell_states, cell_outputs


def recurrent_seq_backward(cell: CellDesc, grad_y: Tensor, grad_h_n: Tensor,
                           grad_c_n: Optional[Tensor], x: Tensor, h0: Tensor,
                           c0: Optional[Tensor], w_ih: Tensor, w_hh: Tensor,
                           w_hr: Optional[Tensor], lengths: Optional[Tensor],
                           y: Tensor, saved: Tensor, cell_states: Tensor, cell_outputs: Tensor,
                           has_bias: bool, steps: SeqSteps):
    """Backward through time: returns (grad_x, grad_h0, grad_c0, grad_w_ih,
    grad_w_hh, grad_b_ih, grad_b_hh, grad_w_hr); absent ones are empty
    (grad_b_hh is given only where it differs from grad_b_ih: GRU)."""
    T, B, I, G, H, P = _sizes(cell, x, h0, w_ih)
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
        whole = _persistent(steps, "backward_seq")
        ran = whole is not None and whole(cell, SeqBackward(
            grad_y, w_hh, dh_carry, carry, saved,
            h_prev if cell.direct_h else None,
            c0_acc if cell.has_c else None,
            cell_states if cell.has_c else None, lengths, grad_xg, grad_hg))
        for s in reversed(range(0 if ran else T)):
            c_prev = (cell_states[s - 1] if s > 0 else c0_acc) if cell.has_c else None
            steps.backward(cell, BackwardStep(
                s, grad_hg[s + 1] if s + 1 < T else None, w_hh, dh_carry,
                grad_y[s], carry, saved[s],
                h_prev[s] if cell.direct_h else None, c_prev,
                cell_states[s] if cell.has_c else None, lengths, grad_xg[s],
                grad_hg[s]))
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
                active_next = active_rows(lengths, s + 1)
                dh_carry = (from_next if active_next is None
                            else torch.where(active_next, from_next, dh_carry))
            dh = grad_y[s].to(acc) + dh_carry
            active = active_rows(lengths, s)
            if active is not None:
                dh = torch.where(active, dh, 0)
            grad_h_all[s].copy_(dh)
            # The steps take dh in the storage dtype.
            steps.backward(cell, BackwardStep(
                s, None, None, None, (dh @ w_hr_acc).to(x.dtype), carry,
                saved[s], None, cell_states[s - 1] if s > 0 else c0_acc, cell_states[s],
                lengths, grad_xg[s], grad_xg[s]))
        grad_w_hr = (grad_h_all.reshape(T * B, P).t()
                     @ cell_outputs.reshape(T * B, H).to(acc)).to(x.dtype)
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


# ---------------------------------------------------------------------------
# The sequence ops (schemas in csrc/ops.cpp), on a backend's steps
# ---------------------------------------------------------------------------

def lstm_seq(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
             bias: Optional[Tensor], w_hr: Optional[Tensor],
             lengths: Optional[Tensor], keep_saved: bool = True, *,
             steps: SeqSteps):
    """Forward of ``lstm_seq``: returns (y, h_n, c_n, saved, cell_states, cell_outputs)."""
    return recurrent_seq_forward(cell_desc("lstm"), x, h0, c0, w_ih, w_hh,
                                 bias, None, w_hr, lengths, keep_saved, steps)


def lstm_seq_backward(grad_y: Tensor, grad_h_n: Tensor, grad_c_n: Tensor,
                      x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor,
                      w_hh: Tensor, w_hr: Optional[Tensor],
                      lengths: Optional[Tensor], y: Tensor, saved: Tensor,
                      cell_states: Tensor, cell_outputs: Tensor, has_bias: bool,
                      steps: SeqSteps):
    """Backward of ``lstm_seq``: returns (grad_x, grad_h0, grad_c0,
    grad_w_ih, grad_w_hh, grad_bias, grad_w_hr); absent ones are empty."""
    gx, gh0, gc0, gw_ih, gw_hh, gb, _, gw_hr = recurrent_seq_backward(
        cell_desc("lstm"), grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih,
        w_hh, w_hr, lengths, y, saved, cell_states, cell_outputs, has_bias, steps)
    return gx, gh0, gc0, gw_ih, gw_hh, gb, gw_hr


def gru_seq(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
            b_ih: Optional[Tensor], b_hh: Optional[Tensor],
            lengths: Optional[Tensor], keep_saved: bool = True, *,
            steps: SeqSteps):
    """Forward of ``gru_seq``: returns (y, h_n, saved)."""
    y, h_n, _, saved, _, _ = recurrent_seq_forward(
        cell_desc("gru"), x, h0, None, w_ih, w_hh, b_ih, b_hh, None, lengths,
        keep_saved, steps)
    return y, h_n, saved


def gru_seq_backward(grad_y: Tensor, grad_h_n: Tensor, x: Tensor,
                     h0: Tensor, w_ih: Tensor, w_hh: Tensor,
                     lengths: Optional[Tensor], y: Tensor, saved: Tensor,
                     has_bias: bool, steps: SeqSteps):
    """Backward of ``gru_seq``: returns (grad_x, grad_h0, grad_w_ih,
    grad_w_hh, grad_b_ih, grad_b_hh); the biases' are empty without
    ``has_bias``."""
    empty = x.new_empty(0)
    gx, gh0, _, gw_ih, gw_hh, gb_ih, gb_hh, _ = recurrent_seq_backward(
        cell_desc("gru"), grad_y, grad_h_n, None, x, h0, None, w_ih, w_hh,
        None, lengths, y, saved, empty, empty, has_bias, steps)
    return gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh


def rnn_seq(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor,
            bias: Optional[Tensor], lengths: Optional[Tensor],
            nonlinearity: str, keep_saved: bool = True, *,
            steps: SeqSteps):
    """Forward of ``rnn_seq``: returns (y, h_n, saved)."""
    y, h_n, _, saved, _, _ = recurrent_seq_forward(
        cell_desc("rnn", nonlinearity), x, h0, None, w_ih, w_hh, bias, None,
        None, lengths, keep_saved, steps)
    return y, h_n, saved


def rnn_seq_backward(grad_y: Tensor, grad_h_n: Tensor, x: Tensor,
                     h0: Tensor, w_ih: Tensor, w_hh: Tensor,
                     lengths: Optional[Tensor], y: Tensor, saved: Tensor,
                     has_bias: bool, nonlinearity: str, steps: SeqSteps):
    """Backward of ``rnn_seq``: returns (grad_x, grad_h0, grad_w_ih,
    grad_w_hh, grad_bias); the bias's is empty without ``has_bias``."""
    empty = x.new_empty(0)
    gx, gh0, _, gw_ih, gw_hh, gb, _, _ = recurrent_seq_backward(
        cell_desc("rnn", nonlinearity), grad_y, grad_h_n, None, x, h0, None,
        w_ih, w_hh, None, lengths, y, saved, empty, empty, has_bias, steps)
    return gx, gh0, gw_ih, gw_hh, gb
