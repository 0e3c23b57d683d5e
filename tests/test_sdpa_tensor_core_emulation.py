"""The tensor-core sdpa forward and backward of the CUDA backend
(csrc/include/seqkernels/sdpa_tensor_core.h, sdpa_tensor_core_backward.h),
compiled for the host and run on the CPU by the host emulation
(host_emulation.h: every GPU thread a host thread; ldmatrix, mma.sync and
shuffles computed lane by lane from the layouts the PTX ISA documents,
warp_mma.h): its warp primitives exactly against a plain matmul, then out
and lse, and the gradients from them, against the float64 reference by the
tolerance rule on odd shapes, masks, causal with Tq != Tk, GQA, D != Dv and
dropout (the reference's very mask). The K/V tiles of the forward and of
the dQ kernel arrive by cp.async, double buffered: every test that runs
them runs twice, with the emulated copies landing at the wait_group that
covers them ("late": a read before its wait sees stale data) and at issue
("early": a copy into a buffer that other warps still read overwrites it
under them), the two extremes the PTX ISA allows. What the emulation does
not model (the tensor cores' order of additions, timing, the GPU's memory
system) waits for a GPU: tests/test_sdpa_tensor_core_cuda.py."""

import pytest
import torch

from attention_cases import (TENSOR_CORE_CASES, check_sdpa_backward,
                             check_sdpa_forward)
from conftest import seed
from seqkernels import _C
from seqkernels.reference.dropout import keep_mask

EMU = _C.emulated
DTYPES = (torch.bfloat16, torch.float16)


def _ids(dtype):
    return str(dtype)[6:]


@pytest.fixture(params=("late", "early"))
def cp_async_mode(request):
    """The test's launches with the emulated cp.async copies landing at
    their wait ("late") or at issue ("early"); the mode before is restored
    after."""
    before = EMU.cp_async_mode()
    EMU.set_cp_async_mode(request.param)
    yield request.param
    EMU.set_cp_async_mode(before)


def test_cp_async_lands_as_the_mode_says(cp_async_mode):
    """Two groups of 16-byte copies per lane, lanes from n_valid on
    zero-filled: under "late" a buffer holds its old contents until the
    wait_group that covers its group (wait_group 1 completes only the
    older), under "early" both land at issue."""
    src = torch.arange(1, 32 * 8 + 1, dtype=torch.int16).reshape(32, 8)
    n_valid = 20
    snaps = EMU.cp_async(src, n_valid)
    copied = src.clone()
    copied[n_valid:] = 0
    old = torch.full_like(src, -1)
    if cp_async_mode == "late":
        expected = [[old, old], [copied, old], [copied, copied]]
    else:
        expected = [[copied, copied]] * 3
    assert torch.equal(snaps, torch.stack([torch.stack(e) for e in expected]))


def test_cp_async_mode_is_checked():
    with pytest.raises(RuntimeError, match="'late' or 'early'"):
        EMU.set_cp_async_mode("never")


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_warp_tiles_exact(dtype):
    """ldmatrix (plain and .trans), mma.sync and the reuse of S's
    accumulators as P's A fragment, on one warp: small integers make every
    product and sum exact, so any misplaced element shows."""
    g = torch.Generator().manual_seed(seed())
    a, bt, v = (torch.randint(-3, 4, (16, 16), generator=g).to(dtype)
                for _ in range(3))
    s, o = EMU.warp_tiles(a, bt, v)
    s_ref = a.double() @ bt.double().T
    torch.testing.assert_close(s, s_ref.float(), rtol=0, atol=0)
    torch.testing.assert_close(o, (s_ref @ v.double()).float(), rtol=0,
                               atol=0)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_warp_tiles_round_p(dtype):
    """With real values, P is S rounded to the operand dtype (to nearest
    even) before P V; S and O are float sums of exact products."""
    g = torch.Generator().manual_seed(seed(1))
    a, bt, v = (torch.randn(16, 16, generator=g).to(dtype) for _ in range(3))
    s, o = EMU.warp_tiles(a, bt, v)
    s_ref = a.double() @ bt.double().T
    # 16 float additions: a few units of float32's rounding.
    tol = 16 * torch.finfo(torch.float32).eps
    torch.testing.assert_close(s.double(), s_ref, rtol=0,
                               atol=tol * (a.double().abs() @ bt.double().abs().T).max().item())
    p = s.to(dtype).double()
    torch.testing.assert_close(o.double(), p @ v.double(), rtol=0,
                               atol=tol * (p.abs() @ v.double().abs()).max().item())


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(TENSOR_CORE_CASES))
def test_emulated_forward_matches_reference(case, dtype, cp_async_mode):
    check_sdpa_forward(EMU.sdpa, case, dtype, torch.device("cpu"))


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_emulated_dropout_keeps_the_reference_mask(dtype, cp_async_mode):
    """With V the identity, out[i, j] is P[i, j] / (1 - p) where kept and
    exactly 0 where dropped: the kernel's kept pattern, bit for bit."""
    B, H, Tq, Tk, p = 1, 2, 70, 80, 0.4
    gen = torch.Generator().manual_seed(seed())
    q = torch.randn(B, H, Tq, 8, generator=gen).to(dtype)
    k = torch.randn(B, H, Tk, 8, generator=gen).to(dtype)
    v = torch.eye(Tk).expand(B, H, Tk, Tk).to(dtype)
    rng = torch.tensor([987654321, 17])
    out, _ = EMU.sdpa(q, k, v, None, p, False, 0.3, rng)
    kept = keep_mask(rng, (B, H, Tq, Tk), p, torch.device("cpu"))
    assert torch.equal(out != 0, kept)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(TENSOR_CORE_CASES))
