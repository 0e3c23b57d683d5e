"""The persistent Triton recurrence: one launch runs a whole layer's
recurrence (every step), forward or backward, for every cell of
``cell_math.py``.

The Triton twin of ``csrc/include/seqkernels/persistent_recurrence.h``
(same ownership, flag protocol and backward partial sums). The sequence
driver (``seqkernels.sequence_driver``) hands it a layer without a
projection as :class:`~seqkernels.sequence_driver.SeqForward` /
``SeqBackward`` when ``SEQKERNELS_RECURRENCE=persistent``;
:func:`forward_seq` and :func:`backward_seq` run it where
:func:`persistent_plan` says the kernel serves the shape and otherwise
return False (nothing written), and the per-step kernels of
``recurrent.py`` run instead. The results are the per-step kernels' (the
contract of ``SeqSteps`` in ``csrc/include/seqkernels/recurrent_host.h``)
up to the order of float additions in the recurrent products.

Work split. Program p owns the hidden units ``[p*U, p*U + U)`` (U =
``BLOCK_U``) and all G gates of them, so the cell math, the cell state and
the carries stay in the program (in registers, for the whole sequence). It
loads its rows of W_hh (rows ``g*H + u``) once, before the step loop, as
one loop-invariant tile per gate (which the compiler keeps in shared memory
for the tensor-core products of the 16-bit dtypes, in registers for
float32), and multiplies with ``tl.dot`` (float32 accumulation) every
step. It also owns every batch row (B <= MAX_BATCH).

Forward step t: load the step's input side ``xg[t]`` of the program's
units, wait until every program has published h_t (flag of program q >=
t), read all of h_t ``[B, H]`` from the exchange buffer ``t % 2``, form
``a_g = h_t @ W_g^T`` (+ b_hh) for the program's units, run the cell, write
the saved values, c, y, and this program's slice of h_{t+1} into buffer
``(t + 1) % 2``, then publish flag = t + 1. h_0 is copied into buffer 0 by
the host.

Backward step s (time reversed): wait until every program has published its
partial of step s + 1, sum the partials for the program's own units over
the producers 0, 1, ... in that order (deterministic: no float atomics),
taken where the row is active at s + 1 (else the carried dh stays), as the
per-step kernel does; then the pointwise backward of the program's units
(gate gradients to grad_xg / grad_hg, the LSTM's dc and the GRU's direct dh
carried in registers), and the program's partial of dh_{s-1}: ``part[b,
k] = sum over its rows r of grad_hg[b, r] * W[r, k]`` for every k, to a
ping-pong buffer ``[2, programs, B, H]`` and a flag. Step 0 forms no
partial: h0's gradient is a GEMM in the driver.

Products: the forward's in the storage dtype with float32 accumulation
(float32: exact products, ``input_precision="ieee"``, as the per-step
kernels). The backward's operands are the float32 gate gradients: with
float16 or bfloat16 weights (exact in tf32) they run on tensor cores with
the gradients split in two tf32 terms (about 21 bits kept, as the CUDA twin
does); with float32 weights as exact float32 products (``_mac_rows``).

Steps at or after the longest length have no active row: they write zeros
and do no product and no exchange (every program computes the same longest
length, so none waits for a flag that will not come).

The flags protocol and its memory ordering are at ``_publish`` and
``_wait_all``. A program that waits for others needs them all resident at
once: at most one program per SM (``persistent_plan``), and every wait is
bounded (``SPIN_LIMIT`` polls): a wait that gives up records the step in a
status word, which the host turns into an error instead of a hang. Under
the interpreter programs run one after another, so there a single program
owns every unit, and with one program the kernels skip the wait (the same
code otherwise).
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

from seqkernels._common import device_guard, next_pow2
from seqkernels.cell_table import CellDesc
from seqkernels.sequence_driver import SeqBackward, SeqForward

from .cell_math import (GRU, LSTM, RNN, cell_backward, cell_forward,
                        load_gates, num_sms, store_gates)

# The plan's rule (persistent_plan):
# batch rows a program holds (it owns every row).
MAX_BATCH = 64
# Per storage dtype: the bytes of W_hh rows a program keeps for the whole
# sequence, and the elements of a step's [B, K] tiles (h_t; the backward's
# partial). Set from what triton 3.9 compiles for sm_90 with at most a few
# hundred bytes of spills (scripts/triton_aot_check.py; triton 3.6 spills up
# to 1.5 KB at B = 64): the 16-bit dtypes' W rows live in shared memory
# (tensor-core operands), float32's in registers (exact float32 products run
# on the CUDA cores). A first rule, to be tuned on a GPU.
BUDGETS = {torch.float16: (128 * 1024, 16384),
           torch.bfloat16: (128 * 1024, 16384),
           torch.float32: (64 * 1024, 4096)}
# Polls of the flags before a wait gives up: at roughly a microsecond per L2
# round trip, seconds, far beyond any step's wait in a healthy launch.
SPIN_LIMIT = 1 << 22
# tl.dot needs every tile dimension >= 16.
_MIN_TILE = 16
# The forward product's K chunk (_gate_product).
_K_CHUNK = 64
_NUM_WARPS = 8


# ---------------------------------------------------------------------------
# Device code
# ---------------------------------------------------------------------------

@triton.jit
def _publish(flags_ptr, value):
    """Tells every program that this one's results of a step are written:
    flag[pid] = ``value`` with release semantics.

    Memory ordering: this program's stores of the step (h slice or partial)
    are made by all of its threads; the barrier orders them before the flag
    store, which one thread performs with release semantics at GPU scope.
    Release is cumulative: it orders everything the releasing thread has
    observed, the other threads' stores included through the barrier, so a
    program that observes the flag with acquire semantics sees them all.
    With one program the barrier alone orders the step's stores before the
    next step's loads by other threads of the program."""
    tl.debug_barrier()
    tl.atomic_xchg(flags_ptr + tl.program_id(0), value, sem="release")


