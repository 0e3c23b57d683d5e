"""The persistent Triton recurrence (triton_kernels/persistent.py): one
launch per layer and direction, taken by the sequence driver when
SEQKERNELS_RECURRENCE=persistent.

Without a GPU the kernels run under the Triton interpreter, where one
program owns every unit (programs run one after another there, so waits
between them would never end); on a GPU the same tests run the
multi-program kernels with their flag waits. Each comparison counts the
persistent launches, so a kernel that quietly declined and left the work to
the per-step kernels fails. Also: the plan's rule, the fallback where the
kernel declines (bitwise the per-step results), the bounded wait, a bad
SEQKERNELS_RECURRENCE.
"""

import os

import pytest
import torch

import seqkernels
from conftest import BACKEND_CASES, CPU, GPU_DTYPES, seed
from recurrent_harness import LinearRNN, compare_recurrent
from seqkernels.cell_table import cell_desc
from seqkernels.sequence_driver import SeqBackward, SeqForward

persistent = pytest.importorskip("seqkernels.triton_kernels.persistent")
recurrent = pytest.importorskip("seqkernels.triton_kernels.recurrent")

INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
# Where the tests that are not parametrized over devices run.
DEVICE = CPU if INTERPRETER else torch.device("cuda")
interpreter_only = pytest.mark.skipif(
    not INTERPRETER, reason="programs run one after another only under the "
    "Triton interpreter (TRITON_INTERPRET=1)")

KINDS = {
    "lstm": (torch.nn.LSTM, seqkernels.LSTM, {}),
    "gru": (torch.nn.GRU, seqkernels.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, seqkernels.RNN, {}),
    "rnn_relu": (torch.nn.RNN, seqkernels.RNN, dict(nonlinearity="relu")),
    "rnn_identity": (LinearRNN, seqkernels.RNN,
                     dict(nonlinearity="identity")),
}

# (constructor arguments, run arguments of compare_recurrent). H = 19 is no
# multiple of the 16-unit blocks (on a GPU: two programs, the second owning
# 3 units); lengths: unsorted, with a length-1 row, through both directions.
CONFIGS = {
    "odd_hidden": (dict(input_size=5, hidden_size=19), dict(T=7, B=3)),
    "one_row": (dict(input_size=4, hidden_size=6), dict(T=7, B=1,
                                                         with_hx=True)),
    "one_step": (dict(input_size=4, hidden_size=6), dict(T=1, B=3,
                                                          with_hx=True)),
    "lengths_bidirectional": (
        dict(input_size=4, hidden_size=6, bidirectional=True),
        dict(T=7, B=4, lengths=[3, 7, 1, 5], enforce_sorted=False,
             with_hx=True)),
    "no_bias": (dict(input_size=4, hidden_size=6, bias=False),
                dict(T=5, B=2)),
}


def _triton_params(cases):
    """(device, dtype, *case) for the Triton backend on this machine: the
    interpreter in float32 and float16 (its tl.dot is wrong for bfloat16),
    the GPU in every dtype the plan serves; with conftest's skip marks."""
    params = []
    for param in BACKEND_CASES:
        backend, device = param.values
        if backend != "triton":
            continue
        gpu = device is not None and device.type == "cuda"
        dtypes = GPU_DTYPES if gpu else (torch.float32, torch.float16)
        for dtype in dtypes:
            for case in cases:
                params.append(pytest.param(
                    device, dtype, *case, marks=param.marks,
                    id="-".join([param.id, str(dtype)[6:], *case])))
    return params


@pytest.fixture
def launches(monkeypatch):
    """SEQKERNELS_RECURRENCE=persistent, and the persistent launches
    counted: {"forward": n, "backward": n}."""
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "persistent")
    counts = {"forward": 0, "backward": 0}
    for which in counts:
        run = getattr(persistent, f"run_{which}")

        def counted(*args, run=run, which=which):
            counts[which] += 1
            return run(*args)
        monkeypatch.setattr(persistent, f"run_{which}", counted)
    return counts


MODULE_CASES = [(kind, config) for kind in KINDS for config in CONFIGS]


@pytest.mark.parametrize("device,dtype,kind,config",
                         _triton_params(MODULE_CASES))
def test_module_matches_torch(launches, device, dtype, kind, config):
    """Outputs, final states and the gradients of input, states, weights
    and biases against float64 under the tolerance rule, with every layer
    and direction run by the persistent kernels."""
    oracle, ours, extra = KINDS[kind]
    ctor, run = CONFIGS[config]
    compare_recurrent(oracle, ours, "triton", device, dtype,
                      {**ctor, **extra}, **run)
    directions = 2 if ctor.get("bidirectional") else 1
    assert launches == {"forward": directions, "backward": directions}


# ---------------------------------------------------------------------------
# Every tensor of the ops against the per-step kernels
# ---------------------------------------------------------------------------

