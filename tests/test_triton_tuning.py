"""The autotuned launches of the Triton attention kernels
(triton_kernels/tuning.py), without a GPU: the switch, the length buckets,
the spaces (each table's entry first, valid tile shapes), and the launch
plumbing through a stand-in kernel and tuner. That the candidates compile
without spills is scripts/triton_aot_check.py --tuned; their timing waits
for a GPU."""

import pytest
import torch

triton = pytest.importorskip("triton")

from triton_kernels import (additive_attention, attention_scores,  # noqa: E402
                            sdpa, tuning)


@pytest.mark.parametrize("value,on", [("", False), ("0", False),
                                      ("1", True)])
def test_switch(monkeypatch, value, on):
    monkeypatch.setenv(tuning.ENV, value)
    assert tuning.tuning() is on


def test_switch_refuses_other_values(monkeypatch):
    monkeypatch.setenv(tuning.ENV, "yes")
    with pytest.raises(ValueError, match=tuning.ENV):
        tuning.tuning()


def test_length_buckets():
    assert [tuning.length_bucket(n) for n in (1, 64, 65, 1000, 1024, 1025,
                                              20000)] == [
        64, 64, 128, 1024, 1024, 2048, 16384]


@pytest.fixture
def tf32():
    """float32 runs hoisted (and tunes) on the GPU with TF32 only."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


def _space_and_table(module, kernel, dtype, D):
    dp = sdpa.pad_dim(D)
    if module is sdpa:
        return (sdpa._space(kernel, dtype, True, D, D),
                sdpa._gpu_tiles(kernel, dtype, dp, dp))
    return (attention_scores._space(kernel, dtype, True, D),
            attention_scores._GPU_TILES[kernel, dtype == torch.float32,
                                        min(256, max(64, dp))])


@pytest.mark.parametrize("module,kernel", [
    (sdpa, "fwd"), (sdpa, "dkdv"), (sdpa, "dq"), (attention_scores, "fwd"),
    (attention_scores, "dq"), (attention_scores, "dk")],
    ids=lambda x: getattr(x, "__name__", x))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16,
                                   torch.float32], ids=str)
@pytest.mark.parametrize("D", [16, 64, 100, 128, 256])
def test_spaces(tf32, module, kernel, dtype, D):
    """Each space starts with the table's entry and holds distinct, valid
    tile shapes; float32 (TF32) has the table's alone (no tuning)."""
    space, table = _space_and_table(module, kernel, dtype, D)
    assert space[0] == table
    assert len(set(space)) == len(space)
    assert (len(space) == 1) == (dtype == torch.float32 or (
        module is sdpa and kernel == "dq" and sdpa.pad_dim(D) == 256))
    for bm, bn, warps, stages in space:
        assert bm in (16, 32, 64, 128) and bn in (16, 32, 64, 128)
        assert warps in (4, 8) and stages in (2, 3, 4)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_no_space_off_the_gpu_or_in_chunked_mode(dtype):
    """float64, and float32 without TF32, are chunked on the GPU (no
    tuning); nothing tunes on the CPU."""
    assert not torch.backends.cuda.matmul.allow_tf32
    assert sdpa._space("fwd", dtype, True, 64, 64) == []
    assert sdpa._space("fwd", torch.bfloat16, False, 64, 64) == []
    assert attention_scores._space("fwd", dtype, True, 64) == []
    assert attention_scores._space("dq", torch.bfloat16, False, 64) == []


