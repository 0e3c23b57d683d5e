"""Functional API: the recurrent stacks and cells
(:mod:`seqkernels.functional.recurrent`) and attention
(:mod:`seqkernels.functional.attention`), each over the ops' faces in
``seqkernels.ops``.
"""

from .attention import (additive_attention, attention_scores,
                        scaled_dot_product_attention)
from .recurrent import (CellWeights, LayerWeights, gru, gru_cell, lstm,
                        lstm_cell, reverse_padded, rnn, rnn_cell)

__all__ = ["lstm", "gru", "rnn", "lstm_cell", "gru_cell", "rnn_cell",
           "reverse_padded", "LayerWeights", "CellWeights",
           "scaled_dot_product_attention", "attention_scores",
           "additive_attention"]
