"""The tensor-core sdpa forward and backward on a GPU (backend="cuda" with
SEQKERNELS_ATTENTION=tensor_core): the cases the host emulation runs
(test_sdpa_tensor_core_emulation.py) on CUDA tensors, where the tensor
cores, ldmatrix and shared memory are real, the backward's results bitwise
reproducible; then the attention suite's cases through the functional API,
gradients included (the tensor-core backward where it serves, the SIMT one
elsewhere). Skipped without a GPU; part of scripts/gpu_check.sh (which runs
tests/) and scripts/gpu_check_attention.sh."""

import pytest
import torch

import test_attention
from attention_cases import (SDPA_CASES, TENSOR_CORE_CASES,
                             check_sdpa_backward, check_sdpa_forward)
from seqkernels import _C
from seqkernels.ops._variants import op

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and _C.build_info()["cuda"]),
    reason="needs a GPU and the CUDA kernels")

DTYPES = (torch.bfloat16, torch.float16)
CUDA = torch.device("cuda")


def _ids(dtype):
    return str(dtype)[6:]


@pytest.fixture
def tensor_core(monkeypatch):
    monkeypatch.setenv("SEQKERNELS_ATTENTION", "tensor_core")


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(TENSOR_CORE_CASES))
def test_cuda_tensor_core_forward_matches_reference(tensor_core, case,
                                                    dtype):
    check_sdpa_forward(op("sdpa", "cuda"), case, dtype, CUDA)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(TENSOR_CORE_CASES))
def test_cuda_tensor_core_backward_matches_reference(tensor_core, case,
                                                     dtype):
    check_sdpa_backward(op("sdpa", "cuda"), torch.ops.seqkernels.sdpa_backward,
                        case, dtype, CUDA)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_cuda_tensor_core_backward_is_reproducible(tensor_core, dtype):
    """No atomics: a second run gives the same bits (GQA and dropout: dK,
    dV summed over the query heads, several query tiles)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 4, 150, 64, generator=g).to(CUDA, dtype)
    k, v = (torch.randn(2, 2, 130, 64, generator=g).to(CUDA, dtype)
            for _ in range(2))
    go = torch.randn(2, 4, 150, 64, generator=g).to(CUDA, dtype)
    rng = torch.tensor([5, 7], device=CUDA)
    args = (None, 0.2, True, 0.125, rng)
    out, lse = op("sdpa", "cuda")(q, k, v, *args)
    first = torch.ops.seqkernels.sdpa_backward(go, q, k, v, out, lse, *args)
    again = torch.ops.seqkernels.sdpa_backward(go, q, k, v, out, lse, *args)
    for a, b in zip(first, again):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_the_variable_switches_the_kernel(monkeypatch, dtype):
    """P rounded to dtype before P V changes the last bits of out: the two
    kernels' outputs differ, so the setting reached the dispatch."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 100, 64, generator=g).to(CUDA, dtype)
               for _ in range(3))
    outs = {}
    for kernel in ("simt", "tensor_core"):
        monkeypatch.setenv("SEQKERNELS_ATTENTION", kernel)
        outs[kernel] = op("sdpa", "cuda")(q, k, v, None, 0.0, False, 0.125,
                                          None)[0]
    assert not torch.equal(outs["simt"], outs["tensor_core"])
    # The backward too (dS rounded to dtype before dS K), from one forward.
    out, lse = op("sdpa", "cuda")(q, k, v, None, 0.0, False, 0.125, None)
    grads = {}
    for kernel in ("simt", "tensor_core"):
        monkeypatch.setenv("SEQKERNELS_ATTENTION", kernel)
        grads[kernel] = torch.ops.seqkernels.sdpa_backward(
            q, q, k, v, out, lse, None, 0.0, False, 0.125, None)[0]
    assert not torch.equal(grads["simt"], grads["tensor_core"])


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_cuda_tensor_core_through_the_functional_api(tensor_core, case,
                                                     dtype):
    test_attention.test_sdpa_matches_torch("cuda", CUDA, dtype, case)
