"""Self-test of the benchmark harness (benchmarks/): a tiny configuration on
the CPU goes through run.py's functions and must leave a CSV with the
expected columns, a target table and a plot; failures and wrong results
must become rows and marks, never a crash or a good-looking number."""

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import seqkernels

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import cases, harness, lstm, report, targets  # noqa: E402
from benchmarks import run as bench_run  # noqa: E402

CPU = torch.device("cpu")
TINY = harness.Settings(cpu_min_run_s=0.005, cpu_min_reps=2, cpu_max_s=1.0)
# A tiny stand-in for the grid cell that is also the CPU target row (its
# name, so the CPU pairings find it), with every anchor and mode.
TARGET_ROW = lstm.Config(targets.grid_name("lstm", *lstm.CPU_ROW), B=2, I=4,
                         H=8, T=3, target="C1/CPU",
                         modes=("fwd+bwd", "fwd", "bwd"))
CONFIGS = [
    TARGET_ROW,
    *lstm._sweep("batch", (1, 2), H=4, T=2, seq_providers=lstm.CORE),
    lstm.Config("cell-tiny", kind="cell", B=3, I=4, H=5),
    lstm.Config("pointwise-tiny", kind="pointwise", B=3, H=5),
]


def _run(tmp_path, configs=CONFIGS, kernel="lstm"):
    return bench_run.run(tmp_path, CPU, {kernel: configs}, TINY,
                         compile=False,
                         ceiling_sizes={"gemm_n": 64, "copy_mb": 1},
                         quiet=True)


def _made_wrong(case):
    """``case`` with its outputs scaled by 1.5: a kernel that runs, wrong."""
    forward = case.forward
    case.forward = lambda: [o * 1.5 for o in forward()]
    return case


def test_run_writes_csv_table_and_plot(tmp_path):
    summary = _run(tmp_path)
    assert summary.ok, summary.failures + summary.mismatches
    rows = report.read_csv(tmp_path / "results.csv")
    assert tuple(rows[0].keys())[:len(report.COLUMNS)] == report.COLUMNS
    for column in ("kernel", "provider", "mode", "config", "dtype",
                   "median_ms", "p20_ms", "p80_ms", "tflops", "gbps",
                   "peak_mem_mb", "device", "torch", "triton", "cuda",
                   "commit", "date", "note"):
        assert column in report.COLUMNS
    ceilings = [r for r in rows if r["kernel"] == "ceiling"]
    assert {r["provider"] for r in ceilings} == {"gemm", "copy"}
    assert all(float(r["tflops"] or r["gbps"]) > 0 for r in ceilings)

    measured = [r for r in rows if r["kernel"] == "lstm"]
    providers = {r["provider"] for r in measured}
    assert {"seqkernels-cpu", "seqkernels-auto", "torch-nn-lstm",
            "torch-lstmcell-loop", "torch-lstmcell",
            "torch-eager-pointwise"} <= providers
    for r in measured:
        if r["provider"] == "torch-compile-loop":
            assert r["status"] == "skipped" and r["note"]
            continue
        assert r["status"] == "ok", r
        assert r["check"] == "ok", r
        p20, med, p80 = (float(r[k]) for k in ("p20_ms", "median_ms", "p80_ms"))
        assert 0 < p20 <= med <= p80
        assert math.isnan(float(r["peak_mem_mb"] or "nan"))  # CPU: no stats
        if r["config"].startswith("pointwise"):
            assert float(r["gbps"]) > 0
        else:
            assert float(r["tflops"]) > 0
    assert {r["mode"] for r in measured
            if r["config"] == TARGET_ROW.name} == {"fwd", "bwd", "fwd+bwd"}

    table = (tmp_path / "table.md").read_text()
    assert "| CPU | CPU B=32" in table and "seqkernels-cpu float32" in table
    assert "x |" in table  # a ratio was computed

    # A second run appends to the same CSV; the table shows the latest.
    _run(tmp_path, [TARGET_ROW])
    again = report.read_csv(tmp_path / "results.csv")
    assert len(again) > len(rows)
    assert len({r["run_id"] for r in again}) in (1, 2)  # same second: 1


def test_plot_from_csv(tmp_path):
    pytest.importorskip("matplotlib")
    _run(tmp_path, [c for c in CONFIGS if c.sweep])
    png = tmp_path / "lstm-sweep-batch-fwd_bwd.png"
    assert png.exists()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failure_is_a_row_not_a_crash(tmp_path, monkeypatch, capsys):
    build = lstm.build

    def broken(job, device):
        if job.provider == "torch-lstmcell-loop":
            raise RuntimeError("boom in the anchor")
        return build(job, device)
    monkeypatch.setattr(lstm, "build", broken)
    summary = _run(tmp_path, [TARGET_ROW])
    rows = report.read_csv(tmp_path / "results.csv")
    failed = [r for r in rows if r["provider"] == "torch-lstmcell-loop"]
    assert failed and all(r["status"] == "failed" for r in failed)
    assert all("boom in the anchor" in r["note"] for r in failed)
    assert "boom in the anchor" in capsys.readouterr().err  # said loudly
    assert summary.ok  # an anchor's failure is reported, not ours
    assert any(r["provider"] == "seqkernels-cpu" and r["status"] == "ok"
               for r in rows)