def _op_inputs(kind, T, B, n_in, H, lengths, device, dtype):
    """Forward arguments of the Triton sequence op of ``kind`` (schemas in
    csrc/ops.cpp) and the op's name."""
    g = torch.Generator().manual_seed(seed(5))
    cell = cell_desc(*kind.split("_"))
    G = cell.gates

    def r(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    lens = torch.tensor(lengths, device=device)
    x, h0 = r(T, B, n_in), r(B, H)
    w_ih, w_hh = r(G * H, n_in), r(G * H, H)
    if kind == "lstm":
        return "lstm_seq", (x, h0, r(B, H), w_ih, w_hh, r(G * H), None, lens)
    if kind == "gru":
        return "gru_seq", (x, h0, w_ih, w_hh, r(G * H), r(G * H), lens)
    return "rnn_seq", (x, h0, w_ih, w_hh, r(G * H), lens, cell.act)


def _backward_inputs(name, inputs, outputs):
    g = torch.Generator().manual_seed(seed(6))

    def like(t):
        return torch.randn(t.shape, generator=g).to(t.device, t.dtype)

    if name == "lstm_seq":
        x, h0, c0, w_ih, w_hh, _, w_hr, lens = inputs
        y, h_n, c_n, saved, cell_states, cell_outputs = outputs
        return (like(y), like(h_n), like(c_n), x, h0, c0, w_ih, w_hh, w_hr,
                lens, y, saved, cell_states, cell_outputs, True)
    x, h0, w_ih, w_hh = inputs[:4]
    y, h_n, saved = outputs
    lens = inputs[6] if name == "gru_seq" else inputs[5]
    tail = () if name == "gru_seq" else (inputs[6],)
    return (like(y), like(h_n), x, h0, w_ih, w_hh, lens, y, saved, True,
            *tail)


def _run_op(name, inputs):
    """Forward and backward of the Triton op ``name``: every tensor each
    returns (saved values and cell states included)."""
    forward = getattr(recurrent, name)
    outputs = forward(*inputs)
    backward = getattr(recurrent, name + "_backward")
    return list(outputs) + list(backward(*_backward_inputs(name, inputs,
                                                           outputs)))


@pytest.mark.parametrize("device,dtype,kind", _triton_params(
    [(k,) for k in ("lstm", "gru", "rnn_tanh", "rnn_relu")]))
def test_every_tensor_matches_the_per_step_kernels(monkeypatch, launches,
                                                   device, dtype, kind):
    """y, h_n, c_n, the saved values, the cell states and every gradient of
    the ops, inactive rows and a step with no active row (the last one)
    included, as the per-step kernels give them: the same arithmetic up to
    the order of the float additions in the recurrent products."""
    name, inputs = _op_inputs(kind, T=6, B=3, n_in=4, H=21,
                              lengths=[4, 5, 1], device=device, dtype=dtype)
    ours = _run_op(name, inputs)
    assert launches == {"forward": 1, "backward": 1}
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "per_step")
    theirs = _run_op(name, inputs)
    assert launches == {"forward": 1, "backward": 1}
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else {}
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        torch.testing.assert_close(a, b, **tol,
                                   msg=lambda m, i=i: f"tensor {i}: {m}")


def test_per_step_kernels_do_not_run(monkeypatch, launches):
    """Where the persistent kernels serve, the per-step ones stay idle; the
    same patch does catch them where they run (per_step)."""
    def no_step(cell, step):
        raise AssertionError("a per-step kernel ran")

    monkeypatch.setattr(recurrent.TritonSteps, "forward",
                        staticmethod(no_step))
    monkeypatch.setattr(recurrent.TritonSteps, "backward",
                        staticmethod(no_step))
    gru = seqkernels.GRU(4, 6, backend="triton", device=DEVICE)
    x = torch.randn(5, 2, 4, device=DEVICE, requires_grad=True)
    gru(x)[0].sum().backward()
    assert launches == {"forward": 1, "backward": 1}
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "per_step")
    with pytest.raises(AssertionError, match="a per-step kernel ran"):
        gru(x)


# ---------------------------------------------------------------------------
# The plan, and the shapes it declines
# ---------------------------------------------------------------------------

LSTM = cell_desc("lstm")
RNN = cell_desc("rnn")


