"""Runs one recurrent configuration three ways (the float64 oracle, PyTorch's
own module in the test dtype, seqkernels in the test dtype) and checks the
output, the final states and every gradient with the tolerance rule. One
harness for LSTM, GRU and RNN (and the seqkernels-only identity RNN, whose
oracle is :class:`LinearRNN`)."""

import contextlib

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, \
    pad_packed_sequence

from conftest import assert_all_match, seed as test_seed


# The configurations every recurrent module runs, by name: (constructor
# arguments, run arguments of compare_recurrent). Each module's tests add
# their own (projections, batch-first packing).
CONFIGS = {
    "basic": (dict(input_size=5, hidden_size=7), dict(T=6, B=3)),
    "odd_sizes": (dict(input_size=13, hidden_size=59), dict(T=9, B=2)),
    "one_step_one_row": (dict(input_size=13, hidden_size=59), dict(T=1, B=1)),
    "two_layers_bidirectional": (
        dict(input_size=5, hidden_size=6, num_layers=2, bidirectional=True),
        dict(T=5, B=3)),
    "batch_first_with_hx": (
        dict(input_size=4, hidden_size=6, batch_first=True),
        dict(T=5, B=2, with_hx=True)),
    "no_bias": (dict(input_size=5, hidden_size=7, bias=False), dict(T=4, B=2)),
    "dropout_eval": (
        dict(input_size=5, hidden_size=6, num_layers=2, dropout=0.5),
        dict(T=4, B=2)),
    "packed_sorted": (
        dict(input_size=5, hidden_size=6, num_layers=2, bidirectional=True),
        dict(T=6, B=4, lengths=[6, 4, 3, 1], with_hx=True)),
    "unbatched": (dict(input_size=5, hidden_size=6, num_layers=2),
                  dict(T=5, B=1, unbatched=True, with_hx=True)),
}


def _clone_module(cls, src, dtype, device, **extra):
    m = cls(**extra).to(device=device, dtype=dtype)
    m.load_state_dict(src.state_dict())
    return m


class LinearRNN(torch.nn.RNNBase):
    """The identity RNN, h_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh, as an
    explicit loop of plain torch ops, one sequence at a time: the oracle of
    ``seqkernels.RNN(nonlinearity="identity")``. torch.nn.RNN's contract
    (layers, directions, batch_first, unbatched, hx, PackedSequence)."""

    def __init__(self, *args, nonlinearity="identity", **kwargs):
        assert nonlinearity == "identity"
        super().__init__("RNN_TANH", *args, **kwargs)

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        unbatched = not packed and input.dim() == 2
        if packed:
            x, lengths = pad_packed_sequence(input)
        else:
            x = input.unsqueeze(1) if input.dim() == 2 else input
            if self.batch_first and input.dim() == 3:
                x = x.transpose(0, 1)
            lengths = torch.full((x.shape[1],), x.shape[0])
        T, B, _ = x.shape
        D = 2 if self.bidirectional else 1
        H = self.hidden_size
        if hx is None:
            hx = x.new_zeros(self.num_layers * D, B, H)
        elif unbatched:
            hx = hx.unsqueeze(1)
        layer_in, h_n = x, []
        for layer in range(self.num_layers):
            outs = []
            for d in range(D):
                s = f"_l{layer}{'_reverse' if d else ''}"
                w_ih = getattr(self, "weight_ih" + s)
                w_hh = getattr(self, "weight_hh" + s)
                rows = []
                for b in range(B):
                    n = int(lengths[b])
                    h = hx[layer * D + d, b]
                    ys = [x.new_zeros(H)] * T
                    for t in (reversed(range(n)) if d else range(n)):
                        h = layer_in[t, b] @ w_ih.t() + h @ w_hh.t()
                        if self.bias:
                            h = h + getattr(self, "bias_ih" + s) \
                                + getattr(self, "bias_hh" + s)
                        ys[t] = h
                    rows.append(torch.stack(ys))
                    h_n.append(h)
                outs.append(torch.stack(rows, dim=1))
            layer_in = torch.cat(outs, dim=2)
        h_n = torch.stack(h_n).view(self.num_layers * D, B, H)
        out = layer_in
        if packed:
            order = input.sorted_indices
            if order is not None:
                out = out.index_select(1, order)
                lengths = lengths[order.cpu()]
            out = PackedSequence(pack_padded_sequence(out, lengths).data,
                                 input.batch_sizes, input.sorted_indices,
                                 input.unsorted_indices)
        elif unbatched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, h_n


