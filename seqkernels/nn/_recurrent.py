"""What the recurrent modules share: the torch.nn forward contract (batched
and unbatched input, optional initial states, PackedSequence in and out,
sorted or not) around a functional stack, and the same for the cells.
"""

from typing import Callable, Optional, Union

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, \
    pad_packed_sequence

# (input [T,B,I] or batch first, states or None, lengths or None,
#  batch_first) -> (output, final states [L*D, B, *])
StackFn = Callable[[Tensor, Optional[tuple[Tensor, ...]], Optional[Tensor],
                    bool], tuple[Tensor, tuple[Tensor, ...]]]


class RecurrentBase(torch.nn.RNNBase):
    """torch.nn.RNNBase with seqkernels' forward; the subclasses (LSTM,
    GRU, RNN) give the mode and run their functional stack.

    Subclassing RNNBase, exactly as torch.nn.LSTM/GRU/RNN do, keeps torch's
    constructor, parameter names, state_dict and initialization. (Not the
    torch classes themselves: torch.compile refuses to trace instances of
    torch.nn.LSTM, GRU and RNN.)
    """

    def _layer_weights(self) -> list[tuple]:
        """Per layer and direction, in torch's order: ``(w_ih, w_hh, b_ih,
        b_hh)``, and ``w_hr`` fifth for the LSTM; None where absent."""
        weights = []
        for layer in range(self.num_layers):
            for suffix in ("", "_reverse")[: 2 if self.bidirectional else 1]:
                s = f"_l{layer}{suffix}"
                w = (getattr(self, "weight_ih" + s),
                     getattr(self, "weight_hh" + s),
                     getattr(self, "bias_ih" + s) if self.bias else None,
                     getattr(self, "bias_hh" + s) if self.bias else None)
                if self.mode == "LSTM":
                    w += (getattr(self, "weight_hr" + s)
                          if self.proj_size > 0 else None,)
                weights.append(w)
        return weights

    def _run(self, input: Union[Tensor, PackedSequence],
             hx: Optional[tuple[Tensor, ...]], stack: StackFn):
        """The torch.nn forward contract around ``stack``: returns the
        output (a PackedSequence for packed input) and the final states."""
        name = f"seqkernels.{type(self).__name__}"
        packed = isinstance(input, PackedSequence)
        lengths = None
        batch_first = self.batch_first
        if packed:
            packed_input = input
            # Padded in the caller's batch order: hx, given in that order as
            # torch.nn expects, needs no permutation here.
            input, lengths = pad_packed_sequence(packed_input)
            batch_first = False
        elif input.dim() not in (2, 3):
            raise ValueError(
                f"{name}: input must be 2-D (unbatched) or 3-D, got shape "
                f"{tuple(input.shape)}")
        unbatched = not packed and input.dim() == 2
        if unbatched:
            input = input.unsqueeze(1)
            batch_first = False
            if hx is not None:
                if any(t.dim() != 2 for t in hx):
                    shapes = " and ".join(str(tuple(t.shape)) for t in hx)
                    raise ValueError(
                        f"{name}: for unbatched input, hx must hold 2-D "
                        f"tensors, got shapes {shapes}")
                hx = tuple(t.unsqueeze(1) for t in hx)
        out, states = stack(input, hx, lengths, batch_first)
        if packed:
            order = packed_input.sorted_indices
            if order is not None:
                # lengths (from pad_packed_sequence) live on the CPU, the
                # permutation on the data's device.
                out = out.index_select(1, order)
                lengths = lengths[order.cpu()]
            data = pack_padded_sequence(out, lengths).data
            out = PackedSequence(data, packed_input.batch_sizes,
                                 packed_input.sorted_indices,
                                 packed_input.unsorted_indices)
        elif unbatched:
            out = out.squeeze(1)
            states = tuple(t.squeeze(1) for t in states)
        return out, states


def run_cell(name: str, input: Tensor, hx: Optional[tuple[Tensor, ...]],
             step: Callable[[Tensor, Optional[tuple[Tensor, ...]]],
                            tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """The torch.nn cell contract (batched [B, I] or unbatched [I] input,
    optional states) around ``step`` (batched input and states -> new
    states)."""
    if input.dim() not in (1, 2):
        raise ValueError(
            f"{name}: input must be 1-D (unbatched) or 2-D, got shape "
            f"{tuple(input.shape)}")
    unbatched = input.dim() == 1
    if unbatched:
        input = input.unsqueeze(0)
        if hx is not None:
            hx = tuple(t.unsqueeze(0) for t in hx)
    out = step(input, hx)
    return tuple(t.squeeze(0) for t in out) if unbatched else out
