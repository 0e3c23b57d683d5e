"""Attention benchmarks: providers, configurations, work counts, target rows.

Kinds of configuration (``Config.kind``) and their providers (``provider``
column); ``<b>`` is each seqkernels backend the device runs: cuda, triton,
auto on CUDA; cpu, auto on CPU (Triton's CPU interpreter is a test tool,
not a benchmark). ``seqkernels-reference`` (pure PyTorch, materializing) is
added where a configuration asks for it (``Config.sanity``: the quick CPU
list, so the harness is exercised end to end before the CPU kernels exist).

    sdpa           scaled dot-product attention, [B, heads, T, D] inputs;
                   target rows A1 (fwd) and A2 (fwd+bwd, and bwd alone);
                   with ``Config.mask`` ("documents": a boolean
                   [B, 1, T, T] mask that lets a query see the keys of its
                   own document, the documents of seeded random lengths),
                   A5: ours against ours without the mask and against
                   FlexAttention with the same mask
      seqkernels-<b>       seqkernels.functional.scaled_dot_product_attention
      seqkernels-cuda-tensor-core  the same with SEQKERNELS_ATTENTION=
                           tensor_core (the opt-in tensor-core forward; also
                           for the scores and MHA kinds; every other
                           seqkernels provider of them sets "simt")
      torch-sdpa-flash     F.scaled_dot_product_attention pinned to one
      torch-sdpa-efficient backend with torch.nn.attention.sdpa_kernel
      torch-sdpa-cudnn     (CUDA; flash takes no mask: skipped on the masked
                           rows); -math also on CPU. The math backend
      torch-sdpa-math      materializes B*heads*Tq*Tk scores, in float32
                           (it upcasts bf16): on CUDA it is skipped above
                           MATH_SCORES_LIMIT bytes of them. On the CPU the
                           flash, efficient and cuDNN backends are listed
                           as skipped, with the reason.
      torch-sdpa           torch's own choice of backend (CPU only)
      torch-flex-compile   torch.nn.attention.flex_attention under
                           torch.compile (compiled before timing, one
                           graph per shape, so it runs with the other
                           compile providers, last), the same mask as a
                           block mask (causal: q_idx >= kv_idx; documents:
                           the same document ids, read from a [B, T]
                           tensor; none: no block mask); CUDA only
                           (skipped, with the
                           reason, on the CPU and with --no-compile)
    scores         attention probabilities softmax(q k^T * scale), A3
      seqkernels-<b>       seqkernels.functional.attention_scores
      torch-matmul-softmax torch.softmax(q @ k^T * scale): S and P written
    mha-weights    nn.MultiheadAttention self-attention, need_weights=True
                   and average_attn_weights=False (the per-head probabilities,
                   the same P as the scores rows), A3
      seqkernels-mha-weights-<b>  seqkernels.MultiheadAttention
      torch-mha-weights           torch.nn.MultiheadAttention (its explicit
                                  bmm + softmax path)
    mha-noweights  the same modules with need_weights=False (torch: SDPA)
      seqkernels-mha-noweights-<b>, torch-mha-noweights
    additive       additive (Bahdanau) attention with the projections,
                   context = softmax_j(v . tanh(W_q q_i + W_k k_j + b)) V, A4
      seqkernels-<b>          seqkernels.functional.additive_attention
      torch-additive-eager    the same math in eager PyTorch, materializing
                              the [B, Tq, Tk, H] tanh tensor
      torch-additive-compile  that function under torch.compile (fullgraph,
                              static shapes), compiled before timing

Every provider of a configuration returns the same outputs in the same
order, from the same inputs and weights (seeded), with the same leaf names,
so check.py can compare it with the float32 PyTorch reference (``reference``:
F.scaled_dot_product_attention, matmul+softmax, torch.nn.MultiheadAttention
or the eager additive attention, in float32).

Configurations (``configs``): on CUDA (bf16) the SDPA rows of A1/A2 as
sweeps over T at B*T = 16k tokens, head dims 64 and 128, causal and not,
with heads*D = 2048 (the layout of FlashAttention's own benchmark, where the
anchor's figures come from: 32 heads at hd 64, 16 at hd 128); A3 and A4 at
their target shapes (targets.py), and A5's masked twins of the A1/A2 rows
at T = 4096. On CPU (float32) a few small rows.

Work counts: SDPA forward 4*B*heads*Tq*Tk*D FLOPs (halved when causal),
backward 2.5x the forward; the SDPA target rows show each side's achieved
TFLOP/s and its share of the bf16 GEMM ceiling measured in the same run
(``Pairing.tflops``). Probabilities: 2*B*heads*Tq*Tk*D forward, twice
that backward; their bytes are those of the P write (B*heads*Tq*Tk elements)
forward, P and dP read backward. Multi-head attention adds the four
projections, 8*B*T*E^2 forward, twice that backward. Additive: the two
projections, 5 operations per [B, Tq, Tk, H] element (two adds, tanh, the
multiply-add with v) and the context matmul forward, twice that backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as TF
from torch import Tensor

from .cases import PRODUCTS, Case, uniform_weights_
from .compiled import compile_now, compiled
from .plan import Job, benchmark_dtype, seqkernels_jobs
from .targets import Pairing

KERNEL = "attention"
SEED = 0
MATH_SCORES_LIMIT = 4 * 2**30      # bytes of float32 B*heads*Tq*Tk scores
SDPA_BACKENDS = {                  # provider suffix -> SDPBackend name
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "math": "MATH",
}
A1_TOKENS = 16384                  # B*T of the A1/A2 rows
A1_WIDTH = 2048                    # heads*D of the A1/A2 rows
A5_T = 4096                        # the length of A5's masked rows (one of
#                                    the A1/A2 rows' quick and full lengths)
MASKS = ("documents",)             # Config.mask's values beside ""
FLEX = "torch-flex-compile"        # the FlexAttention provider
# The dot-product kinds, whose CUDA kernels SEQKERNELS_ATTENTION picks: each
# seqkernels provider of them sets it around its calls, "simt" (the
# default), or "tensor_core" for the providers named with TENSOR_CORE (CUDA
# only; the opt-in tensor-core forwards of sdpa and attention_scores).
ATTENTION_ENV = "SEQKERNELS_ATTENTION"
TENSOR_CORE = "-tensor-core"
DOT_PRODUCT_KINDS = ("sdpa", "scores", "mha-weights", "mha-noweights")
# SDPA backends that run on CUDA only: listed as skipped on the CPU.
CUDA_ONLY_SDPA = ("flash", "efficient", "cudnn")


# --------------------------------------------------------------------------
# Configurations


@dataclass(frozen=True)
class Config:
    """``kind``: sdpa, scores, mha-weights, mha-noweights or additive.
    ``D`` is the head dim, or for additive rows the feature size of query,
    key and value; ``H`` is the additive hidden size."""
    name: str
    kind: str
    B: int
    Tq: int
    Tk: int = 0                      # 0: same as Tq
    heads: int = 1                   # sdpa, scores, mha
    D: int = 64
    H: int = 0                       # additive only
    causal: bool = False
    mask: str = ""                   # sdpa: "" or "documents" (MASKS)
    modes: tuple[str, ...] = ("fwd+bwd",)
    target: str = ""                 # target id(s), "/"-separated
    sweep: str = ""                  # sweep name, for plots
    sweep_x: int = 0                 # this point's value of the swept size
    sanity: bool = False             # also run seqkernels-reference

    @property
    def train(self) -> bool:
        return True                  # every case records autograd

    @property
    def keys(self) -> int:
        return self.Tk or self.Tq

    @property
    def embed(self) -> int:
        return self.heads * self.D

    @property
    def shape(self) -> str:
        if self.kind == "additive":
            s = f"B={self.B} Tq={self.Tq} Tk={self.keys} H={self.H} D={self.D}"
        elif self.kind.startswith("mha"):
            s = (f"B={self.B} T={self.Tq} E={self.embed} heads={self.heads}"
                 + (" weights" if self.kind == "mha-weights" else ""))
        else:
            t = f"T={self.Tq}" if self.keys == self.Tq else \
                f"Tq={self.Tq} Tk={self.keys}"
            s = f"B={self.B} heads={self.heads} {t} D={self.D}"
            if self.mask:
                s += f" mask={self.mask}"
        return s + (" causal" if self.causal else "")


def _sdpa_rows(Ts: Sequence[int], head_dims: Sequence[int], tokens: int,
               width: int, modes: tuple[str, ...], target: str,
               prefix: str = "sdpa", sanity: bool = False) -> list[Config]:
    """SDPA rows at B*T = ``tokens`` and heads*D = ``width``: one T sweep
    per (head dim, causal), named ``<prefix>-hd<D>[-causal]-T<T>``."""
    rows = []
    for D in head_dims:
        for causal in (False, True):
            sweep = f"T-hd{D}" + ("-causal" if causal else "")
            for T in Ts:
                rows.append(Config(
                    f"{prefix}-hd{D}{'-causal' if causal else ''}-T{T}",
                    "sdpa", B=max(1, tokens // T), Tq=T, heads=width // D,
                    D=D, causal=causal, modes=modes, target=target,
                    sweep=sweep, sweep_x=T, sanity=sanity))
    return rows


def masked(cfg: Config, mask: str = "documents") -> Config:
    """The twin of an SDPA row with ``mask``: named ``<name>-<mask>``, the
    same shape, modes and target."""
    return replace(cfg, name=f"{cfg.name}-{mask}", mask=mask,
                   sweep="", sweep_x=0)


def configs(device: torch.device, full: bool) -> list[Config]:
    """The configurations of ``device``: full or quick."""
    if device.type == "cuda":
        Ts = (1024, 2048, 4096, 8192, 16384) if full else (1024, 4096, 16384)
        sdpa = _sdpa_rows(Ts, (64, 128), A1_TOKENS, A1_WIDTH,
                          ("fwd", "fwd+bwd", "bwd"), "A1/A2")
        # A5's rows: the masked twins of A1/A2's rows at A5_T, which are
        # A5's anchors too (so that --configs A5 runs both).
        a5 = [c for c in sdpa if c.Tq == A5_T and not c.causal]
        sdpa = [replace(c, target="A1/A2/A5") if c in a5 else c
                for c in sdpa]
        return (sdpa
                + [replace(masked(c), target="A5", modes=("fwd", "fwd+bwd"))
                   for c in a5]
                + [Config("A3", "scores", B=8, Tq=2048, heads=16, D=64,
                          modes=("fwd", "fwd+bwd"), target="A3"),
                   Config("A3-mha-weights", "mha-weights", B=8, Tq=2048,
                          heads=16, D=64, modes=("fwd", "fwd+bwd"),
                          target="A3"),
                   Config("A3-mha-noweights", "mha-noweights", B=8, Tq=2048,
                          heads=16, D=64, modes=("fwd", "fwd+bwd"),
                          target="A3"),
                   Config("A4", "additive", B=32, Tq=512, H=256, D=256,
                          modes=("fwd+bwd", "fwd"), target="A4")])
    if not full:
        # About 35 s of CPU time (torch.compile's first run is a third).
        return (_sdpa_rows((256,), (64,), 512, 256, ("fwd+bwd",), "",
                           prefix="sdpa-cpu", sanity=True)[:1]
                + [Config("scores-cpu", "scores", B=2, Tq=256, heads=4, D=64,
                          modes=("fwd",), sanity=True),
                   Config("mha-weights-cpu", "mha-weights", B=2, Tq=256,
                          heads=4, D=64, modes=("fwd",), sanity=True),
                   Config("additive-cpu", "additive", B=4, Tq=64, H=64, D=64,
                          sanity=True)])
    cpu = _sdpa_rows((256, 512, 1024, 2048), (64,), 2048, 512,
                     ("fwd", "fwd+bwd", "bwd"), "", prefix="sdpa-cpu")
    return (cpu + [masked(replace(cpu[0], modes=("fwd", "fwd+bwd")))]
            + [Config("scores-cpu", "scores", B=2, Tq=1024, heads=8, D=64,
                      modes=("fwd", "fwd+bwd")),
               Config("mha-weights-cpu", "mha-weights", B=2, Tq=1024,
                      heads=8, D=64, modes=("fwd", "fwd+bwd")),
               Config("mha-noweights-cpu", "mha-noweights", B=2, Tq=1024,
                      heads=8, D=64, modes=("fwd", "fwd+bwd")),
               Config("additive-cpu", "additive", B=8, Tq=128, H=128, D=128,
                      modes=("fwd+bwd", "fwd"))])


# --------------------------------------------------------------------------
# Jobs


def _scores_bytes(cfg: Config, dtype: torch.dtype = torch.float32) -> int:
    return (cfg.B * cfg.heads * cfg.Tq * cfg.keys
            * torch.empty((), dtype=dtype).element_size())


def plan(device: torch.device, config_list: Sequence[Config], *,
         compile: bool) -> list[Job]:
    """Every (config, provider, dtype) to run. ``compile=False`` lists the
    torch.compile provider as skipped, with the reason."""
    cuda = device.type == "cuda"
    dtype = benchmark_dtype(device)
    jobs = []
    for cfg in config_list:
        ours = {"mha-weights": "seqkernels-mha-weights-",
                "mha-noweights": "seqkernels-mha-noweights-"}.get(
                    cfg.kind, "seqkernels-")
        mine = seqkernels_jobs(cfg, device, ours, dtype,
                               extra=["reference"] if cfg.sanity else [])
        if cuda and cfg.kind in DOT_PRODUCT_KINDS:
            mine += [Job(cfg, j.provider + TENSOR_CORE, dtype, j.skip)
                     for j in mine if j.provider == ours + "cuda"]
        jobs += mine
        if cfg.kind == "sdpa":
            for name in SDPA_BACKENDS:
                skip = ""
                size = _scores_bytes(cfg)
                if not cuda and name in CUDA_ONLY_SDPA:
                    skip = f"torch's {name} SDPA backend runs on CUDA only"
                elif cfg.mask and name == "flash":
                    skip = "torch's flash SDPA backend takes no attn_mask"
                if cuda and name == "math" and size > MATH_SCORES_LIMIT:
                    skip = (f"the math backend materializes "
                            f"{size / 2**30:.0f} GiB of float32 scores (limit "
                            f"{MATH_SCORES_LIMIT / 2**30:.0f} GiB)")
                jobs.append(Job(cfg, f"torch-sdpa-{name}", dtype, skip))
            if not cuda:
                jobs.append(Job(cfg, "torch-sdpa", dtype))
            jobs.append(Job(cfg, FLEX, dtype, _flex_skip(cuda, compile)))
        elif cfg.kind == "scores":
            jobs.append(Job(cfg, "torch-matmul-softmax", dtype))
        elif cfg.kind in ("mha-weights", "mha-noweights"):
            jobs.append(Job(cfg, "torch-" + cfg.kind, dtype))
        elif cfg.kind == "additive":
            jobs.append(Job(cfg, "torch-additive-eager", dtype))
            jobs.append(Job(cfg, "torch-additive-compile", dtype,
                            "" if compile else
                            "torch.compile skipped (--no-compile)"))
        else:
            raise ValueError(f"unknown attention kind {cfg.kind!r}")
    return jobs


def _flex_skip(cuda: bool, compile: bool) -> str:
    """Why the FlexAttention provider does not run here ("" if it does)."""
    if not cuda:
        return ("FlexAttention is benchmarked on CUDA only (on the CPU it "
                "would time torch.compile's CPU code, not the anchor)")
    if not compile:
        return "FlexAttention needs torch.compile, skipped (--no-compile)"
    return ""


# --------------------------------------------------------------------------
# Inputs and weights, the same for every provider of a configuration


def _generator(offset: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + offset)


def _leaf(t: Tensor, device, dtype) -> Tensor:
    return t.to(device=device, dtype=dtype).requires_grad_()


def _qkv(cfg: Config, device, dtype, with_value: bool = True
         ) -> dict[str, Tensor]:
    """query, key (and value), [B, heads, T, D], standard normal."""
    g = _generator(1)
    shapes = {"query": (cfg.B, cfg.heads, cfg.Tq, cfg.D),
              "key": (cfg.B, cfg.heads, cfg.keys, cfg.D)}
    if with_value:
        shapes["value"] = (cfg.B, cfg.heads, cfg.keys, cfg.D)
    return {name: _leaf(torch.randn(s, generator=g), device, dtype)
            for name, s in shapes.items()}


def documents(cfg: Config) -> Tensor:
    """The document id of each position, [B, T] int64 (the "documents"
    mask): documents of seeded random lengths from T/16 to T/4, so that a
    row's allowed keys are one contiguous run of a few hundred to a
    thousand at T = 4096, placed differently in every batch row."""
    if cfg.mask not in MASKS:
        raise ValueError(f"{cfg.name}: unknown mask {cfg.mask!r}; one of "
                         f"{MASKS}")
    if cfg.keys != cfg.Tq:
        raise ValueError(f"{cfg.name}: the documents mask needs Tq == Tk")
    g = _generator(5)
    T = cfg.Tq
    ids = []
    for _ in range(cfg.B):
        lengths = torch.randint(max(1, T // 16), max(2, T // 4 + 1), (T,),
                                generator=g)
        starts = lengths.cumsum(0)
        ids.append(torch.bucketize(torch.arange(T), starts, right=True))
    return torch.stack(ids)


def attention_mask(cfg: Config, device) -> Tensor | None:
    """The configuration's mask as SDPA takes it (boolean, True: attend),
    [B, 1, Tq, Tk], or None without one."""
    if not cfg.mask:
        return None
    ids = documents(cfg)
    return (ids[:, None, :, None] == ids[:, None, None, :]).to(device)


def _seqkernels_backend(provider: str) -> str:
    return provider.removesuffix(TENSOR_CORE).rsplit("-", 1)[1]


def _backend_note(backend: str, device: torch.device) -> str:
    if backend != "auto":
        return ""
    from seqkernels import _backend
    try:
        return f"auto -> {_backend.resolve('auto', device)}"
    except ValueError as exc:
        return f"auto: {exc}"


def _sdpa_case(cfg: Config, provider: str, dtype, device) -> Case:
    leaves = _qkv(cfg, device, dtype)
    q, k, v = leaves.values()
    causal = cfg.causal
    mask = attention_mask(cfg, device)  # built once, outside the timing
    if provider.startswith("seqkernels-"):
        from seqkernels import functional as SF
        backend = _seqkernels_backend(provider)

        def forward():
            return [SF.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, backend=backend)]
        return Case(forward, leaves, note=_backend_note(backend, device))
    if provider == "torch-sdpa":
        def forward():
            return [TF.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal)]
        return Case(forward, leaves)
    if provider == FLEX:
        case = flex_case(cfg, leaves, device)
        compile_now(case, device)
        return case
    name = provider[len("torch-sdpa-"):]
    if name not in SDPA_BACKENDS:
        raise ValueError(f"unknown SDPA provider {provider!r}")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    pinned = getattr(SDPBackend, SDPA_BACKENDS[name])

    def forward():
        # The backend is fixed at the forward: its backward follows.
        with sdpa_kernel(pinned):
            return [TF.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal)]
    return Case(forward, leaves)


def causal_mask_mod(b, h, q_idx, kv_idx):
    """FlexAttention's mask of is_causal (top-left aligned, as SDPA's and
    ours): key j is allowed for query i when j <= i."""
    return q_idx >= kv_idx


def flex_case(cfg: Config, leaves: dict[str, Tensor], device,
              compile: bool = True) -> Case:
    """The FlexAttention provider's case on ``leaves`` (query, key, value):
    flex_attention under torch.compile (``compile=False``: eager, for the
    CPU tests of this wiring), with the configuration's mask as a block
    mask, built once, outside the timing; scale 1/sqrt(D), as SDPA's."""
    from torch.nn.attention.flex_attention import (and_masks,
                                                   create_block_mask,
                                                   flex_attention)
    q, k, v = leaves.values()
    mods = [causal_mask_mod] if cfg.causal else []
    if cfg.mask:
        ids = documents(cfg).to(device)

        def same_document(b, h, q_idx, kv_idx):
            return ids[b, q_idx] == ids[b, kv_idx]
        mods.append(same_document)
    block_mask = None
    if mods:
        block_mask = create_block_mask(
            and_masks(*mods), B=cfg.B if cfg.mask else None, H=None,
            Q_LEN=cfg.Tq, KV_LEN=cfg.keys, device=device)
    fn = compiled(flex_attention) if compile else flex_attention

    def forward():
        return [fn(q, k, v, block_mask=block_mask)]
    return Case(forward, leaves)


