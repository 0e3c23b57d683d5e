"""Compiles the Triton kernels for GPU targets on a machine without a GPU
(Triton's frontend, its optimizer passes and ptxas, no launch): catches what
the interpreter, which runs the kernels as plain Python, lets through.

The recurrent kernels are compiled from signatures written here; the
attention kernels and the persistent recurrence through their own
launchers: each op runs on small CPU tensors with the launchers told they
are on a GPU, and every kernel launch is caught and compiled with the
arguments, constants and launch options the launcher chose, instead of run.
The persistent kernels are compiled as their plan configures them on an
H100 (132 SMs), with several programs, so the flag waits and atomics go
through ptxas; their registers and spills are printed (ptxas -v).

    python scripts/triton_aot_check.py [--arch 90] [--tuned]

--tuned compiles, instead, every candidate of the attention kernels'
tuning spaces (triton_kernels/tuning.py) as the tuners would try them, and
prints each one's registers, spills and shared memory; it fails where a
candidate spills in the plain case (no mask, no dropout) or needs more
shared memory than sm_90 gives a block.

Run from the repository root, without TRITON_INTERPRET.
"""

import argparse
import contextlib
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.getcwd())
if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("unset TRITON_INTERPRET: this compiles for the GPU")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import torch  # noqa: E402
from triton.runtime.autotuner import Autotuner  # noqa: E402
from triton.runtime.jit import JITFunction, mangle_type  # noqa: E402

from seqkernels.cell_table import cell_desc  # noqa: E402
from seqkernels.sequence_driver import SeqBackward, SeqForward  # noqa: E402
from triton_kernels import (additive_attention, attention_scores,  # noqa: E402
                            cells, persistent, recurrent, sdpa, tuning)

# (storage type, USE_DOT, ACC, BLOCK_K): as recurrent._config picks them on
# a GPU.
DTYPES = [("fp32", True, tl.float32, 32),
          ("bf16", True, tl.float32, 64),
          ("fp16", True, tl.float32, 64),
          ("fp64", False, tl.float64, 8)]
CELLS = [(0, 0, 4, 4), (1, 0, 3, 4), (2, 0, 1, 1), (2, 1, 1, 1), (2, 2, 1, 1)]


def sig(fn, types, constexprs):
    signature = {}
    for name in fn.arg_names:
        signature[name] = "constexpr" if name in constexprs else types(name)
    return ASTSource(fn, signature, constexprs)


def arg_types(storage, acc, acc_ptrs):
    """The signature type of a kernel argument, by its name: the pointers
    named in ``acc_ptrs`` hold the accumulation type ``acc``, ``len_ptr``
    int64 lengths, other pointers the storage type; the rest are int32."""
    def types(name):
        if name in acc_ptrs:
            return "*" + acc
        if name == "len_ptr":
            return "*i64"
        if name.endswith("_ptr"):
            return "*" + storage
        return "i32"
    return types


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--tuned", action="store_true")
    options = parser.parse_args()
    arch = options.arch
    target = GPUTarget("cuda", arch, 32)
    if options.tuned:
        raise SystemExit(tuning_spaces(target))
    n = 0
    start = time.time()
    for (st, dot, acc, bk), (cell, act, G, S), lengths in \
            itertools.product(DTYPES, CELLS, (False, True)):
        accty = "fp64" if st == "fp64" else "fp32"
        bb, bh = (16, 16) if not dot else (16, 32)

        fwd_types = arg_types(st, accty, ("xg_ptr", "c_state_ptr",
                                          "saved_ptr", "cs_ptr"))
        common = dict(CELL=cell, ACT=act, G=G, S=S, HAS_LENGTHS=lengths,
                      USE_DOT=dot, ACC=acc, BLOCK_B=bb,
                      BLOCK_H=bh, BLOCK_K=bk)
        fwd = sig(recurrent._seq_fwd_step, fwd_types,
                  dict(common, HAS_W=True, HAS_BH=cell == 1, HAS_HOUT=True))
        triton.compile(fwd, target=target)

        bwd_types = arg_types(st, accty, (
            "ggn_ptr", "gx_ptr", "gh_ptr", "dh_carry_ptr", "carry_ptr",
            "saved_ptr", "c_prev_ptr", "cs_ptr"))
        bwd = sig(recurrent._seq_bwd_step, bwd_types,
                  dict(common, HAS_W=True, HAS_NEXT=True))
        triton.compile(bwd, target=target)
        n += 2
        if lengths:
            continue

        # The cell kernels take no lengths (no len_ptr).
        cell_types = arg_types(st, accty, ("saved_ptr",))
        cf = sig(cells._cell_fwd_kernel, cell_types,
                 dict(CELL=cell, ACT=act, G=G, S=S, HAS_BX=True,
                      HAS_BH=True, ACC=acc, BLOCK=1024))
        triton.compile(cf, target=target)
        cb = sig(cells._cell_bwd_kernel, cell_types,
                 dict(CELL=cell, ACT=act, G=G, S=S, ACC=acc, BLOCK=1024))
        triton.compile(cb, target=target)
        n += 2
    n += attention_kernels(target)
    n += persistent_kernels(target)
    print(f"compiled {n} kernels for sm_{arch} in {time.time() - start:.0f} s")