def test_wrong_kernel_is_marked(tmp_path, monkeypatch):
    build = lstm.build

    def wrong(job, device):
        case = build(job, device)
        return _made_wrong(case) if job.provider == "seqkernels-cpu" else case
    monkeypatch.setattr(lstm, "build", wrong)
    summary = _run(tmp_path, [TARGET_ROW])
    assert not summary.ok
    rows = report.read_csv(tmp_path / "results.csv")
    ours = [r for r in rows if r["provider"] == "seqkernels-cpu"]
    assert all(r["check"].startswith("MISMATCH") for r in ours)
    assert "seqkernels-cpu float32 [persistent] WRONG" in (
        tmp_path / "table.md").read_text()


def test_runner_modes():
    job = lstm.Job(TARGET_ROW, "seqkernels-cpu", torch.float32)
    case = lstm.build(job, CPU)
    for mode in cases.MODES:
        fn, leaves = cases.runner(case, mode)
        for leaf in leaves:
            leaf.grad = None
        fn()
        grads = [leaf.grad for leaf in leaves]
        if mode in ("fwd", "infer"):
            assert all(g is None for g in grads)
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
    inference = lstm.build(lstm.Job(
        lstm.Config("inf", B=1, H=4, T=3, modes=("fwd",), inference=True),
        "torch-nn-lstm", torch.float32), CPU)
    fn, leaves = cases.runner(inference, "fwd")
    assert leaves == []
    fn()
    with pytest.raises(ValueError):
        cases.runner(inference, "fwd+bwd")


def test_infer_mode_runs_the_forward_without_autograd():
    """"infer" runs a training case's forward under no_grad (so seqkernels
    keeps no saved values) and resets no gradients; "fwd" records."""
    case = lstm.build(lstm.Job(TARGET_ROW, "seqkernels-cpu", torch.float32),
                      CPU)
    forward, seen = case.forward, []

    def spy():
        outputs = forward()
        seen.append(any(o.requires_grad for o in outputs))
        return outputs
    case.forward = spy
    for mode in ("infer", "fwd"):
        fn, leaves = cases.runner(case, mode)
        fn()
        assert (leaves == []) == (mode == "infer")
    assert seen == [False, True]


# --------------------------------------------------------------------------
# Attention (benchmarks/attention.py)

from benchmarks import attention  # noqa: E402

ATTN_CONFIGS = [
    attention.Config("sdpa-cpu-hd64-T256", "sdpa", B=1, Tq=16, heads=2, D=8,
                     sweep="T-hd8", sweep_x=16, sanity=True),
    attention.Config("sdpa-tiny-T32", "sdpa", B=1, Tq=32, heads=2, D=8,
                     causal=True, sweep="T-hd8", sweep_x=32, sanity=True,
                     modes=("fwd", "fwd+bwd", "bwd")),
    attention.Config("scores-cpu", "scores", B=1, Tq=8, Tk=12, heads=2, D=8,
                     modes=("fwd", "fwd+bwd"), sanity=True),
    attention.Config("mha-weights-cpu", "mha-weights", B=2, Tq=6, heads=2,
                     D=4, modes=("fwd",), sanity=True),
    attention.Config("mha-noweights-tiny", "mha-noweights", B=2, Tq=6,
                     heads=2, D=4, sanity=True),
    attention.Config("additive-cpu", "additive", B=2, Tq=5, Tk=7, H=6, D=4,
                     modes=("fwd+bwd", "bwd"), sanity=True),
]
ANCHORS = {"torch-sdpa", "torch-sdpa-math", "torch-matmul-softmax",
           "torch-mha-weights", "torch-mha-noweights", "torch-additive-eager"}
# The SDPA providers that a CPU run lists as skipped, with the reason.
CUDA_ONLY = {"torch-sdpa-flash", "torch-sdpa-efficient", "torch-sdpa-cudnn",
             "torch-flex-compile"}


def _run_attention(tmp_path, configs=ATTN_CONFIGS):
    return _run(tmp_path, configs, kernel="attention")


def _not_registered(row) -> bool:
    """A seqkernels kernel missing for this device: a loud failure row."""
    return (row["status"] == "failed"
            and "NotImplementedError" in row["note"]
            and "no kernel is registered" in row["note"])


