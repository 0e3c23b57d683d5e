"""The cases of the persistent recurrence kernels' tests, and the check
they share: one sequence op, forward then backward, run by a given pair of
functions in a low-precision dtype, held by the tolerance rule to the float64
reference, with the reference backend in the same dtype as the rule's
"torch in dtype d". Used by the host emulation's tests
(test_persistent_emulation.py) and the GPU's (test_persistent_cuda.py)."""

import math

import pytest
import torch
from conftest import assert_all_match

from seqkernels.cell_table import CELLS
from seqkernels.functional import reverse_padded
from seqkernels.ops._variants import FAMILIES

# (T, B, I, H, lengths). With the emulated device's 3 SMs every one splits
# H over 2 or 3 blocks, the last one owning fewer units; "wide" splits the
# forward product's K range over warps; "batch17" needs two batch tiles;
# "short" ends every row before T (steps without an active row).
SHAPES = {
    "odd": (5, 3, 4, 20, None),
    "one_row": (4, 1, 3, 12, None),
    "one_step": (1, 2, 3, 20, None),
    "lengths": (6, 4, 3, 20, [6, 2, 1, 4]),
    "short": (5, 3, 2, 20, [3, 1, 2]),
    "wide": (3, 2, 5, 40, None),
    "batch17": (3, 17, 3, 20, [3, 1, 2, 3, 3, 1, 2, 2, 3, 1, 1, 3, 2, 2, 3, 1, 3]),
}

# Where the plan keeps W_hh in registers or not (make_layout; with the
# emulated device's 3 SMs, H = 80: 5 k tiles). "deep": every cell's both
# products in registers; the rnn forward's K range split 4 ways over 5 k
# steps, the last range empty. "deep17" (two batch tiles): lstm in shared
# memory in both products (the forward has more items than warps, the
# backward 28 fragments per warp); gru's forward in shared memory, its
# backward in registers at the bound (24: two items per warp, 12 k steps);
# rnn's both in registers, the backward two items per warp.
REGISTER_SHAPES = {
    "deep": (3, 3, 3, 80, None),
    "deep17": (3, 17, 2, 80, [3, 1, 2, 3, 3, 1, 2, 2, 3, 1, 1, 3, 2, 2, 3,
                              1, 3]),
}

# The CPU kernel's own (test_persistent_cpu.py): "chunks" runs the products
# over equal chunks of k (H = 136: two or three) and of n (4H = 544), with a
# last block of 8 units; "many_rows" over groups of rows (B = 130: three
# groups of at most 64) ending in partial register blocks; "row_split" has
# so few blocks of units (H = 64) that 2 threads split the rows, one task
# ending in a block of one row, whose products split their sums over k.
CPU_SHAPES = {
    "chunks": (3, 45, 4, 136, None),
    "many_rows": (2, 130, 3, 20, [2] * 64 + [1] * 66),
    "row_split": (3, 13, 4, 64, None),
}

CELL_CASES = [("lstm_seq", None), ("gru_seq", None), ("rnn_seq", "tanh"),
              ("rnn_seq", "relu"), ("rnn_seq", "identity")]


def cases(dtypes, shapes=SHAPES):
    """pytest params (op, nonlinearity, shape, dtype, reverse)."""
    for op, act in CELL_CASES:
        for shape in shapes:
            for dtype in dtypes:
                for reverse in (False, True) if shape == "lengths" else (False,):
                    name = "-".join(filter(None, (
                        op, act, shape, str(dtype)[6:],
                        "reversed" if reverse else None)))
                    yield pytest.param(op, act, shape, dtype, reverse, id=name)


def inputs64(op, act, shape, reverse, seed=0):
    """The op's forward arguments in float64; weights scaled as torch
    initializes them (1/sqrt(H)), so that no cell saturates or explodes."""
    T, B, I, H, lengths = {**SHAPES, **REGISTER_SHAPES, **CPU_SHAPES}[shape]
    g = torch.Generator().manual_seed(seed)

    def r(*size, scale=1.0):
        return torch.randn(*size, generator=g, dtype=torch.float64) * scale

    G = CELLS[op.split("_")[0]].gates
    w = 1 / math.sqrt(H)
    lens = torch.tensor(lengths) if lengths else None
    x = r(T, B, I)
    if reverse:  # the input of a reversed direction, as functional gives it
        x = reverse_padded(x, lens)
    h0 = r(B, H, scale=0.5)
    w_ih, w_hh = r(G * H, I, scale=w), r(G * H, H, scale=w)
    if op == "lstm_seq":
        return (x, h0, r(B, H, scale=0.5), w_ih, w_hh, r(G * H, scale=w),
                None, lens)
    if op == "gru_seq":
        return (x, h0, w_ih, w_hh, r(G * H, scale=w), r(G * H, scale=w), lens)
    return (x, h0, w_ih, w_hh, r(G * H, scale=w), lens, act)


