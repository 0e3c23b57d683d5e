"""The persistent recurrence kernels on a GPU (backend="cuda" with
SEQKERNELS_RECURRENCE=persistent): the cases the host emulation runs
(test_persistent_emulation.py), on CUDA tensors, where the GPU's own memory
ordering, tensor cores and cooperative launch are real. Skipped without a
GPU; part of scripts/gpu_check.sh. Every case runs with W_hh where the
plan puts it (registers on these small shapes) and in shared memory
(_C.set_cuda_w_registers(False)), and the two agree bit for bit."""

import pytest
import torch
from persistent_cases import (REGISTER_SHAPES, SHAPES, assert_bit_for_bit,
                              cases, check_op, outputs_and_grads)

from seqkernels import _C
from seqkernels.ops._variants import FAMILIES

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and _C.build_info()["cuda"]),
    reason="needs a GPU and the CUDA kernels")


@pytest.fixture(params=[True, False], ids=["w_by_plan", "w_shared"])
def w_registers(request):
    _C.set_cuda_w_registers(request.param)
    yield request.param
    _C.set_cuda_w_registers(True)


@pytest.mark.parametrize(
    "op,act,shape,dtype,reverse",
    list(cases((torch.bfloat16, torch.float16),
               {**SHAPES, **REGISTER_SHAPES})))
def test_cuda_persistent_kernels_match_reference(monkeypatch, w_registers, op,
                                                 act, shape, dtype, reverse):
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "persistent")
    assert _C.cuda_device_limits(
        torch.cuda.current_device())["w_registers"] == w_registers
    family = FAMILIES[op]
    check_op(op, act, shape, dtype, reverse, family.forward["cuda"],
             family.backward["cuda"], device="cuda")


@pytest.mark.parametrize(
    "op,act,shape,dtype,reverse",
    list(cases((torch.bfloat16,), {**SHAPES, **REGISTER_SHAPES})))
def test_cuda_w_in_registers_is_bit_for_bit_w_in_shared_memory(
        monkeypatch, op, act, shape, dtype, reverse):
    # As in the emulation (test_persistent_emulation.py): the same products
    # in the same order on the same operand values.
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "persistent")
    family = FAMILIES[op]
    results = []
    try:
        for allow in (True, False):
            _C.set_cuda_w_registers(allow)
            results.append(outputs_and_grads(
                op, act, shape, dtype, reverse, family.forward["cuda"],
                family.backward["cuda"], device="cuda"))
    finally:
        _C.set_cuda_w_registers(True)
    assert_bit_for_bit(*results)