@triton.jit
def _min_flag(flags, target, ACQUIRE: tl.constexpr,
              NUM_PROGRAMS: tl.constexpr, BLOCK_P: tl.constexpr):
    """The smallest flag of the programs (``target`` where there is none):
    plain volatile reads, or acquire reads (an atomic add of 0: triton 3.6
    has no atomic load)."""
    rp = tl.arange(0, BLOCK_P)
    mp = rp < NUM_PROGRAMS
    if ACQUIRE:
        seen = tl.atomic_add(flags + rp, 0, mask=mp, sem="acquire")
    else:
        seen = tl.load(flags + rp, mask=mp, other=0, volatile=True)
    return tl.min(tl.where(mp, seen, target), axis=0)


@triton.jit
def _wait_all(flags_ptr, target, spin_limit, NUM_PROGRAMS: tl.constexpr,
              BLOCK_P: tl.constexpr):
    """Spins until every program's flag is >= ``target``, at most
    ``spin_limit`` polls; returns whether they all got there.

    Memory ordering: the polls are volatile reads (no atomic traffic while
    waiting); once they have seen every flag at ``target``, one acquire read
    of every flag synchronizes with the releases (``_publish``) that wrote
    the values seen or later ones, since flags only grow within a launch
    (zeroed by the host before it): a flag >= target means step ``target -
    1`` of that program, and every earlier one, is published. The barrier
    after it orders the acquiring threads' reads before every thread's
    loads of the published data, which go to L2 (``.cg``), so no stale L1
    line is read."""
    seen = _min_flag(flags_ptr, target, False, NUM_PROGRAMS, BLOCK_P)
    polls = 1
    while (seen < target) & (polls < spin_limit):
        seen = _min_flag(flags_ptr, target, False, NUM_PROGRAMS, BLOCK_P)
        polls += 1
    seen = _min_flag(flags_ptr, target, True, NUM_PROGRAMS, BLOCK_P)
    tl.debug_barrier()
    return seen >= target


@triton.jit
def _wait_step(flags_ptr, status, target, step, spin_limit,
               NUM_PROGRAMS: tl.constexpr, BLOCK_P: tl.constexpr):
    """The wait of one step: returns the program's status, 0 or (once a wait
    gave up) 1 + the first step whose wait gave up. After a wait that gave
    up the program stops waiting (target 0 holds at once), so a launch
    whose programs are not all resident ends, with its status set, instead
    of hanging; its results are then garbage and the host raises."""
    ok = _wait_all(flags_ptr, tl.where(status == 0, target, 0), spin_limit,
                   NUM_PROGRAMS, BLOCK_P)
    return tl.where(ok, status, step + 1)


