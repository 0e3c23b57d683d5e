"""Small forward+backward runs of every CUDA attention op, each compared with
the ``_reference`` op of the same name: for compute-sanitizer, and as a GPU
smoke test.

    compute-sanitizer --tool memcheck \
        python scripts/sanitize_attention_cases.py [--tensor-core]
    compute-sanitizer --tool racecheck \
        python scripts/sanitize_attention_cases.py
    python scripts/sanitize_attention_cases.py [--tensor-core] [--list]

Odd sizes on purpose (head dim 59, Tq 97, Tk 33: partial tiles and chunks),
causal, masks with fully masked rows, GQA, dropout, non-contiguous inputs,
every head-dim class of the kernels (<= 64, <= 128, <= 256), float32 and
bfloat16 (plus float16 and float64 cases). Each case also reruns the CUDA op
and requires bitwise-identical results (the kernels promise determinism),
and one autograd run per op goes through the registered backward.

The tolerance is loose (error relative to the largest reference value,
per dtype): this finds broken indexing, not last-bit differences; the test
suite measures accuracy. Prints ok/FAIL per case; exits 1 if any case fails
or raises.

Under SEQKERNELS_ATTENTION=tensor_core the CUDA sdpa, sdpa_backward and
attention_scores run their tensor-core kernels where the rule of
csrc/include/seqkernels/sdpa_tensor_core.h picks them (float16, bfloat16,
head dims up to 128), and each case names the ones it runs, by template
instance (dtype, head dims padded to 64 or 128). The list runs every
instance at least once, and says so at the end: a missing one fails the
run. ``--tensor-core`` sets the variable and keeps only those cases (the
sanitizer's racecheck is slow: scripts/gpu_check_attention.sh runs this
subset); ``--list`` prints the cases and their kernels and runs nothing
(no GPU needed).
"""

import argparse
import math
import os
import sys
import traceback
from collections.abc import Callable
from typing import NamedTuple

import torch

import seqkernels  # noqa: F401  (loads the ops)
from seqkernels import _C

ops = torch.ops.seqkernels
DEV = torch.device("cuda")

# Largest |got - ref| allowed, relative to max |ref| (at least 1e-6).
TOL = {
    torch.float64: 1e-9,
    torch.float32: 2e-4,
    torch.float16: 5e-3,
    torch.bfloat16: 3e-2,
}

FAILED = []


def compare(name, got, ref, dtype):
    """Max relative error over the tensors; raises AssertionError on a
    mismatch of shape, dtype, NaN, infinities or a value beyond TOL."""
    worst = 0.0
    for idx, (g, r) in enumerate(zip(got, ref)):
        what = f"{name}[{idx}]"
        assert g.shape == r.shape, f"{what}: shape {g.shape} vs {r.shape}"
        assert g.dtype == r.dtype, f"{what}: dtype {g.dtype} vs {r.dtype}"
        if g.numel() == 0:
            continue
        g64, r64 = g.double(), r.double()
        assert not torch.isnan(g64).any(), f"{what}: NaN in the CUDA result"
        assert not torch.isnan(r64).any(), f"{what}: NaN in the reference"
        gi, ri = torch.isinf(g64), torch.isinf(r64)
        assert torch.equal(gi, ri), f"{what}: infinities differ"
        assert torch.equal(g64[gi], r64[ri]), f"{what}: infinity signs differ"
        fin = ~ri
        if fin.any():
            scale = max(r64[fin].abs().max().item(), 1e-6)
            err = (g64[fin] - r64[fin]).abs().max().item() / scale
            worst = max(worst, err)
            assert err <= TOL[dtype], (
                f"{what}: relative error {err:.3e} > {TOL[dtype]:.0e}")
    return worst


def same_bits(name, a, b):
    for idx, (x, y) in enumerate(zip(a, b)):
        assert torch.equal(x, y), (
            f"{name}[{idx}]: a rerun differs (not deterministic)")


