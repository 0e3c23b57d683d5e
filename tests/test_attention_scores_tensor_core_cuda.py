"""The tensor-core forward of the attention probabilities on a GPU
(backend="cuda" with SEQKERNELS_ATTENTION=tensor_core): the cases the host
emulation runs (test_attention_scores_tensor_core_emulation.py) on CUDA
tensors, where the tensor cores, ldmatrix, shared memory and the 16-byte
stores are real, with P's memory filled with NaN beforehand; then the
attention suite's probabilities cases through the functional API,
gradients included (the SIMT backward from the tensor-core P). Skipped
without a GPU; part of scripts/gpu_check.sh (which runs tests/, and the
sanitizer's attention cases under SEQKERNELS_ATTENTION=tensor_core) and
scripts/gpu_check_attention.sh."""

import pytest
import torch

import test_attention
from attention_cases import (SCORES_TENSOR_CORE_CASES, SDPA_CASES,
                             check_attention_scores_forward)
from seqkernels.ops._variants import op
# The skip without a GPU, the dtypes and the fixture that sets
# SEQKERNELS_ATTENTION=tensor_core: the tensor-core sdpa's GPU tests'.
from test_sdpa_tensor_core_cuda import (CUDA, DTYPES, _ids,  # noqa: F401
                                        pytestmark, tensor_core)


def _after_nan(fn):
    """fn, called right after a NaN-filled tensor of P's size was freed:
    the caching allocator hands P that block, so an element the kernel
    does not write stays NaN."""
    def run(q, k, mask, causal, scale):
        n = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]
        torch.full((n,), float("nan"), dtype=q.dtype, device=q.device)
        return fn(q, k, mask, causal, scale)
    return run


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(SCORES_TENSOR_CORE_CASES))
def test_cuda_tensor_core_probabilities_match_reference(tensor_core, case,
                                                        dtype):
    check_attention_scores_forward(_after_nan(op("attention_scores", "cuda")),
                                   case, dtype, CUDA)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
def test_the_variable_switches_the_kernel(monkeypatch, dtype):
    """The two kernels add Q K^T in other orders: their P differ in some
    last bits, so the setting reached the dispatch."""
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, 2, 100, 64, generator=g).to(CUDA, dtype)
            for _ in range(2))
    probs = {}
    for kernel in ("simt", "tensor_core"):
        monkeypatch.setenv("SEQKERNELS_ATTENTION", kernel)
        probs[kernel] = op("attention_scores", "cuda")(q, k, None, False,
                                                       0.125)
    assert not torch.equal(probs["simt"], probs["tensor_core"])


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_cuda_tensor_core_through_the_functional_api(tensor_core, case,
                                                     dtype):
    test_attention.test_attention_scores_matches_torch("cuda", CUDA, dtype,
                                                       case)


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("causal", ("full", "causal"))
def test_cuda_tensor_core_large_scores(tensor_core, dtype, causal):
    test_attention.test_attention_scores_of_large_scores("cuda", CUDA, dtype,
                                                         causal)