@triton.jit
def _lengths(len_ptr, rb, mb, T, HAS_LENGTHS: tl.constexpr):
    """Each row's length, at most T (T without lengths), and the longest
    one: steps from there on have no active row."""
    if HAS_LENGTHS:
        length = tl.load(len_ptr + rb, mask=mb, other=0).to(tl.int32)
        length = tl.minimum(length, T)
    else:
        length = tl.where(mb, T, 0)
    return length, tl.max(length, axis=0)


@triton.jit
def _gate_rows(w_ptrs, w_mask, H, G: tl.constexpr):
    """The resident W_hh tiles of the G gates (gate g's rows start g*H*H
    elements after gate 0's), loaded once before the step loop; the gates a
    cell lacks repeat gate 0's tile and are never used."""
    gate = H * H
    w0 = tl.load(w_ptrs, mask=w_mask, other=0.0)
    w1 = w0
    w2 = w0
    w3 = w0
    if G > 1:
        w1 = tl.load(w_ptrs + gate, mask=w_mask, other=0.0)
    if G > 2:
        w2 = tl.load(w_ptrs + 2 * gate, mask=w_mask, other=0.0)
    if G > 3:
        w3 = tl.load(w_ptrs + 3 * gate, mask=w_mask, other=0.0)
    return w0, w1, w2, w3


@triton.jit
def _gate_product(h, w):
    """h_t @ W_g^T for the program's units from K chunks h [NK, B, KC] and
    w [NK, KC, U]: float32 accumulation (exact products for float32), the
    chunks' partial products summed by a reduction of fixed shape."""
    return tl.sum(tl.dot(h, w, input_precision="ieee"), axis=0)