def test_attention_run(tmp_path, capsys):
    summary = _run_attention(tmp_path)
    rows = [r for r in report.read_csv(tmp_path / "results.csv")
            if r["kernel"] == "attention"]
    providers = {r["provider"] for r in rows}
    assert ANCHORS | {"seqkernels-cpu", "seqkernels-auto",
                      "seqkernels-reference", "seqkernels-mha-weights-cpu",
                      "seqkernels-mha-noweights-reference",
                      "torch-additive-compile"} <= providers
    missing = []
    for r in rows:
        if r["provider"] == "torch-additive-compile":
            assert r["status"] == "skipped" and "--no-compile" in r["note"]
            continue
        if r["provider"] in CUDA_ONLY:
            assert r["status"] == "skipped" and "CUDA only" in r["note"], r
            continue
        if r["provider"].endswith(("-cpu", "-auto")):
            # The CPU attention kernels may not exist yet: then the row says
            # so (and run() counts it as our failure); once they exist the
            # row must be a good measurement like the others.
            if _not_registered(r):
                missing.append(r)
                continue
        assert r["status"] == "ok", r
        assert r["check"] == "ok", r
        p20, med, p80 = (float(r[k])
                         for k in ("p20_ms", "median_ms", "p80_ms"))
        assert 0 < p20 <= med <= p80
        assert float(r["tflops"]) > 0
        if r["config"] == "scores-cpu":
            assert float(r["bytes"]) == 1 * 2 * 8 * 12 * 4 * {
                "fwd": 1, "fwd+bwd": 3}[r["mode"]]
            assert float(r["gbps"]) > 0
        if r["config"] == "additive-cpu":
            assert float(r["io_mem_mb"]) > 0
    assert {r["mode"] for r in rows if r["config"] == "sdpa-tiny-T32"} == {
        "fwd", "bwd", "fwd+bwd"}
    assert summary.ok == (not missing)
    if missing:
        err = capsys.readouterr().err
        assert "!!!!! FAILED" in err and "NotImplementedError" in err
        assert len(summary.failures) == len(
            {(r["provider"], r["config"]) for r in missing})

    table = (tmp_path / "table.md").read_text()
    assert "| CPU | SDPA hd64 T=256, fwd+bwd, fp32 | seqkernels-reference " \
        "float32 |" in table
    assert "torch-additive-eager float32" in table
    assert "x |" in table  # a ratio was computed

    # The T sweep's plots (time against T, a line per provider).
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    for mode in ("fwd", "fwd_bwd"):
        png = tmp_path / f"attention-sweep-T-hd8-{mode}.png"
        assert png.exists(), mode
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_providers_agree():
    """Every provider of a configuration gives the reference's outputs and
    gradients (the harness's check), with the same leaves."""
    from benchmarks import check
    for cfg in ATTN_CONFIGS:
        ref = attention.reference(attention.Job(cfg, "", torch.float32), CPU)
        for job in attention.plan(CPU, [cfg], compile=True):
            if job.provider.endswith(("-cpu", "-auto")):
                continue  # run by test_attention_run, if present
            if job.skip:
                assert job.provider in CUDA_ONLY, (job.provider, job.skip)
                continue
            case = attention.build(job, CPU)
            assert set(case.leaves) == set(ref.leaves), job.provider
            result = check.check(case, ref, torch.float32, True)
            assert result.ok, (cfg.name, job.provider, result.detail)


def test_attention_wrong_and_missing_kernels(tmp_path, monkeypatch, capsys):
    build = attention.build

    def patched(job, device):
        if job.provider == "seqkernels-cpu":
            def missing():
                raise NotImplementedError(
                    "Could not run 'seqkernels::sdpa' with arguments from the "
                    "'CPU' backend. This could be because the operator "
                    "doesn't exist for this backend, ...")
            return cases.Case(missing, {})
        case = build(job, device)
        return (_made_wrong(case) if job.provider == "seqkernels-reference"
                else case)
    monkeypatch.setattr(attention, "build", patched)
    summary = _run_attention(tmp_path, ATTN_CONFIGS[:1])
    assert not summary.ok
    rows = report.read_csv(tmp_path / "results.csv")
    cpu = [r for r in rows if r["provider"] == "seqkernels-cpu"]
    assert cpu and all(_not_registered(r) for r in cpu)
    assert all("This could be" not in r["note"] for r in cpu)  # shortened
    assert "seqkernels::sdpa" in capsys.readouterr().err
    ref = [r for r in rows if r["provider"] == "seqkernels-reference"]
    assert all(r["check"].startswith("MISMATCH") for r in ref)
    assert "seqkernels-reference float32 WRONG" in (
        tmp_path / "table.md").read_text()


def test_attention_memory_and_copy_pairings():
    """A4's memory line and A3's copy line, from hand-made rows."""
    def row(provider, config, mode, **values):
        base = {k: "" for k in report.COLUMNS}
        base.update(kernel="attention", provider=provider, config=config,
                    mode=mode, dtype="bfloat16", status="ok", check="ok",
                    **{k: str(v) for k, v in values.items()})
        return base
    rows = [
        row("copy", "copy", "fwd", gbps=4000) | {"kernel": "ceiling"},
        row("seqkernels-cuda", "A4", "fwd+bwd", median_ms=2.0,
            peak_mem_mb=150, io_mem_mb=100),
        row("seqkernels-triton", "A4", "fwd+bwd", median_ms=2.0,
            peak_mem_mb=250, io_mem_mb=100),
        row("torch-additive-eager", "A4", "fwd+bwd", median_ms=30.0),
        row("seqkernels-cuda", "A3", "fwd", median_ms=1.0, gbps=3200),
    ]
    table = report.target_table(rows, attention.PAIRINGS)
    lines = table.splitlines()
    memory = [ln for ln in lines if "peak memory" in ln]
    assert len(memory) == 2
    assert "seqkernels-cuda" in memory[0] and "1.50x" in memory[0] \
        and memory[0].endswith("| yes |")
    assert "2.50x" in memory[1] and memory[1].endswith("| no |")
    eager = [ln for ln in lines if "torch-additive-eager" in ln]
    assert any("15.00x" in ln and ln.endswith("| yes |") for ln in eager)
    copy = [ln for ln in lines if "copy ceiling" in ln]
    assert len(copy) == 1 and "80% of copy" in copy[0] \
        and copy[0].endswith("| yes |")