def test_plan_rule(monkeypatch):
    plan = persistent.persistent_plan
    cpu = plan(LSTM, 5, 3, 19, torch.float32, CPU)
    assert (cpu.serves, cpu.programs, cpu.units) == (True, 1, 32)
    assert not plan(LSTM, 5, 3, 19, torch.float64, CPU).serves
    assert "bfloat16" in plan(LSTM, 5, 3, 19, torch.bfloat16, CPU).reason
    assert "B = 65" in plan(LSTM, 5, 65, 19, torch.float32, CPU).reason
    assert not plan(LSTM, 0, 3, 19, torch.float32, CPU).serves
    # On a GPU (its SM count stubbed): the fewest units per program that
    # keep the programs at most the SM count.
    gpu = torch.device("cuda")
    monkeypatch.setattr(persistent, "num_sms", lambda device: 132)
    l1 = plan(LSTM, 1024, 16, 768, torch.bfloat16, gpu)  # target L1
    assert (l1.serves, l1.programs, l1.units) == (True, 48, 16)
    assert "W_hh rows" in plan(LSTM, 1024, 16, 768, torch.float32,
                               gpu).reason
    assert "tile" in plan(RNN, 8, 64, 256, torch.float32, gpu).reason
    monkeypatch.setattr(persistent, "num_sms", lambda device: 8)
    narrow = plan(RNN, 8, 16, 300, torch.float16, gpu)
    assert (narrow.serves, narrow.programs, narrow.units) == (True, 5, 64)
    assert not plan(LSTM, 8, 16, 300, torch.float16, gpu).serves
    assert recurrent.TritonSteps.persistent_plan is persistent.persistent_plan


DECLINED = [("float64", torch.float64, 3), ("batch", torch.float32, 65)]
if INTERPRETER:
    DECLINED.append(("bfloat16", torch.bfloat16, 3))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("why,dtype,B", DECLINED,
                         ids=[d[0] for d in DECLINED])
def test_declined_shape_falls_back_to_per_step(monkeypatch, launches, kind,
                                               why, dtype, B):
    """A layer the plan declines runs the per-step kernels: bitwise the
    results of SEQKERNELS_RECURRENCE=per_step."""
    name, inputs = _op_inputs(kind, T=3, B=B, n_in=3, H=5,
                              lengths=[3] + [1] * (B - 1), device=DEVICE,
                              dtype=dtype)
    assert not persistent.persistent_plan(cell_desc(kind), 3, B, 5, dtype,
                                          DEVICE).serves
    ours = _run_op(name, inputs)
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "per_step")
    theirs = _run_op(name, inputs)
    assert launches == {"forward": 0, "backward": 0}
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def test_bad_recurrence_name_raises(monkeypatch):
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "fused")
    with pytest.raises(ValueError, match="SEQKERNELS_RECURRENCE"):
        seqkernels.LSTM(3, 4, backend="triton", device=DEVICE)(
            torch.randn(2, 1, 3, device=DEVICE))


# ---------------------------------------------------------------------------
# Several programs under the interpreter
# ---------------------------------------------------------------------------

def _plan_of(programs, units):
    def plan(cell, T, B, H, dtype, device):
        return persistent.PersistentPlan(True, "test", programs, units)
    return plan


@interpreter_only
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_several_programs_in_one_step(monkeypatch, launches, kind):
    """A one-step layer needs no wait, so the interpreter runs it with
    several programs: 40 units as 16 + 16 + 8, each program its own units'
    rows of W_hh, gates and states."""
    monkeypatch.setattr(persistent, "persistent_plan", _plan_of(3, 16))
    oracle, ours, extra = KINDS[kind]
    compare_recurrent(oracle, ours, "triton", CPU, torch.float32,
                      dict(input_size=5, hidden_size=40, **extra), T=1, B=3,
                      with_hx=True)
    assert launches == {"forward": 1, "backward": 1}


def _random_seqs(cell, T, B, H):
    """A SeqForward and a SeqBackward of random float32 CPU tensors."""
    g = torch.Generator().manual_seed(seed(7))
    G, S = cell.gates, cell.saved

    def r(*shape):
        return torch.randn(*shape, generator=g)

    c = r(B, H) if cell.has_c else None
    cs = r(T, B, H) if cell.has_c else None
    grad_xg = r(T, B, G * H)
    fwd = SeqForward(r(T, B, G * H), r(B, H), r(G * H, H), None, c, None,
                     r(T, B, S * H), cs, r(T, B, H), r(B, H))
    bwd = SeqBackward(r(T, B, H), r(G * H, H), r(B, H), c, r(T, B, S * H),
                      None, c, cs, None, grad_xg, grad_xg)
    return fwd, bwd


@interpreter_only
def test_a_wait_that_never_ends_raises(monkeypatch):
    """Three programs over three steps under the interpreter: program 0
    waits at step 1 for programs that have not run yet. The wait gives up
    after SPIN_LIMIT polls and the host raises, naming program and step,
    instead of hanging; the forward and backward alike."""
    monkeypatch.setattr(persistent, "SPIN_LIMIT", 4)
    plan = persistent.PersistentPlan(True, "test", 3, 16)
    fwd, bwd = _random_seqs(LSTM, T=3, B=2, H=40)
    with pytest.raises(RuntimeError, match=r"forward .*gave up waiting .*"
                                           r"\(0, 1\)"):
        persistent.run_forward(LSTM, fwd, plan)
    with pytest.raises(RuntimeError, match=r"backward .*gave up waiting .*"
                                           r"\(0, 1\)"):
        persistent.run_backward(LSTM, bwd, plan)