@contextlib.contextmanager
def compiling_launches(target):
    """Within: launchers believe their tensors are on a GPU, and a kernel
    launch compiles the kernel for ``target`` instead of running it."""
    compiled = []

    def run(self, *args, grid, warmup, **kwargs):
        names = [p.name for p in self.params]
        const = {p.name for p in self.params if p.is_constexpr}
        values = dict(zip(names, args), **{k: v for k, v in kwargs.items()
                                           if k in names})
        options = {k: v for k, v in kwargs.items() if k not in names}
        signature = {n: "constexpr" if n in const else mangle_type(values[n])
                     for n in names}
        constants = {n: values[n] for n in const}
        kernel = triton.compile(ASTSource(self, signature, constants),
                                target=target, options=options)
        kernel.launch_constants = constants  # for the reports
        compiled.append(kernel)

    def tuned_run(self, *args, **kwargs):
        # Every candidate the tuner would time, compiled instead.
        self.nargs = dict(zip(self.arg_names, args))
        for config in self.prune_configs(kwargs):
            self.fn.run(*args, **kwargs, **config.all_kwargs())

    modules = (sdpa, attention_scores, additive_attention)
    saved = [m.on_gpu for m in modules]
    saved_run, saved_tuned = JITFunction.run, Autotuner.run
    try:
        for m in modules:
            m.on_gpu = lambda t: True
        JITFunction.run = run
        Autotuner.run = tuned_run
        yield compiled
    finally:
        JITFunction.run, Autotuner.run = saved_run, saved_tuned
        for m, f in zip(modules, saved):
            m.on_gpu = f