def test_attention_plan_and_selection(capsys):
    gpu = torch.device("cuda")
    rows = attention.configs(gpu, True)
    sdpa = [c for c in rows if c.kind == "sdpa" and not c.mask]
    assert {(c.D, c.causal) for c in sdpa} == {
        (64, False), (64, True), (128, False), (128, True)}
    assert {c.Tq for c in sdpa} == {1024, 2048, 4096, 8192, 16384}
    assert all(c.B * c.Tq == 16384 for c in sdpa)
    a3 = next(c for c in rows if c.name == "A3")
    assert (a3.B, a3.heads, a3.Tq, a3.keys, a3.D) == (8, 16, 2048, 2048, 64)
    a4 = next(c for c in rows if c.name == "A4")
    assert (a4.B, a4.Tq, a4.keys, a4.H) == (32, 512, 512, 256)
    # A1 FLOPs: 4*B*H*T*T*D, halved when causal; the backward 2.5x.
    c = next(c for c in sdpa if c.Tq == 4096 and c.D == 128 and c.causal)
    fwd = 4.0 * c.B * c.heads * 4096 * 4096 * 128 / 2
    assert attention.flops(c, "fwd") == fwd
    assert attention.flops(c, "bwd") == 2.5 * fwd
    assert attention.flops(c, "fwd+bwd") == 3.5 * fwd
    # A3 bytes: the P write.
    assert attention.pointwise_bytes(a3, "fwd", torch.bfloat16) == \
        8 * 16 * 2048 * 2048 * 2

    jobs = attention.plan(gpu, sdpa, compile=False)
    providers = {j.provider for j in jobs}
    assert {"seqkernels-cuda", "seqkernels-triton", "seqkernels-auto",
            "torch-sdpa-flash", "torch-sdpa-efficient", "torch-sdpa-cudnn",
            "torch-sdpa-math", "torch-flex-compile",
            "seqkernels-cuda-tensor-core"} == providers
    flex = [j for j in jobs if j.provider == "torch-flex-compile"]
    assert flex and all("--no-compile" in j.skip for j in flex)
    assert all(j.dtype == torch.bfloat16 for j in jobs)
    big = [j for j in jobs if j.provider == "torch-sdpa-math"
           and j.config.Tq == 16384]
    assert big and all("GiB" in j.skip for j in big)

    selected = bench_run._select(CPU, False, ["attention"], ["A2"])
    assert {c.name for c in selected["attention"]} == {c.name for c in sdpa}
    selected = bench_run._select(CPU, False, ["attention"], ["A4"])
    assert [c.name for c in selected["attention"]] == ["A4"]
    selected = bench_run._select(CPU, False, ["attention"], ["A5"])
    assert [c.name for c in selected["attention"]] == [
        "sdpa-hd64-T4096", "sdpa-hd128-T4096", "sdpa-hd64-T4096-documents",
        "sdpa-hd128-T4096-documents"]

    assert bench_run.main(["--list", "--full", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert "sdpa-hd128-causal-T16384" in out and "torch-sdpa-cudnn" in out
    assert "lstm" in out and "A4" in out


def test_attention_quick_cpu_is_small():
    quick = attention.configs(CPU, False)
    assert len(quick) <= 5
    sdpa = [c for c in quick if c.kind == "sdpa"]
    assert [(c.B, c.heads, c.Tq, c.D) for c in sdpa] == [(2, 4, 256, 64)]
    additive = next(c for c in quick if c.kind == "additive")
    assert (additive.B, additive.Tq, additive.H) == (4, 64, 64)
    assert all(c.sanity for c in quick)
    assert not any(c.sanity for c in attention.configs(CPU, True))


# --------------------------------------------------------------------------
# GRU and RNN (benchmarks/gru_rnn.py): target row L7


def test_gru_rnn_run_and_l7_pairing(tmp_path):
    """A tiny GRU and RNN row go through run.py: every provider checked and
    timed; the L7 pairing puts ours beside the nn anchor of the same cell."""
    from benchmarks import gru_rnn
    configs = [gru_rnn.Config("L7-gru", "gru", B=2, I=3, H=4, T=3,
                              modes=("fwd", "fwd+bwd"), target="L7"),
               gru_rnn.Config("L7-rnn", "rnn", B=2, I=3, H=4, T=3,
                              modes=("fwd", "fwd+bwd"), target="L7")]
    summary = _run(tmp_path, configs, kernel="gru_rnn")
    assert summary.ok, summary.failures + summary.mismatches
    rows = [r for r in report.read_csv(tmp_path / "results.csv")
            if r["kernel"] == "gru_rnn"]
    assert {(r["config"], r["provider"]) for r in rows} == {
        (c, p) for c, cell in (("L7-gru", "gru"), ("L7-rnn", "rnn"))
        for p in ("seqkernels-cpu", "seqkernels-cpu-per-step",
                  "seqkernels-auto", f"torch-nn-{cell}")}
    assert all(r["status"] == "ok" and r["check"] == "ok" for r in rows)
    table = report.target_table(rows, gru_rnn.PAIRINGS)
    for cell in ("GRU", "RNN"):
        for mode in ("fwd", "fwd+bwd"):
            line = next(l for l in table.splitlines()
                        if f"{cell} layer" in l and l.split("|")[2]
                        .strip().endswith(mode) and "seqkernels-cpu" in l)
            assert f"torch-nn-{cell.lower()} float32" in line
            assert line.rstrip().endswith(("| yes |", "| no |")), line


def test_gru_rnn_plan_and_work():
    from benchmarks import gru_rnn
    gpu = torch.device("cuda")
    rows = gru_rnn.configs(gpu, True)
    assert [(c.name, c.cell, c.B, c.input_size, c.H, c.T) for c in rows] == [
        ("L7-gru", "gru", 16, 768, 768, 1024),
        ("L7-rnn", "rnn", 16, 768, 768, 1024)]
    jobs = gru_rnn.plan(gpu, rows, compile=True)
    anchors = {(j.config.cell, j.provider, j.dtype) for j in jobs
               if j.provider.startswith("torch-")}
    assert anchors == {(cell, f"torch-nn-{cell}", dt)
                       for cell in ("gru", "rnn")
                       for dt in (torch.bfloat16, torch.float16)}
    ours = [j for j in jobs if j.provider.startswith("seqkernels-")]
    assert {j.provider for j in ours} == {
        "seqkernels-cuda", "seqkernels-triton", "seqkernels-auto",
        "seqkernels-cuda-persistent", "seqkernels-triton-persistent"}
    assert all(j.dtype == torch.bfloat16 for j in ours)
    gru, rnn = rows
    assert gru_rnn.flops(gru, "fwd") == 2.0 * 1024 * 16 * 3 * 768 * 1536
    assert gru_rnn.flops(rnn, "fwd+bwd") == 3 * 2.0 * 1024 * 16 * 768 * 1536
    assert {p.target for p in gru_rnn.PAIRINGS} == {"L7", "C1"}
    assert len([p for p in gru_rnn.PAIRINGS if p.target == "L7"]) == 4


# --------------------------------------------------------------------------
# Seq2seq training steps (benchmarks/seq2seq.py): target row E1


def _seq2seq_configs(B=3):
    from benchmarks import seq2seq
    return [seq2seq.Config(f"E1-{m}-cpu", m, B=B) for m in seq2seq.MODELS]


def test_seq2seq_run_and_e1_pairing(tmp_path):
    """The examples' models go through run.py in the mode ``step``: the
    torch.nn twin's loss and gradients agree with seqkernels' (the check),
    and the E1 pairing puts each beside its twin."""
    from benchmarks import seq2seq
    summary = _run(tmp_path, _seq2seq_configs(), kernel="seq2seq")
    assert summary.ok, summary.failures + summary.mismatches
    rows = [r for r in report.read_csv(tmp_path / "results.csv")
            if r["kernel"] == "seq2seq"]
    assert {(r["config"], r["provider"], r["mode"]) for r in rows} == {
        (f"E1-{m}-cpu", p, "step") for m in seq2seq.MODELS
        for p in ("seqkernels-cpu", "seqkernels-auto", "torch-nn")}
    assert all(r["status"] == "ok" and r["check"] == "ok" for r in rows)
    table = report.target_table(rows, seq2seq.PAIRINGS)
    for m in seq2seq.MODELS:
        line = next(l for l in table.splitlines()
                    if f"examples/{m}.py" in l and "seqkernels-cpu" in l)
        assert "torch-nn float32" in line and ">= 1.0x" in line
        assert line.rstrip().endswith(("| yes |", "| no |")), line


def test_seq2seq_twin_and_train_step():
    """The torch-nn provider holds no seqkernels module and the same
    parameter names; the mode ``step`` runs the optimizer (the parameters
    move), and a case without an optimizer refuses it."""
    from benchmarks import seq2seq
    for cfg in _seq2seq_configs():
        ours = seq2seq.build(seq2seq.Job(cfg, "seqkernels-cpu",
                                         torch.float32), CPU)
        twin, _ = seq2seq._model(cfg, "torch-nn", CPU)
        assert not any(type(m).__module__.startswith("seqkernels.")
                       for m in twin.modules())
        assert [n for n, _ in twin.named_parameters()] == list(ours.leaves)
        before = [p.detach().clone() for p in ours.leaves.values()]
        fn, leaves = cases.runner(ours, cases.TRAIN_STEP)
        fn()
        assert all(p.grad is not None for p in leaves)
        assert all(not torch.equal(a, p) for a, p in zip(
            before, ours.leaves.values()) if p.grad.abs().sum() > 0)
    lstm_case = lstm.build(lstm.Job(TARGET_ROW, "seqkernels-cpu",
                                    torch.float32), CPU)
    with pytest.raises(ValueError, match="needs a case with an optimizer"):
        cases.runner(lstm_case, cases.TRAIN_STEP)


def test_job_order_takes_the_families_in_turn():
    """A run cut by --time-limit still reaches every kernel family: one
    configuration of each in turn, its providers together, torch.compile
    providers last."""
    from benchmarks import attention, gru_rnn
    gpu = torch.device("cuda")
    plans = {
        "lstm": lstm.plan(gpu, [c for c in lstm.configs(gpu, False)
                                if c.name in ("L1", "L2")], compile=True),
        "gru_rnn": gru_rnn.plan(gpu, gru_rnn.configs(gpu, False),
                                compile=True),
        "attention": attention.plan(gpu, [c for c in attention.configs(
            gpu, False) if c.name in ("A3", "A4")], compile=True),
    }
    queue = bench_run.job_order(plans)
    assert sorted(id(j) for _, j in queue) == sorted(
        id(j) for jobs in plans.values() for j in jobs)
    compiled = [i for i, (_, j) in enumerate(queue) if "compile" in j.provider]
    assert compiled and min(compiled) == len(queue) - len(compiled)
    configs = []
    for _, job in queue[:len(queue) - len(compiled)]:
        if not configs or configs[-1] != job.config.name:
            configs.append(job.config.name)
    assert configs == ["L1", "L7-gru", "A3", "L2", "L7-rnn", "A4"]


# --------------------------------------------------------------------------
# The exchange micro-benchmark (benchmarks/exchange/): it runs only on a
# GPU, but must build here for sm_90a without spills.

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not on PATH")
def test_exchange_benchmark_builds_without_spills(tmp_path):
    built = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "exchange" / "run.sh"),
         "--build-only"], check=False,
        env={**os.environ, "EXCHANGE_BUILD": str(tmp_path)},
        capture_output=True, text=True, timeout=600)
    report = built.stdout + built.stderr
    assert built.returncode == 0, report
    kernels = report.count("Compiling entry function")
    assert kernels == 3, report  # flags, grid-sync, cluster
    assert report.count("0 bytes spill stores, 0 bytes spill loads") == kernels
    assert (tmp_path / "exchange").is_file()