@triton.jit
def _persistent_fwd(
        xg_ptr, w_ptr, b_hh_ptr, c_state_ptr, len_ptr, saved_ptr, cs_ptr,
        y_ptr, h_n_ptr, exchange_ptr, flags_ptr, status_ptr,
        T, B, H, spin_limit,
        CELL: tl.constexpr, ACT: tl.constexpr, G: tl.constexpr,
        S: tl.constexpr, HAS_BH: tl.constexpr, HAS_LENGTHS: tl.constexpr,
        NUM_PROGRAMS: tl.constexpr, BLOCK_P: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_U: tl.constexpr,
        BLOCK_K: tl.constexpr, BLOCK_KC: tl.constexpr):
    """The forward recurrence (module docstring). Shapes as SeqForward:
    xg [T, B, G*H] f32, w [G*H, H], b_hh [G*H], c_state [B, H] f32 in
    place, lengths [B] i64, saved [T, B, S*H] f32, cs [T, B, H] f32, y
    [T, B, H], h_n [B, H], exchange [2, B, H] (buffer 0 holds h0), flags and
    status [NUM_PROGRAMS] i32 (zero); all contiguous."""
    ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    rb = tl.arange(0, BLOCK_B)
    ru = pid * BLOCK_U + tl.arange(0, BLOCK_U)
    mb = rb < B
    mu = ru < H
    mask = mb[:, None] & mu[None, :]
    bu = rb[:, None] * H + ru[None, :]  # (b, u) in a [B, H] tensor
    GH = G * H

    # The resident rows of W_hh, one tile per gate, the K range in NK chunks
    # of BLOCK_KC: w_g[n, kc, u] = w_hh[g*H + u, n*BLOCK_KC + kc], zero
    # outside H. The product is a batched tl.dot over the chunks, which
    # spreads K over the warps: as one [B, K] x [K, U] product each warp
    # would hold operands along all of K, a register tile growing with H
    # (it spills from H = 1024 on, scripts/triton_aot_check.py).
    NK: tl.constexpr = BLOCK_K // BLOCK_KC
    k3 = (tl.arange(0, NK)[:, None, None] * BLOCK_KC
          + tl.arange(0, BLOCK_KC)[None, :, None])  # [NK, KC, 1]
    w_ptrs = w_ptr + ru[None, None, :] * H + k3
    w_mask = (k3 < H) & mu[None, None, :]
    w0, w1, w2, w3 = _gate_rows(w_ptrs, w_mask, H, G)
    if HAS_BH:  # the GRU's (G == 3)
        b0 = tl.load(b_hh_ptr + ru, mask=mu, other=0.0).to(ACC)
        b1 = tl.load(b_hh_ptr + H + ru, mask=mu, other=0.0).to(ACC)
        b2 = tl.load(b_hh_ptr + 2 * H + ru, mask=mu, other=0.0).to(ACC)

    # The program's slice of the state, carried in registers: h in the
    # storage dtype (as the per-step kernels hand it on), c in float32.
    h_own = tl.load(exchange_ptr + bu, mask=mask, other=0.0)
    if CELL == LSTM:
        c = tl.load(c_state_ptr + bu, mask=mask, other=0.0)
    else:
        c = h_own.to(ACC)
    length, t_end = _lengths(len_ptr, rb, mb, T, HAS_LENGTHS)
    status = pid * 0  # an int32 zero
    zero = tl.zeros((BLOCK_B, BLOCK_U), ACC)
    # h_t as [NK, B, KC] chunks: (n, b, kc) is h[b, n*BLOCK_KC + kc].
    kh = (tl.arange(0, NK)[:, None, None] * BLOCK_KC
          + tl.arange(0, BLOCK_KC)[None, None, :])  # [NK, 1, KC]
    h_rows = rb[None, :, None] * H + kh
    h_mask = mb[None, :, None] & (kh < H)
    BH = B * H

    for t in range(t_end):
        t64 = tl.cast(t, tl.int64)
        # The input side first: its loads overlap the wait.
        x0, x1, x2, x3 = load_gates(xg_ptr + t64 * B * GH + rb[:, None] * GH
                                    + ru[None, :], H, mask, G, ACC)
        if NUM_PROGRAMS > 1:
            status = _wait_step(flags_ptr, status, t, t, spin_limit,
                                NUM_PROGRAMS, BLOCK_P)
        h_t = tl.load(exchange_ptr + (t % 2) * BH + h_rows, mask=h_mask,
                      other=0.0, cache_modifier=".cg")
        a0 = _gate_product(h_t, w0)
        a1 = a0
        a2 = a0
        a3 = a0
        if G > 1:
            a1 = _gate_product(h_t, w1)
        if G > 2:
            a2 = _gate_product(h_t, w2)
        if G > 3:
            a3 = _gate_product(h_t, w3)
        if HAS_BH:
            a0 += b0[None, :]
            a1 += b1[None, :]
            a2 += b2[None, :]
        sv0, sv1, sv2, sv3, c_new, h_new = cell_forward(
            x0, x1, x2, x3, a0, a1, a2, a3, h_own.to(ACC), c, CELL, ACT)
        on = (length > t)[:, None] & mask
        store_gates(saved_ptr + t64 * B * S * H + rb[:, None] * (S * H)
                    + ru[None, :], H, mask, tl.where(on, sv0, zero),
                    tl.where(on, sv1, zero), tl.where(on, sv2, zero),
                    tl.where(on, sv3, zero), S)
        if CELL == LSTM:
            tl.store(cs_ptr + t64 * BH + bu, tl.where(on, c_new, zero),
                     mask=mask)
            c = tl.where(on, c_new, c)  # moves on in active rows only
        tl.store(y_ptr + t64 * BH + bu,
                 tl.where(on, h_new, zero).to(y_ptr.dtype.element_ty),
                 mask=mask)
        h_own = tl.where(on, h_new.to(h_own.dtype), h_own)
        tl.store(exchange_ptr + ((t + 1) % 2) * BH + bu, h_own, mask=mask)
        _publish(flags_ptr, t + 1)

    for t in range(t_end, T):  # no active row: zeros; h and c stay
        t64 = tl.cast(t, tl.int64)
        store_gates(saved_ptr + t64 * B * S * H + rb[:, None] * (S * H)
                    + ru[None, :], H, mask, zero, zero, zero, zero, S)
        if CELL == LSTM:
            tl.store(cs_ptr + t64 * BH + bu, zero, mask=mask)
        tl.store(y_ptr + t64 * BH + bu, zero.to(y_ptr.dtype.element_ty),
                 mask=mask)
    tl.store(h_n_ptr + bu, h_own, mask=mask)
    if CELL == LSTM:
        tl.store(c_state_ptr + bu, c, mask=mask)
    if NUM_PROGRAMS > 1:
        tl.store(status_ptr + pid, status)


