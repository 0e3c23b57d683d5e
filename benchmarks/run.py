"""The benchmark job: every provider of every configuration, checked, then
timed; results.csv, table.md and plots written into the output folder.

    python benchmarks/run.py [--out DIR] [--quick | --full]
                             [--only lstm,gru_rnn,attention,seq2seq]
                             [--configs L1,A2,...] [--providers a,b]
                             [--no-compile] [--list]

Kernels: ``lstm`` (lstm.py), ``gru_rnn`` (gru_rnn.py), ``attention``
(attention.py) and ``seq2seq`` (seq2seq.py: the examples' training steps),
all by default. Defaults: --quick on a machine without a
GPU (the CPU grid of target C1 for LSTM, GRU and RNN, small attention rows
and the examples' training steps, about two minutes on two cores; the run
ends with the grid's worst ratio, ``report.grid_worst_line``), --full with
a GPU (the target rows, listed in targets.py, and the sweeps). The families take turns, a
configuration each (``job_order``), so a run cut by --time-limit still
covers all of them. A recurrent seqkernels provider's rows say which recurrence
algorithm ran (the ``algorithm`` column; plan.py). Each provider runs inside
its own try/except: a failure becomes a
row whose note holds the error, and is printed loudly; nothing falls back
silently. Before timing, each provider's outputs and gradients are compared
once with a float32 PyTorch reference; a mismatch is printed, and marked
WRONG in the table.

Exit status: 1 if a seqkernels provider failed or mismatched (a skipped one,
for a reason printed, does not count), 0 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks import check, harness, report  # noqa: E402
from benchmarks.ceilings import Ceilings, measure_ceilings  # noqa: E402
from benchmarks.environment import environment  # noqa: E402
from benchmarks.kernels import KERNELS, pairings  # noqa: E402
from benchmarks.plan import dtype_name  # noqa: E402


@dataclass
class Summary:
    rows: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)      # our providers
    anchor_failures: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    ours_wrong: bool = False
    skipped: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    table: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures and not self.ours_wrong


def _progress(total: int, quiet: bool):
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        print("tqdm is not installed: no progress bar (pip install tqdm)",
              file=sys.stderr)
        return None
    return tqdm(total=total, unit="run", dynamic_ncols=True)


def _say(bar, text: str) -> None:
    if bar is not None:
        bar.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


def _error_text(exc: BaseException) -> str:
    where = ""
    tb = traceback.extract_tb(exc.__traceback__)
    if tb:
        frame = tb[-1]
        where = f" (at {Path(frame.filename).name}:{frame.lineno})"
    message = " ".join(str(exc).split())
    if isinstance(exc, NotImplementedError) and message.startswith(
            "Could not run "):
        # The dispatcher's message: its first sentence names the op and the
        # device; the rest lists the dispatch keys that do have a kernel.
        message = (message.split(". ", 1)[0]
                   + ": no kernel is registered for it")
    if len(message) > 400:
        message = message[:400] + "..."
    return f"{type(exc).__name__}: {message}{where}"


def _loud(bar, kind: str, what: str, text: str) -> None:
    _say(bar, f"\n!!!!! {kind}: {what}\n!!!!!   {text}\n")


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def ceiling_rows(ceilings: Ceilings, common: dict) -> list[dict]:
    return [
        {**common, "kernel": "ceiling", "provider": "gemm", "mode": "fwd",
         "config": "gemm", "shape": ceilings.gemm_desc,
         "median_ms": ceilings.gemm_ms, "tflops": ceilings.gemm_tflops,
         "status": "ok"},
        {**common, "kernel": "ceiling", "provider": "copy", "mode": "fwd",
         "config": "copy", "shape": ceilings.copy_desc,
         "median_ms": ceilings.copy_ms, "gbps": ceilings.copy_gbps,
         "status": "ok"},
    ]


def run_job(kernel, job, device: torch.device, settings: harness.Settings,
            common: dict, summary: Summary, bar,
            deadline: Optional[float] = None) -> None:
    """Check and time one job (a provider on a configuration, all of its
    modes); its rows go into ``summary.rows``."""
    name = kernel.KERNEL
    cfg = job.config
    dtype = dtype_name(job.dtype)
    what = f"{name} {job.provider} {cfg.name} [{cfg.shape}] {dtype}"
    ours = job.provider.startswith("seqkernels-")
    failures = summary.failures if ours else summary.anchor_failures

    def row(mode, **values):
        return {**common, "kernel": name, "provider": job.provider,
                "mode": mode, "config": cfg.name, "target": cfg.target,
                "shape": cfg.shape, "dtype": dtype, "sweep": cfg.sweep,
                "sweep_x": cfg.sweep_x if cfg.sweep else "",
                "flops": kernel.flops(cfg, mode) or "",
                "bytes": kernel.pointwise_bytes(cfg, mode, job.dtype) or "",
                "io_mem_mb": (kernel.io_mem_mb(cfg, mode, job.dtype)
                              if hasattr(kernel, "io_mem_mb") else 0) or "",
                **values}

    def fail_all(text, status="failed"):
        for mode in cfg.modes:
            summary.rows.append(row(mode, status=status, note=text))
            if bar is not None:
                bar.update(1)

    skip = job.skip
    if not skip and deadline is not None and time.perf_counter() > deadline:
        skip = "not run: --time-limit reached"
    if skip:
        _say(bar, f"skipped: {what}: {skip}")
        summary.skipped.append(f"{what}: {skip}")
        fail_all(skip, status="skipped")
        return
    if bar is not None:
        bar.set_description(f"{cfg.name} {job.provider} {dtype}")
    try:
        case = kernel.build(job, device)
    except Exception as exc:  # noqa: BLE001 - recorded and printed
        text = _error_text(exc)
        _loud(bar, "FAILED to build", what, text)
        failures.append(f"{what}: {text}")
        fail_all(text)
        return
    try:
        result = check.check(case, kernel.reference(job, device), job.dtype,
                             cfg.train)
    except Exception as exc:  # noqa: BLE001
        text = "check run failed: " + _error_text(exc)
        _loud(bar, "FAILED", what, text)
        failures.append(f"{what}: {text}")
        fail_all(text)
        return
    check_text = "ok" if result.ok else f"MISMATCH: {result.detail}"
    if not result.ok:
        _loud(bar, "WRONG RESULTS (timed anyway, marked WRONG)", what,
              result.detail)
        summary.mismatches.append(f"{what}: {result.detail}")
        summary.ours_wrong |= ours
    for mode in cfg.modes:
        try:
            t = harness.measure(case, mode, device, settings)
        except Exception as exc:  # noqa: BLE001
            text = _error_text(exc)
            _loud(bar, f"FAILED in {mode}", what, text)
            failures.append(f"{what} {mode}: {text}")
            summary.rows.append(row(mode, status="failed", note=text,
                                    check=check_text, check_err=result.err))
            _free(device)
        else:
            f = kernel.flops(cfg, mode)
            b = kernel.pointwise_bytes(cfg, mode, job.dtype)
            summary.rows.append(row(
                mode, algorithm=case.algorithm() if case.algorithm else "",
                median_ms=t.median_ms, p20_ms=t.p20_ms,
                p80_ms=t.p80_ms, reps=t.reps,
                tflops=harness.tflops(f, t.median_ms) if f else math.nan,
                gbps=harness.gbps(b, t.median_ms) if b else math.nan,
                peak_mem_mb=t.peak_mem_mb, status="ok", check=check_text,
                check_err=result.err, note=case.note))
        if bar is not None:
            bar.update(1)


def job_order(plans: dict[str, Sequence]) -> list[tuple[str, object]]:
    """The order the jobs run in, as (kernel, job): the configurations of
    the kernel families taken in turn (the first of each family, then the
    second of each, ...), every provider of a configuration together; the
    torch.compile providers, which spend most of their time compiling,
    last. A run cut by --time-limit then still covers every family."""
    groups: dict[str, list[list]] = {}
    for name, jobs in plans.items():
        family = groups[name] = []
        for job in jobs:
            if not family or family[-1][-1].config is not job.config:
                family.append([])
            family[-1].append(job)
    queue = []
    for i in range(max((len(g) for g in groups.values()), default=0)):
        for name, gs in groups.items():
            if i < len(gs):
                queue += [(name, job) for job in gs[i]]
    queue.sort(key=lambda item: "compile" in item[1].provider)
    return queue


def run(out_dir: Path, device: torch.device,
        selected: dict[str, Sequence], settings: harness.Settings, *,
        compile: bool, providers: Optional[Sequence[str]] = None,
        ceiling_sizes: Optional[dict] = None, quiet: bool = False,
        time_limit_s: Optional[float] = None) -> Summary:
    """Run the configurations in ``selected`` (kernel name -> configs) and
    write results.csv (appended, job by job), table.md and the plots into
    ``out_dir``. Jobs that would start after ``time_limit_s`` seconds are
    recorded as skipped."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment(device)
    summary = Summary()
    print(f"device: {env['device']}; torch {env['torch']}, triton "
          f"{env['triton']}, CUDA {env['cuda']}; commit {env['commit']}",
          file=sys.stderr)
    ceilings = measure_ceilings(device, settings, **(ceiling_sizes or {}))
    common = {**env, "run_id": env["date"],
              "gemm_ceiling_tflops": ceilings.gemm_tflops,
              "copy_ceiling_gbps": ceilings.copy_gbps}
    print(f"ceilings: {ceilings.gemm_desc} {ceilings.gemm_tflops:.4g} TFLOP/s, "
          f"{ceilings.copy_desc} {ceilings.copy_gbps:.4g} GB/s",
          file=sys.stderr)
    summary.rows += ceiling_rows(ceilings, common)
    csv_path = out_dir / "results.csv"
    report.append_csv(csv_path, summary.rows)

    plans = {}
    for name, configs in selected.items():
        jobs = KERNELS[name].plan(device, configs, compile=compile)
        if providers:
            jobs = [j for j in jobs if any(p in j.provider for p in providers)]
        plans[name] = jobs
    total = sum(len(j.config.modes) for jobs in plans.values() for j in jobs)
    bar = _progress(total, quiet)
    deadline = None if time_limit_s is None else \
        time.perf_counter() + time_limit_s
    queue = job_order(plans)
    try:
        for name, job in queue:
            done = len(summary.rows)
            try:
                run_job(KERNELS[name], job, device, settings, common,
                        summary, bar, deadline)
            finally:
                _free(device)
                # Written job by job: a run cut short keeps its rows.
                report.append_csv(csv_path, summary.rows[done:])
    finally:
        if bar is not None:
            bar.close()

    rows = report.latest_run(report.read_csv(csv_path))
    summary.table = report.markdown(rows, pairings(selected))
    (out_dir / "table.md").write_text(summary.table)
    summary.files = [csv_path, out_dir / "table.md"]
    summary.files += report.plot_sweeps(rows, out_dir)
    return summary