# --------------------------------------------------------------------------
# Recurrence algorithms (plan.py) and the FlashRNN anchor (target F1)

from benchmarks import flashrnn_anchor, gru_rnn, plan  # noqa: E402

GPU = torch.device("cuda")
PERSISTENT = {"seqkernels-cuda-persistent", "seqkernels-triton-persistent"}


def test_persistent_providers_are_planned_for_recurrent_rows(monkeypatch):
    rows = {c.name: c for c in lstm.configs(GPU, False)}
    jobs = lstm.plan(GPU, list(rows.values()), compile=False)
    for name, cfg in rows.items():
        providers = {j.provider for j in jobs if j.config is cfg}
        if cfg.kind == "seq":
            assert PERSISTENT <= providers, name
        else:
            assert not PERSISTENT & providers, name
    gru_jobs = gru_rnn.plan(GPU, gru_rnn.configs(GPU, False), compile=False)
    assert {j.provider for j in gru_jobs} >= PERSISTENT
    assert not any(j.provider.endswith("-per-step") for j in jobs + gru_jobs)
    # On the CPU the default is already the persistent kernel (where its
    # rule says so): the other algorithm is the per-step one.
    for cpu_jobs in (lstm.plan(CPU, lstm.configs(CPU, True), compile=False),
                     gru_rnn.plan(CPU, gru_rnn.configs(CPU, False),
                                  compile=False)):
        assert not any(j.provider.endswith("-persistent") for j in cpu_jobs)
        per_step = {j.config.name for j in cpu_jobs
                    if j.provider == "seqkernels-cpu-per-step"}
        assert per_step == {j.config.name for j in cpu_jobs
                            if getattr(j.config, "kind", "seq") == "seq"}
    # A build or install without the backend: listed, skipped with the reason.
    from seqkernels import _backend
    monkeypatch.setattr(_backend, "CUDA_BUILT", False)
    monkeypatch.setattr(_backend, "TRITON_INSTALLED", False)
    skips = {j.provider: j.skip for j in gru_rnn.plan(
        GPU, gru_rnn.configs(GPU, False)[:1], compile=False)}
    assert "without CUDA" in skips["seqkernels-cuda-persistent"]
    assert "triton is not installed" in skips["seqkernels-triton-persistent"]


