"""seqkernels.convert and torch's Transformer modules: after convert, the
attention of every encoder and decoder layer is seqkernels' and is really
called, in eval() under no_grad (where torch's fused inference paths would
bypass it) as in training, with outputs (and, in training, gradients) within
the tolerance rule of torch's; convert back restores torch's fused paths;
NestedTensor input is refused by name."""

import copy

import pytest
import torch

import seqkernels
from conftest import assert_matches, seed

E, H, FF, N, S, T = 8, 2, 16, 3, 5, 4
LENGTHS = (5, 3, 4)  # left-aligned src padding, as torch's nested path wants


def _layer_kw(**kw):
    return dict(d_model=E, nhead=H, dim_feedforward=FF, dropout=0.0,
                batch_first=True, **kw)


def _encoder_layer():
    return torch.nn.TransformerEncoderLayer(**_layer_kw())


# case -> (model builder, attention modules inside, whether torch's fused
# encoder-layer kernel runs the model in eval() under no_grad).
CASES = {
    "encoder_layer": (_encoder_layer, 1, True),
    "encoder_layer_gelu_norm_first": (
        lambda: torch.nn.TransformerEncoderLayer(
            **_layer_kw(activation="gelu", norm_first=True)), 1, True),
    "encoder_nested": (
        lambda: torch.nn.TransformerEncoder(
            _encoder_layer(), num_layers=2, enable_nested_tensor=True),
        2, True),
    "decoder_layer": (
        lambda: torch.nn.TransformerDecoderLayer(**_layer_kw()), 2, False),
    "transformer": (
        lambda: torch.nn.Transformer(
            d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=1,
            dim_feedforward=FF, dropout=0.0, batch_first=True), 4, True),
}


def _inputs(case, dtype):
    g = torch.Generator().manual_seed(seed(1))
    src = torch.randn(N, S, E, generator=g, dtype=torch.float64).to(dtype)
    pad = torch.arange(S)[None, :] >= torch.tensor(LENGTHS)[:, None]
    if case.startswith("encoder"):
        return dict(src=src, src_key_padding_mask=pad), pad
    tgt = torch.randn(N, T, E, generator=g, dtype=torch.float64).to(dtype)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(
        T, dtype=dtype)
    if case == "decoder_layer":
        return dict(tgt=tgt, memory=src, tgt_mask=causal,
                    memory_key_padding_mask=pad), None
    return dict(src=src, tgt=tgt, tgt_mask=causal, src_key_padding_mask=pad,
                memory_key_padding_mask=pad), None


@pytest.fixture
def calls(monkeypatch):
    """Counts calls of seqkernels.MultiheadAttention.forward, of torch's
    fused encoder-layer kernel and of its NestedTensor packing."""
    counts = {"ours": 0, "fused": 0, "nested": 0}

    def counting(key, fn):
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(seqkernels.MultiheadAttention, "forward", counting(
        "ours", seqkernels.MultiheadAttention.forward))
    for key, name in (("fused", "_transformer_encoder_layer_fwd"),
                      ("nested", "_nested_tensor_from_mask")):
        monkeypatch.setattr(torch, name, counting(key, getattr(torch, name)))
    return counts


def _run(model, inputs, training):
    """Output and, in training, the gradients of the float inputs."""
    model.train(training)
    inputs = {k: v.detach().clone().requires_grad_(training)
              if v.is_floating_point() and k in ("src", "tgt") else v
              for k, v in inputs.items()}
    if not training:
        with torch.no_grad():
            return model(**inputs), []
    out = model(**inputs)
    g = torch.Generator().manual_seed(seed(2))
    weights = torch.randn(out.shape, generator=g, dtype=torch.float64)
    leaves = [v for v in inputs.values() if v.requires_grad]
    grads = torch.autograd.grad((out * weights.to(out.dtype)).sum(), leaves)
    return out.detach(), list(grads)


# The unconverted encoder's own NestedTensor packing warns: prototype API.
NESTED_WARNING = "ignore:The PyTorch API of nested tensors"


@pytest.mark.filterwarnings(NESTED_WARNING)
@pytest.mark.parametrize("training", [False, True], ids=["eval_no_grad",
                                                         "train"])
