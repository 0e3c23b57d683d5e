"""The CPU's persistent recurrence (csrc/cpu/persistent_recurrence.cpp): a
whole layer in one parallel region, the cpu backend's default where its
rule (cpu_persistent_plan) says it is faster.

Each comparison counts the kernel's runs (_C.cpu_persistent_runs), so that
a kernel that quietly declined and left the work to the per-step kernels
fails. Also: the rule on both sides of its switch points, results that do
not depend on the number of threads, the modules against torch.nn with the
kernel taking the default route.
"""

import pytest
import torch
from persistent_cases import (
    CPU_SHAPES,
    SHAPES,
    backward_args,
    cases,
    check_op,
    inputs64,
)

import seqkernels
from conftest import seed
from recurrent_harness import compare_recurrent
from seqkernels import _C
from seqkernels.ops._variants import FAMILIES


@pytest.fixture
def persistent(monkeypatch):
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "persistent")


@pytest.fixture(params=[0, 8], ids=["own_width", "width8"])
def width(request):
    """The kernel's blocks as this CPU takes them, and 8 units wide as on an
    AVX2 CPU (different blocks, register tiles and chunks)."""
    _C.set_cpu_unit_width(request.param)
    yield request.param
    _C.set_cpu_unit_width(0)


def _family(op):
    family = FAMILIES[op]
    return family.forward["cpu"], family.backward["cpu"]


@pytest.mark.parametrize(
    "op,act,shape,dtype,reverse",
    list(cases((torch.float32, torch.bfloat16, torch.float16),
               {**SHAPES, **CPU_SHAPES})))
def test_kernel_matches_reference(persistent, width, op, act, shape, dtype,
                                  reverse):
    before = _C.cpu_persistent_runs()
    check_op(op, act, shape, dtype, reverse, *_family(op))
    assert _C.cpu_persistent_runs() == before + 2


def _run(op, shape, threads, dtype=torch.float32):
    """The forward's results and the backward's gradients of one op."""
    forward, backward = _family(op)
    args = tuple(a.to(dtype) if isinstance(a, torch.Tensor)
                 and a.is_floating_point() else a
                 for a in inputs64(op, None if op != "rnn_seq" else "tanh",
                                   shape, False))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = forward(*args)
        cot = [torch.ones_like(o) for o in out[:3 if op == "lstm_seq" else 2]]
        grads = backward(*backward_args(op, args, out, cot))
    finally:
        torch.set_num_threads(old)
    return list(out) + list(grads)


@pytest.mark.skipif(torch.get_num_threads() < 2,
                    reason="needs 2 threads (torch.get_num_threads())")
@pytest.mark.parametrize("shape", ["chunks", "row_split"])
@pytest.mark.parametrize("op", ["lstm_seq", "gru_seq", "rnn_seq"])
def test_results_do_not_depend_on_threads(persistent, width, op, shape):
    # Both shapes are work enough for 2 threads (rule: 16K multiply-adds a
    # step): "chunks" splits the tasks by units, "row_split" by rows too; a
    # row's sums are the same whichever task and thread run it.
    _, B, _, H, _ = CPU_SHAPES[shape]
    assert _C.cpu_persistent_plan(op[:-4], B, H, torch.float32,
                                  "persistent")["threads"] >= 2
    one, two = _run(op, shape, 1), _run(op, shape, 2)
    for a, b in zip(one, two):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("threads,slow", [(1, -1), (2, -1), (2, 5)])
def test_step_team_runs_each_task_once_in_step_order(threads, slow):
    """cpu_step_team.h's protocol: every task once per step, each call of a
    step after every call of the step before has returned; with task 5
    slow (20 ms), its owner's later tasks 6 and 7 are taken over by the
    other thread in some step."""
    steps, tasks = 3, 8
    calls = _C.cpu_step_team_trace(steps, tasks, threads, slow, 20000)
    assert sorted((t, i) for t, i, *_ in calls) == sorted(
        (t, i) for t in range(tasks) for i in range(steps))
    last_end = {i: max(c[3] for c in calls if c[1] == i) for i in range(steps)}
    for t, i, start, end, _ in calls:
        assert start < end
        if i > 0:
            assert start > last_end[i - 1], (t, i)
    if slow >= 0 and torch.get_num_threads() >= 2:
        thread = {(t, i): th for t, i, _, _, th in calls}
        assert any(thread[slow, i] != thread[t, i]
                   for i in range(steps) for t in (6, 7))


@pytest.mark.parametrize("B,H,runs", [(32, 512, 2), (64, 512, 0)])
def test_default_rule_both_sides(monkeypatch, B, H, runs):
    """By default the kernel runs below B = 64 or H = 512 and the per-step
    kernels from there; each side gives the other's results to the
    tolerance of a float32 sum in another order."""
    monkeypatch.delenv("SEQKERNELS_RECURRENCE", raising=False)
    seed(0)
    gru = seqkernels.GRU(2, H, backend="cpu")
    x = torch.randn(1, B, 2, requires_grad=True)
    assert seqkernels.explain(gru, x).algorithm == (
        "persistent" if runs else "per_step")
    before = _C.cpu_persistent_runs()
    y, _ = gru(x)
    y.sum().backward()
    assert _C.cpu_persistent_runs() == before + runs
    ours = [y.detach(), x.grad] + [p.grad for p in gru.parameters()]
    monkeypatch.setenv("SEQKERNELS_RECURRENCE",
                       "per_step" if runs else "persistent")
    gru.zero_grad()
    x.grad = None
    y, _ = gru(x)
    y.sum().backward()
    other = [y.detach(), x.grad] + [p.grad for p in gru.parameters()]
    for a, b in zip(ours, other):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_float64_takes_the_per_step_kernels(persistent):
    before = _C.cpu_persistent_runs()
    lstm = seqkernels.LSTM(3, 5, backend="cpu").double()
    lstm(torch.randn(4, 2, 3, dtype=torch.float64))
    assert _C.cpu_persistent_runs() == before


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_modules_match_torch_by_default(monkeypatch, kind):
    """The modules on the default route (the kernel, as explain says) against
    torch.nn, bidirectional and with unsorted lengths."""
    monkeypatch.delenv("SEQKERNELS_RECURRENCE", raising=False)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}
    ours_cls = {"lstm": seqkernels.LSTM, "gru": seqkernels.GRU,
                "rnn": seqkernels.RNN}
    before = _C.cpu_persistent_runs()
    compare_recurrent(cls[kind], ours_cls[kind], "cpu", torch.device("cpu"),
                      torch.float32,
                      dict(input_size=4, hidden_size=24, num_layers=2,
                           bidirectional=True),
                      T=9, B=5, lengths=[9, 3, 1, 6, 9],
                      enforce_sorted=False, with_hx=True)
    # 2 layers x 2 directions, forward and backward.
    assert _C.cpu_persistent_runs() - before >= 8