class Case(NamedTuple):
    """A case's run (returns its largest relative error) and the
    tensor-core kernels it runs (sdpa_kernels, scores_kernels)."""
    fn: Callable[[], float]
    kernels: tuple[str, ...] = ()

    @property
    def tag(self):
        """The kernels, as a case's printed line names them."""
        if not self.kernels:
            return ""
        return f"  [tensor core: {', '.join(self.kernels)}]"


def _name(dtype):
    return str(dtype).replace("torch.", "")


def _padded(dim):
    # The width a head dim is padded to: sdpa_tc::dispatch's template
    # argument (64, or 128 above 64).
    return 64 if dim <= 64 else 128


def sdpa_kernels(dtype, D, Dv):
    """The tensor-core kernels the CUDA sdpa and sdpa_backward run for
    these head dims under the current SEQKERNELS_ATTENTION (the rule, read
    at every call), one template instance each: "sdpa fwd bfloat16 64x128"."""
    size = f"{_padded(D)}x{_padded(Dv)}"
    return tuple(f"sdpa {what} {_name(dtype)} {size}" for what, rule in (
        ("fwd", _C.sdpa_forward_kernel), ("bwd", _C.sdpa_backward_kernel))
        if rule(dtype, D, Dv) == "tensor_core")


def scores_kernels(dtype, D):
    """The tensor-core kernel the CUDA attention_scores runs for head dim D
    under the current SEQKERNELS_ATTENTION: "probs fwd float16 128"."""
    if _C.attention_scores_forward_kernel(dtype, D) != "tensor_core":
        return ()
    return (f"probs fwd {_name(dtype)} {_padded(D)}",)


def every_tensor_core_kernel():
    """Every template instance of the tensor-core kernels, as
    sdpa_kernels and scores_kernels name them (none where
    SEQKERNELS_ATTENTION does not ask for them)."""
    out = set()
    for dtype in (torch.float16, torch.bfloat16):
        for D in (64, 128):
            out.update(scores_kernels(dtype, D))
            for Dv in (64, 128):
                out.update(sdpa_kernels(dtype, D, Dv))
    return out


def run(name, case):
    try:
        err = case.fn()
        torch.cuda.synchronize()
        print(f"ok    {name}  (max rel err {err:.2e}){case.tag}", flush=True)
    except Exception:  # report every case, then fail at the end
        torch.cuda.synchronize()
        FAILED.append(name)
        print(f"FAIL  {name}{case.tag}", flush=True)
        traceback.print_exc()


def randn(*shape, dtype, scale=1.0):
    return (torch.randn(*shape, device=DEV) * scale).to(dtype)


def bool_mask(B, Tq, Tk, heads=None, empty_rows=(3, 10)):
    """Random bool mask (True: allowed) with fully masked rows, broadcast by
    expand() to [B, H, Tq, Tk] (heads given) or [B, Tq, Tk]."""
    m = torch.rand(B, 1, Tq, Tk, device=DEV) < 0.7
    for i in empty_rows:
        if i < Tq:
            m[:, :, i, :] = False
    if heads is None:
        return m[:, 0].expand(B, Tq, Tk)
    return m.expand(B, heads, Tq, Tk)


def float_mask(B, Tq, Tk, dtype, heads=None, empty_rows=(5, 20)):
    """Additive float mask with -inf entries and fully -inf rows, stride 0
    over the batch."""
    shape = (1, heads, Tq, Tk) if heads is not None else (1, Tq, Tk)
    m = torch.randn(*shape, device=DEV) * 0.5
    m = m.masked_fill(torch.rand(*shape, device=DEV) < 0.2, float("-inf"))
    for i in empty_rows:
        if i < Tq:
            m[..., i, :] = float("-inf")
    m = m.to(dtype)
    if heads is None:
        return m.expand(B, Tq, Tk)
    return m.expand(B, heads, Tq, Tk)