def test_provider_names_and_algorithm_hook(monkeypatch):
    assert plan.seqkernels_provider("seqkernels-cuda") == ("cuda", "default")
    assert plan.seqkernels_provider("seqkernels-triton-persistent") == (
        "triton", "persistent")
    assert plan.seqkernels_provider("seqkernels-cpu-per-step") == (
        "cpu", "per_step")
    # What explain says for the algorithm asked for, whatever the shell's
    # SEQKERNELS_RECURRENCE.
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "per_step")
    module = seqkernels.GRU(3, 16, backend="cpu")
    x = torch.randn(4, 2, 3)
    default = plan.recurrent_case(cases.Case(list), "seqkernels-cpu",
                                  module, x)
    assert default.env == {"SEQKERNELS_RECURRENCE": "default"}
    assert default.algorithm() == "persistent"
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "persistent")
    per_step = plan.recurrent_case(cases.Case(list),
                                   "seqkernels-cpu-per-step", module, x)
    assert per_step.env == {"SEQKERNELS_RECURRENCE": "per_step"}
    assert per_step.algorithm() == "per_step"

    # Where the cpu rule gives the default the per-step kernels (float64;
    # B >= 64 with H >= 512), the column says so, with the rule's reason.
    float64 = (seqkernels.GRU(3, 16, backend="cpu").double(),
               torch.randn(4, 2, 3, dtype=torch.float64))
    large = (seqkernels.GRU(512, 512, backend="cpu"), torch.randn(1, 128, 512))
    for (m, inp), why in ((float64, "float64: "),
                          (large, "B = 128 >= 64 and H = 512 >= 512")):
        reason = seqkernels.explain(m, inp, recurrence="default").layers[0]\
            .reason
        assert reason.startswith(why)
        case = plan.recurrent_case(cases.Case(list), "seqkernels-cpu", m, inp)
        assert case.algorithm() == f"per_step ({reason})"
    # The persistent kernel asked for and declined: explain's summary.
    asked = plan.recurrent_case(cases.Case(list), "seqkernels-cpu-persistent",
                                *float64)
    assert asked.env == {"SEQKERNELS_RECURRENCE": "persistent"}
    assert asked.algorithm() == seqkernels.explain(
        *float64, recurrence="persistent").summary()
    assert asked.algorithm().startswith(
        "per_step (persistent declined: float64: ")


_SEEN: list[tuple[str, str]] = []   # (pass, SEQKERNELS_RECURRENCE)


class _Recorder(torch.autograd.Function):
    """The identity, noting SEQKERNELS_RECURRENCE in _SEEN in forward and
    backward."""

    @staticmethod
    def forward(ctx, x):
        _SEEN.append(("fwd", os.environ.get("SEQKERNELS_RECURRENCE")))
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        _SEEN.append(("bwd", os.environ.get("SEQKERNELS_RECURRENCE")))
        return grad


