"""Results: tidy CSV rows, the markdown target table, plots from the CSV.

Every measurement is one row of ``results.csv`` (``COLUMNS``; ``io_mem_mb``
is the memory a peak is held against, in rows with such a target;
``algorithm`` the recurrence algorithm a seqkernels provider ran, or asked
for where the backend cannot say: see plan.py). Runs
append to the file; ``run_id`` (the run's start time) tells runs apart, and
the table and plots are drawn from the rows of one run, read back from the CSV
(so they can be redrawn later: ``python benchmarks/report.py results.csv``).
"""

from __future__ import annotations

import csv
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional, Sequence

if __package__ in (None, ""):  # run as a script: report.py results.csv
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.targets import CPU_GRID_TARGET

COLUMNS = (
    "kernel", "provider", "mode", "config", "target", "shape", "dtype",
    "algorithm", "median_ms", "p20_ms", "p80_ms", "reps", "flops", "tflops", "bytes",
    "gbps", "peak_mem_mb", "io_mem_mb", "status", "check", "check_err",
    "note", "sweep", "sweep_x", "gemm_ceiling_tflops", "copy_ceiling_gbps",
    "device", "torch", "triton", "cuda", "commit", "date", "host", "run_id",
)


# --------------------------------------------------------------------------
# CSV


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def append_csv(path: Path, rows: Sequence[dict]) -> None:
    """Append ``rows`` to ``path``. A file with other columns (an older
    schema) is rewritten with the union of both, its rows kept."""
    path = Path(path)
    columns = list(COLUMNS)
    columns += sorted({k for r in rows for k in r} - set(columns))
    old: list[dict] = []
    if path.exists() and path.stat().st_size:
        with open(path, newline="") as f:
            header = csv.DictReader(f).fieldnames or []
        if header == columns:
            with open(path, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns, restval="")
                for r in rows:
                    writer.writerow({k: _cell(r.get(k)) for k in columns})
            return
        old = read_csv(path)
        columns += [c for c in header if c not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for r in old:
            writer.writerow({k: r.get(k, "") for k in columns})
        for r in rows:
            writer.writerow({k: _cell(r.get(k)) for k in columns})


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def latest_run(rows: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of the most recent run in ``rows``."""
    if not rows:
        return []
    last = max(r["run_id"] for r in rows)
    return [r for r in rows if r["run_id"] == last]


def num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------
# Markdown


def _ms(value) -> str:
    v = num(value)
    if math.isnan(v):
        return "-"
    return f"{v:.4g}"


def _label(row: dict) -> str:
    """Provider and dtype, and the algorithm where it is news: the
    persistent kernel, or its being declined where it was asked for. The
    per-step kernels asked for, or chosen by a backend's default (the
    reason is in the ``algorithm`` column), are left unmarked, so the GPU's
    default rows stay short."""
    algorithm = row.get("algorithm", "")
    plain = (algorithm == "" or algorithm.startswith("per_step")
             and "persistent declined" not in algorithm)
    extra = "" if plain else f" [{algorithm}]"
    return f"{row['provider']} {row['dtype']}{extra}"


def _ok(row: dict) -> bool:
    return row["status"] == "ok" and not math.isnan(num(row["median_ms"]))


def _wrong(row: dict) -> bool:
    return row["check"].startswith("MISMATCH")


def ceilings_line(rows: Sequence[dict]) -> str:
    parts = []
    for r in rows:
        if r["kernel"] != "ceiling":
            continue
        if r["provider"] == "gemm":
            parts.append(f"{r['shape']}: {num(r['tflops']):.4g} TFLOP/s")
        elif r["provider"] == "copy":
            parts.append(f"{r['shape']}: {num(r['gbps']):.4g} GB/s")
    return "Ceilings (this run): " + ("; ".join(parts) or "not measured")


def target_table(rows: Sequence[dict], pairings: Iterable) -> str:
    """Each target row with seqkernels' time beside its anchor's: one line
    per (seqkernels provider, anchor provider and dtype). A pairing's
    ``metric`` may instead be "copy" (ours GB/s against the copy ceiling)
    or "memory" (ours peak MB against the row's ``io_mem_mb``, met when
    peak / io_mem_mb <= threshold). A time pairing with ``tflops`` also
    gives each side's achieved TFLOP/s and its share of the GEMM ceiling
    measured in the same run."""
    head = ("| id | workload | ours | ours ms | anchor | anchor ms "
            "| anchor/ours | target | met |")
    lines = [head, "|" + " --- |" * 9]
    copy_gbps = _ceiling(rows, "copy", "gbps")
    gemm_tflops = _ceiling(rows, "gemm", "tflops")

    def with_tflops(text: str, row: Optional[dict], p) -> str:
        if not (p.tflops and row is not None and _ok(row)):
            return text
        achieved = num(row["tflops"])
        if math.isnan(achieved):
            return text
        return (f"{text} ({achieved:.4g} TFLOP/s, "
                f"{_pct(achieved / gemm_tflops)} of GEMM)")
    for p in pairings:
        ours_rows = [r for r in rows if r["config"] == p.ours_config
                     and r["mode"] == p.mode
                     and r["provider"].startswith("seqkernels-")
                     and r["status"] != "skipped"]
        for ours in ours_rows:
            ours_text = _label(ours) + (" WRONG" if _wrong(ours) else "")
            ours_ms = _ms(ours["median_ms"]) if _ok(ours) else ours["status"]
            if p.metric == "copy":
                frac = num(ours["gbps"]) / copy_gbps
                met = ""
                if _ok(ours) and not math.isnan(frac):
                    met = "yes" if frac >= p.threshold else "no"
                if _wrong(ours):
                    met = "no (wrong)"
                lines.append(
                    f"| {p.target} | {p.workload} | {ours_text} | {ours_ms} "
                    f"({_ms(ours['gbps'])} GB/s) | copy ceiling | "
                    f"{_ms(copy_gbps)} GB/s | {_pct(frac)} of copy | "
                    f"{p.target_text} | {met} |")
                continue
            if p.metric == "memory":
                peak = num(ours["peak_mem_mb"])
                io = num(ours.get("io_mem_mb"))
                frac = peak / io if io else math.nan
                met = ""
                if _ok(ours) and not math.isnan(frac):
                    met = "yes" if frac <= p.threshold else "no"
                if _wrong(ours):
                    met = "no (wrong)"
                peak_text = ("not measured" if math.isnan(peak)
                             else f"{_ms(peak)} MB peak")
                lines.append(
                    f"| {p.target} | {p.workload} | {ours_text} | "
                    f"{peak_text} | inputs+outputs+scores | {_ms(io)} MB | "
                    f"{'-' if math.isnan(frac) else f'{frac:.2f}x'} | "
                    f"{p.target_text} | {met} |")
                continue
            provider = p.anchor_provider or ours["provider"]
            anchors = [r for r in rows if r["config"] == p.anchor_config
                       and r["mode"] == p.mode and r["provider"] == provider]
            for anchor in anchors or [None]:
                if anchor is None:
                    a_text, a_ms, ratio = provider, "not run", math.nan
                else:
                    a_text = _label(anchor) + (
                        " WRONG" if _wrong(anchor) else "")
                    a_ms = (_ms(anchor["median_ms"]) if _ok(anchor)
                            else anchor["status"])
                    ratio = time_ratio(ours, anchor)
                a_ms = with_tflops(a_ms, anchor, p)
                met = ""
                if p.threshold is not None and not math.isnan(ratio):
                    met = "yes" if ratio >= p.threshold else "no"
                if _wrong(ours):
                    met = "no (wrong)"
                ratio_text = "-" if math.isnan(ratio) else f"{ratio:.2f}x"
                lines.append(
                    f"| {p.target} | {p.workload} | {ours_text} | "
                    f"{with_tflops(ours_ms, ours, p)} | "
                    f"{a_text} | {a_ms} | {ratio_text} | {p.target_text} | "
                    f"{met} |")
    if len(lines) == 2:
        lines.append("| - | no target row was run | | | | | | | |")
    return "\n".join(lines)


def _ceiling(rows: Sequence[dict], provider: str, column: str) -> float:
    """The run's ceiling ``provider`` ("gemm" or "copy"), its ``column``;
    NaN where the run has none."""
    return next((num(r[column]) for r in rows if r["kernel"] == "ceiling"
                 and r["provider"] == provider), math.nan)


def time_ratio(ours: dict, anchor: dict) -> float:
    """anchor time / ours (higher is better), NaN unless both ran."""
    if not (_ok(ours) and _ok(anchor)):
        return math.nan
    return num(anchor["median_ms"]) / num(ours["median_ms"])


def grid_worst_line(rows: Sequence[dict], pairings: Iterable,
                    provider: str = "seqkernels-cpu") -> str:
    """One line with the worst ratio of ``provider`` over the CPU grid
    (target C1: every cell >= 1.0x torch), the table's anchor time / ours,
    and the row and mode it is at; "" where no grid row of ``provider``
    was run (a GPU run, or a run without the grid)."""
    grid = [p for p in pairings if p.target == CPU_GRID_TARGET]
    found, ratios = 0, []
    for p in grid:
        ours = [r for r in rows if r["config"] == p.ours_config
                and r["mode"] == p.mode and r["provider"] == provider
                and r["status"] != "skipped"]
        for o in ours:
            found += 1
            for anchor in [r for r in rows if r["config"] == p.anchor_config
                           and r["mode"] == p.mode
                           and r["provider"] == p.anchor_provider]:
                ratio = time_ratio(o, anchor)
                if not math.isnan(ratio):
                    ratios.append((ratio, _wrong(o), p.ours_config, p.mode))
    if not found:
        return ""
    head = f"CPU grid (issue 15, {CPU_GRID_TARGET}): "
    if not ratios:
        return head + f"no {provider} / torch.nn ratio (no cell ran)"
    ratio, wrong, config, mode = min(ratios)
    lacking = (f"; {len(grid) - len(ratios)} of {len(grid)} cells without "
               "a ratio" if len(ratios) < len(grid) else "")
    return (f"{head}worst {provider} / torch.nn ratio {ratio:.2f}x at "
            f"{config} {mode}{' (WRONG)' if wrong else ''} "
            f"(torch time / ours, over {len(ratios)} cells{lacking})")


def _pct(frac: float) -> str:
    return "-" if math.isnan(frac) else f"{100 * frac:.0f}%"


def all_rows_table(rows: Sequence[dict]) -> str:
    """Every measurement of the run, one line each."""
    lines = ["| kernel | config | shape | mode | provider | dtype | algorithm "
             "| median ms | p20..p80 ms | TFLOP/s | GB/s | peak MB | check "
             "| status |",
             "|" + " --- |" * 14]
    for r in rows:
        if r["kernel"] == "ceiling":
            continue
        spread = (f"{_ms(r['p20_ms'])}..{_ms(r['p80_ms'])}"
                  if _ok(r) else "-")
        status = r["status"] + (f": {r['note']}" if r["note"] else "")
        lines.append(
            f"| {r['kernel']} | {r['config']} | {r['shape']} | {r['mode']} | "
            f"{r['provider']} | {r['dtype']} | {r.get('algorithm') or '-'} | "
            f"{_ms(r['median_ms'])} | "
            f"{spread} | {_ms(r['tflops'])} | {_ms(r['gbps'])} | "
            f"{_ms(r['peak_mem_mb'])} | {r['check'] or '-'} | "
            f"{status.replace('|', '/')} |")
    return "\n".join(lines)


def markdown(rows: Sequence[dict], pairings: Iterable) -> str:
    """table.md: the environment, the ceilings, the target table and every
    row of the run."""
    first = next((r for r in rows), None)
    env = ""
    if first is not None:
        env = (f"{first['device']}; torch {first['torch']}, triton "
               f"{first['triton']}, CUDA {first['cuda']}; commit "
               f"{first['commit']}; {first['date']}")
    pairings = list(pairings)
    worst = grid_worst_line(rows, pairings)
    return "\n\n".join([
        "# seqkernels benchmarks", env, ceilings_line(rows),
        "## Targets (anchor/ours: higher is better)",
        target_table(rows, pairings), *([worst] if worst else []),
        "## All measurements", all_rows_table(rows), ""])


# --------------------------------------------------------------------------
# Plots


def plot_sweeps(rows: Sequence[dict], out_dir: Path) -> list[Path]:
    """One PNG per (sweep, mode): time against the swept size, one line per
    provider and dtype, and the achieved TFLOP/s beneath. Returns the
    files written; none (with a message) if matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plots (pip install matplotlib)",
              file=sys.stderr)
        return []
    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["sweep"] and _ok(r):
            groups[(r["kernel"], r["sweep"], r["mode"])][_label(r)].append(
                (num(r["sweep_x"]), num(r["median_ms"]), num(r["tflops"])))
    written = []
    device = rows[0]["device"] if rows else ""
    for (kernel, sweep, mode), lines in sorted(groups.items()):
        fig, (ax_t, ax_f) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
        for label, points in sorted(lines.items()):
            points.sort()
            xs = [p[0] for p in points]
            ax_t.plot(xs, [p[1] for p in points], marker="o", label=label)
            ax_f.plot(xs, [p[2] for p in points], marker="o", label=label)
        ticks = sorted({p[0] for pts in lines.values() for p in pts})
        ax_t.set_xscale("log", base=2)
        ax_t.set_yscale("log")
        ax_f.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax_f.minorticks_off()
        ax_t.set_ylabel("median time (ms)")
        ax_t.set_title(f"{kernel} {mode}, sweep over {sweep}\n{device}",
                       fontsize=10)
        ax_t.grid(True, which="both", alpha=0.3)
        ax_t.legend(fontsize=8)
        ax_f.set_ylabel("achieved TFLOP/s")
        ax_f.set_xlabel(sweep.split("-")[0])
        ax_f.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        path = Path(out_dir) / f"{kernel}-sweep-{sweep}-{mode.replace('+', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Redraw table.md and the plots of the latest run in a results CSV."""
    import argparse

    # Imported here, not at the top: the CSV and table functions above need
    # neither torch nor the kernel modules.
    from benchmarks.kernels import KERNELS, pairings
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("csv", type=Path)
    args = parser.parse_args(argv)
    rows = latest_run(read_csv(args.csv))
    kernels = {r["kernel"] for r in rows}
    text = markdown(rows, pairings(k for k in KERNELS if k in kernels))
    (args.csv.parent / "table.md").write_text(text)
    print(text)
    for path in plot_sweeps(rows, args.csv.parent):
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