def query_key(B, Hq, Hk, Tq, Tk, D, dtype, noncontig):
    """q [B, Hq, Tq, D] (a transposed view when ``noncontig``) and
    k [B, Hk, Tk, D]."""
    if noncontig:
        q = randn(B, Tq, Hq, D, dtype=dtype).transpose(1, 2)
    else:
        q = randn(B, Hq, Tq, D, dtype=dtype)
    return q, randn(B, Hk, Tk, D, dtype=dtype)


def make_mask(kind, B, Tq, Tk, dtype, heads=None):
    """None, or a bool_mask / float_mask for ``kind`` "bool" / "float"."""
    if kind == "bool":
        return bool_mask(B, Tq, Tk, heads=heads)
    if kind == "float":
        return float_mask(B, Tq, Tk, dtype, heads=heads)
    return None


# ---------------------------------------------------------------------------
# sdpa


def sdpa_case(B, Hq, Hk, Tq, Tk, D, Dv, dtype, mask=None, causal=False,
              dropout=0.0, noncontig=False):
    def fn():
        q, k = query_key(B, Hq, Hk, Tq, Tk, D, dtype, noncontig)
        v = randn(B, Hk, Tk, Dv, dtype=dtype)
        m = make_mask(mask, B, Tq, Tk, dtype, heads=Hq)
        rng = (torch.tensor([1234, 5678], dtype=torch.int64, device=DEV)
               if dropout > 0 else None)
        scale = 1.0 / math.sqrt(D)
        args = (m, dropout, causal, scale, rng)
        out, lse = ops.sdpa(q, k, v, *args)
        out_r, lse_r = ops.sdpa_reference(q, k, v, *args)
        err = compare("sdpa", (out, lse), (out_r, lse_r), dtype)
        same_bits("sdpa", (out, lse), ops.sdpa(q, k, v, *args))
        go = randn(B, Hq, Tq, Dv, dtype=dtype)
        grads = ops.sdpa_backward(go, q, k, v, out, lse, *args)
        grads_r = ops.sdpa_backward_reference(go, q, k, v, out_r, lse_r, *args)
        err = max(err, compare("sdpa_backward", grads, grads_r, dtype))
        same_bits("sdpa_backward", grads,
                  ops.sdpa_backward(go, q, k, v, out, lse, *args))
        return err
    return Case(fn, sdpa_kernels(dtype, D, Dv))


def sdpa_autograd(dtype):
    B, Hq, Hk, Tq, Tk, D = 2, 4, 2, 97, 33, 59

    def fn():
        q0, k0, v0 = (randn(B, Hq, Tq, D, dtype=dtype),
                      randn(B, Hk, Tk, D, dtype=dtype),
                      randn(B, Hk, Tk, D, dtype=dtype))
        m = bool_mask(B, Tq, Tk, heads=Hq)
        res = []
        for op in (ops.sdpa, ops.sdpa_reference):
            q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))
            out, _ = op(q, k, v, m, 0.0, True, 0.125, None)
            out.float().sum().backward()  # an expanded (stride 0) grad_out
            res.append((out.detach(), q.grad, k.grad, v.grad))
        return compare("sdpa autograd", res[0], res[1], dtype)
    return Case(fn, sdpa_kernels(dtype, D, D))


# ---------------------------------------------------------------------------
# attention_scores


def scores_case(B, Hq, Hk, Tq, Tk, D, dtype, mask=None, causal=False,
                noncontig=False):
    def fn():
        q, k = query_key(B, Hq, Hk, Tq, Tk, D, dtype, noncontig)
        m = make_mask(mask, B, Tq, Tk, dtype, heads=Hq)
        scale = 1.0 / math.sqrt(D)
        p = ops.attention_scores(q, k, m, causal, scale)
        p_r = ops.attention_scores_reference(q, k, m, causal, scale)
        err = compare("attention_scores", (p,), (p_r,), dtype)
        same_bits("attention_scores", (p,),
                  (ops.attention_scores(q, k, m, causal, scale),))
        gp = randn(B, Hq, Tq, Tk, dtype=dtype)
        grads = ops.attention_scores_backward(gp, q, k, p, scale)
        grads_r = ops.attention_scores_backward_reference(gp, q, k, p_r, scale)
        err = max(err, compare("attention_scores_backward", grads, grads_r,
                               dtype))
        same_bits("attention_scores_backward", grads,
                  ops.attention_scores_backward(gp, q, k, p, scale))
        return err
    return Case(fn, scores_kernels(dtype, D))