def _scores_case(cfg: Config, provider: str, dtype, device) -> Case:
    leaves = _qkv(cfg, device, dtype, with_value=False)
    q, k = leaves.values()
    scale = 1.0 / math.sqrt(cfg.D)
    if provider.startswith("seqkernels-"):
        from seqkernels import functional as SF
        backend = _seqkernels_backend(provider)

        def forward():
            return [SF.attention_scores(q, k, scale=scale, backend=backend)]
        return Case(forward, leaves, note=_backend_note(backend, device))
    if provider == "torch-matmul-softmax":
        def forward():
            return [torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale,
                                  dim=-1)]
        return Case(forward, leaves)
    raise ValueError(f"unknown attention-scores provider {provider!r}")


def _reference_mha(cfg: Config) -> torch.nn.MultiheadAttention:
    """The float32 CPU module whose weights every MHA provider copies."""
    m = torch.nn.MultiheadAttention(cfg.embed, cfg.heads, batch_first=True)
    return uniform_weights_(m, cfg.embed ** -0.5, _generator(2))


def _mha_case(cfg: Config, provider: str, dtype, device) -> Case:
    weights = cfg.kind == "mha-weights"
    note = ""
    if provider.startswith("seqkernels-"):
        import seqkernels
        backend = _seqkernels_backend(provider)
        module = seqkernels.MultiheadAttention(cfg.embed, cfg.heads,
                                               batch_first=True,
                                               backend=backend)
        note = _backend_note(backend, device)
    elif provider in ("torch-mha-weights", "torch-mha-noweights"):
        module = torch.nn.MultiheadAttention(cfg.embed, cfg.heads,
                                             batch_first=True)
    else:
        raise ValueError(f"unknown multi-head attention provider {provider!r}")
    module.load_state_dict(_reference_mha(cfg).state_dict())
    module.to(device=device, dtype=dtype)
    x = _leaf(torch.randn(cfg.B, cfg.Tq, cfg.embed, generator=_generator(3)),
              device, dtype)

    def forward():
        out, w = module(x, x, x, need_weights=weights,
                        average_attn_weights=False)
        return [out, w] if weights else [out]
    return Case(forward, {"input": x, **dict(module.named_parameters())},
                note=note)


