"""LSTM over a sequence in PyTorch, with the same forward/backward split as the
compiled kernels (csrc/lstm_seq_host.cpp); see that header for shapes.

The driver here (``forward``/``backward``) is the sequence machinery for the
Python backends: it takes the step functions as an argument, so the
``reference`` backend runs it with :class:`TorchSteps` and the ``triton``
backend with the Triton steps of ``seqkernels.triton_kernels.lstm_seq``.
Steps write their results into the tensors they are given.

Time runs forward; a row ``b`` is active at step ``s`` while
``s < lengths[b]``. Reversed directions are reversed by the caller.
"""

from typing import Optional, Protocol

import torch
from torch import Tensor

from .lstm_cell import acc_dtype, cell_backward, cell_forward


class LstmSeqSteps(Protocol):
    """The two per-step functions a backend provides (see lstm_seq_host.h)."""

    def forward(self, s: int, xg_s: Tensor, h_in: Tensor, w_hh: Tensor,
                c_state: Tensor, lengths: Optional[Tensor], gates_s: Tensor,
                cs_s: Tensor, out_s: Tensor, h_out: Optional[Tensor]) -> None: ...

    def backward(self, s: int, grad_gates_next: Optional[Tensor],
                 w_hh: Optional[Tensor], dh_carry: Optional[Tensor],
                 dh_in: Tensor, dc_carry: Tensor, gates_s: Tensor,
                 c_prev: Tensor, cs_s: Tensor, lengths: Optional[Tensor],
                 grad_gates_s: Tensor) -> None: ...


def _active(lengths: Optional[Tensor], s: int) -> Optional[Tensor]:
    return None if lengths is None else (lengths > s).unsqueeze(1)


class TorchSteps:
    """The steps in plain PyTorch: the oracle."""

    @staticmethod
    def forward(s, xg_s, h_in, w_hh, c_state, lengths, gates_s, cs_s, out_s,
                h_out):
        pre = torch.addmm(xg_s, h_in, w_hh.t()).to(c_state.dtype)
        gates, c, h = cell_forward(pre, c_state)
        active = _active(lengths, s)
        if h_out is not None:  # before h is masked: inactive rows keep h_in
            h_out.copy_(h if active is None
                        else torch.where(active, h.to(h_in.dtype), h_in))
        if active is not None:
            gates = torch.where(active, gates, 0)
            c_kept = torch.where(active, c, c_state)
            c = torch.where(active, c, 0)
            h = torch.where(active, h, 0)
        else:
            c_kept = c
        gates_s.copy_(gates)
        cs_s.copy_(c)
        c_state.copy_(c_kept)
        out_s.copy_(h)

    @staticmethod
    def backward(s, grad_gates_next, w_hh, dh_carry, dh_in, dc_carry, gates_s,
                 c_prev, cs_s, lengths, grad_gates_s):
        acc = dc_carry.dtype
        carry = torch.zeros((), dtype=acc, device=dc_carry.device)
        if w_hh is not None:
            carry = dh_carry
            if grad_gates_next is not None:
                from_next = (grad_gates_next @ w_hh).to(acc)
                next_active = _active(lengths, s + 1)
                carry = (from_next if next_active is None
                         else torch.where(next_active, from_next, dh_carry))
            dh_carry.copy_(carry)
        dpre, dc_prev = cell_backward(gates_s, c_prev, cs_s,
                                      dh_in.to(acc) + carry, dc_carry)
        active = _active(lengths, s)
        if active is not None:
            dpre = torch.where(active, dpre, 0)
            dc_prev = torch.where(active, dc_prev, dc_carry)
        grad_gates_s.copy_(dpre)
        dc_carry.copy_(dc_prev)