def scores_autograd(dtype):
    B, Hq, Hk, Tq, Tk, D = 2, 4, 2, 97, 33, 59

    def fn():
        q0 = randn(B, Hq, Tq, D, dtype=dtype)
        k0 = randn(B, Hk, Tk, D, dtype=dtype)
        m = bool_mask(B, Tq, Tk, heads=Hq)
        w = randn(B, Hq, Tq, Tk, dtype=dtype)
        res = []
        for op in (ops.attention_scores, ops.attention_scores_reference):
            q, k = q0.clone().requires_grad_(), k0.clone().requires_grad_()
            p = op(q, k, m, False, 0.2)
            (p.float() * w.float()).sum().backward()
            res.append((p.detach(), q.grad, k.grad))
        return compare("attention_scores autograd", res[0], res[1], dtype)
    return Case(fn, scores_kernels(dtype, D))


# ---------------------------------------------------------------------------
# additive_attention


def additive_case(B, Tq, Tk, H, Dv, dtype, bias=True, mask=None,
                  need_weights=False, noncontig=False):
    def fn():
        if noncontig:
            q = randn(Tq, B, H, dtype=dtype, scale=0.5).transpose(0, 1)
        else:
            q = randn(B, Tq, H, dtype=dtype, scale=0.5)
        k = randn(B, Tk, H, dtype=dtype, scale=0.5)
        value = randn(B, Tk, Dv, dtype=dtype)
        v = randn(H, dtype=dtype, scale=0.3)
        b = randn(H, dtype=dtype, scale=0.1) if bias else None
        m = make_mask(mask, B, Tq, Tk, dtype)
        args = (q, k, value, v, b, m, need_weights)
        fwd = ops.additive_attention(*args)
        fwd_r = ops.additive_attention_reference(*args)
        err = compare("additive_attention", fwd, fwd_r, dtype)
        same_bits("additive_attention", fwd, ops.additive_attention(*args))
        ctx, _, lse = fwd
        ctx_r, _, lse_r = fwd_r
        gc = randn(B, Tq, Dv, dtype=dtype)
        gw = randn(B, Tq, Tk, dtype=dtype) if need_weights else None
        grads = ops.additive_attention_backward(gc, gw, q, k, value, v, b, m,
                                                ctx, lse)
        grads_r = ops.additive_attention_backward_reference(
            gc, gw, q, k, value, v, b, m, ctx_r, lse_r)
        err = max(err, compare("additive_attention_backward", grads, grads_r,
                               dtype))
        same_bits("additive_attention_backward", grads,
                  ops.additive_attention_backward(gc, gw, q, k, value, v, b,
                                                  m, ctx, lse))
        return err
    return Case(fn)


def additive_autograd(dtype):
    def fn():
        B, Tq, Tk, H, Dv = 2, 97, 33, 59, 40
        t0 = (randn(B, Tq, H, dtype=dtype, scale=0.5),
              randn(B, Tk, H, dtype=dtype, scale=0.5),
              randn(B, Tk, Dv, dtype=dtype), randn(H, dtype=dtype, scale=0.3),
              randn(H, dtype=dtype, scale=0.1))
        m = bool_mask(B, Tq, Tk)
        res = []
        for op in (ops.additive_attention, ops.additive_attention_reference):
            ts = [t.clone().requires_grad_() for t in t0]
            ctx, w, _ = op(*ts, m, True)
            (ctx.float().sum() + w.float().pow(2).sum()).backward()
            res.append((ctx.detach(), w.detach()) + tuple(t.grad for t in ts))
        return compare("additive_attention autograd", res[0], res[1], dtype)
    return Case(fn)


