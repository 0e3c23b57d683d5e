"""Runs one LSTM configuration three ways (float64 torch reference, torch in
the test dtype, seqkernels in the test dtype) and checks outputs, final
states and every gradient with the tolerance rule."""

import torch
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import assert_matches


def _clone_module(cls, src, dtype, device, **extra):
    m = cls(**extra).to(device=device, dtype=dtype)
    m.load_state_dict(src.state_dict())
    return m


def compare_lstm(backend, device, dtype, ctor, *, T, B, lengths=None,
                 enforce_sorted=True, unbatched=False, with_hx=False,
                 seed=0):
    """``ctor``: torch.nn.LSTM keyword arguments. ``lengths``: pack the input
    (padded [T, B]) with these lengths."""
    torch.manual_seed(seed)
    ref = torch.nn.LSTM(**ctor, dtype=torch.float64)
    # Spread the weights a little wider than the default init so that gates
    # saturate sometimes and errors are not all at the rounding floor.
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(2.0)
    import seqkernels
    tor = _clone_module(torch.nn.LSTM, ref, dtype, device, **ctor)
    ours = _clone_module(seqkernels.LSTM, ref, dtype, device, **ctor,
                         backend=backend)
    ref, tor, ours = ref.eval(), tor.eval(), ours.eval()

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
        hshape = (L * D, P) if unbatched else (L * D, B, P)
        cshape = (L * D, H) if unbatched else (L * D, B, H)
        hx64 = (torch.randn(hshape, dtype=torch.float64),
                torch.randn(cshape, dtype=torch.float64))

    def run(model, dt, dev):
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
        out, (h, c) = model(inp, hx)
        out_t = out.data if lengths is not None else out
        gen = torch.Generator().manual_seed(seed + 1)
        grads_out = [torch.randn(t.shape, generator=gen, dtype=torch.float64)
                     .to(dev, dt) for t in (out_t, h, c)]
        loss = sum((t * g).sum() for t, g in zip((out_t, h, c), grads_out))
        params = list(model.parameters())
        grads = torch.autograd.grad(loss, leaves + params)
        names = ["grad input"] + [f"grad hx[{i}]" for i in range(len(leaves) - 1)]
        names += [f"grad {n}" for n, _ in model.named_parameters()]
        return [("output", out_t), ("h_n", h), ("c_n", c)] + list(zip(names, grads))

    r64 = run(ref, torch.float64, torch.device("cpu"))
    rd = run(tor, dtype, device)
    rs = run(ours, dtype, device)
    long = T >= 256
    for (name, ref_t), (_, tor_t), (_, our_t) in zip(r64, rd, rs):
        assert_matches(name, our_t, tor_t, ref_t, dtype, long=long)