def _additive_leaves(cfg: Config, device, dtype) -> dict[str, Tensor]:
    g = _generator(4)
    B, Tq, Tk, H, D = cfg.B, cfg.Tq, cfg.keys, cfg.H, cfg.D

    def uniform(*shape, bound):
        return (torch.rand(shape, generator=g) * 2 - 1) * bound
    cpu = {"query": torch.randn(B, Tq, D, generator=g),
           "key": torch.randn(B, Tk, D, generator=g),
           "value": torch.randn(B, Tk, D, generator=g),
           "w_query": uniform(H, D, bound=D ** -0.5),
           "w_key": uniform(H, D, bound=D ** -0.5),
           "v": uniform(H, bound=H ** -0.5),
           "bias": uniform(H, bound=0.1)}
    return {name: _leaf(t, device, dtype) for name, t in cpu.items()}


def additive_naive(query: Tensor, key: Tensor, value: Tensor,
                   w_query: Tensor, w_key: Tensor, v: Tensor,
                   bias: Tensor) -> Tensor:
    """Additive attention as a framework would write it: the [B, Tq, Tk, H]
    tensor of tanh values is built, then reduced with v."""
    q = torch.matmul(query, w_query.t())                    # [B, Tq, H]
    k = torch.matmul(key, w_key.t())                        # [B, Tk, H]
    hidden = torch.tanh(q.unsqueeze(2) + k.unsqueeze(1) + bias)
    scores = torch.matmul(hidden, v)                        # [B, Tq, Tk]
    return torch.matmul(torch.softmax(scores, dim=-1), value)