def compare_recurrent(torch_cls, our_cls, backend, device, dtype, ctor, *,
                      T, B, lengths=None, enforce_sorted=True,
                      unbatched=False, with_hx=False, seed=None,
                      dropout_in_training=False, ours_context=None):
    """``torch_cls``: the oracle module class (torch.nn.LSTM, GRU, RNN or
    :class:`LinearRNN`), ``our_cls`` its seqkernels twin, ``ctor`` their
    keyword arguments. ``lengths``: pack the input (padded [T, B]) with
    these lengths. ``seed``: default the test seed (conftest.seed).

    A configuration with dropout is compared in eval mode unless
    ``dropout_in_training``: then all three run in training mode from the
    same torch seed, so they draw the same masks (torch's native RNN, on
    the CPU, and seqkernels both draw them with torch's dropout between
    layers, in layer order). ``ours_context``: a context manager that only
    the seqkernels run enters (a switch the oracles must not see)."""
    seed = test_seed() if seed is None else seed
    torch.manual_seed(seed)
    ref = torch_cls(**ctor, dtype=torch.float64)
    # Spread the weights a little wider than the default init so that gates
    # saturate sometimes and errors are not all at the rounding floor.
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(2.0)
    tor = _clone_module(torch_cls, ref, dtype, device, **ctor)
    ours = _clone_module(our_cls, ref, dtype, device, **ctor,
                         backend=backend)
    # Training mode, the mode the backward is meant for, except for a
    # configuration with dropout unless dropout_in_training (see above).
    # torch's run of a dropout configuration goes without cuDNN: cuDNN runs
    # no backward in eval mode, and draws its masks its own way.
    has_dropout = ctor.get("dropout", 0) > 0
    for m in (ref, tor, ours):
        m.train(dropout_in_training or not has_dropout)
    torch_flags = (torch.backends.cudnn.flags(
        enabled=False, allow_tf32=torch.backends.cudnn.allow_tf32)
        if has_dropout else contextlib.nullcontext())

    lstm = ref.mode == "LSTM"
    D = 2 if ctor.get("bidirectional") else 1
    L = ctor.get("num_layers", 1)
    H = ctor["hidden_size"]
    P = ctor.get("proj_size", 0) or H
    batch_first = ctor.get("batch_first", False)
    shape = [T, ctor["input_size"]] if unbatched else (
        [B, T, ctor["input_size"]] if batch_first else [T, B, ctor["input_size"]])
    x64 = torch.randn(shape, dtype=torch.float64)
    hx64 = None
    if with_hx:
        sizes = (P, H) if lstm else (H,)
        hx64 = tuple(torch.randn((L * D, n) if unbatched else (L * D, B, n),
                                 dtype=torch.float64) for n in sizes)

    def run(model, dt, dev):
        torch.manual_seed(seed + 2)  # the dropout masks
        x = x64.to(dev, dt).requires_grad_()
        hx = None
        leaves = [x]
        if hx64 is not None:
            hx = tuple(t.to(dev, dt).requires_grad_() for t in hx64)
            leaves += list(hx)
        inp = x
        if lengths is not None:
            inp = pack_padded_sequence(x, torch.as_tensor(lengths),
                                       batch_first=batch_first,
                                       enforce_sorted=enforce_sorted)
        out, states = model(inp, hx if lstm or hx is None else hx[0])
        states = states if lstm else (states,)
        out_t = out.data if lengths is not None else out
        results = (out_t, *states)
        gen = torch.Generator().manual_seed(seed + 1)
        grads_out = [torch.randn(t.shape, generator=gen, dtype=torch.float64)
                     .to(dev, dt) for t in results]
        loss = sum((t * g).sum() for t, g in zip(results, grads_out))
        params = list(model.parameters())
        grads = torch.autograd.grad(loss, leaves + params)
        names = ["grad input"] + [f"grad hx[{i}]" for i in range(len(leaves) - 1)]
        names += [f"grad {n}" for n, _ in model.named_parameters()]
        state_names = ["h_n", "c_n"][:len(states)]
        return [("output", out_t)] + list(zip(state_names, states)) \
            + list(zip(names, grads))

    r64 = run(ref, torch.float64, torch.device("cpu"))
    with torch_flags:
        rd = run(tor, dtype, device)
    with ours_context or contextlib.nullcontext():
        rs = run(ours, dtype, device)
    assert_all_match([(name, our_t, tor_t, ref_t) for (name, ref_t), (_, tor_t),
                      (_, our_t) in zip(r64, rd, rs)], dtype, long=T >= 256)
