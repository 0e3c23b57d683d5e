"""The two sequence drivers, C++ (csrc/recurrent_host.cpp, run by the cpu
backend) and Python (seqkernels/sequence_driver.py, run by the reference
backend), held to the same results: every output of every sequence op,
forward and backward, the saved tensors included, in float64 from the same
inputs. Both run the same algorithm, so they agree to float64 rounding; a
drift of either (a layout of the saved values, a bias or lengths rule) is
an O(1) difference. Also: the Python cell table agrees with the C++ one."""

import dataclasses

import pytest
import torch

from seqkernels import _C
from seqkernels.cell_table import CELL_KINDS, CELLS
from seqkernels.functional import reverse_padded
from seqkernels.ops._variants import FAMILIES

# (T, B, I, H, P, lengths): P is the LSTM's projection size (None: none).
SHAPES = {
    "plain": (5, 3, 4, 6, None, None),
    "lengths": (6, 4, 3, 5, None, [6, 2, 1, 4]),
    "projection": (4, 3, 3, 6, 4, [4, 1, 3]),
}


def _inputs(op, shape, bias, reverse, nonlinearity, seed=0):
    T, B, I, H, P, lengths = shape
    g = torch.Generator().manual_seed(seed)

    def r(*size):
        return torch.randn(*size, generator=g, dtype=torch.float64)

    G = CELLS[op.split("_")[0]].gates
    Pd = P or H
    lens = torch.tensor(lengths) if lengths else None
    x = r(T, B, I)
    if reverse:  # the input of a reversed direction, as functional gives it
        x = reverse_padded(x, lens)
    h0 = r(B, Pd)
    if op == "lstm_seq":
        return (x, h0, r(B, H), r(G * H, I), r(G * H, Pd),
                r(G * H) if bias else None, r(Pd, H) if P else None, lens)
    if op == "gru_seq":
        return (x, h0, r(G * H, I), r(G * H, H), r(G * H) if bias else None,
                r(G * H) if bias else None, lens)
    return (x, h0, r(G * H, I), r(G * H, H), r(G * H) if bias else None, lens,
            nonlinearity)


def _backward_args(op, inputs, outputs, bias, seed=1):
    g = torch.Generator().manual_seed(seed)

    def like(t):
        return torch.randn(t.shape, generator=g, dtype=t.dtype)

    if op == "lstm_seq":
        x, h0, c0, w_ih, w_hh, _, w_hr, lens = inputs
        y, h_n, c_n, saved, cell_states, cell_outputs = outputs
        return (like(y), like(h_n), like(c_n), x, h0, c0, w_ih, w_hh, w_hr,
                lens, y, saved, cell_states, cell_outputs, bias)
    x, h0, w_ih, w_hh = inputs[:4]
    y, h_n, saved = outputs
    if op == "gru_seq":
        return (like(y), like(h_n), x, h0, w_ih, w_hh, inputs[6], y, saved,
                bias)
    return (like(y), like(h_n), x, h0, w_ih, w_hh, inputs[5], y, saved, bias,
            inputs[6])


def _cases():
    for op in ("lstm_seq", "gru_seq", "rnn_seq"):
        for shape in SHAPES:
            if shape == "projection" and op != "lstm_seq":
                continue
            acts = ("tanh", "relu", "identity") if op == "rnn_seq" else ("",)
            for act in acts:
                for bias in (True, False):
                    for reverse in (False, True):
                        name = "-".join(filter(None, (
                            op, shape, act, "bias" if bias else "nobias",
                            "reversed" if reverse else "forward")))
                        yield pytest.param(op, shape, act, bias, reverse,
                                           id=name)


def _same(name, ours, theirs):
    # Either both absent (empty) or equal to float64 rounding of O(1)
    # values; the two GEMM implementations may sum in different orders.
    assert ours.shape == theirs.shape, f"{name}: shape {ours.shape} vs " \
        f"{theirs.shape}"
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12,
                               msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("op,shape,act,bias,reverse", list(_cases()))
def test_cpp_and_python_drivers_agree(op, shape, act, bias, reverse):
    inputs = _inputs(op, SHAPES[shape], bias, reverse, act or None)
    family = FAMILIES[op]
    cpp = family.forward["cpu"](*inputs)
    python = family.forward["reference"](*inputs)
    names = {"lstm_seq": ("y", "h_n", "c_n", "saved", "cell_states", "cell_outputs")}.get(
        op, ("y", "h_n", "saved"))
    for name, a, b in zip(names, cpp, python, strict=True):
        _same(f"{op} {name}", a, b)
    args = _backward_args(op, inputs, cpp, bias)
    cpp_grads = family.backward["cpu"](*args)
    python_grads = family.backward["reference"](*args)
    for i, (a, b) in enumerate(zip(cpp_grads, python_grads, strict=True)):
        _same(f"{op}_backward output {i}", a, b)


def test_cell_tables_agree():
    cpp = _C.cell_traits()
    assert sorted(cpp) == sorted(CELL_KINDS)
    for kind, cell in CELLS.items():
        python = dataclasses.asdict(cell)
        python.pop("kind")
        python.pop("act")
        python["kind_id"] = cell.kind_id
        assert python == cpp[kind], kind

