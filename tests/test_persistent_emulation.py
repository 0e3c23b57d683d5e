"""The persistent recurrence kernels of the CUDA backend
(csrc/include/seqkernels/persistent_recurrence.h), compiled for the host and
run on the CPU by the host emulation (host_emulation.h: every GPU thread a
host thread, the flags between blocks on std::atomic with the kernels'
orders, the tensor-core tiles emulated whole), through the C++ sequence
driver: outputs and gradients against the float64 reference by the
tolerance rule, on shapes that split H over several blocks. What the
emulation does not model (the GPU's weaker ordering of plain accesses, the
tensor cores' order of additions, timing) waits for a GPU:
tests/test_persistent_cuda.py. Every case runs with W_hh where the plan
puts it (registers on most shapes here) and with the plan's test hook that
keeps it in shared memory (w_registers=False)."""

import pytest
import torch
from persistent_cases import (REGISTER_SHAPES, SHAPES, assert_bit_for_bit,
                              cases, check_op, inputs64, outputs_and_grads)

from seqkernels import _C
from seqkernels.ops._variants import FAMILIES
from seqkernels.sequence_driver import recurrence_algorithm

EMU = _C.emulated
H100 = dict(sm_count=132, max_smem=227 * 1024)


@pytest.fixture
def persistent(monkeypatch):
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "persistent")


@pytest.fixture(params=[True, False], ids=["w_by_plan", "w_shared"])
def w_registers(request):
    """The emulated device with the plan's register rule (True) or with
    W_hh kept in shared memory everywhere (False)."""
    device = EMU.device()
    EMU.set_device(device["sm_count"], device["max_smem"], request.param)
    yield request.param
    EMU.set_device(device["sm_count"], device["max_smem"], True)


def emulated_plan(op, act, shape, dtype):
    """plan_persistent's answer for a case on the emulated device."""
    T, B, _, H, _ = {**SHAPES, **REGISTER_SHAPES}[shape]
    return _C.persistent_plan(op[:-4], act or "tanh", T, B, H, dtype,
                              **EMU.device())


@pytest.mark.parametrize(
    "op,act,shape,dtype,reverse",
    list(cases((torch.bfloat16, torch.float16),
               {**SHAPES, **REGISTER_SHAPES})))
def test_emulated_kernels_match_reference(persistent, w_registers, op, act,
                                          shape, dtype, reverse):
    plan = emulated_plan(op, act, shape, dtype)
    assert plan["serves"], plan["reason"]
    if not w_registers:
        assert not plan["forward_w_registers"]
        assert not plan["backward_w_registers"]
    before = EMU.launches()
    check_op(op, act, shape, dtype, reverse, getattr(EMU, op),
             getattr(EMU, op + "_backward"))
    # Both passes ran the persistent kernels, not the per-step fallback.
    assert EMU.launches() == before + 2


@pytest.mark.parametrize(
    "op,act,shape,dtype,reverse",
    list(cases((torch.bfloat16,), {**SHAPES, **REGISTER_SHAPES})))
def test_w_in_registers_is_bit_for_bit_w_in_shared_memory(
        persistent, op, act, shape, dtype, reverse):
    """Both paths issue the same tensor-core products in the same order on
    the same operand values (a fragment loaded once holds what the shared
    tile gives at every step, rounded to tf32 alike), so their outputs and
    gradients agree bit for bit: a sharper check of the register path than
    the tolerance against the reference (a product missing one fragment's
    rows can stay within that)."""
    device = EMU.device()
    results = []
    try:
        for w_registers in (True, False):
            EMU.set_device(device["sm_count"], device["max_smem"],
                           w_registers)
            before = EMU.launches()
            results.append(outputs_and_grads(
                op, act, shape, dtype, reverse, getattr(EMU, op),
                getattr(EMU, op + "_backward")))
            assert EMU.launches() == before + 2
    finally:
        EMU.set_device(device["sm_count"], device["max_smem"], True)
    assert_bit_for_bit(*results)


# (forward, backward) in registers at each shape of the emulated device; see
# REGISTER_SHAPES for why.
@pytest.mark.parametrize("op,act,shape,where", [
    *[(op, act, shape, (True, True))
      for op, act in (("lstm_seq", None), ("gru_seq", None),
                      ("rnn_seq", "tanh"))
      for shape in [*SHAPES, "deep"]],
    ("lstm_seq", None, "deep17", (False, False)),
    ("gru_seq", None, "deep17", (False, True)),
    ("rnn_seq", "relu", "deep17", (True, True)),
])
def test_emulated_plan_places_w(op, act, shape, where):
    plan = emulated_plan(op, act, shape, torch.bfloat16)
    assert plan["serves"], plan["reason"]
    assert (plan["forward_w_registers"],
            plan["backward_w_registers"]) == where, plan["reason"]


