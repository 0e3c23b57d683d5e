"""Compiles the Triton kernels of the recurrent cells for GPU targets on a
machine without a GPU (Triton's frontend, its optimizer passes and ptxas,
no launch): catches what the interpreter, which runs the kernels as plain
Python, lets through.

    python scripts/triton_aot_check.py [--arch 90]

Run from the repository root, without TRITON_INTERPRET.
"""

import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.getcwd())
if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("unset TRITON_INTERPRET: this compiles for the GPU")

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from triton_kernels import cells, recurrent  # noqa: E402

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", type=int, default=90)
    arch = parser.parse_args().arch
    target = GPUTarget("cuda", arch, 32)
    n = 0
    start = time.time()
    for (st, dot, acc, bk), (cell, act, G, S), lengths in \
            itertools.product(DTYPES, CELLS, (False, True)):
        accty = "fp64" if st == "fp64" else "fp32"
        bb, bh = (16, 16) if not dot else (16, 32)

        def fwd_types(name):
            if name in ("xg_ptr", "c_state_ptr", "saved_ptr", "cs_ptr"):
                return "*" + accty
            if name == "len_ptr":
                return "*i64"
            if name.endswith("_ptr"):
                return "*" + st
            return "i32"

        common = dict(CELL=cell, ACT=act, G=G, S=S, HAS_LENGTHS=lengths,
                      USE_DOT=dot, ACC=acc, BLOCK_B=bb,
                      BLOCK_H=bh, BLOCK_K=bk)
        fwd = sig(recurrent._seq_fwd_step, fwd_types,
                  dict(common, HAS_W=True, HAS_BH=cell == 1, HAS_HOUT=True))
        triton.compile(fwd, target=target)

        def bwd_types(name):
            if name in ("ggn_ptr", "gx_ptr", "gh_ptr", "dh_carry_ptr",
                        "carry_ptr", "saved_ptr", "c_prev_ptr", "cs_ptr"):
                return "*" + accty
            if name == "len_ptr":
                return "*i64"
            if name.endswith("_ptr"):
                return "*" + st
            return "i32"

        bwd = sig(recurrent._seq_bwd_step, bwd_types,
                  dict(common, HAS_W=True, HAS_NEXT=True))
        triton.compile(bwd, target=target)
        n += 2
        if lengths:
            continue

        def cell_types(name):
            if name == "saved_ptr":
                return "*" + accty
            if name.endswith("_ptr"):
                return "*" + st
            return "i32"

        cf = sig(cells._cell_fwd_kernel, cell_types,
                 dict(CELL=cell, ACT=act, G=G, S=S, HAS_BX=True,
                      HAS_BH=True, ACC=acc, BLOCK=1024))
        triton.compile(cf, target=target)
        cb = sig(cells._cell_bwd_kernel, cell_types,
                 dict(CELL=cell, ACT=act, G=G, S=S, ACC=acc, BLOCK=1024))
        triton.compile(cb, target=target)
        n += 2
    print(f"compiled {n} kernels for sm_{arch} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