def _additive_case(cfg: Config, provider: str, dtype, device) -> Case:
    leaves = _additive_leaves(cfg, device, dtype)
    args = tuple(leaves.values())
    if provider.startswith("seqkernels-"):
        from seqkernels import functional as SF
        backend = _seqkernels_backend(provider)

        def forward():
            context, _ = SF.additive_attention(*args, backend=backend)
            return [context]
        return Case(forward, leaves, note=_backend_note(backend, device))
    if provider == "torch-additive-eager":
        return Case(lambda: [additive_naive(*args)], leaves)
    if provider == "torch-additive-compile":
        fn = compiled(additive_naive)
        case = Case(lambda: [fn(*args)], leaves)
        compile_now(case, device)
        return case
    raise ValueError(f"unknown additive-attention provider {provider!r}")


def build(job: Job, device: torch.device) -> Case:
    """The case of ``job``, ready to time."""
    cfg, provider, dtype = job.config, job.provider, job.dtype
    if cfg.kind in DOT_PRODUCT_KINDS:
        if cfg.kind == "sdpa":
            case = _sdpa_case(cfg, provider, dtype, device)
        elif cfg.kind == "scores":
            case = _scores_case(cfg, provider, dtype, device)
        else:
            case = _mha_case(cfg, provider, dtype, device)
        if provider.startswith("seqkernels-"):
            case.env[ATTENTION_ENV] = ("tensor_core"
                                       if provider.endswith(TENSOR_CORE)
                                       else "simt")
        return case
    if cfg.kind == "additive":
        return _additive_case(cfg, provider, dtype, device)
    raise ValueError(f"unknown attention kind {cfg.kind!r}")