def test_recurrence_env_is_set_around_each_call_and_restored(monkeypatch):
    from benchmarks import check
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", "per_step")
    x = torch.randn(3, requires_grad=True)
    case = plan.recurrent_case(
        cases.Case(lambda: [_Recorder.apply(x)], {"x": x}),
        "seqkernels-cuda-persistent", seqkernels.RNN(3, 3), x)
    for mode in cases.MODES:
        _SEEN.clear()
        fn, _ = cases.runner(case, mode)
        assert os.environ["SEQKERNELS_RECURRENCE"] == "per_step"
        fn()
        assert os.environ["SEQKERNELS_RECURRENCE"] == "per_step"
        assert _SEEN and all(
            value == "persistent" for _, value in _SEEN), mode
        assert ("bwd" in {kind for kind, _ in _SEEN}) == (
            mode not in ("fwd", "infer"))
    _SEEN.clear()
    check.results(case, train=True)
    assert {kind for kind, _ in _SEEN} == {"fwd", "bwd"}
    assert all(value == "persistent" for _, value in _SEEN)
    monkeypatch.delenv("SEQKERNELS_RECURRENCE")
    cases.runner(case, "fwd")[0]()
    assert "SEQKERNELS_RECURRENCE" not in os.environ


def test_algorithm_column_and_label(tmp_path):
    """A recurrent row on the CPU runs both algorithms: seqkernels-cpu (the
    default, at this shape the persistent kernel) and
    seqkernels-cpu-per-step, each checked and timed; their rows and table
    lines say what ran (seqkernels.explain)."""
    summary = _run(tmp_path, [TARGET_ROW])
    assert summary.ok, summary.failures + summary.mismatches
    rows = [r for r in report.read_csv(tmp_path / "results.csv")
            if r["kernel"] == "lstm"]
    algorithms = {(r["provider"], r["algorithm"]) for r in rows}
    assert {("seqkernels-cpu", "persistent"),
            ("seqkernels-auto", "persistent"),
            ("seqkernels-cpu-per-step", "per_step"),
            ("torch-nn-lstm", "")} <= algorithms
    assert len(algorithms) == len({p for p, _ in algorithms})  # every mode
    assert all(r["status"] == "ok" and r["check"] == "ok" for r in rows
               if r["provider"].startswith("seqkernels-"))
    table = (tmp_path / "table.md").read_text()
    assert "| seqkernels-cpu float32 [persistent] |" in table
    assert "| seqkernels-cpu-per-step float32 |" in table

    # The label marks the persistent kernel, or its being declined; the
    # per-step kernels a default chose (the GPU's) are in the column only.
    declined = ("per_step (persistent declined: float64: the persistent "
                "kernel computes in float32)")
    gpu_default = "per_step (the per-step kernels are the default on the GPU)"
    assert report._label({"provider": "seqkernels-cpu-persistent",
                          "dtype": "float64", "algorithm": declined}) == (
        f"seqkernels-cpu-persistent float64 [{declined}]")
    assert report._label({"provider": "seqkernels-cuda", "dtype": "bfloat16",
                          "algorithm": gpu_default}) == (
        "seqkernels-cuda bfloat16")


ISSUE_15_GRID = ((1, 64, 64), (8, 128, 64), (32, 256, 128), (64, 512, 64))


def test_cpu_grid_configurations():
    """Target C1: LSTM, GRU and RNN at the four (B, H, T) cells of issue 15,
    I = H, inference, training forward and fwd+bwd, quick and full, each
    planned with the default and the per-step provider beside torch.nn, and
    paired for the table."""
    want = {(targets.grid_name(cell, B, H), B, H, H, T,
             ("infer", "fwd", "fwd+bwd"))
            for cell in ("lstm", "gru", "rnn") for B, H, T in ISSUE_15_GRID}
    for full in (False, True):
        grid = [c for c in lstm.configs(CPU, full) + gru_rnn.configs(CPU, full)
                if "C1" in c.target.split("/")]
        assert {(c.name, c.B, c.input_size, c.H, c.T, c.modes)
                for c in grid} == want
        assert len(grid) == 12
        assert all(c.cell in c.name for c in grid if hasattr(c, "cell"))
    assert lstm.configs(CPU, False)[2].target == "C1/CPU"  # B=32 H=256
    jobs = (lstm.plan(CPU, lstm.configs(CPU, False), compile=False)
            + gru_rnn.plan(CPU, gru_rnn.configs(CPU, False), compile=False))
    for cfg in grid:
        cell = cfg.name.split("-")[1]
        providers = {j.provider for j in jobs if j.config.name == cfg.name}
        assert {"seqkernels-cpu", "seqkernels-cpu-per-step",
                f"torch-nn-{cell}"} <= providers, cfg.name
    c1 = [p for p in lstm.PAIRINGS + gru_rnn.PAIRINGS if p.target == "C1"]
    assert {(p.ours_config, p.mode) for p in c1} == {
        (name, mode) for name, *_ in want
        for mode in ("infer", "fwd", "fwd+bwd")}
    assert all(p.anchor_provider == f"torch-nn-{p.ours_config.split('-')[1]}"
               and p.threshold == 1.0 for p in c1)


