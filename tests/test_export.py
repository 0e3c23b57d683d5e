"""torch.export sees every op family: a model built on each is exported,
the exported program calls the family's registered op (not a decomposition
of it), and running the program gives the eager model's outputs. Exported
with dynamic batch and sequence sizes, saved and loaded, the program runs
other sizes than those it was traced with and gives the eager model's
outputs and gradients (the fake functions hold for symbolic shapes, the
serializer takes the ops' schemas, autograd reaches the ops' backward)."""

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


def _sdpa(q, k):
    return seqkernels.functional.scaled_dot_product_attention(
        q, k, k, is_causal=True)


# name -> (model, the op it must call, the inputs' shapes). A letter is a
# dynamic size (T, S: query and key steps, B: batch), a number a static one.
CASES = {
    "lstm_seq": (lambda: Recurrent(seqkernels.LSTM(3, 5, num_layers=2)),
                 "lstm_seq", [("T", "B", 3)]),
    "gru_seq": (lambda: Recurrent(seqkernels.GRU(3, 5, bidirectional=True)),
                "gru_seq", [("T", "B", 3)]),
    "rnn_seq": (lambda: Recurrent(seqkernels.RNN(3, 5)), "rnn_seq",
                [("T", "B", 3)]),
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

# The sizes traced, and other sizes the dynamic program runs (distinct from
# each other and above 1, so that none is specialized).
TRACED = dict(T=5, S=6, B=3)
OTHER = dict(T=7, S=4, B=2)
DIMS = {name: torch.export.Dim(name) for name in TRACED}


def _inputs(shapes, sizes):
    return tuple(torch.randn([sizes.get(d, d) for d in shape])
                 for shape in shapes)


def _calls(exported):
    return {str(node.target) for node in exported.graph.nodes
            if node.op == "call_function"}


@pytest.mark.parametrize("case", list(CASES))
def test_exported_program_runs_the_op(case):
    torch.manual_seed(seed())
    make, op, shapes = CASES[case]
    model, args = make(), _inputs(shapes, TRACED)
    exported = torch.export.export(model, args)
    assert f"seqkernels.{op}.default" in _calls(exported), \
        sorted(_calls(exported))
    torch.testing.assert_close(exported.module()(*args), model(*args))


def _outputs_and_gradients(module, args, cotangents):
    args = [a.clone().requires_grad_() for a in args]
    params = dict(module.named_parameters())
    outs = module(*args)
    loss = sum((o * c).sum() for o, c in zip(outs, cotangents))
    grads = torch.autograd.grad(loss, args + list(params.values()))
    return outs, dict(zip([f"input {i}" for i in range(len(args))]
                          + list(params), grads))


@pytest.mark.parametrize("case", list(CASES))
def test_dynamic_export_saved_and_loaded_runs_other_sizes(case):
    torch.manual_seed(seed())
    make, op, shapes = CASES[case]
    model = make()
    dynamic = [{i: DIMS[d] for i, d in enumerate(shape)
                if isinstance(d, str)} for shape in shapes]
    exported = torch.export.export(model, _inputs(shapes, TRACED),
                                   dynamic_shapes=dynamic)
    buffer = io.BytesIO()
    torch.export.save(exported, buffer)
    buffer.seek(0)
    loaded = torch.export.load(buffer)
    assert f"seqkernels.{op}.default" in _calls(loaded), sorted(_calls(loaded))
    args = _inputs(shapes, OTHER)
    cotangents = [torch.randn(o.shape) for o in model(*args)]
    eager_outs, eager_grads = _outputs_and_gradients(model, args, cotangents)
    outs, grads = _outputs_and_gradients(loaded.module(), args, cotangents)
    torch.testing.assert_close(outs, eager_outs)
    torch.testing.assert_close(grads, eager_grads)
