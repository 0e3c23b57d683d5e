"""The cell table: what the sequence machinery and the kernels know of each
recurrent cell, declared once for Python.

Its C++ twin is the traits structs (``LstmCell``, ``GruCell``, ``RnnCell``)
of ``csrc/include/seqkernels/cell_math.h``, read at run time through
``CellDesc`` in ``csrc/include/seqkernels/recurrent_host.h``;
``tests/test_sequence_driver.py`` checks that the two tables agree, field by
field. The cell's pointwise math is not here: it lives with each backend
(``seqkernels/reference/*_cell.py``, ``triton_kernels/cell_math.py``,
``cell_math.h``).
"""

from dataclasses import dataclass, replace

# Index = the value of the C++ enums CellKind and Activation (recurrent_host.h,
# cell_math.h); the Triton kernels take the same numbers as constexprs.
CELL_KINDS = ("lstm", "gru", "rnn")
NONLINEARITIES = ("tanh", "relu", "identity")


@dataclass(frozen=True)
class CellDesc:
    """One cell's traits, and the RNN's nonlinearity.

    ``gates``: blocks of H rows in ``w_ih`` and ``w_hh`` (G). ``saved``:
    values per hidden unit and step saved for the backward (S), in the
    accumulation dtype. ``has_c``: a cell state c besides h. ``split_grad``:
    the input-side and recurrent-side pre-activations get different
    gradients (GRU: ``n = tanh(xn + r * hn)``). ``direct_h``: h' depends on
    h pointwise, not only through ``w_hh`` (GRU: ``h' = (1 - z) n + z h``).
    ``act``: the nonlinearity (the RNN's choice; "tanh" for the others).
    """

    kind: str
    gates: int
    saved: int
    has_c: bool
    split_grad: bool
    direct_h: bool
    act: str = "tanh"

    @property
    def kind_id(self) -> int:
        return CELL_KINDS.index(self.kind)

    @property
    def act_id(self) -> int:
        return NONLINEARITIES.index(self.act)


CELLS = {
    "lstm": CellDesc("lstm", gates=4, saved=4, has_c=True, split_grad=False,
                     direct_h=False),
    "gru": CellDesc("gru", gates=3, saved=4, has_c=False, split_grad=True,
                    direct_h=True),
    "rnn": CellDesc("rnn", gates=1, saved=1, has_c=False, split_grad=False,
                    direct_h=False),
}


def check_nonlinearity(nonlinearity: str) -> None:
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(
            f"seqkernels: nonlinearity must be 'tanh', 'relu' or 'identity', "
            f"got {nonlinearity!r}")


def cell_desc(kind: str, nonlinearity: str = "tanh") -> CellDesc:
    """The traits of ``kind`` ("lstm", "gru", "rnn") with ``nonlinearity``
    (the RNN's; "tanh", "relu" or "identity")."""
    check_nonlinearity(nonlinearity)
    return replace(CELLS[kind], act=nonlinearity)