@triton.jit
def _mac_rows(d, w, acc, SPLIT: tl.constexpr):
    """acc + d @ w for float32 gate gradients d [B, U] and W rows w [U, K].
    SPLIT (w exact in tf32: float16 or bfloat16 storage): on tensor cores,
    d as two tf32 terms, hi (d with its low 13 mantissa bits cleared) and
    lo = d - hi (exact), so the product keeps about 21 bits of d; else
    exact float32 products."""
    w = w.to(tl.float32)
    if SPLIT:
        hi = (d.to(tl.int32, bitcast=True) & -8192).to(tl.float32,
                                                       bitcast=True)
        acc = tl.dot(hi, w, acc, input_precision="tf32")
        acc = tl.dot(d - hi, w, acc, input_precision="tf32")
    else:
        acc = tl.dot(d, w, acc, input_precision="ieee")
    return acc


@triton.jit
def _persistent_bwd(
        grad_y_ptr, w_ptr, dh_carry_ptr, carry_ptr, saved_ptr, h_prev_ptr,
        c0_ptr, cs_ptr, len_ptr, gx_ptr, gh_ptr, partials_ptr, flags_ptr,
        status_ptr,
        T, B, H, spin_limit,
        CELL: tl.constexpr, ACT: tl.constexpr, G: tl.constexpr,
        S: tl.constexpr, HAS_LENGTHS: tl.constexpr,
        NUM_PROGRAMS: tl.constexpr, BLOCK_P: tl.constexpr,
        BLOCK_B: tl.constexpr, BLOCK_U: tl.constexpr,
        BLOCK_K: tl.constexpr, SPLIT: tl.constexpr):
    """The backward recurrence (module docstring). Shapes as SeqBackward:
    grad_y [T, B, H], w [G*H, H], dh_carry [B, H] f32 in place, carry
    [B, H] f32 in place (LSTM, GRU), saved [T, B, S*H] f32, h_prev
    [T, B, H] (GRU), c0 [B, H] f32 and cs [T, B, H] f32 (LSTM), lengths [B]
    i64, grad_xg and grad_hg [T, B, G*H] f32 (grad_hg: GRU), partials [2,
    NUM_PROGRAMS, B, H] f32, flags and status [NUM_PROGRAMS] i32 (zero);
    all contiguous."""
    ACC: tl.constexpr = tl.float32
    pid = tl.program_id(0)
    rb = tl.arange(0, BLOCK_B)
    ru = pid * BLOCK_U + tl.arange(0, BLOCK_U)
    rk = tl.arange(0, BLOCK_K)
    mb = rb < B
    mu = ru < H
    mask = mb[:, None] & mu[None, :]
    bu = rb[:, None] * H + ru[None, :]
    GH = G * H
    BH = B * H

    # The resident rows of W_hh, one [U, K] tile per gate:
    # w_g[u, k] = w_hh[g*H + u, k], zero outside H.
    w_ptrs = w_ptr + ru[:, None] * H + rk[None, :]
    w_mask = mu[:, None] & (rk < H)[None, :]
    w0, w1, w2, w3 = _gate_rows(w_ptrs, w_mask, H, G)

    # The carried gradients of the program's units, in registers: dh from
    # later steps, and the pointwise carry (LSTM: dc; GRU: the direct dh).
    dh_own = tl.load(dh_carry_ptr + bu, mask=mask, other=0.0)
    if CELL != RNN:
        carry = tl.load(carry_ptr + bu, mask=mask, other=0.0)
    else:
        carry = dh_own
    length, t_end = _lengths(len_ptr, rb, mb, T, HAS_LENGTHS)
    status = pid * 0  # an int32 zero
    part_rows = rb[:, None] * H + rk[None, :]  # (b, k) in a [B, H] tensor
    part_mask = mb[:, None] & (rk < H)[None, :]
    zero = tl.zeros((BLOCK_B, BLOCK_U), ACC)

    for i in range(T - t_end):  # no active row: zero gradients
        s64 = tl.cast(T - 1 - i, tl.int64)
        gates = gx_ptr + s64 * B * GH + rb[:, None] * GH + ru[None, :]
        store_gates(gates, H, mask, zero, zero, zero, zero, G)
        if CELL == GRU:
            store_gates(gh_ptr + s64 * B * GH + rb[:, None] * GH
                        + ru[None, :], H, mask, zero, zero, zero, zero, G)

    for i in range(t_end):
        s = t_end - 1 - i
        s64 = tl.cast(s, tl.int64)
        # dh from step s + 1: the partials that program q published with
        # flag t_end - 1 - s, summed over q = 0, 1, ... in that order; none
        # at the last active step, where no row is active at s + 1.
        if NUM_PROGRAMS > 1:
            status = _wait_step(flags_ptr, status, i, s, spin_limit,
                                NUM_PROGRAMS, BLOCK_P)
        take = (length > s + 1)[:, None] & mask
        parts = (partials_ptr + ((s + 1) % 2) * NUM_PROGRAMS * BH) + bu
        from_next = zero
        for q in range(NUM_PROGRAMS):
            from_next += tl.load(parts + q * BH, mask=take, other=0.0,
                                 cache_modifier=".cg")
        if CELL == GRU:  # ... plus the pointwise path h' = (1 - z) n + z h
            from_next += carry
        dh_own = tl.where(take, from_next, dh_own)

        dh = tl.load(grad_y_ptr + s64 * BH + bu, mask=mask,
                     other=0.0).to(ACC) + dh_own
        sv0, sv1, sv2, sv3 = load_gates(
            saved_ptr + s64 * B * S * H + rb[:, None] * (S * H)
            + ru[None, :], H, mask, S, ACC)
        if CELL == LSTM:
            c_now = tl.load(cs_ptr + s64 * BH + bu, mask=mask, other=0.0)
            if s > 0:
                c_prev = tl.load(cs_ptr + (s64 - 1) * BH + bu, mask=mask,
                                 other=0.0)
            else:
                c_prev = tl.load(c0_ptr + bu, mask=mask, other=0.0)
        else:
            c_now = dh
            c_prev = dh
        if CELL == GRU:
            h_prev = tl.load(h_prev_ptr + s64 * BH + bu, mask=mask,
                             other=0.0).to(ACC)
        else:
            h_prev = dh
        d0, d1, d2, d3, dhn, carry_out = cell_backward(
            sv0, sv1, sv2, sv3, h_prev, c_prev, c_now, dh, carry, CELL, ACT)
        on = (length > s)[:, None] & mask
        d0 = tl.where(on, d0, zero)
        d1 = tl.where(on, d1, zero)
        d2 = tl.where(on, d2, zero)
        d3 = tl.where(on, d3, zero)
        dhn = tl.where(on, dhn, zero)
        store_gates(gx_ptr + s64 * B * GH + rb[:, None] * GH + ru[None, :],
                    H, mask, d0, d1, d2, d3, G)
        # The recurrent side's gradients: they differ from the input
        # side's in the GRU's n gate only.
        if CELL == GRU:
            r2 = dhn
            store_gates(gh_ptr + s64 * B * GH + rb[:, None] * GH
                        + ru[None, :], H, mask, d0, d1, r2, d3, G)
        else:
            r2 = d2
        if CELL != RNN:  # moves on in active rows only
            carry = tl.where(on, carry_out, carry)

        if s > 0:
            # This program's partial of dh_{s-1} over its rows: the
            # recurrent-side gate gradients times its W rows, every k.
            part = _mac_rows(d0, w0, tl.zeros((BLOCK_B, BLOCK_K), ACC),
                             SPLIT)
            if G > 1:
                part = _mac_rows(d1, w1, part, SPLIT)
            if G > 2:
                part = _mac_rows(r2, w2, part, SPLIT)
            if G > 3:
                part = _mac_rows(d3, w3, part, SPLIT)
            tl.store(partials_ptr + ((s % 2) * NUM_PROGRAMS + pid) * BH
                     + part_rows, part, mask=part_mask)
            _publish(flags_ptr, i + 1)

    tl.store(dh_carry_ptr + bu, dh_own, mask=mask)
    if CELL != RNN:
        tl.store(carry_ptr + bu, carry, mask=mask)
    if NUM_PROGRAMS > 1:
        tl.store(status_ptr + pid, status)


