"""seqkernels.explain: what it says each recurrent layer runs, against the
backends' own rules and against what a call runs (the Triton persistent
launches counted under the interpreter)."""

import doctest
import importlib
import os

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import seqkernels
from seqkernels.explain import LayerPlan

# The module (seqkernels.explain is also the name of its function).
explain_module = importlib.import_module("seqkernels.explain")

INTERPRETER = os.environ.get("TRITON_INTERPRET") == "1"
interpreter_only = pytest.mark.skipif(
    not INTERPRETER, reason="the Triton backend on CPU tensors needs the "
    "interpreter (TRITON_INTERPRET=1)")


def test_every_layer_and_direction_in_order():
    lstm = seqkernels.LSTM(4, 6, num_layers=2, bidirectional=True,
                           backend="cpu")
    plans = seqkernels.explain(lstm, torch.randn(5, 3, 4),
                               recurrence="per_step")
    assert [(p.module, p.layer, p.direction) for p in plans.layers] == [
        ("", 0, "forward"), ("", 0, "reverse"),
        ("", 1, "forward"), ("", 1, "reverse")]
    assert {(p.backend, p.algorithm) for p in plans.layers} == {
        ("cpu", "per_step")}
    assert plans.algorithm == "per_step" and plans.summary() == "per_step"
    table = str(plans).splitlines()
    assert table[0].split() == ["module", "layer", "direction", "backend",
                                "algorithm", "reason"]
    assert len(table) == 5 and table[2].split()[:5] == [
        "(self)", "0", "reverse", "cpu", "per_step"]


def test_declined_persistent_says_why():
    lstm = seqkernels.LSTM(4, 6, backend="cpu").double()
    plans = seqkernels.explain(lstm, torch.randn(5, 3, 4).double(),
                               recurrence="persistent")
    reason = ("persistent declined: float64: the persistent kernel computes "
              "in float32 (float32, float16 and bfloat16 storage)")
    assert plans.layers == (LayerPlan("", 0, "forward", "cpu", "per_step",
                                      reason),)
    assert plans.summary() == f"per_step ({reason})"
    # Not asked for, the default's rule declined it: no "declined".
    (plan,) = seqkernels.explain(lstm, torch.randn(5, 3, 4).double(),
                                 recurrence="default").layers
    assert plan.algorithm == "per_step" and plan.reason == reason[
        len("persistent declined: "):]


def test_cpu_rule_is_cpu_persistent_plan():
    """The cpu backend's answer is _C.cpu_persistent_plan's: by default the
    persistent kernel below B = 64 or H = 512, the per-step kernels from
    there (measured as fast); asked for, everywhere in its dtypes."""
    def ask(B, H, recurrence, dtype=torch.float32):
        return explain_module._layer_algorithm(
            "cpu", "gru", "tanh", 8, B, H, dtype, torch.device("cpu"),
            False, recurrence)

    for B, H in ((32, 512), (64, 256), (1, 1024), (512, 128)):
        algorithm, reason = ask(B, H, "default")
        assert algorithm == "persistent" and "w_hh packed once" in reason
        assert (algorithm, reason) == ask(B, H, "persistent")
    assert ask(64, 512, "default") == (
        "per_step", "B = 64 >= 64 and H = 512 >= 512: the per-step GEMMs "
        "are as fast there")
    assert ask(128, 1024, "default")[0] == "per_step"
    assert ask(64, 512, "persistent")[0] == "persistent"
    assert ask(64, 512, "per_step")[0] == "per_step"
    assert ask(4, 8, "default", torch.bfloat16)[0] == "persistent"
    # One thread below 16K multiply-adds per step (B * G * H * H).
    assert seqkernels._C.cpu_persistent_plan(
        "lstm", 1, 63, torch.float32, "default")["threads"] == 1
    assert seqkernels._C.cpu_persistent_plan(
        "lstm", 1, 64, torch.float32, "default")["threads"] == \
        torch.get_num_threads()


@interpreter_only
def test_a_projection_is_declined():
    proj = seqkernels.LSTM(4, 6, proj_size=3, backend="triton")
    (plan,) = seqkernels.explain(proj, torch.randn(5, 3, 4),
                                 recurrence="persistent").layers
    assert plan.algorithm == "per_step" and plan.reason == (
        "persistent declined: proj_size > 0: the persistent kernels have no "
        "projection")


def test_recurrence_defaults_to_the_environment(monkeypatch):
    gru = seqkernels.GRU(4, 6, backend="cpu")
    x = torch.randn(5, 3, 4)
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "persistent")
    assert seqkernels.explain(gru, x).algorithm == "persistent"
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "per_step")
    assert seqkernels.explain(gru, x).algorithm == "per_step"
    monkeypatch.delenv("SEQKERNELS_RECURRENCE")
    assert seqkernels.explain(gru, x).algorithm == "persistent"
    assert seqkernels.explain(gru.double(), x.double()).algorithm == \
        "per_step"
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "sometimes")
    with pytest.raises(ValueError, match="SEQKERNELS_RECURRENCE"):
        seqkernels.explain(gru, x)
    with pytest.raises(ValueError, match="recurrence must be one of"):
        seqkernels.explain(gru, x, recurrence="sometimes")


