"""pytest-benchmark suite for the attention providers: one small
configuration of each kind (tiny on CPU), every provider the machine runs
but torch.compile, fwd and fwd+bwd.

    pytest benchmarks --benchmark-only [-k sdpa] [--benchmark-compare]

As in test_bench_lstm.py: the clock is read on the host, so each timed call
ends with a CUDA synchronize, and each case is checked once against the
float32 PyTorch reference before it is timed (a wrong result fails the
test). A seqkernels kernel that is not registered for this device (the
dispatcher's NotImplementedError) is a skip whose reason says so; run.py is
where such a gap counts as a failure.

The plain tests at the end (no timing) check the work counts and the
wiring of the GPU-only anchors (FlexAttention, torch's cuDNN SDPA) and of
the tensor-core providers on any machine.
"""

import pytest
import torch

from benchmarks import attention, cases, check, suite

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
MODES = ("fwd", "fwd+bwd")
if DEVICE.type == "cuda":
    CONFIGS = [
        attention.Config("bench-sdpa", "sdpa", B=4, Tq=1024, heads=16, D=64,
                         modes=MODES),
        attention.Config("bench-sdpa-causal", "sdpa", B=4, Tq=1024,
                         heads=16, D=64, causal=True, modes=MODES),
        attention.Config("bench-sdpa-documents", "sdpa", B=4, Tq=1024,
                         heads=16, D=64, mask="documents", modes=MODES),
        attention.Config("bench-scores", "scores", B=4, Tq=1024, heads=16,
                         D=64, modes=MODES),
        attention.Config("bench-mha-weights", "mha-weights", B=4, Tq=1024,
                         heads=16, D=64, modes=MODES),
        attention.Config("bench-mha-noweights", "mha-noweights", B=4,
                         Tq=1024, heads=16, D=64, modes=MODES),
        attention.Config("bench-additive", "additive", B=8, Tq=128, H=128,
                         D=128, modes=MODES),
    ]
else:
    CONFIGS = [
        attention.Config("bench-sdpa", "sdpa", B=2, Tq=32, heads=2, D=16,
                         modes=MODES, sanity=True),
        attention.Config("bench-sdpa-causal", "sdpa", B=2, Tq=32, heads=2,
                         D=16, causal=True, modes=MODES, sanity=True),
        attention.Config("bench-sdpa-documents", "sdpa", B=2, Tq=32,
                         heads=2, D=16, mask="documents", modes=MODES,
                         sanity=True),
        attention.Config("bench-scores", "scores", B=2, Tq=32, heads=2, D=16,
                         modes=MODES, sanity=True),
        attention.Config("bench-mha-weights", "mha-weights", B=2, Tq=16,
                         heads=2, D=8, modes=MODES, sanity=True),
        attention.Config("bench-mha-noweights", "mha-noweights", B=2, Tq=16,
                         heads=2, D=8, modes=MODES, sanity=True),
        attention.Config("bench-additive", "additive", B=2, Tq=8, H=8, D=8,
                         modes=MODES, sanity=True),
    ]


@pytest.mark.parametrize("job,mode", suite.params(
    attention.plan(DEVICE, CONFIGS, compile=False),
    lambda job: job.config.name[len("bench-"):]))
def test_attention(benchmark, job, mode):
    cfg = job.config
    case = attention.build(job, DEVICE)
    try:
        result = check.check(case, attention.reference(job, DEVICE),
                             job.dtype, cfg.train)
    except NotImplementedError as exc:
        if not job.provider.startswith("seqkernels-"):
            raise
        first = " ".join(str(exc).split()).split(". ", 1)[0]
        pytest.skip(f"{job.provider}: not available on {DEVICE.type}: "
                    f"{first}")
    assert result.ok, f"{job.provider}: {result.detail}"

    suite.time_case(benchmark, attention, job, case, mode, DEVICE)


# --------------------------------------------------------------------------
# Unit tests of the GPU anchors' wiring and of the work counts, which run
# on the CPU too (the anchors themselves run on a GPU only).

GPU = torch.device("cuda")
CPU = torch.device("cpu")