# ---------------------------------------------------------------------------
# The plan: when the kernel serves a shape
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PersistentPlan:
    """Whether the persistent kernels serve a layer, and how: ``programs``
    programs of ``units`` hidden units each (a power of two >= 16; the last
    program may own fewer). ``reason`` says why or why not."""

    serves: bool
    reason: str
    programs: int = 0
    units: int = 0


def persistent_plan(cell: CellDesc, T: int, B: int, H: int,
                    dtype: torch.dtype, device: torch.device
                    ) -> PersistentPlan:
    """The rule of when the persistent kernels serve a layer of T steps, B
    rows and H units (no projection) in ``dtype`` on ``device``:

    * dtype float16, bfloat16 or float32, whose products are tl.dot with
      float32 accumulation (module docstring). float64 is declined (no
      tl.dot for it on every GPU target); so is bfloat16 under the
      interpreter, whose tl.dot is wrong for it;
    * a non-empty layer with B <= MAX_BATCH (a program holds every row);
    * units: on a GPU the fewest per program (a power of two >= 16) that
      keep the programs at most the SM count, one program per SM, since all
      must be resident at once; under the interpreter, where programs run
      one after another, one program owns every unit;
    * the dtype's BUDGETS: a program's rows of W_hh, G * units * K elements
      of the storage dtype, and the step's tile, B * K elements, with B and
      K = H rounded up to powers of two >= 16.
    """
    def no(reason):
        return PersistentPlan(False, reason)

    if dtype not in BUDGETS:
        return no(f"{dtype}: the persistent kernel runs float16, bfloat16 "
                  "and float32")
    gpu = device.type == "cuda"
    if dtype == torch.bfloat16 and not gpu:
        return no("bfloat16 under the interpreter (its tl.dot is wrong)")
    if T == 0 or B == 0 or H == 0:
        return no("an empty layer")
    if B > MAX_BATCH:
        return no(f"B = {B} > {MAX_BATCH} rows in a program")
    width = max(_MIN_TILE, next_pow2(H))
    if gpu:
        sms = num_sms(device)
        units = _MIN_TILE
        while triton.cdiv(H, units) > sms:
            units *= 2
    else:
        units = width
    resident_limit, tile_limit = BUDGETS[dtype]
    resident = cell.gates * units * width * dtype.itemsize
    if resident > resident_limit:
        return no(f"W_hh rows of a program ({resident // 1024} KiB) exceed "
                  f"{resident_limit // 1024} KiB")
    tile = max(_MIN_TILE, next_pow2(B)) * width
    if tile > tile_limit:
        return no(f"a step's [B, H] tile ({tile} elements) exceeds "
                  f"{tile_limit}")
    programs = triton.cdiv(H, units)
    return PersistentPlan(True, f"{programs} programs of {units} units",
                          programs, units)


