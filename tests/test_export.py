"""torch.export and torch.compile see every op family: a model built on
each is exported, the exported program calls the family's registered op (not
a decomposition of it), and running the program gives the eager model's
outputs. Exported with dynamic batch and sequence sizes, saved and loaded,
the program runs other sizes than those it was traced with and gives the
eager model's outputs and gradients (the fake functions hold for symbolic
shapes, the serializer takes the ops' schemas, autograd reaches the ops'
backward); so does one graph of torch.compile(dynamic=True). Variable
lengths, which tracing cannot read, are checked when the program runs."""

import io

import pytest
import torch

import seqkernels
from conftest import seed


def _flat(out):
    # A module's outputs as a flat tuple of tensors ((y, (h, c)) -> y, h, c);
    # None (MultiheadAttention's weights when not asked for) left out.
    items = out if isinstance(out, tuple) else (out,)
    return tuple(t for item in items
                 for t in (item if isinstance(item, tuple) else (item,))
                 if t is not None)


class Recurrent(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return _flat(self.layer(x))


class Attend(torch.nn.Module):
    """Attention of queries ``q`` over keys ``k`` (which are the values
    too): a seqkernels module with its keyword arguments, or a function."""

    def __init__(self, attention, **kwargs):
        super().__init__()
        self.attention, self.kwargs = attention, kwargs

    def forward(self, q, k):
        if isinstance(self.attention, seqkernels.MultiheadAttention):
            return _flat(self.attention(q, k, k, **self.kwargs))
        return _flat(self.attention(q, k, **self.kwargs))


class WithLengths(torch.nn.Module):
    """A bidirectional LSTM over a padded batch of variable lengths."""

    def __init__(self):
        super().__init__()
        self.lstm = seqkernels.LSTM(3, 5, bidirectional=True)

    def forward(self, x, lengths):
        weights = [tuple(getattr(self.lstm, f"{name}_l0{suffix}")
                         for name in ("weight_ih", "weight_hh", "bias_ih",
                                      "bias_hh")) + (None,)
                   for suffix in ("", "_reverse")]
        return _flat(seqkernels.functional.lstm(
            x, None, weights, num_layers=1, bidirectional=True,
            lengths=lengths))


def _sdpa(q, k):
    return seqkernels.functional.scaled_dot_product_attention(
        q, k, k, is_causal=True)


# An input of int64 lengths, one per batch element, each in [1, T].
LENGTHS = "lengths"

# name -> (model, the op it must call, its inputs: LENGTHS, or the shape of
# a float tensor, where a letter is a dynamic size (T, S: query and key
# steps, B: batch) and a number a static one).
CASES = {
    "lstm_seq": (lambda: Recurrent(seqkernels.LSTM(3, 5, num_layers=2)),
                 "lstm_seq", [("T", "B", 3)]),
    "gru_seq": (lambda: Recurrent(seqkernels.GRU(3, 5, bidirectional=True)),
                "gru_seq", [("T", "B", 3)]),
    "rnn_seq": (lambda: Recurrent(seqkernels.RNN(3, 5)), "rnn_seq",
                [("T", "B", 3)]),
    "lstm_seq_lengths": (WithLengths, "lstm_seq", [("T", "B", 3), LENGTHS]),
    "lstm_cell": (lambda: Recurrent(seqkernels.LSTMCell(3, 5)), "lstm_cell",
                  [("B", 3)]),
    "gru_cell": (lambda: Recurrent(seqkernels.GRUCell(3, 5)), "gru_cell",
                 [("B", 3)]),
    "rnn_cell": (lambda: Recurrent(seqkernels.RNNCell(3, 5)), "rnn_cell",
                 [("B", 3)]),
    "sdpa": (lambda: Attend(_sdpa), "sdpa", [("B", 2, "T", 4)] * 2),
    "attention_scores": (
        lambda: Attend(seqkernels.functional.attention_scores),
        "attention_scores", [("B", 2, "T", 4), ("B", 2, "S", 4)]),
    "additive_attention": (
        lambda: Attend(seqkernels.AdditiveAttention(4, 4, 6),
                       need_weights=True),
        "additive_attention", [("B", "T", 4), ("B", "S", 4)]),
    "multihead_attention": (
        lambda: Attend(seqkernels.MultiheadAttention(4, 2, batch_first=True),
                       need_weights=False),
        "sdpa", [("B", "T", 4), ("B", "S", 4)]),
    # MultiheadAttention's weights come from the attention_scores op.
    "multihead_attention_weights": (
        lambda: Attend(seqkernels.MultiheadAttention(4, 2, batch_first=True),
                       need_weights=True),
        "attention_scores", [("B", "T", 4), ("B", "S", 4)]),
}

# The sizes traced, and other sizes the dynamic program runs. The traced
# ones are above 1 and differ from each other and from every static size,
# so that none is specialized (torch.compile takes equal sizes for one).
TRACED = dict(T=7, S=9, B=8)
OTHER = dict(T=10, S=4, B=2)
DIMS = {name: torch.export.Dim(name) for name in TRACED}


def _shape(spec):
    return ("B",) if spec == LENGTHS else spec


def _inputs(specs, sizes):
    return tuple(torch.randint(1, sizes["T"] + 1, (sizes["B"],))
                 if spec == LENGTHS
                 else torch.randn([sizes.get(d, d) for d in spec])
                 for spec in specs)


def _dynamic(specs):
    return [{i: DIMS[d] for i, d in enumerate(_shape(spec))
             if isinstance(d, str)} for spec in specs]


def _calls(exported):
    return {str(node.target) for node in exported.graph.nodes
            if node.op == "call_function"}


@pytest.mark.parametrize("case", list(CASES))
def test_exported_program_runs_the_op(case):
    torch.manual_seed(seed())
    make, op, specs = CASES[case]
    model, args = make(), _inputs(specs, TRACED)
    exported = torch.export.export(model, args)
    assert f"seqkernels.{op}.default" in _calls(exported), \
        sorted(_calls(exported))
    torch.testing.assert_close(exported.module()(*args), model(*args))


def _outputs_and_gradients(run, params, args, cotangents):
    # run(*args), and the gradients of its outputs' dot product with
    # cotangents, by floating input ("input i") and by parameter name.
    args = [a.clone().requires_grad_() if a.is_floating_point() else a
            for a in args]
    outs = run(*args)
    loss = sum((o * c).sum() for o, c in zip(outs, cotangents))
    leaves = {f"input {i}": a for i, a in enumerate(args) if a.requires_grad}
    leaves.update(params)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return outs, dict(zip(leaves, grads))


def _against_eager(model, run, params, args):
    cotangents = [torch.randn(o.shape) for o in model(*args)]
    outs, grads = _outputs_and_gradients(run, params, args, cotangents)
    eager_outs, eager_grads = _outputs_and_gradients(
        model, dict(model.named_parameters()), args, cotangents)
    torch.testing.assert_close(outs, eager_outs)
    torch.testing.assert_close(grads, eager_grads)


def _dynamic_export_saved_and_loaded(case):
    make, op, specs = CASES[case]
    model = make()
    exported = torch.export.export(model, _inputs(specs, TRACED),
                                   dynamic_shapes=_dynamic(specs))
    buffer = io.BytesIO()
    torch.export.save(exported, buffer)
    buffer.seek(0)
    loaded = torch.export.load(buffer)
    assert f"seqkernels.{op}.default" in _calls(loaded), sorted(_calls(loaded))
    return model, loaded.module()


@pytest.mark.parametrize("case", list(CASES))
def test_dynamic_export_saved_and_loaded_runs_other_sizes(case):
    torch.manual_seed(seed())
    model, program = _dynamic_export_saved_and_loaded(case)
    _against_eager(model, program, dict(program.named_parameters()),
                   _inputs(CASES[case][2], OTHER))


def test_exported_program_checks_the_lengths():
    # Lengths are checked when the program runs: tracing did not see them.
    # Eager code checks them before the op, naming the padded length.
    torch.manual_seed(seed())
    model, program = _dynamic_export_saved_and_loaded("lstm_seq_lengths")
    x, lengths = _inputs(CASES["lstm_seq_lengths"][2], OTHER)
    T = OTHER["T"]
    too_long = lengths.index_fill(0, torch.tensor([0]), T + 1)
    with pytest.raises(RuntimeError, match=r"length must be in \[1, T\]"):
        program(x, too_long)
    with pytest.raises(ValueError, match=rf"length must be in \[1, {T}\]"):
        model(x, too_long)


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_with_dynamic_sizes_runs_other_sizes(case):
    # One graph (fullgraph) serves the traced and the other sizes: the
    # second call may not recompile.
    torch._dynamo.reset()  # the cases share the forward code objects
    torch.manual_seed(seed())
    make, _, specs = CASES[case]
    model = make()
    compiled = torch.compile(model, fullgraph=True, dynamic=True,
                             backend="aot_eager")
    params = dict(model.named_parameters())
    _against_eager(model, compiled, params, _inputs(specs, TRACED))
    with torch.compiler.set_stance("fail_on_recompile"):
        _against_eager(model, compiled, params, _inputs(specs, OTHER))
