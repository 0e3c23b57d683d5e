"""Self-test of the benchmark harness (benchmarks/): a tiny configuration on
the CPU goes through run.py's functions and must leave a CSV with the
expected columns, a target table and a plot; failures and wrong results
must become rows and marks, never a crash or a good-looking number."""

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import harness, lstm, report  # noqa: E402
from benchmarks import run as bench_run  # noqa: E402

CPU = torch.device("cpu")
TINY = harness.Settings(cpu_min_run_s=0.005, cpu_min_reps=2, cpu_max_s=1.0)
TARGET_ROW = lstm.Config("CPU", B=2, I=4, H=8, T=3, target="CPU",
                         modes=("fwd+bwd", "fwd", "bwd"))
CONFIGS = [
    TARGET_ROW,
    *lstm._sweep("batch", (1, 2), H=4, T=2, seq_providers=lstm.CORE),
    lstm.Config("cell-tiny", kind="cell", B=3, I=4, H=5),
    lstm.Config("pointwise-tiny", kind="pointwise", B=3, H=5),
]


def _run(tmp_path, configs=CONFIGS):
    return bench_run.run(tmp_path, CPU, {"lstm": configs}, TINY,
                         compile=False,
                         ceiling_sizes={"gemm_n": 64, "copy_mb": 1},
                         quiet=True)


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
    assert {r["mode"] for r in measured if r["config"] == "CPU"} == {
        "fwd", "bwd", "fwd+bwd"}

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
        if job.provider == "seqkernels-cpu":
            forward = case.forward
            case.forward = lambda: [o * 1.5 for o in forward()]
        return case
    monkeypatch.setattr(lstm, "build", wrong)
    summary = _run(tmp_path, [TARGET_ROW])
    assert not summary.ok
    rows = report.read_csv(tmp_path / "results.csv")
    ours = [r for r in rows if r["provider"] == "seqkernels-cpu"]
    assert all(r["check"].startswith("MISMATCH") for r in ours)
    assert "seqkernels-cpu float32 WRONG" in (tmp_path / "table.md").read_text()


def test_runner_modes():
    job = lstm.Job(TARGET_ROW, "seqkernels-cpu", torch.float32)
    case = lstm.build(job, CPU)
    for mode in harness.MODES:
        fn, leaves = harness.runner(case, mode)
        for leaf in leaves:
            leaf.grad = None
        fn()
        grads = [leaf.grad for leaf in leaves]
        if mode == "fwd":
            assert all(g is None for g in grads)
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
    inference = lstm.build(lstm.Job(
        lstm.Config("inf", B=1, H=4, T=3, modes=("fwd",), inference=True),
        "torch-nn-lstm", torch.float32), CPU)
    fn, leaves = harness.runner(inference, "fwd")
    assert leaves == []
    fn()
    with pytest.raises(ValueError):
        harness.runner(inference, "fwd+bwd")
