"""The tensor-core forward of the attention probabilities
(csrc/include/seqkernels/attention_scores_tensor_core.h), compiled for the
host and run on the CPU by the host emulation (every GPU thread a host
thread; ldmatrix, mma.sync and shuffles computed lane by lane from the
layouts the PTX ISA documents: warp_mma.h): P against the float64 reference
by the tolerance rule on odd shapes, masks with fully masked rows, causal
with Tq != Tk, GQA, both store paths (16-byte and element) and the zero
tiles of is_causal, with every element of P written (the emulation fills P
with NaN first); and rows of large scores, where P must come from the row's
maximum, not its log-sum-exp. What the emulation does not model (the
tensor cores' order of additions, timing, the GPU's memory system) waits
for a GPU: tests/test_attention_scores_tensor_core_cuda.py."""

import pytest
import torch

from attention_cases import (LARGE_SCORES_SCALE, SCORES_TENSOR_CORE_CASES,
                             check_attention_scores_forward,
                             large_scores_inputs, softmax_scores)
from conftest import assert_matches
from seqkernels import _C

EMU = _C.emulated
DTYPES = (torch.bfloat16, torch.float16)


def _ids(dtype):
    return str(dtype)[6:]


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("case", list(SCORES_TENSOR_CORE_CASES))
def test_emulated_probabilities_match_reference(case, dtype):
    check_attention_scores_forward(EMU.attention_scores, case, dtype,
                                   torch.device("cpu"))


@pytest.mark.parametrize("dtype", DTYPES, ids=_ids)
@pytest.mark.parametrize("causal", (False, True), ids=("full", "causal"))
def test_emulated_probabilities_of_large_scores(dtype, causal):
    """As test_attention.test_attention_scores_of_large_scores: scores near
    +-200 a few units apart, exact in dtype; exp(s - lse) would miss the
    bound."""
    q, k = large_scores_inputs()
    qd, kd = q.to(dtype), k.to(dtype)
    p = EMU.attention_scores(qd, kd, None, causal, LARGE_SCORES_SCALE)
    assert_matches("probabilities", p,
                   softmax_scores(qd, kd, None, causal, False,
                                  LARGE_SCORES_SCALE),
                   softmax_scores(q, k, None, causal, False,
                                  LARGE_SCORES_SCALE), dtype)


def test_unserved_inputs_are_refused():
    q = torch.randn(1, 1, 4, 8)
    with pytest.raises(RuntimeError, match="float16 and bfloat16"):
        EMU.attention_scores(q, q, None, False, 1.0)
    q = torch.randn(1, 1, 4, 129).bfloat16()
    with pytest.raises(RuntimeError, match="D = 129"):
        EMU.attention_scores(q, q, None, False, 1.0)


def test_the_rule_reads_the_variable_at_every_call(monkeypatch):
    monkeypatch.delenv("SEQKERNELS_ATTENTION", raising=False)
    assert _C.attention_scores_forward_kernel(torch.bfloat16, 64) == "simt"
    monkeypatch.setenv("SEQKERNELS_ATTENTION", "tensor_core")
    for dtype in DTYPES:
        for D in (1, 64, 128):
            assert _C.attention_scores_forward_kernel(dtype, D) == \
                "tensor_core"
    # Not served: the SIMT kernel runs.
    assert _C.attention_scores_forward_kernel(torch.float32, 64) == "simt"
    assert _C.attention_scores_forward_kernel(torch.float64, 64) == "simt"
    assert _C.attention_scores_forward_kernel(torch.bfloat16, 129) == "simt"
    monkeypatch.setenv("SEQKERNELS_ATTENTION", "simt")
    assert _C.attention_scores_forward_kernel(torch.float16, 64) == "simt"
