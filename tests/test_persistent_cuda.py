"""The persistent recurrence kernels on a GPU (backend="cuda" with
SEQKERNELS_RECURRENCE=persistent): the cases the host emulation runs
(test_persistent_emulation.py), on CUDA tensors, where the GPU's own memory
ordering, tensor cores and cooperative launch are real. Skipped without a
GPU; part of scripts/gpu_check.sh."""

import pytest
import torch
from persistent_cases import cases, check_op

from seqkernels import _C
from seqkernels.ops._variants import FAMILIES

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and _C.build_info()["cuda"]),
    reason="needs a GPU and the CUDA kernels")


@pytest.mark.parametrize("op,act,shape,dtype,reverse",
                         list(cases((torch.bfloat16, torch.float16))))
def test_cuda_persistent_kernels_match_reference(monkeypatch, op, act, shape,
                                                 dtype, reverse):
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "persistent")
    family = FAMILIES[op]
    check_op(op, act, shape, dtype, reverse, family.forward["cuda"],
             family.backward["cuda"], device="cuda")