REFERENCE_PROVIDER = {
    "sdpa": "torch-sdpa",
    "scores": "torch-matmul-softmax",
    "mha-weights": "torch-mha-weights",
    "mha-noweights": "torch-mha-noweights",
    "additive": "torch-additive-eager",
}


def reference(job: Job, device: torch.device) -> Case:
    """The float32 PyTorch case that ``job``'s outputs are checked against.
    SDPA on CUDA: the memory-efficient kernel (float32, never materializes
    the scores, so T = 16k fits), the math one only where it cannot run."""
    case = build(Job(job.config, REFERENCE_PROVIDER[job.config.kind],
                     torch.float32), device)
    if job.config.kind == "sdpa" and device.type == "cuda":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        forward = case.forward

        def pinned():
            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION,
                              SDPBackend.MATH]):
                return forward()
        case.forward = pinned
    return case


# --------------------------------------------------------------------------
# Work counts


def _sdpa_fwd_flops(cfg: Config) -> float:
    f = 4.0 * cfg.B * cfg.heads * cfg.Tq * cfg.keys * cfg.D
    return f / 2 if cfg.causal else f


def flops(cfg: Config, mode: str) -> float:
    """Floating-point operations of ``cfg`` in ``mode`` (the model of the
    module docstring)."""
    if cfg.kind == "sdpa":
        return _sdpa_fwd_flops(cfg) * {"fwd": 1.0, "bwd": 2.5,
                                       "fwd+bwd": 3.5}[mode]
    twice = PRODUCTS[mode]  # the backward: twice the forward's products
    if cfg.kind == "scores":
        return 2.0 * cfg.B * cfg.heads * cfg.Tq * cfg.keys * cfg.D * twice
    if cfg.kind.startswith("mha"):
        proj = 8.0 * cfg.B * cfg.Tq * cfg.embed ** 2
        return proj * twice + _sdpa_fwd_flops(cfg) * {
            "fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}[mode]
    if cfg.kind == "additive":
        B, Tq, Tk, H, D = cfg.B, cfg.Tq, cfg.keys, cfg.H, cfg.D
        fwd = (2.0 * B * (Tq + Tk) * D * H + 5.0 * B * Tq * Tk * H
               + 2.0 * B * Tq * Tk * D)
        return fwd * twice
    return 0.0


def pointwise_bytes(cfg: Config, mode: str, dtype: torch.dtype) -> float:
    """Bytes counted for the GB/s column (the harness's name for it): the
    probabilities P of the scores and need_weights rows, B*heads*Tq*Tk
    elements of ``dtype``, written once forward, P and dP read backward.
    Zero for the other kinds, which are measured in FLOP/s."""
    if cfg.kind not in ("scores", "mha-weights"):
        return 0.0
    return float(_scores_bytes(cfg, dtype)
                 * {"fwd": 1, "bwd": 2, "fwd+bwd": 3}[mode])


def io_mem_mb(cfg: Config, mode: str, dtype: torch.dtype) -> float:
    """Additive rows: MB of inputs + outputs + scores, the memory A4's peak
    is held against (peak <= 2x this). Inputs are query, key, value and the
    weights; outputs the context; scores B*Tq*Tk. A mode with a backward
    also holds the gradient of every input and of the context (the
    backward's outputs and input), so they are counted too. 0 elsewhere."""
    if cfg.kind != "additive":
        return 0.0
    B, Tq, Tk, H, D = cfg.B, cfg.Tq, cfg.keys, cfg.H, cfg.D
    inputs = B * Tq * D + 2 * B * Tk * D + 2 * H * D + 2 * H
    outputs = B * Tq * D
    scores = B * Tq * Tk
    if mode != "fwd":
        inputs, outputs = 2 * inputs, 2 * outputs
    size = torch.empty((), dtype=dtype).element_size()
    return (inputs + outputs + scores) * size / 2**20


# --------------------------------------------------------------------------
# Target rows: which timing is set beside which


def _sdpa_pairings() -> list[Pairing]:
    out = []
    gpu = [c for c in configs(torch.device("cuda"), True) if c.kind == "sdpa"]
    for c in gpu:
        what = (f"SDPA hd{c.D} T={c.Tq} B={c.B} heads={c.heads}"
                + (" causal" if c.causal else ""))
        if c.mask:
            out += _mask_pairings(c, what)
            continue
        out += [
            Pairing("A1", f"{what}, fwd", "fwd", c.name, c.name,
                    "torch-sdpa-flash", ">= 1.0x", 1.0, tflops=True),
            Pairing("A1", f"{what}, fwd, moonshot vs cuDNN", "fwd", c.name,
                    c.name, "torch-sdpa-cudnn", ">= 0.9x (moonshot)", 0.9,
                    tflops=True),
            Pairing("A1", f"{what}, fwd, vs FlexAttention", "fwd", c.name,
                    c.name, FLEX, "(for reference)", None, tflops=True),
            Pairing("A2", f"{what}, fwd+bwd", "fwd+bwd", c.name, c.name,
                    "torch-sdpa-flash", ">= 1.0x", 1.0, tflops=True),
            Pairing("A2", f"{what}, fwd+bwd, vs cuDNN", "fwd+bwd", c.name,
                    c.name, "torch-sdpa-cudnn", "(for reference)", None,
                    tflops=True),
            Pairing("A2", f"{what}, fwd+bwd, vs FlexAttention", "fwd+bwd",
                    c.name, c.name, FLEX, "(for reference)", None,
                    tflops=True),
            Pairing("A2", f"{what}, bwd alone", "bwd", c.name, c.name,
                    "torch-sdpa-flash", "(for reference)", None,
                    tflops=True),
        ]
    # The quick and the full CPU lists both have this row (at other batch
    # sizes and head counts).
    for anchor in ("torch-sdpa", "torch-sdpa-math"):
        out.append(Pairing("CPU", "SDPA hd64 T=256, fwd+bwd, fp32", "fwd+bwd",
                           "sdpa-cpu-hd64-T256", "sdpa-cpu-hd64-T256", anchor,
                           "(for reference)", None))
    return out


def _mask_pairings(c: Config, what: str) -> list[Pairing]:
    """A5 for the masked row ``c``: ours with the mask against ours without
    it (the A1/A2 row of the same shape; the mask's own read is not
    allowed for) and against FlexAttention with the same mask, fwd and
    fwd+bwd. The TFLOP/s of both sides count the dense work."""
    plain = c.name.removesuffix(f"-{c.mask}")
    return [p for mode in ("fwd", "fwd+bwd") for p in (
        Pairing("A5", f"{what} {c.mask} mask, {mode}, vs no mask", mode,
                c.name, plain, None, ">= 0.9x", 0.9, tflops=True),
        Pairing("A5", f"{what} {c.mask} mask, {mode}, vs FlexAttention",
                mode, c.name, c.name, FLEX, ">= 1.0x", 1.0, tflops=True))]


PAIRINGS = tuple(_sdpa_pairings()) + (
    Pairing("A3", "attention probs B=8 heads=16 T=2048 hd64, fwd", "fwd",
            "A3", "A3", "torch-matmul-softmax", ">= 3x", 3.0),
    Pairing("A3", "same, the P write vs the copy ceiling", "fwd", "A3", "A3",
            None, ">= 75% of copy bandwidth", 0.75, metric="copy"),
    Pairing("A3", "same, fwd+bwd", "fwd+bwd", "A3", "A3",
            "torch-matmul-softmax", "(for reference)", None),
    Pairing("A3", "MultiheadAttention need_weights (per head), fwd", "fwd",
            "A3-mha-weights", "A3-mha-weights", "torch-mha-weights", ">= 3x",
            3.0),
    Pairing("A3", "same, fwd+bwd", "fwd+bwd", "A3-mha-weights",
            "A3-mha-weights", "torch-mha-weights", "(for reference)", None),
    Pairing("A3", "MultiheadAttention without weights, fwd+bwd", "fwd+bwd",
            "A3-mha-noweights", "A3-mha-noweights", "torch-mha-noweights",
            "(comparison)", None),
    Pairing("A4", "additive B=32 Tq=Tk=512 H=256, fwd+bwd", "fwd+bwd", "A4",
            "A4", "torch-additive-eager", ">= 10x", 10.0),
    Pairing("A4", "same, vs torch.compile", "fwd+bwd", "A4", "A4",
            "torch-additive-compile", ">= 3x", 3.0),
    Pairing("A4", "same, peak memory", "fwd+bwd", "A4", "A4", None,
            "peak <= 2x (inputs+outputs+scores)", 2.0, metric="memory"),
    Pairing("A4", "same, fwd", "fwd", "A4", "A4", "torch-additive-eager",
            "(for reference)", None),
    Pairing("CPU", "attention probs, fwd, fp32", "fwd", "scores-cpu",
            "scores-cpu", "torch-matmul-softmax", "(for reference)", None),
    Pairing("CPU", "MultiheadAttention need_weights, fwd, fp32", "fwd",
            "mha-weights-cpu", "mha-weights-cpu", "torch-mha-weights",
            "(for reference)", None),
    Pairing("CPU", "additive attention, fwd+bwd, fp32", "fwd+bwd",
            "additive-cpu", "additive-cpu", "torch-additive-eager",
            "(for reference)", None),
    Pairing("CPU", "same, vs torch.compile", "fwd+bwd", "additive-cpu",
            "additive-cpu", "torch-additive-compile", "(for reference)", None),
)