def test_sdpa_flops_and_gemm_share_in_the_table():
    """SDPA FLOPs: 4*B*heads*Tq*Tk*D forward (halved when causal), 2.5x
    that backward; the A1/A2 lines give each side's TFLOP/s and its share
    of the run's GEMM ceiling."""
    from benchmarks import report
    cfg = attention.Config("sdpa-hd64-T1024", "sdpa", B=16, Tq=1024,
                           heads=32, D=64)
    fwd = 4.0 * 16 * 32 * 1024 * 1024 * 64
    assert attention.flops(cfg, "fwd") == fwd
    assert attention.flops(cfg, "bwd") == 2.5 * fwd
    assert attention.flops(cfg, "fwd+bwd") == 3.5 * fwd
    causal = attention.Config("c", "sdpa", B=2, Tq=100, Tk=300, heads=3,
                              D=8, causal=True)
    assert attention.flops(causal, "fwd") == 4.0 * 2 * 3 * 100 * 300 * 8 / 2

    def row(provider, mode, ms, kernel="attention", **values):
        base = {k: "" for k in report.COLUMNS}
        base.update(kernel=kernel, provider=provider, mode=mode,
                    config=cfg.name, dtype="bfloat16", status="ok",
                    check="ok", median_ms=str(ms),
                    tflops=str(attention.flops(cfg, mode) / ms / 1e9))
        base.update(values)
        return base
    rows = [row("gemm", "fwd", 1.0, kernel="ceiling", tflops="800"),
            row("seqkernels-cuda", "fwd", 1.0),
            row("torch-sdpa-flash", "fwd", 2.0),
            row(attention.FLEX, "fwd", 4.0)]
    table = report.target_table(rows, attention.PAIRINGS).splitlines()
    flash = [ln for ln in table if "torch-sdpa-flash" in ln
             and "hd64 T=1024 B=16" in ln and ", fwd |" in ln]
    ours_tf = fwd / 1e9
    assert len(flash) == 1
    assert f"({ours_tf:.4g} TFLOP/s, {100 * ours_tf / 800:.0f}% of GEMM)" \
        in flash[0]
    assert f"({ours_tf / 2:.4g} TFLOP/s" in flash[0] and "2.00x" in flash[0]
    flex = [ln for ln in table if attention.FLEX in ln
            and "hd64 T=1024 B=16" in ln and "fwd, vs FlexAttention" in ln]
    assert len(flex) == 1 and "4.00x" in flex[0]
    assert f"({ours_tf / 4:.4g} TFLOP/s" in flex[0]


def test_gpu_anchors_are_planned_and_skipped_with_reasons():
    """FlexAttention and torch's cuDNN SDPA beside every SDPA row on a GPU;
    on the CPU they (and the other CUDA-only backends) are skipped rows
    with the reason; FlexAttention also without torch.compile."""
    cfgs = [c for c in attention.configs(GPU, True) if c.kind == "sdpa"]
    gpu = attention.plan(GPU, cfgs, compile=True)
    for cfg in cfgs:
        mine = {j.provider: j for j in gpu if j.config is cfg}
        assert mine[attention.FLEX].skip == ""
        assert mine["torch-sdpa-cudnn"].skip == ""
    cpu = attention.plan(CPU, CONFIGS[:2] if DEVICE.type == "cpu"
                         else attention.configs(CPU, False)[:1],
                         compile=True)
    skipped = {j.provider: j.skip for j in cpu if j.skip}
    assert "CUDA only" in skipped[attention.FLEX]
    for name in ("flash", "efficient", "cudnn"):
        assert "CUDA only" in skipped[f"torch-sdpa-{name}"]
    assert "torch-sdpa-math" not in skipped
    no_compile = attention.plan(GPU, cfgs[:1], compile=False)
    assert "--no-compile" in next(
        j.skip for j in no_compile if j.provider == attention.FLEX)


@pytest.mark.parametrize("causal,mask", ((False, ""), (True, ""),
                                         (False, "documents")),
                         ids=("full", "causal", "documents"))
def test_flex_case_is_sdpa_with_the_same_mask(causal, mask):
    """The FlexAttention case, eager on the CPU (its compiled form is the
    GPU's): the same outputs as torch's SDPA with the same causal or
    documents mask, by the harness's check (FlexAttention has no backward on
    the CPU: the gradients wait for a GPU, where run.py checks them)."""
    pytest.importorskip("torch.nn.attention.flex_attention")
    cfg = attention.Config("flex", "sdpa", B=2 if mask else 1, Tq=128,
                           Tk=128, heads=2, D=16, causal=causal, mask=mask)
    leaves = {name: t.detach() for name, t in
              attention._qkv(cfg, CPU, torch.float32).items()}
    case = attention.flex_case(cfg, leaves, CPU, compile=False)
    ref = attention.reference(attention.Job(cfg, "", torch.float32), CPU)
    result = check.check(case, ref, torch.float32, False)
    assert result.ok, result.detail
    assert attention.causal_mask_mod(0, 0, torch.tensor(3),
                                     torch.tensor(2)).item()
    assert not attention.causal_mask_mod(0, 0, torch.tensor(2),
                                         torch.tensor(3)).item()