def test_grid_worst_ratio_line(tmp_path, monkeypatch, capsys):
    """A CPU run ends with the grid's worst anchor/ours ratio of
    seqkernels-cpu and where it is (run.main, on a tiny grid), the same
    line as in table.md; hand-made rows show which row it picks."""
    tiny = ((1, 4, 3), (2, 8, 3))
    monkeypatch.setattr(targets, "CPU_GRID", tiny)
    for kernel in (lstm, gru_rnn):
        monkeypatch.setattr(kernel, "CPU_GRID", tiny)
    monkeypatch.setattr(lstm, "PAIRINGS",
                        targets.grid_pairings("lstm", "torch-nn-lstm"))
    monkeypatch.setattr(gru_rnn, "PAIRINGS", tuple(
        p for cell in gru_rnn.CELLS
        for p in targets.grid_pairings(cell, f"torch-nn-{cell}")))
    monkeypatch.setattr(harness.Settings, "quick", classmethod(
        lambda cls: TINY))
    assert bench_run.main(["--out", str(tmp_path), "--device", "cpu",
                           "--only", "lstm,gru_rnn", "--configs", "C1",
                           "--no-compile"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("CPU grid"))
    rows = report.latest_run(report.read_csv(tmp_path / "results.csv"))
    pairings = lstm.PAIRINGS + gru_rnn.PAIRINGS
    ratios = []
    for p in pairings:
        ours, anchor = (next(r for r in rows if r["config"] == p.ours_config
                             and r["mode"] == p.mode
                             and r["provider"] == provider)
                        for provider in ("seqkernels-cpu", p.anchor_provider))
        ratios.append((report.time_ratio(ours, anchor), p.ours_config,
                       p.mode))
    assert len(ratios) == 18
    ratio, config, mode = min(ratios)
    assert line == (f"CPU grid (issue 15, C1): worst seqkernels-cpu / "
                    f"torch.nn ratio {ratio:.2f}x at {config} {mode} "
                    f"(torch time / ours, over 18 cells)")
    assert line in (tmp_path / "table.md").read_text()

    def row(provider, config, ms):
        base = {k: "" for k in report.COLUMNS}
        base.update(provider=provider, config=config, mode="fwd",
                    median_ms=str(ms), status="ok", check="ok")
        return base
    a, b = targets.grid_name("lstm", 1, 4), targets.grid_name("lstm", 2, 8)
    made = [row("seqkernels-cpu", a, 2.0), row("torch-nn-lstm", a, 3.0),
            row("seqkernels-cpu", b, 4.0), row("torch-nn-lstm", b, 3.0),
            row("seqkernels-cpu-per-step", a, 30.0)]
    line = report.grid_worst_line(made, lstm.PAIRINGS)
    assert "ratio 0.75x at grid-lstm-B2-H8 fwd" in line
    assert "over 2 cells; 4 of 6 cells without a ratio" in line
    assert "ratio 0.10x at grid-lstm-B1-H4 fwd" in report.grid_worst_line(
        made, lstm.PAIRINGS, "seqkernels-cpu-per-step")
    assert report.grid_worst_line(made, gru_rnn.PAIRINGS) == ""


def test_flashrnn_rows_and_skip_reasons(monkeypatch):
    rows = lstm.configs(GPU, False)
    flash = [j for j in lstm.plan(GPU, rows, compile=False)
             if j.provider == flashrnn_anchor.PROVIDER]
    assert [(j.config.name, j.dtype) for j in flash] == [
        ("L1", torch.bfloat16), ("L2", torch.bfloat16)]
    l1 = flash[0].config
    assert (l1.B, l1.input_size, l1.H, l1.T, l1.layers) == (16, 768, 768,
                                                            1024, 1)
    f1 = [p for p in lstm.PAIRINGS if p.target == "F1"]
    assert {(p.mode, p.ours_config, p.anchor_provider) for p in f1} == {
        ("fwd", "L1", flashrnn_anchor.PROVIDER),
        ("fwd+bwd", "L2", flashrnn_anchor.PROVIDER)}
    selected = bench_run._select(CPU, False, ["lstm"], ["F1"])
    assert [c.name for c in selected["lstm"]] == ["L1", "L2"]

    # Every reason it cannot run is said, never a silent gap.
    assert "CUDA only" in flashrnn_anchor.skip_reason(CPU)
    monkeypatch.setattr(flashrnn_anchor.importlib.util, "find_spec",
                        lambda name: None)
    assert "not installed" in flashrnn_anchor.skip_reason(GPU)
    monkeypatch.setattr(flashrnn_anchor.importlib.util, "find_spec",
                        lambda name: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "no CUDA device" in flashrnn_anchor.skip_reason(GPU)
    monkeypatch.setenv(flashrnn_anchor.SKIP_ENV,
                       "FlashRNN's first call did not finish in 150 s")
    assert flashrnn_anchor.skip_reason(GPU) == \
        "FlashRNN's first call did not finish in 150 s"
    skipped = [j for j in lstm.plan(GPU, rows, compile=False)
               if j.provider == flashrnn_anchor.PROVIDER]
    assert all(j.skip.endswith("150 s") for j in skipped)



def test_gpu_scripts_parse():
    for script in ("scripts/gpu_check.sh", "scripts/gpu_check_recurrence.sh",
                   "scripts/gpu_check_attention.sh", "scripts/gpu_lib.sh",
                   "benchmarks/exchange/run.sh"):
        parsed = subprocess.run(["bash", "-n", str(ROOT / script)],
                                check=False, capture_output=True, text=True)
        assert parsed.returncode == 0, (script, parsed.stderr)


def test_sanitized_attention_cases_run_every_tensor_core_kernel():
    """The subset of the attention cases that scripts/gpu_check_attention.sh
    runs under compute-sanitizer (--tensor-core) runs every template
    instance of the tensor-core kernels: its --list fails otherwise."""
    listed = subprocess.run(
        [sys.executable, str(ROOT / "scripts/sanitize_attention_cases.py"),
         "--list", "--tensor-core"],
        check=False, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "tensor-core kernels: the cases run" in listed.stdout
