"""seqkernels.LSTMCell against torch.nn.LSTMCell (the torch fused cell)
holding the same weights, for every backend this machine runs."""

import pytest
import torch

import seqkernels
from conftest import assert_all_match, backend_params, seed
@pytest.mark.parametrize("backend,device,dtype,shape", backend_params(
    ("batched", "unbatched", "no_hx", "no_bias", "odd"), with_dtypes=True))
def test_lstm_cell_matches_torch(backend, device, dtype, shape):
    torch.manual_seed(seed())
    I, H, B = (13, 59, 3) if shape == "odd" else (5, 7, 4)
    bias = shape != "no_bias"
    ref = torch.nn.LSTMCell(I, H, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(2.0)
    tor = torch.nn.LSTMCell(I, H, bias=bias, device=device, dtype=dtype)
    ours = seqkernels.LSTMCell(I, H, bias=bias, device=device, dtype=dtype,
                               backend=backend)
    tor.load_state_dict(ref.state_dict())
    ours.load_state_dict(ref.state_dict())
    unbatched = shape == "unbatched"
    x64 = torch.randn((I,) if unbatched else (B, I), dtype=torch.float64)
    hshape = (H,) if unbatched else (B, H)
    hx64 = (None if shape == "no_hx" else
            (torch.randn(hshape, dtype=torch.float64),
             torch.randn(hshape, dtype=torch.float64)))
    g64 = (torch.randn(hshape, dtype=torch.float64),
           torch.randn(hshape, dtype=torch.float64))

    def run(model, dt, dev):
        x = x64.to(dev, dt).requires_grad_()
        leaves = [x]
        hx = None
        if hx64 is not None:
            hx = tuple(t.to(dev, dt).requires_grad_() for t in hx64)
            leaves += list(hx)
        h, c = model(x, hx)
        loss = (h * g64[0].to(dev, dt)).sum() + (c * g64[1].to(dev, dt)).sum()
        grads = torch.autograd.grad(loss, leaves + list(model.parameters()))
        return [h, c, *grads]

    assert_all_match([(f"result {i}", o, t, r) for i, (r, t, o) in enumerate(
        zip(run(ref, torch.float64, "cpu"), run(tor, dtype, device),
            run(ours, dtype, device)))], dtype)
