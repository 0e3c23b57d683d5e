"""torch.export sees every op family: a model built on each is exported,
the exported program calls the family's registered op (not a decomposition
of it), and running the program gives the eager model's outputs."""

import pytest
import torch

import seqkernels


class Recurrent(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        out = self.layer(x)
        return out if isinstance(out, torch.Tensor) else out[0]


class Attention(torch.nn.Module):
    def __init__(self, attend):
        super().__init__()
        self.attend = attend

    def forward(self, q, k):
        return self.attend(q, k)


def _sdpa(q, k):
    return seqkernels.functional.scaled_dot_product_attention(
        q, k, k, is_causal=True)


def _scores(q, k):
    return seqkernels.functional.attention_scores(q, k)


def _additive():
    m = seqkernels.AdditiveAttention(4, 4, 6)
    return lambda q, k: m(q, k, need_weights=True)[0]


def _mha():
    m = seqkernels.MultiheadAttention(4, 2, batch_first=True)
    return lambda q, k: m(q, k, k, need_weights=True)[1]


# (op family, model, example inputs)
CASES = {
    "lstm_seq": lambda: (Recurrent(seqkernels.LSTM(3, 5, num_layers=2)),
                         (torch.randn(4, 2, 3),)),
    "gru_seq": lambda: (Recurrent(seqkernels.GRU(3, 5, bidirectional=True)),
                        (torch.randn(4, 2, 3),)),
    "rnn_seq": lambda: (Recurrent(seqkernels.RNN(3, 5)),
                        (torch.randn(4, 2, 3),)),
    "lstm_cell": lambda: (Recurrent(seqkernels.LSTMCell(3, 5)),
                          (torch.randn(2, 3),)),
    "gru_cell": lambda: (Recurrent(seqkernels.GRUCell(3, 5)),
                         (torch.randn(2, 3),)),
    "rnn_cell": lambda: (Recurrent(seqkernels.RNNCell(3, 5)),
                         (torch.randn(2, 3),)),
    "sdpa": lambda: (Attention(_sdpa), (torch.randn(2, 2, 5, 4),
                                        torch.randn(2, 2, 5, 4))),
    "attention_scores": lambda: (Attention(_scores),
                                 (torch.randn(2, 2, 5, 4),
                                  torch.randn(2, 2, 6, 4))),
    "additive_attention": lambda: (Attention(_additive()),
                                   (torch.randn(2, 3, 4),
                                    torch.randn(2, 5, 4))),
}


@pytest.mark.parametrize("family", list(CASES))
def test_exported_program_runs_the_op(family):
    torch.manual_seed(0)
    model, args = CASES[family]()
    eager = model(*args)
    exported = torch.export.export(model, args)
    called = {str(node.target) for node in exported.graph.nodes
              if node.op == "call_function"}
    assert f"seqkernels.{family}.default" in called, sorted(called)
    torch.testing.assert_close(exported.module()(*args), eager)


def test_exported_multihead_attention_weights():
    # MultiheadAttention's weights come from the attention_scores op.
    torch.manual_seed(0)
    model = Attention(_mha())
    args = (torch.randn(2, 5, 4), torch.randn(2, 6, 4))
    exported = torch.export.export(model, args)
    called = {str(node.target) for node in exported.graph.nodes}
    assert "seqkernels.attention_scores.default" in called, sorted(called)
    torch.testing.assert_close(exported.module()(*args), model(*args))