# ---------------------------------------------------------------------------
# Launchers
# ---------------------------------------------------------------------------

def _sync_words(programs: int, device: torch.device) -> Tensor:
    """flags and status, one int32 per program each, zero: flags only grow
    within a launch, so each launch takes fresh ones."""
    return torch.zeros(2, programs, dtype=torch.int32, device=device)


def _check_status(status: Tensor, which: str) -> None:
    """Raises where a program's wait gave up (its status word is 1 + the
    step). Reading the words waits for the launch, so only launches with
    waits (more than one program) are checked."""
    if status.numel() == 1:
        return
    failed = status.nonzero().flatten().tolist()
    if failed:
        where = [(p, s - 1) for p, s in
                 zip(failed, status[failed].tolist(), strict=True)]
        raise RuntimeError(
            f"seqkernels: the persistent {which} recurrence gave up waiting "
            f"for other programs at (program, step) {where}: were all "
            f"{status.numel()} programs resident at once?")


def _read(t: Tensor, stand_in: Tensor) -> Tensor:
    """A tensor the kernel reads, contiguous; an absent one is ``stand_in``,
    which the kernel never touches (its constexpr is off)."""
    return stand_in if t is None else t.contiguous()


def _written(stand_in: Tensor, **tensors: Tensor) -> list:
    """Tensors the kernel writes, which the caller reads back: they must be
    contiguous already (the driver allocates them); absent ones as in
    :func:`_read`."""
    for name, t in tensors.items():
        if t is not None and not t.is_contiguous():
            raise ValueError(f"seqkernels: persistent recurrence: {name} "
                             "must be contiguous")
    return [stand_in if t is None else t for t in tensors.values()]