def attention_kernels(target):
    """Every attention kernel, forward and backward, per storage dtype,
    with and without a mask, causal, dropout and tl.dot's TF32."""
    g = torch.Generator().manual_seed(0)

    def r(*shape, dtype):
        return torch.randn(*shape, generator=g).to(dtype)

    n = 0
    for dtype, tf32 in ((torch.float32, False), (torch.float32, True),
                        (torch.bfloat16, False), (torch.float16, False),
                        (torch.float64, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        B, H, T, D = 2, 2, 40, 64
        q, k, v = (r(B, H, T, D, dtype=dtype) for _ in range(3))
        mask = torch.rand(B, 1, T, T, generator=g) > 0.2
        rng = torch.tensor([1, 2], dtype=torch.int64)
        with compiling_launches(target) as done:
            for m, causal, p in ((None, False, 0.0), (mask, False, 0.1),
                                 (None, True, 0.0)):
                out, lse = sdpa.sdpa(q, k, v, m, p, causal, 0.125, rng)
                sdpa.sdpa_backward(out, q, k, v, out, lse, m, p, causal,
                                   0.125, rng)
                probs = attention_scores.attention_scores(q, k, m, causal,
                                                          0.125)
                attention_scores.attention_scores_backward(probs, q, k,
                                                           probs, 0.125)
            qa, ka = r(B, T, 32, dtype=dtype), r(B, T + 3, 32, dtype=dtype)
            va, w, bias = (r(B, T + 3, 24, dtype=dtype), r(32, dtype=dtype),
                           r(32, dtype=dtype))
            am = torch.rand(B, T, T + 3, generator=g) > 0.2
            for b_, m, need in ((bias, am, True), (None, None, False)):
                ctx, wts, lse = additive_attention.additive_attention(
                    qa, ka, va, w, b_, m, need)
                additive_attention.additive_attention_backward(
                    ctx, wts if need else None, qa, ka, va, w, b_, m, ctx,
                    lse)
        n += len(done)
    torch.backends.cuda.matmul.allow_tf32 = False
    return n


# sm_90's shared memory for one block (227 KiB), and the spills a candidate
# beside the table's may have in the plain case (the spaces' rule).
SM90_SHARED = 227 * 1024
PLAIN_SPILLS = 128


def _sdpa_table(kernel):
    return lambda dtype, D: sdpa._gpu_tiles(kernel, dtype, sdpa.pad_dim(D),
                                            sdpa.pad_dim(D))


def _scores_table(kernel):
    return lambda dtype, D: attention_scores._GPU_TILES[
        kernel, dtype == torch.float32, min(256, max(64, sdpa.pad_dim(D)))]


def _additive_table(dtype, D):
    return additive_attention._table_tiles(
        additive_attention._config(dtype, True, D))


# A compiled kernel's name -> (its table entry by (dtype, D), the names of
# its tiles).
TABLES = {"_sdpa_fwd_kernel": (_sdpa_table("fwd"), tuning.TILES),
          "_sdpa_bwd_dkdv_kernel": (_sdpa_table("dkdv"), tuning.TILES),
          "_sdpa_bwd_dq_kernel": (_sdpa_table("dq"), tuning.TILES),
          "_scores_fwd_kernel": (_scores_table("fwd"), tuning.TILES),
          "_scores_bwd_dq_kernel": (_scores_table("dq"), tuning.TILES),
          "_scores_bwd_dk_kernel": (_scores_table("dk"), tuning.TILES),
          **{f"_additive_{k}_kernel": (_additive_table,
                                       additive_attention._TUNING_TILES)
             for k in ("fwd", "bwd_probs", "bwd_dk")}}


def tuning_spaces(target):
    """Compiles every candidate of the attention kernels' tuning spaces, per
    dtype family and padded head dim (the additive kernels: value dim),
    plain and with a mask and dropout (the additive kernels: a mask, a bias
    and the weights); returns 0, or the failures' report."""
    g = torch.Generator().manual_seed(0)
    os.environ[tuning.ENV] = "1"
    failures = []
    start = time.time()
    n = 0
    for dtype, D in itertools.product(
            (torch.bfloat16, torch.float16, torch.float32), (64, 128, 256)):
        torch.backends.cuda.matmul.allow_tf32 = dtype == torch.float32
        B, H, T = 1, 2, 40
        q, k, v = (torch.randn(B, H, T, D, generator=g).to(dtype)
                   for _ in range(3))
        mask = torch.rand(B, 1, T, T, generator=g) > 0.2
        rng = torch.tensor([1, 2], dtype=torch.int64)
        for plain, (m, p) in ((True, (None, 0.0)), (False, (mask, 0.1))):
            with compiling_launches(target) as done:
                out, lse = sdpa.sdpa(q, k, v, m, p, False, 0.125, rng)
                sdpa.sdpa_backward(out, q, k, v, out, lse, m, p, False,
                                   0.125, rng)
                probs = attention_scores.attention_scores(q, k, m, False,
                                                          0.125)
                attention_scores.attention_scores_backward(probs, q, k,
                                                           probs, 0.125)
                qa, ka, va = (torch.randn(B, T, n, generator=g).to(dtype)
                              for n in (64, 64, D))
                w, bias = (torch.randn(64, generator=g).to(dtype)
                           for _ in range(2))
                am = None if plain else mask[:, 0]
                ctx, wts, stats = additive_attention.additive_attention(
                    qa, ka, va, w, None if plain else bias, am, not plain)
                additive_attention.additive_attention_backward(
                    ctx, None if plain else wts, qa, ka, va, w,
                    None if plain else bias, am, ctx, stats)
            for kernel in done:
                if kernel.name not in TABLES:  # rowdot: no tiles to tune
                    continue
                n += 1
                usage = ptxas_usage(kernel)
                shared = kernel.metadata.shared
                table_of, names = TABLES[kernel.name]
                tiles = {t: kernel.launch_constants.get(t) for t in names}
                line = (f"{kernel.name} {str(dtype)[6:]} D={D} {tiles} "
                        f"{'plain' if plain else 'mask+dropout'} "
                        f"warps={kernel.metadata.num_warps} "
                        f"stages={kernel.metadata.num_stages}: {usage}, "
                        f"shared {shared} B")
                table = tuple(table_of(dtype, D)) == (
                    *tiles.values(), kernel.metadata.num_warps,
                    kernel.metadata.num_stages)
                print(line + (" (the table's)" if table else ""), flush=True)
                spills = re.search(r"spills (\d+) B", usage)
                if (shared > SM90_SHARED or spills is None
                        or (plain and not table
                            and int(spills.group(1)) > PLAIN_SPILLS)):
                    failures.append(line)
    torch.backends.cuda.matmul.allow_tf32 = False
    print(f"compiled {n} candidates in {time.time() - start:.0f} s")
    return "\n".join(["FAILED:"] + failures) if failures else 0


# (B, H) of the persistent kernels' compiles: target L1's layer, a wide
# batch of a narrower one, and one that float32 is served in.
PERSISTENT_SHAPES = [(16, 768), (64, 256), (16, 256)]
H100_SMS = 132


def persistent_kernels(target):
    """The persistent recurrence (triton_kernels/persistent.py), forward and
    backward, for every cell in each dtype it runs on a GPU, at the
    configuration its plan picks on an H100 for PERSISTENT_SHAPES (several
    programs each, so with the waits); prints registers and spills."""
    g = torch.Generator().manual_seed(0)
    n = 0
    saved_sms = persistent.num_sms
    persistent.num_sms = lambda device: H100_SMS
    try:
        for (kind, act), dtype, (B, H) in itertools.product(
                (("lstm", "tanh"), ("gru", "tanh"), ("rnn", "tanh"),
                 ("rnn", "relu"), ("rnn", "identity")),
                (torch.float32, torch.bfloat16, torch.float16),
                PERSISTENT_SHAPES):
            cell = cell_desc(kind, act)
            T = 3
            plan = persistent.persistent_plan(cell, T, B, H, dtype,
                                              torch.device("cuda"))
            name = f"{kind}-{act} {str(dtype)[6:]} B={B} H={H}"
            if not plan.serves:
                print(f"persistent {name}: not served ({plan.reason})")
                continue
            assert plan.programs > 1, name
            fwd, bwd = _persistent_seqs(cell, T, B, H, dtype, g)
            with compiling_launches(target) as done:
                persistent.run_forward(cell, fwd, plan)
                persistent.run_backward(cell, bwd, plan)
            for k in done:
                print(f"persistent {name} {plan.reason}: {k.name} "
                      f"{ptxas_usage(k)}, shared {k.metadata.shared} B")
            n += len(done)
    finally:
        persistent.num_sms = saved_sms
    return n


def _persistent_seqs(cell, T, B, H, dtype, g):
    """A SeqForward and a SeqBackward of random CPU tensors, with lengths
    (the kernels' superset)."""
    acc = torch.float32
    G, S = cell.gates, cell.saved

    def r(*shape, dt=dtype):
        return torch.randn(*shape, generator=g).to(dt)

    lengths = torch.tensor([T] + [1] * (B - 1))
    c = r(B, H, dt=acc) if cell.has_c else None
    cs = r(T, B, H, dt=acc) if cell.has_c else None
    fwd = SeqForward(r(T, B, G * H, dt=acc), r(B, H), r(G * H, H),
                     r(G * H) if cell.split_grad else None, c, lengths,
                     r(T, B, S * H, dt=acc), cs, r(T, B, H), r(B, H))
    grad_xg = r(T, B, G * H, dt=acc)
    bwd = SeqBackward(r(T, B, H), r(G * H, H), r(B, H, dt=acc),
                      r(B, H, dt=acc) if cell.has_c or cell.direct_h
                      else None, r(T, B, S * H, dt=acc),
                      r(T, B, H) if cell.direct_h else None, c, cs, lengths,
                      grad_xg,
                      r(T, B, G * H, dt=acc) if cell.split_grad else grad_xg)
    return fwd, bwd


def ptxas_usage(kernel):
    """"N registers, S bytes spilled" from ptxas -v on the kernel's PTX
    (for the target its .target line names), or why not."""
    ptx = kernel.asm["ptx"]
    gpu = re.search(r"^\.target\s+(\w+)", ptx, re.MULTILINE).group(1)
    try:
        from triton.backends.nvidia.compiler import get_ptxas
        arch = int(re.sub(r"\D", "", gpu))
        ptxas = get_ptxas(arch).path
    except (ImportError, TypeError, AttributeError, RuntimeError) as e:
        return f"(no ptxas: {e})"
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        out = subprocess.run([ptxas, "-v", f"--gpu-name={gpu}", src, "-o",
                              os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True,
                             check=False).stderr
    regs = re.search(r"Used (\d+) registers", out)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads",
                       out)
    if regs is None or spills is None:
        return f"(ptxas said: {out.strip()[-200:]})"
    return (f"{regs.group(1)} registers, spills {spills.group(1)} B stored "
            f"/ {spills.group(2)} B loaded")


if __name__ == "__main__":
    main()
