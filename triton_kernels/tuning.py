"""Autotuned launch shapes of the Triton attention kernels on a GPU (opt-in).

With ``SEQKERNELS_TRITON_TUNE=1`` (read at every launch; unset or ``0``:
off; any other value is an error naming the variable), a hoisted-mode
attention kernel on a GPU (``sdpa``'s forward, dK/dV and dQ kernels,
``attention_scores``' forward, dQ and dK kernels: half types and TF32;
``additive_attention``'s forward, probabilities and dk kernels: half
types) takes its tiles (BLOCK_M, BLOCK_N, and the additive kernels'
BLOCK_H: the space's ``tiles``), num_warps and num_stages from
``triton.autotune`` over the candidates of its module's tuning space
instead of the module's fixed table. The space is keyed by kernel, float32
(TF32) or not, and the wider padded head dim (the additive kernels: the
padded value dim); the tuner's cache by the head dims, the dtypes, the
mask, causal and dropout flags (the kernel arguments named in ``key``) and
the power-of-two buckets of both lengths (one tuner per bucket), so that a
model's every new length does not start a new search. The first launch of
each key times every candidate (Triton's ``do_bench``); later ones reuse
the best.

Each space (``_TUNING_SPACE`` of sdpa.py, attention_scores.py and
additive_attention.py) is the table's entry and a few larger tiles that
ptxas compiles for sm_90 with at most 128 bytes of spills in the plain case
(chosen without a GPU; ``scripts/triton_aot_check.py --tuned`` compiles
every candidate and prints its registers, spills and shared memory).
float32 (TF32) keeps its table, as do float64 and the additive attention's
dq kernel (whose per-block partial sums are laid out by BLOCK_M). Opt-in
until a GPU run has timed it: the fixed tables stay the default.
"""

import os
from collections.abc import Callable, Sequence

import triton

ENV = "SEQKERNELS_TRITON_TUNE"

# A candidate: the values of the space's tile parameters (``TILES`` unless
# the launch names others), then num_warps and num_stages.
Tiles = tuple[int, ...]
TILES = ("BLOCK_M", "BLOCK_N")


def tuning() -> bool:
    """Whether ``SEQKERNELS_TRITON_TUNE`` asks for autotuning."""
    value = os.environ.get(ENV, "")
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ValueError(f"{ENV} must be 0 or 1 (or unset), got {value!r}")


def length_bucket(n: int) -> int:
    """The tuners' bucket of a sequence length: the power of two at or
    above it, from 64 up to 16384 (longer lengths share the last)."""
    return min(1 << 14, max(64, triton.next_power_of_2(max(1, n))))


_TUNERS: dict[tuple, triton.runtime.Autotuner] = {}


def tuned(kernel: triton.JITFunction, space: Sequence[Tiles],
          key: Sequence[str], lengths: Sequence[int],
          tiles: Sequence[str] = TILES) -> triton.runtime.Autotuner:
    """The autotuner of ``kernel`` over the candidates ``space`` (values of
    ``tiles``, num_warps, num_stages) for the length buckets of
    ``lengths``, made once per kernel, space and bucket. Launch it as the
    kernel, with a grid function of the chosen meta (the tiles) and without
    the tile, warp and stage arguments."""
    name = (kernel.fn.__qualname__, tuple(tiles), tuple(space),
            tuple(length_bucket(n) for n in lengths))
    tuner = _TUNERS.get(name)
    if tuner is None:
        configs = [triton.Config(dict(zip(tiles, c[:-2])), num_warps=c[-2],
                                 num_stages=c[-1])
                   for c in space]
        # The module's key names those of its kernels' arguments that
        # matter; this kernel may lack some (the backward has no mask).
        names = [k for k in key if k in kernel.arg_names]
        tuner = triton.autotune(configs=configs, key=names)(kernel)
        _TUNERS[name] = tuner
    return tuner


def launch(kernel: triton.JITFunction, cfg: dict, space: Sequence[Tiles],
           key: Sequence[str], lengths: Sequence[int],
           grid: Callable[[dict], tuple], *args,
           tiles: Sequence[str] = TILES, **kwargs) -> None:
    """Launches ``kernel`` with the launch keywords ``cfg`` (its tiles
    those of the module's table), or, where ``tuning()`` and ``space`` (the
    kernel's tuning space; empty where it has none) offers a choice,
    through the tuner of ``space``, whose choice replaces cfg's tiles,
    num_warps and num_stages. ``grid`` maps the launch's tiles to its
    grid."""
    if len(space) > 1 and tuning():
        chosen = (*tiles, "num_warps", "num_stages")
        rest = {k: v for k, v in cfg.items() if k not in chosen}
        tuned(kernel, space, key, lengths, tiles)[grid](*args, **kwargs,
                                                        **rest)
    else:
        kernel[grid(cfg)](*args, **kwargs, **cfg)