def test_tensor_core_providers_set_the_variable(monkeypatch):
    """On a GPU each dot-product kind gets seqkernels-cuda-tensor-core,
    which runs the cuda backend with SEQKERNELS_ATTENTION=tensor_core; the
    other seqkernels providers of those kinds pin "simt"."""
    cfgs = [c for c in attention.configs(GPU, True)
            if c.name in ("A3", "A3-mha-weights", "A4")
            or c.name == "sdpa-hd64-T1024"]
    providers = {(j.config.name, j.provider)
                 for j in attention.plan(GPU, cfgs, compile=False)}
    assert {("A3", "seqkernels-cuda-tensor-core"),
            ("A3-mha-weights", "seqkernels-mha-weights-cuda-tensor-core"),
            ("sdpa-hd64-T1024", "seqkernels-cuda-tensor-core")} <= providers
    assert not any(p.endswith("-tensor-core") for n, p in providers
                   if n == "A4")
    assert attention._seqkernels_backend(
        "seqkernels-cuda-tensor-core") == "cuda"
    assert attention._seqkernels_backend(
        "seqkernels-mha-weights-cuda-tensor-core") == "cuda"
    cfg = attention.Config("s", "scores", B=1, Tq=8, heads=1, D=8)
    built = {}
    monkeypatch.setattr(attention, "_scores_case",
                        lambda *args: built.setdefault(args[1], cases.Case(
                            lambda: [])))
    for provider in ("seqkernels-cuda-tensor-core", "seqkernels-cpu",
                     "torch-matmul-softmax"):
        attention.build(attention.Job(cfg, provider, torch.float32), CPU)
    assert built["seqkernels-cuda-tensor-core"].env == {
        attention.ATTENTION_ENV: "tensor_core"}
    assert built["seqkernels-cpu"].env == {attention.ATTENTION_ENV: "simt"}
    assert built["torch-matmul-softmax"].env == {}


def test_documents_mask():
    """Each query attends to the keys of its own document: a block-diagonal
    boolean mask per batch row, documents of T/16 to T/4 positions (the
    last one cut at T), placed differently in each row, the same on every
    call; it needs Tq == Tk and a known mask name."""
    cfg = attention.Config("m", "sdpa", B=3, Tq=256, heads=2, D=16,
                           mask="documents")
    ids = attention.documents(cfg)
    assert ids.shape == (3, 256) and torch.equal(ids,
                                                 attention.documents(cfg))
    for row in ids:
        assert row[0] == 0 and bool((row.diff() >= 0).all())
        assert bool((row.diff() <= 1).all())  # ids run 0, 1, 2, ...
        lengths = torch.bincount(row)
        assert bool((lengths[:-1] >= 256 // 16).all())
        assert bool((lengths <= 256 // 4).all())
    assert not torch.equal(ids[0], ids[1])
    mask = attention.attention_mask(cfg, CPU)
    assert mask.shape == (3, 1, 256, 256) and mask.dtype == torch.bool
    assert torch.equal(mask, mask.transpose(-1, -2))
    assert bool(mask.diagonal(dim1=-2, dim2=-1).all())
    assert attention.attention_mask(
        attention.Config("p", "sdpa", B=1, Tq=8), CPU) is None
    with pytest.raises(ValueError, match="Tq == Tk"):
        attention.documents(attention.Config("x", "sdpa", B=1, Tq=8, Tk=16,
                                             mask="documents"))
    with pytest.raises(ValueError, match="unknown mask"):
        attention.documents(attention.Config("y", "sdpa", B=1, Tq=8,
                                             mask="stripes"))


def test_masked_rows_and_target_a5():
    """On a GPU each A1/A2 shape at T = A5_T (not causal) has a documents
    twin with target A5, paired with its unmasked row (the same provider,
    >= 0.9x) and with FlexAttention on the same mask (>= 1.0x), fwd and
    fwd+bwd; torch's flash backend, which takes no mask, is skipped there
    with the reason; the A1/A2 pairings leave the masked rows alone."""
    cfgs = attention.configs(GPU, False)
    names = {c.name for c in cfgs}
    masked = [c for c in cfgs if c.mask]
    assert {(c.D, c.Tq, c.causal, c.target, c.modes) for c in masked} == {
        (D, attention.A5_T, False, "A5", ("fwd", "fwd+bwd"))
        for D in (64, 128)}
    for c in masked:
        plain = c.name.removesuffix("-documents")
        assert plain in names
        twin = next(p for p in cfgs if p.name == plain)
        assert (twin.B, twin.heads, twin.D, twin.Tq) == (c.B, c.heads, c.D,
                                                         c.Tq)
        rows = [p for p in attention.PAIRINGS if p.ours_config == c.name]
        assert {(p.target, p.mode, p.anchor_config, p.anchor_provider,
                 p.threshold) for p in rows} == {
            ("A5", mode, anchor, provider, threshold)
            for mode in ("fwd", "fwd+bwd")
            for anchor, provider, threshold in ((plain, None, 0.9),
                                                (c.name, attention.FLEX,
                                                 1.0))}
        jobs = {j.provider: j.skip for j in attention.plan(
            GPU, [c], compile=True)}
        assert "no attn_mask" in jobs["torch-sdpa-flash"]
        assert jobs[attention.FLEX] == "" and jobs["torch-sdpa-cudnn"] == ""
    assert not [p for p in attention.PAIRINGS if p.target in ("A1", "A2")
                and p.ours_config.endswith("-documents")]
    cpu = [c for c in attention.configs(CPU, True) if c.mask]
    assert [c.name for c in cpu] == ["sdpa-cpu-hd64-T256-documents"]