def forward(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
            bias: Optional[Tensor], w_hr: Optional[Tensor],
            lengths: Optional[Tensor], steps: LstmSeqSteps = TorchSteps):
    """Forward of ``lstm_seq``: returns (y, h_n, c_n, gates, cs, ms)."""
    T, B, I = x.shape
    H = w_ih.shape[0] // 4
    P = h0.shape[1]
    acc = acc_dtype(x.dtype)
    x = x.contiguous()
    w_hh = w_hh.contiguous()
    x2 = x.reshape(T * B, I)
    xg = (torch.addmm(bias, x2, w_ih.t()) if bias is not None
          else x2 @ w_ih.t()).view(T, B, 4 * H)
    y = x.new_empty(T, B, P)
    gates = x.new_empty(T, B, 4 * H, dtype=acc)
    cs = x.new_empty(T, B, H, dtype=acc)
    ms = x.new_empty(T, B, H) if w_hr is not None else x.new_empty(0)
    c_state = c0.to(acc, copy=True)
    h_state = [h0.contiguous().clone(), x.new_empty(B, P)]
    for s in range(T):
        h_in, h_next = h_state[s % 2], h_state[(s + 1) % 2]
        if w_hr is None:
            steps.forward(s, xg[s], h_in, w_hh, c_state, lengths, gates[s],
                          cs[s], y[s], h_next)
            continue
        steps.forward(s, xg[s], h_in, w_hh, c_state, lengths, gates[s], cs[s],
                      ms[s], None)
        h_new = ms[s] @ w_hr.t()
        active = _active(lengths, s)
        if active is None:
            y[s].copy_(h_new)
            h_next.copy_(h_new)
        else:
            y[s].copy_(torch.where(active, h_new, 0))
            h_next.copy_(torch.where(active, h_new, h_in))
    return y, h_state[T % 2], c_state.to(x.dtype), gates, cs, ms


def backward(grad_y: Tensor, grad_h_n: Tensor, grad_c_n: Tensor, x: Tensor,
             h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
             w_hr: Optional[Tensor], lengths: Optional[Tensor], y: Tensor,
             gates: Tensor, cs: Tensor, ms: Tensor, has_bias: bool,
             steps: LstmSeqSteps = TorchSteps):
    """Backward of ``lstm_seq``: returns (grad_x, grad_h0, grad_c0,
    grad_w_ih, grad_w_hh, grad_bias, grad_w_hr); absent ones are empty."""
    T, B, I = x.shape
    H = w_ih.shape[0] // 4
    P = h0.shape[1]
    acc = acc_dtype(x.dtype)
    x = x.contiguous()
    grad_y = grad_y.contiguous()
    w_hh = w_hh.contiguous()
    grad_gates = x.new_empty(T, B, 4 * H)
    dc_carry = grad_c_n.to(acc, copy=True)
    c0_acc = c0.to(acc)
    if w_hr is None:
        dh_carry = grad_h_n.to(acc, copy=True)
        for s in reversed(range(T)):
            nxt = grad_gates[s + 1] if s + 1 < T else None
            steps.backward(s, nxt, w_hh, dh_carry, grad_y[s], dc_carry,
                           gates[s], cs[s - 1] if s > 0 else c0_acc, cs[s],
                           lengths, grad_gates[s])
        grad_w_hr = x.new_empty(0)
    else:
        # The carried gradient lives in the projected (P-dim) space and
        # reaches the cell through w_hr, so the step runs without its GEMM.
        dh_carry = grad_h_n.clone()
        grad_h_all = x.new_empty(T, B, P)
        for s in reversed(range(T)):
            if s + 1 < T:
                from_next = grad_gates[s + 1] @ w_hh
                active_next = _active(lengths, s + 1)
                dh_carry = (from_next if active_next is None
                            else torch.where(active_next, from_next, dh_carry))
            dh = grad_y[s] + dh_carry
            active = _active(lengths, s)
            if active is not None:
                dh = torch.where(active, dh, 0)
            grad_h_all[s].copy_(dh)
            steps.backward(s, None, None, None, dh @ w_hr, dc_carry, gates[s],
                           cs[s - 1] if s > 0 else c0_acc, cs[s], lengths,
                           grad_gates[s])
        grad_w_hr = grad_h_all.reshape(T * B, P).t() @ ms.reshape(T * B, H)
    g2 = grad_gates.view(T * B, 4 * H)
    grad_h0 = grad_gates[0] @ w_hh  # every row is active at step 0
    grad_x = (g2 @ w_ih).view(T, B, I)
    grad_w_ih = g2.t() @ x.view(T * B, I)
    # Padded steps carry zero gate gradients, so the zeros y holds there
    # do not matter.
    h_prev = torch.cat([h0.unsqueeze(0), y[:-1]]).reshape(T * B, P)
    grad_w_hh = g2.t() @ h_prev
    grad_bias = g2.sum(0) if has_bias else x.new_empty(0)
    return (grad_x, grad_h0, dc_carry.to(x.dtype), grad_w_ih, grad_w_hh,
            grad_bias, grad_w_hr)