def _blocks(plan: PersistentPlan, B: int, H: int) -> dict:
    """The launch's constexprs and options. One stage: a software-pipelined
    step loop would issue a step's loads of h (partials) ahead of the wait
    that makes them valid."""
    return {"NUM_PROGRAMS": plan.programs,
            "BLOCK_P": next_pow2(plan.programs),
            "BLOCK_B": max(_MIN_TILE, next_pow2(B)), "BLOCK_U": plan.units,
            "BLOCK_K": max(_MIN_TILE, next_pow2(H)), "num_warps": _NUM_WARPS,
            "num_stages": 1}


def run_forward(cell: CellDesc, seq: SeqForward, plan: PersistentPlan
                ) -> None:
    """Runs the forward recurrence of ``seq`` by ``plan`` (one that
    serves), writing every output of SeqForward."""
    T, B, GH = seq.xg.shape
    H = GH // cell.gates
    exchange = seq.h0.new_empty(2, B, H)
    exchange[0].copy_(seq.h0)
    words = _sync_words(plan.programs, seq.xg.device)
    x = seq.xg
    c_state, = _written(x, c_state=seq.c_state)
    outputs = _written(x, saved=seq.saved, cell_states=seq.cell_states,
                       y=seq.y, h_n=seq.h_n)
    with device_guard(seq.xg):
        _persistent_fwd[(plan.programs,)](
            _read(seq.xg, x), _read(seq.w_hh, x), _read(seq.b_hh, x),
            c_state, _read(seq.lengths, x), *outputs, exchange, words[0],
            words[1], T, B, H, SPIN_LIMIT,
            CELL=cell.kind_id, ACT=cell.act_id, G=cell.gates, S=cell.saved,
            HAS_BH=seq.b_hh is not None,
            HAS_LENGTHS=seq.lengths is not None, **_blocks(plan, B, H),
            BLOCK_KC=min(_K_CHUNK, max(_MIN_TILE, next_pow2(H))))
    _check_status(words[1], "forward")


def run_backward(cell: CellDesc, seq: SeqBackward, plan: PersistentPlan
                 ) -> None:
    """Runs the backward recurrence of ``seq`` by ``plan`` (one that
    serves), writing every output of SeqBackward."""
    T, B, GH = seq.grad_xg.shape
    H = GH // cell.gates
    partials = seq.dh_carry.new_empty(2, plan.programs, B, H)
    words = _sync_words(plan.programs, seq.grad_xg.device)
    d = seq.dh_carry
    carries = _written(d, dh_carry=seq.dh_carry, carry=seq.carry)
    grads = _written(d, grad_xg=seq.grad_xg, grad_hg=seq.grad_hg)
    with device_guard(seq.grad_xg):
        _persistent_bwd[(plan.programs,)](
            _read(seq.grad_y, d), _read(seq.w_hh, d), *carries,
            _read(seq.saved, d), _read(seq.h_prev, d), _read(seq.c0, d),
            _read(seq.cell_states, d), _read(seq.lengths, d), *grads,
            partials, words[0], words[1],
            T, B, H, SPIN_LIMIT,
            CELL=cell.kind_id, ACT=cell.act_id, G=cell.gates, S=cell.saved,
            HAS_LENGTHS=seq.lengths is not None, **_blocks(plan, B, H),
            SPLIT=seq.w_hh.dtype in (torch.float16, torch.bfloat16))
    _check_status(words[1], "backward")


def forward_seq(cell: CellDesc, seq: SeqForward) -> bool:
    """The driver's whole-recurrence forward: runs it and returns True
    where :func:`persistent_plan` serves the layer, else returns False
    having written nothing."""
    T, B, _ = seq.xg.shape
    H = seq.h0.shape[1]
    plan = persistent_plan(cell, T, B, H, seq.h0.dtype, seq.h0.device)
    if plan.serves:
        run_forward(cell, seq, plan)
    return plan.serves


def backward_seq(cell: CellDesc, seq: SeqBackward) -> bool:
    """The driver's whole-recurrence backward; as :func:`forward_seq`. The
    plan is the forward's (same shape, dtype and device)."""
    T, B, H = seq.grad_y.shape
    plan = persistent_plan(cell, T, B, H, seq.grad_y.dtype,
                           seq.grad_y.device)
    if plan.serves:
        run_backward(cell, seq, plan)
    return plan.serves