def test_declined_dtype_runs_the_steps(persistent, monkeypatch):
    # float32 is not served (plan_persistent): the per-step CPU kernels run,
    # with the CPU backend's per-step results.
    args = tuple(a.float() if isinstance(a, torch.Tensor)
                 and a.is_floating_point() else a
                 for a in inputs64("gru_seq", None, "lengths", False))
    before = EMU.launches()
    ours = EMU.gru_seq(*args)
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "per_step")
    cpu = FAMILIES["gru_seq"].forward["cpu"](*args)
    assert EMU.launches() == before
    for a, b in zip(ours, cpu):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_per_step_is_the_default(monkeypatch):
    monkeypatch.delenv("SEQKERNELS_RECURRENCE", raising=False)
    args = tuple(a.bfloat16() if isinstance(a, torch.Tensor)
                 and a.is_floating_point() else a
                 for a in inputs64("lstm_seq", None, "odd", False))
    # Without the setting the kernel is not offered the loop (the GPU's
    # persistent kernels are opt-in): the CPU's per-step kernels run, with
    # the CPU backend's per-step results.
    before = EMU.launches()
    ours = EMU.lstm_seq(*args)
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "per_step")
    cpu = FAMILIES["lstm_seq"].forward["cpu"](*args)
    assert EMU.launches() == before
    for a, b in zip(ours, cpu):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_both_drivers_read_the_same_setting(monkeypatch):
    monkeypatch.delenv("SEQKERNELS_RECURRENCE", raising=False)
    assert _C.recurrence_algorithm() == recurrence_algorithm() == "default"
    for value in ("default", "per_step", "persistent"):
        monkeypatch.setenv("SEQKERNELS_RECURRENCE", value)
        assert _C.recurrence_algorithm() == recurrence_algorithm() == value
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "fast")
    with pytest.raises(ValueError, match="SEQKERNELS_RECURRENCE"):
        recurrence_algorithm()
    with pytest.raises(RuntimeError, match="SEQKERNELS_RECURRENCE"):
        _C.recurrence_algorithm()


@pytest.mark.parametrize("kind,blocks,units", [("lstm", 96, 8),
                                               ("gru", 77, 10),
                                               ("rnn", 48, 16)])
def test_plan_at_the_l1_shape(kind, blocks, units):
    # L1: B = 16, H = 768 on an H100: the fewest units per block that 132
    # SMs allow (6), rounded up to what fills the 16-row tile.
    plan = _C.persistent_plan(kind, "tanh", 1024, 16, 768, torch.bfloat16,
                              **H100)
    assert plan["serves"], plan["reason"]
    assert (plan["blocks"], plan["units"]) == (blocks, units)
    assert max(plan["forward_smem"], plan["backward_smem"]) <= H100["max_smem"]
    # Each warp's A fragments fit the registers in both products (lstm:
    # forward 2 m tiles x 1 batch tile x k_split 4, one item per warp of 12
    # k steps; backward 48 k tiles, 6 per warp, of 32 / 8 = 4 k steps).
    assert plan["forward_w_registers"] and plan["backward_w_registers"]
    assert "forward in registers" in plan["reason"]
    assert "backward in registers" in plan["reason"]
    # The test hook keeps them in shared memory, with the same layout.
    shared = _C.persistent_plan(kind, "tanh", 1024, 16, 768, torch.bfloat16,
                                **H100, w_registers=False)
    assert shared["serves"]
    assert "the test hook keeps W_hh shared" in shared["reason"]
    assert not shared["forward_w_registers"]
    assert not shared["backward_w_registers"]
    assert ({k: shared[k] for k in ("blocks", "units", "forward_smem",
                                    "backward_smem")}
            == {k: plan[k] for k in ("blocks", "units", "forward_smem",
                                     "backward_smem")})


@pytest.mark.parametrize("B,H,forward,backward,why", [
    # 64 k tiles, 8 per warp, of 4 k steps: 32 fragments in the backward.
    (16, 1024, True, False, "backward in shared memory (32 A fragments"),
    # 4 batch tiles: 8 forward tiles of 48 k steps, 24 backward items per
    # warp.
    (64, 768, False, False, "forward in shared memory (48 A fragments"),
    # 5 batch tiles of 2 m tiles: 10 forward items, more than the warps.
    (80, 768, False, False, "forward in shared memory (several items per "
     "warp)"),
])
def test_plan_keeps_w_in_shared_memory_where_it_does_not_fit(
        B, H, forward, backward, why):
    plan = _C.persistent_plan("lstm", "tanh", 1024, B, H, torch.bfloat16,
                              **H100)
    assert plan["serves"], plan["reason"]
    assert (plan["forward_w_registers"],
            plan["backward_w_registers"]) == (forward, backward)
    assert why in plan["reason"]


@pytest.mark.parametrize("dtype,B,H,why", [
    (torch.float32, 16, 768, "per-step"),
    (torch.float64, 16, 768, "per-step"),
    (torch.bfloat16, 16, 8192, "shared memory"),
    (torch.bfloat16, 512, 768, "pairs"),
])
def test_plan_declines_with_a_reason(dtype, B, H, why):
    plan = _C.persistent_plan("lstm", "tanh", 100, B, H, dtype, **H100)
    assert not plan["serves"]
    assert why in plan["reason"]