def _select(device: torch.device, full: bool, only: Sequence[str],
            names: Optional[Sequence[str]]) -> dict[str, list]:
    selected = {}
    for kernel in only:
        module = KERNELS[kernel]
        if names:
            # Each name is looked up in the run's own list first, then in
            # the device's other list (quick or full), then among the GPU
            # rows, so a GPU row can be asked for on CPU too; a name's
            # matches all come from the first list that has any. A name
            # matches a configuration's name, the family it heads
            # ("name-..."), or one of its targets ("A1" in "A1/A2").
            pools = [module.configs(device, full),
                     module.configs(device, not full),
                     module.configs(torch.device("cuda"), True)]
            chosen = []
            for want in names:
                if not want:
                    continue
                for pool in pools:
                    found = [c for c in pool if c.name == want
                             or c.name.startswith(want + "-")
                             or want in c.target.split("/")]
                    if found:
                        chosen += [c for c in found if c not in chosen]
                        break
        else:
            chosen = module.configs(device, full)
        if chosen:
            selected[kernel] = chosen
    return selected


def _print_plan(device: torch.device, selected: dict[str, Sequence],
                compile: bool, providers: Optional[Sequence[str]]) -> None:
    for name, configs in selected.items():
        for job in KERNELS[name].plan(device, configs, compile=compile):
            if providers and not any(p in job.provider for p in providers):
                continue
            print(f"{name:9} {job.config.name:22} {job.config.shape:42} "
                  f"{','.join(job.config.modes):16} {job.provider:32} "
                  f"{dtype_name(job.dtype):9}"
                  f"{' SKIP: ' + job.skip if job.skip else ''}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="seqkernels benchmarks against their anchors",
        epilog="Exit status 1 if a seqkernels provider failed or mismatched.")
    parser.add_argument("--out", type=Path, default=Path("bench-out"),
                        help="output folder (default bench-out/)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="fewer configurations and repetitions "
                           "(default without a GPU)")
    size.add_argument("--full", action="store_true",
                      help="every target row and sweep (default with a GPU)")
    parser.add_argument("--only", default=",".join(KERNELS),
                        help=f"kernels to run, comma-separated "
                             f"(of {', '.join(KERNELS)})")
    parser.add_argument("--configs", default=None,
                        help="configurations by name, comma-separated; a "
                             "name also selects its family and its target "
                             "rows: 'L5' gives L5-packed and L5-padded, "
                             "'batch' the batch sweep, 'A2' every SDPA row, "
                             "'sdpa-hd64-causal' that T sweep")
    parser.add_argument("--providers", default=None,
                        help="keep only providers whose name contains one "
                             "of these, comma-separated")
    parser.add_argument("--no-compile", dest="compile", action="store_false",
                        help="skip the torch.compile providers (a compile "
                             "takes about 10 s per shape on a 2-core CPU)")
    parser.add_argument("--time-limit", type=float, default=None,
                        metavar="SECONDS",
                        help="start no new job after this many seconds; the "
                             "rest are recorded as skipped (a job already "
                             "running finishes)")
    parser.add_argument("--list", action="store_true",
                        help="list what would run, and exit (without a GPU "
                             "and without --device: also what would run on "
                             "one)")
    parser.add_argument("--device", default=None,
                        help="cuda or cpu (default: cuda if available)")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device or
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    full = args.full or (not args.quick and device.type == "cuda")
    compile = args.compile
    only = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in only if k not in KERNELS]
    if unknown:
        print(f"unknown kernel(s) {unknown}; known: {list(KERNELS)}",
              file=sys.stderr)
        return 2
    names = args.configs.split(",") if args.configs else None
    providers = args.providers.split(",") if args.providers else None
    selected = _select(device, full, only, names)
    if not selected:
        print("no configuration matches", file=sys.stderr)
        return 2
    if args.list:
        _print_plan(device, selected, compile, providers)
        if args.device is None and device.type != "cuda":
            # No GPU here: show what the same command would run on one.
            gpu = torch.device("cuda")
            print(f"\n# on a GPU (--device cuda), the same command "
                  f"({'full' if full else 'quick'}) runs:")
            _print_plan(gpu, _select(gpu, full, only, names), compile,
                        providers)
        return 0
    settings = harness.Settings() if full else harness.Settings.quick()
    start = time.perf_counter()
    summary = run(args.out, device, selected, settings, compile=compile,
                  providers=providers, time_limit_s=args.time_limit)
    elapsed = time.perf_counter() - start

    rows = report.latest_run(report.read_csv(args.out / "results.csv"))
    print(report.ceilings_line(rows))
    print()
    print(report.target_table(rows, pairings(selected)))
    print()
    # The answer of a CPU run (target C1), its worst cell; "" without one.
    worst = report.grid_worst_line(rows, pairings(selected))
    if worst:
        print(worst)
        print()
    for path in summary.files:
        print(f"wrote {path}")
    print(f"{len(summary.rows)} rows in {elapsed:.0f} s "
          f"({'full' if full else 'quick'}, {device.type})")
    for title, items in (("SKIPPED", summary.skipped),
                         ("ANCHOR FAILURES", summary.anchor_failures),
                         ("WRONG RESULTS", summary.mismatches),
                         ("SEQKERNELS FAILURES", summary.failures)):
        if items:
            print(f"\n{title} ({len(items)}):", file=sys.stderr)
            for item in items:
                print(f"  {item}", file=sys.stderr)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