class _Kernel:
    """Stands for a JITFunction: records kernel[grid](*args, **kwargs)."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.calls.append((grid, args, kwargs))


def test_launch_without_tuning_uses_the_table(monkeypatch):
    monkeypatch.delenv(tuning.ENV, raising=False)
    kernel = _Kernel()
    cfg = dict(BLOCK_M=64, BLOCK_N=32, num_warps=8, num_stages=2, HOIST=True)
    tuning.launch(kernel, cfg, [(64, 32, 8, 2), (32, 32, 4, 2)], ("D",),
                  (100, 200), lambda c: (c["BLOCK_M"], 7), 1, 2, D=3)
    assert kernel.calls == [((64, 7), (1, 2), dict(cfg, D=3))]


def test_launch_with_tuning_goes_through_the_tuner(monkeypatch):
    monkeypatch.setenv(tuning.ENV, "1")
    made = []

    def fake_tuned(kernel, space, key, lengths, tiles):
        made.append((space, key, lengths, tiles))
        return kernel  # launched as the tuner would be: [grid](...)

    monkeypatch.setattr(tuning, "tuned", fake_tuned)
    kernel = _Kernel()
    cfg = dict(BLOCK_M=64, BLOCK_N=32, num_warps=8, num_stages=2, HOIST=True)
    grid = lambda c: (c["BLOCK_M"], 7)  # noqa: E731
    space = [(64, 32, 8, 2), (32, 32, 4, 2)]
    tuning.launch(kernel, cfg, space, ("D",), (100, 200), grid, 1, D=3)
    assert made == [(space, ("D",), (100, 200), tuning.TILES)]
    # The tuner gets the grid function and no tile arguments of its own.
    assert kernel.calls == [(grid, (1,), dict(HOIST=True, D=3))]
    # A space over other tiles leaves those to the tuner as well.
    made.clear()
    tuning.launch(kernel, dict(cfg, BLOCK_H=8), [(64, 32, 8, 8, 2),
                                                 (32, 32, 4, 4, 2)],
                  ("D",), (100, 200), grid, 1,
                  tiles=("BLOCK_M", "BLOCK_N", "BLOCK_H"), D=3)
    assert made[0][3] == ("BLOCK_M", "BLOCK_N", "BLOCK_H")
    assert kernel.calls[-1] == (grid, (1,), dict(HOIST=True, D=3))


def test_one_tuner_per_space_and_bucket():
    kernel = sdpa._sdpa_fwd_kernel
    space = sdpa._space("fwd", torch.bfloat16, True, 64, 64)
    a = tuning.tuned(kernel, space, sdpa._TUNING_KEY, (100, 100))
    b = tuning.tuned(kernel, space, sdpa._TUNING_KEY, (128, 70))
    c = tuning.tuned(kernel, space, sdpa._TUNING_KEY, (129, 100))
    assert a is b and a is not c
    assert [(cf.kwargs["BLOCK_M"], cf.kwargs["BLOCK_N"], cf.num_warps,
             cf.num_stages) for cf in a.configs] == space


def test_a_tuner_keys_on_the_kernels_own_arguments():
    """The backward kernels of attention_scores take no mask: their tuners
    key on the rest of the module's key."""
    kernel = attention_scores._scores_bwd_dq_kernel
    space = attention_scores._space("dq", torch.bfloat16, True, 64)
    tuner = tuning.tuned(kernel, space, attention_scores._TUNING_KEY,
                         (64, 64))
    assert list(tuner.keys) == ["D", "GROUP"]


@pytest.mark.parametrize("kernel", ["fwd", "probs", "dk"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("Dv", [16, 64, 100, 128, 256])
def test_additive_spaces(kernel, dtype, Dv):
    """The additive kernels' spaces: the table's tanh tile first (with
    Triton's default stages), then distinct candidates of valid shapes,
    more than one for every kernel and value dim."""
    space = additive_attention._space(kernel, dtype, True, Dv)
    cfg = additive_attention._config(dtype, True, Dv)
    assert space[0] == (cfg["BLOCK_M"], cfg["BLOCK_N"], cfg["BLOCK_H"],
                        cfg["num_warps"], 3)
    assert len(set(space)) == len(space) > 1
    for bm, bn, bh, warps, stages in space:
        assert bm in (16, 32, 64) and bn in (16, 32, 64)
        assert bh in (4, 8, 16) and warps in (4, 8) and stages in (2, 3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_no_additive_space_off_the_gpu_or_outside_hoisted_mode(dtype):
    assert not torch.backends.cuda.matmul.allow_tf32
    for kernel in ("fwd", "probs", "dk"):
        assert additive_attention._space(kernel, dtype, True, 64) == []
        assert additive_attention._space(kernel, torch.bfloat16, False,
                                         64) == []


def test_additive_float32_keeps_its_table(tf32):
    """float32 runs hoisted on the GPU with TF32, on the table's tile."""
    cfg = additive_attention._config(torch.float32, True, 64)
    for kernel in ("fwd", "probs", "dk"):
        assert additive_attention._space(kernel, torch.float32, True,
                                         64) == [
            additive_attention._table_tiles(cfg)]


def test_additive_tuners_key_and_tile_on_their_own_arguments():
    """The additive tuners choose BLOCK_H too and key on the kernel's own
    flags: the forward on H, Dv, the mask kind, the bias and the score
    store; the dk kernel on H and the bias alone."""
    space = additive_attention._space("fwd", torch.bfloat16, True, 64)
    tuner = tuning.tuned(additive_attention._additive_fwd_kernel, space,
                         additive_attention._TUNING_KEY, (64, 64),
                         additive_attention._TUNING_TILES)
    assert list(tuner.keys) == ["H", "Dv", "MASK_KIND", "HAS_BIAS",
                                "STORE_SCORES"]
    assert [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_H"],
             c.num_warps, c.num_stages) for c in tuner.configs] == space
    dk = tuning.tuned(additive_attention._additive_bwd_dk_kernel,
                      additive_attention._space("dk", torch.bfloat16, True,
                                                64),
                      additive_attention._TUNING_KEY, (64, 64),
                      additive_attention._TUNING_TILES)
    assert list(dk.keys) == ["H", "HAS_BIAS"]