# ---------------------------------------------------------------------------


def cases():
    S, A, AD = sdpa_case, scores_case, additive_case
    for dt in (torch.float32, torch.bfloat16):
        n = _name(dt)
        # sdpa: (B, Hq, Hk, Tq, Tk, D, Dv)
        yield f"sdpa {n} 97x33 d59", S(2, 4, 4, 97, 33, 59, 59, dt)
        yield f"sdpa {n} causal", S(2, 4, 4, 97, 33, 59, 59, dt, causal=True)
        yield f"sdpa {n} causal Tq<Tk", S(1, 2, 2, 33, 97, 59, 59, dt,
                                          causal=True)
        yield f"sdpa {n} bool mask, empty rows", S(2, 4, 4, 97, 33, 59, 59,
                                                   dt, mask="bool")
        yield f"sdpa {n} float mask, -inf rows", S(2, 4, 4, 97, 33, 59, 59,
                                                   dt, mask="float")
        yield f"sdpa {n} GQA 6/2 Dv40 bool causal", S(
            2, 6, 2, 97, 33, 59, 40, dt, mask="bool", causal=True)
        yield f"sdpa {n} dropout", S(2, 4, 2, 97, 33, 59, 59, dt,
                                     dropout=0.2)
        yield f"sdpa {n} dropout float mask causal", S(
            2, 4, 2, 97, 33, 59, 59, dt, mask="float", causal=True,
            dropout=0.3)
        yield f"sdpa {n} non-contiguous q", S(2, 4, 2, 97, 33, 59, 59, dt,
                                              noncontig=True)
        yield f"sdpa {n} d100 dv128", S(1, 2, 1, 70, 45, 100, 128, dt,
                                        mask="bool")
        yield f"sdpa {n} d256 dv200", S(1, 2, 2, 40, 70, 256, 200, dt,
                                        causal=True)
        yield f"sdpa {n} d1 T1", S(1, 1, 1, 1, 1, 1, 1, dt)
        # several key tiles: the online softmax rescales
        yield f"sdpa {n} 33x150 bool mask dropout", S(
            2, 4, 2, 33, 150, 59, 59, dt, mask="bool", dropout=0.2)
        yield f"sdpa {n} causal 150x150", S(1, 2, 1, 150, 150, 40, 40, dt,
                                            causal=True)
        # attention_scores: (B, Hq, Hk, Tq, Tk, D)
        yield f"scores {n} 97x33 d59", A(2, 4, 4, 97, 33, 59, dt)
        yield f"scores {n} causal GQA", A(2, 6, 2, 97, 33, 59, dt,
                                          causal=True)
        yield f"scores {n} bool mask, empty rows", A(2, 4, 2, 97, 33, 59, dt,
                                                     mask="bool")
        yield f"scores {n} float mask, -inf rows", A(2, 4, 4, 97, 33, 59, dt,
                                                     mask="float")
        yield f"scores {n} d200 non-contiguous", A(1, 2, 1, 40, 70, 200, dt,
                                                   noncontig=True)
        yield f"scores {n} causal 150x150 float mask", A(
            1, 2, 1, 150, 150, 40, dt, causal=True, mask="float")
        # Tk % 8 == 0: the tensor-core forward's 16-byte stores of P
        yield f"scores {n} causal 70x136 bool mask", A(
            1, 2, 1, 70, 136, 64, dt, causal=True, mask="bool")
        # additive_attention: (B, Tq, Tk, H, Dv)
        yield f"additive {n} 97x33 h59", AD(2, 97, 33, 59, 59, dt)
        yield f"additive {n} no bias, bool mask", AD(2, 97, 33, 59, 59, dt,
                                                     bias=False, mask="bool")
        yield f"additive {n} float mask, weights", AD(
            2, 97, 33, 59, 59, dt, mask="float", need_weights=True)
        yield f"additive {n} Dv300 (2 slices), weights", AD(
            2, 50, 70, 37, 300, dt, mask="bool", need_weights=True)
        yield f"additive {n} h100 dv100 non-contiguous", AD(
            1, 40, 33, 100, 100, dt, noncontig=True)
        yield f"additive {n} 33x150 bool mask", AD(2, 33, 150, 40, 24, dt,
                                                   mask="bool")
        yield f"sdpa {n} autograd", sdpa_autograd(dt)
        yield f"scores {n} autograd", scores_autograd(dt)
        yield f"additive {n} autograd", additive_autograd(dt)
    f16, f64 = torch.float16, torch.float64
    yield "sdpa float16 GQA bool mask dropout", S(
        2, 4, 2, 97, 33, 59, 59, f16, mask="bool", dropout=0.1)
    yield "sdpa float64 causal float mask", S(
        1, 2, 1, 97, 33, 59, 30, f64, mask="float", causal=True)
    yield "sdpa float64 d256 dropout", S(1, 1, 1, 20, 40, 256, 256, f64,
                                         dropout=0.2)
    yield "scores float64 causal bool mask", A(1, 2, 1, 97, 33, 59, f64,
                                               causal=True, mask="bool")
    yield "additive float64 weights", AD(1, 97, 33, 59, 59, f64, mask="bool",
                                         need_weights=True)
    yield "additive float16 float mask", AD(2, 97, 33, 59, 59, f16,
                                            mask="float")
    # The tensor-core kernels' template instances the cases above leave
    # out (each dtype with each pair of padded widths; the probabilities'
    # 16-byte stores of P in float16 too).
    for dt in (torch.bfloat16, f16):
        n = _name(dt)
        yield f"sdpa {n} d59 dv100 GQA causal", S(2, 4, 2, 70, 90, 59, 100,
                                                  dt, causal=True)
        yield f"sdpa {n} d100 dv40 float mask", S(1, 4, 2, 90, 70, 100, 40,
                                                  dt, mask="float")
        yield f"scores {n} d100 GQA bool mask", A(2, 4, 2, 97, 33, 100, dt,
                                                  mask="bool")
    yield "sdpa float16 d128 dv100 causal dropout", S(
        1, 2, 1, 70, 45, 128, 100, f16, causal=True, dropout=0.2)
    yield "scores float16 causal 70x136 float mask", A(
        1, 2, 1, 70, 136, 64, f16, causal=True, mask="float")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tensor-core", action="store_true",
                        help="set SEQKERNELS_ATTENTION=tensor_core and run "
                             "only the cases that run a tensor-core kernel")
    parser.add_argument("--list", action="store_true",
                        help="print the cases and their tensor-core kernels, "
                             "run none")
    args = parser.parse_args()
    if args.tensor_core:
        os.environ["SEQKERNELS_ATTENTION"] = "tensor_core"
    torch.manual_seed(0)
    ran = 0
    covered = set()
    for name, case in cases():
        if args.tensor_core and not case.kernels:
            continue
        ran += 1
        covered.update(case.kernels)
        if args.list:
            print(name + case.tag)
        else:
            run(name, case)
    every = every_tensor_core_kernel()
    if every:
        print(f"tensor-core kernels: the cases run {len(covered)} of the "
              f"{len(every)} template instances", flush=True)
        missing = sorted(every - covered)
        if missing:
            FAILED.append(f"no case runs {', '.join(missing)}")
    if FAILED:
        print(f"{len(FAILED)} case(s) failed: {FAILED}", flush=True)
        sys.exit(1)
    print(f"all {ran} attention cases ok" if not args.list
          else f"{ran} attention cases", flush=True)


if __name__ == "__main__":
    main()