def test_emulated_backward_matches_reference(case, dtype, cp_async_mode):
    check_sdpa_backward(EMU.sdpa, EMU.sdpa_backward, case, dtype,
                        torch.device("cpu"))


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_emulated_backward_drops_the_reference_mask(dtype, cp_async_mode):
    """With dO the identity, grad_v[j, i] is the dropped P[i, j]: nonzero
    exactly where the forward's mask keeps the element."""
    B, H, Tq, Tk, p = 1, 2, 70, 80, 0.4
    gen = torch.Generator().manual_seed(seed())
    q = torch.randn(B, H, Tq, 8, generator=gen).to(dtype)
    k = torch.randn(B, H, Tk, 8, generator=gen).to(dtype)
    v = torch.randn(B, H, Tk, Tq, generator=gen).to(dtype)
    go = torch.eye(Tq).expand(B, H, Tq, Tq).to(dtype)
    rng = torch.tensor([987654321, 17])
    out, lse = EMU.sdpa(q, k, v, None, p, False, 0.3, rng)
    _, _, dv = EMU.sdpa_backward(go, q, k, v, out, lse, None, p, False, 0.3,
                                 rng)
    kept = keep_mask(rng, (B, H, Tq, Tk), p, torch.device("cpu"))
    assert torch.equal(dv.transpose(-1, -2) != 0, kept)


def test_unserved_inputs_are_refused():
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(RuntimeError, match="float16 and bfloat16"):
        EMU.sdpa(q, q, q, None, 0.0, False, 1.0, None)
    q = torch.randn(1, 1, 4, 129).bfloat16()
    with pytest.raises(RuntimeError, match="D = 129"):
        EMU.sdpa(q, q, q, None, 0.0, False, 1.0, None)
    lse = torch.zeros(1, 1, 4)
    with pytest.raises(RuntimeError, match="D = 129"):
        EMU.sdpa_backward(q, q, q, q, q, lse, None, 0.0, False, 1.0, None)


def test_the_rule_reads_the_variable_at_every_call(monkeypatch):
    monkeypatch.delenv("SEQKERNELS_ATTENTION", raising=False)
    assert _C.attention_kernel() == "simt"
    assert _C.sdpa_forward_kernel(torch.bfloat16, 64, 64) == "simt"
    monkeypatch.setenv("SEQKERNELS_ATTENTION", "tensor_core")
    assert _C.attention_kernel() == "tensor_core"
    for dtype in DTYPES:
        assert _C.sdpa_forward_kernel(dtype, 128, 1) == "tensor_core"
    # Not served: the SIMT kernel runs.
    assert _C.sdpa_forward_kernel(torch.float32, 64, 64) == "simt"
    assert _C.sdpa_forward_kernel(torch.bfloat16, 129, 64) == "simt"
    assert _C.sdpa_forward_kernel(torch.float16, 64, 200) == "simt"
    monkeypatch.setenv("SEQKERNELS_ATTENTION", "simt")
    assert _C.sdpa_forward_kernel(torch.float16, 64, 64) == "simt"
    # The backward runs where the forward does.
    for env in ("simt", "tensor_core"):
        monkeypatch.setenv("SEQKERNELS_ATTENTION", env)
        for args in ((torch.bfloat16, 64, 64), (torch.float16, 128, 1),
                     (torch.float32, 64, 64), (torch.bfloat16, 129, 64),
                     (torch.float16, 64, 200)):
            assert (_C.sdpa_backward_kernel(*args)
                    == _C.sdpa_forward_kernel(*args))
    assert _C.sdpa_backward_kernel(torch.float16, 128, 128) == "tensor_core"
    monkeypatch.setenv("SEQKERNELS_ATTENTION", "tensorcore")
    with pytest.raises(RuntimeError, match="SEQKERNELS_ATTENTION"):
        _C.attention_kernel()