def _cast(args, dtype):
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor)
                 and a.is_floating_point() else a for a in args)


def backward_args(op, inputs, outputs, cotangents):
    """The backward op's arguments from the forward's inputs and outputs
    and the cotangents of the outputs the user sees."""
    if op == "lstm_seq":
        x, h0, c0, w_ih, w_hh, _, w_hr, lens = inputs
        y, _, _, saved, cell_states, cell_outputs = outputs
        return (*cotangents, x, h0, c0, w_ih, w_hh, w_hr, lens, y, saved,
                cell_states, cell_outputs, True)
    x, h0, w_ih, w_hh = inputs[:4]
    y, _, saved = outputs
    if op == "gru_seq":
        return (*cotangents, x, h0, w_ih, w_hh, inputs[6], y, saved, True)
    return (*cotangents, x, h0, w_ih, w_hh, inputs[5], y, saved, True,
            inputs[6])


def _on(args, device):
    return tuple(a.to(device) if isinstance(a, torch.Tensor) else a
                 for a in args)


def outputs_and_grads(op, act, shape, dtype, reverse, forward, backward,
                      device="cpu"):
    """The op's outputs, then its gradients for seeded cotangents of the
    outputs the user sees, from ``forward``/``backward`` on ``device`` in
    ``dtype`` (on the CPU)."""
    args = _on(_cast(inputs64(op, act, shape, reverse), dtype), device)
    out = forward(*args)
    g = torch.Generator().manual_seed(1)
    cot = [torch.randn(o.shape, generator=g).to(dtype).to(device)
           for o in out[:3 if op == "lstm_seq" else 2]]
    grads = backward(*backward_args(op, args, out, cot))
    return [o.cpu() for o in (*out, *grads)]


def assert_bit_for_bit(results, other):
    """Two outputs_and_grads results agree bit for bit (NaN where NaN)."""
    assert len(results) == len(other)
    for i, (a, b) in enumerate(zip(results, other)):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True,
                                   msg=lambda m, i=i: f"result {i}: {m}")


def check_op(op, act, shape, dtype, reverse, forward, backward,
             device="cpu"):
    """Runs ``forward``/``backward`` (op-shaped: the schema's arguments and
    results) on ``device`` in ``dtype`` and checks every output and
    gradient against the float64 reference with the tolerance rule."""
    family = FAMILIES[op]
    ref_fwd, ref_bwd = family.forward["reference"], family.backward["reference"]
    args64 = inputs64(op, act, shape, reverse)
    args_d = _cast(args64, dtype)
    out64 = ref_fwd(*args64)
    out_d = ref_fwd(*args_d)
    ours = [o.cpu() for o in forward(*_on(args_d, device))]
    # Cotangents of the outputs the user sees: y, h_n (and c_n).
    n_cot = 3 if op == "lstm_seq" else 2
    g = torch.Generator().manual_seed(1)
    cot64 = [torch.randn(o.shape, generator=g, dtype=torch.float64)
             for o in out64[:n_cot]]
    cot_d = [c.to(dtype) for c in cot64]
    grads64 = ref_bwd(*backward_args(op, args64, out64, cot64))
    grads_d = ref_bwd(*backward_args(op, args_d, out_d, cot_d))
    our_grads = backward(*_on(backward_args(
        op, args_d, _on(ours, device), cot_d), device))
    rows = [(f"{op} output {i}", o, t, r)
            for i, (o, t, r) in enumerate(zip(ours, out_d, out64))]
    rows += [(f"{op} grad {i}", o.cpu(), t, r)
             for i, (o, t, r) in enumerate(zip(our_grads, grads_d, grads64))]
    assert_all_match(rows, dtype)