@pytest.mark.parametrize("case", CASES)
def test_converted_transformer_runs_our_attention(case, training, calls):
    build, n_attention, fused = CASES[case]
    torch.manual_seed(seed())
    ref = build().to(torch.float64)
    theirs = copy.deepcopy(ref).to(torch.float32)
    ours = seqkernels.convert(copy.deepcopy(theirs), backend="cpu")
    inputs64, pad = _inputs(case, torch.float64)
    inputs32, _ = _inputs(case, torch.float32)

    out64, grads64 = _run(ref, inputs64, training)
    calls.update(fused=0, nested=0)
    out_t, grads_t = _run(theirs, inputs32, training)
    # The premise: unconverted, torch's fused kernel runs the model in eval.
    assert calls["ours"] == 0
    assert (calls["fused"] > 0) == (fused and not training)
    calls.update(fused=0, nested=0)
    out, grads = _run(ours, inputs32, training)
    assert calls == {"ours": n_attention, "fused": 0, "nested": 0}

    # torch's nested path leaves padded positions of the encoder's output
    # zero; its unfused path (training) and ours compute them. Compare the
    # real positions; the padded ones must be finite.
    keep = ~pad if pad is not None else torch.ones(out.shape[:2], dtype=bool)
    assert out[~keep].isfinite().all()
    assert_matches(f"{case} output", out[keep], out_t[keep], out64[keep],
                   torch.float32)
    for i, (g, g_t, g64) in enumerate(zip(grads, grads_t, grads64)):
        assert_matches(f"{case} grad {i}", g, g_t, g64, torch.float32)


@pytest.mark.filterwarnings(NESTED_WARNING)
def test_convert_back_restores_torchs_fused_paths(calls):
    torch.manual_seed(seed())
    model = torch.nn.TransformerEncoder(_encoder_layer(), num_layers=2,
                                        enable_nested_tensor=True).eval()
    inputs, _ = _inputs("encoder_nested", torch.float32)
    model, report = seqkernels.convert(model, backend="cpu",
                                       return_report=True)
    assert not model.use_nested_tensor
    assert all(layer.activation_relu_or_gelu == 0 for layer in model.layers)
    adjusted = {e.name for e in report.entries if e.action == "adjusted"}
    assert adjusted == {"", "layers.0", "layers.1"}
    # Converting again changes nothing more and keeps what to restore.
    seqkernels.convert(model, backend="cpu")

    seqkernels.convert(model, to="torch")
    assert model.use_nested_tensor
    assert all(layer.activation_relu_or_gelu == 1 for layer in model.layers)
    assert not any("_seqkernels_fused_path" in m.__dict__
                   for m in model.modules())
    with torch.no_grad():
        model(**inputs)
    assert calls == {"ours": 0, "fused": 2, "nested": 1}


def test_converted_encoder_layer_compiles_with_our_attention(calls):
    torch.manual_seed(seed())
    layer = seqkernels.convert(_encoder_layer(), backend="cpu").eval()
    inputs, _ = _inputs("encoder_layer", torch.float32)
    with torch.no_grad():
        eager = layer(**inputs)
        compiled = torch.compile(layer, fullgraph=True,
                                 backend="aot_eager")(**inputs)
    torch.testing.assert_close(compiled, eager, rtol=0, atol=0)
    assert calls["ours"] >= 2 and calls["fused"] == 0


def test_warns_where_it_cannot_switch_a_fused_path_off():
    layer = _encoder_layer()
    del layer.activation_relu_or_gelu  # as in a torch without this gate
    with pytest.warns(UserWarning,
                      match="has no attribute 'activation_relu_or_gelu'"):
        _, report = seqkernels.convert(torch.nn.Sequential(layer),
                                       return_report=True)
    [left] = [e for e in report.entries if e.action == "left"]
    assert left.name == "0" and "may bypass" in left.detail


@pytest.mark.filterwarnings(NESTED_WARNING)
@pytest.mark.parametrize("layout", [torch.strided, torch.jagged],
                         ids=["strided", "jagged"])
def test_nested_tensor_input_is_refused_by_name(layout):
    mha = seqkernels.MultiheadAttention(E, H, batch_first=True,
                                        backend="cpu").eval()
    dense = torch.randn(N, S, E)
    nested = torch.nested.nested_tensor([torch.randn(n, E) for n in LENGTHS],
                                        layout=layout)
    with pytest.raises(ValueError, match="query is a NestedTensor"):
        mha(nested, nested, nested)
    with pytest.raises(ValueError, match="value is a NestedTensor"):
        mha(dense, dense, nested)
    # In a converted encoder layer too, where torch's fused path took it.
    layer = seqkernels.convert(_encoder_layer(), backend="cpu").eval()
    with torch.no_grad(), pytest.raises(ValueError,
                                        match="query is a NestedTensor"):
        layer(nested)