def test_errors_are_the_calls():
    lstm = seqkernels.LSTM(4, 6, backend="cuda")
    with pytest.raises(ValueError, match="backend='cuda' needs CUDA"):
        seqkernels.explain(lstm, torch.randn(5, 3, 4))
    with pytest.raises(TypeError, match="needs its input"):
        seqkernels.explain(lstm)
    with pytest.raises(ValueError, match="2-D .unbatched. or 3-D"):
        seqkernels.explain(lstm, torch.randn(3, 4, 5, 6))


def test_cuda_rule_is_plan_persistent(monkeypatch):
    """The cuda backend's answer is _C.persistent_plan's at the device's
    limits (stubbed here as an H100's: L1 is served, a float32 layer and a
    batch too large for a block are not)."""
    limits = {"sm_count": 132, "max_smem": 227 * 1024, "cooperative": True}
    monkeypatch.setattr(explain_module._C, "cuda_device_limits",
                        lambda index: limits)
    gpu = torch.device("cuda", 0)

    def ask(kind, nonlinearity, B, dtype):
        return explain_module._layer_algorithm(
            "cuda", kind, nonlinearity, 1024, B, 768, dtype, gpu, False,
            "persistent")

    for kind, nonlinearity in (("lstm", "tanh"), ("gru", "tanh"),
                               ("rnn", "relu")):
        plan = seqkernels._C.persistent_plan(kind, nonlinearity, 1024, 16,
                                             768, torch.bfloat16, **limits)
        assert plan["serves"]
        assert ask(kind, nonlinearity, 16, torch.bfloat16) == (
            "persistent", plan["reason"])
    algorithm, reason = ask("lstm", "tanh", 16, torch.float32)
    assert algorithm == "per_step" and "float32" in reason
    algorithm, reason = ask("lstm", "tanh", 4096, torch.float16)
    assert algorithm == "per_step" and reason.startswith(
        "persistent declined: batch 4096")


def test_a_model_is_run_and_each_recurrent_module_explained():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.GRU(4, 6, batch_first=True)
            self.decoder = seqkernels.RNN(6, 5, nonlinearity="relu",
                                          num_layers=2, backend="cpu")

        def forward(self, x):
            y, _ = self.encoder(x)
            return self.decoder(y.transpose(0, 1))[0]

    model = Model()
    plans = seqkernels.explain(model, torch.randn(3, 7, 4),
                               recurrence="persistent")
    assert [(p.module, p.layer, p.backend, p.algorithm)
            for p in plans.layers] == [
        ("encoder", 0, "torch", "torch"),
        ("decoder", 0, "cpu", "persistent"),
        ("decoder", 1, "cpu", "persistent")]
    assert "seqkernels.convert" in plans.layers[0].reason
    assert plans.algorithm == "mixed"
    # The hooks are gone and the model is as it was.
    assert not model.encoder._forward_pre_hooks
    assert not model.decoder._forward_pre_hooks
    converted = seqkernels.explain(seqkernels.convert(model),
                                   torch.randn(3, 7, 4),
                                   recurrence="per_step")
    assert {p.algorithm for p in converted.layers} == {"per_step"}


@interpreter_only
@pytest.mark.parametrize("layout", ["batch_first", "packed", "unbatched"])
def test_triton_answer_is_what_runs(monkeypatch, layout):
    """Under the interpreter the Triton rule serves B <= 64 (one program);
    explain reads T and B as the module's forward does, and says persistent
    exactly where the call launches the persistent kernel."""
    from seqkernels.triton_kernels import persistent
    launched = []
    run = persistent.run_forward
    monkeypatch.setattr(persistent, "run_forward",
                        lambda *a: launched.append(1) or run(*a))
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "persistent")
    for B in (64, 65):
        module = seqkernels.LSTM(3, 16, batch_first=layout == "batch_first",
                                 backend="triton").eval()
        if layout == "batch_first":
            x = torch.randn(B, 2, 3)
        elif layout == "packed":
            x = pack_padded_sequence(torch.randn(4, B, 3),
                                     torch.full((B,), 3), enforce_sorted=False)
        else:
            x = torch.randn(B, 3)   # B steps of one row: always served
        plans = seqkernels.explain(module, x)
        launched.clear()
        with torch.no_grad():
            module(x)
        expect = "persistent" if B <= 64 or layout == "unbatched" \
            else "per_step"
        assert plans.algorithm == expect, plans.summary()
        assert len(launched) == (expect == "persistent")
        if expect == "per_step":
            assert f"B = {B} > 64" in plans.layers[0].reason


def test_docstring_example():
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(seqkernels.explain, "seqkernels.explain",
                            globs={"__name__": "doctest"}):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted >= 4 and results.failed == 0
