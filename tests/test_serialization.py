"""Saving and loading seqkernels modules: whole modules and models through
torch.save / torch.load(weights_only=True) with
seqkernels.serialization_globals(), and state_dicts both ways between
seqkernels and torch.nn."""

import pickle

import pytest
import torch

import seqkernels
from conftest import assert_matches, seed

# seqkernels class -> (constructor arguments, input shapes (float64), the
# torch.nn class with the same state_dict or None).
MODULES = {
    seqkernels.LSTM: (dict(input_size=3, hidden_size=4, num_layers=2,
                           proj_size=2, bidirectional=True),
                      [(5, 2, 3)], torch.nn.LSTM),
    seqkernels.GRU: (dict(input_size=3, hidden_size=4, batch_first=True),
                     [(2, 5, 3)], torch.nn.GRU),
    seqkernels.RNN: (dict(input_size=3, hidden_size=4, nonlinearity="relu"),
                     [(5, 2, 3)], torch.nn.RNN),
    seqkernels.LSTMCell: (dict(input_size=3, hidden_size=4), [(2, 3)],
                          torch.nn.LSTMCell),
    seqkernels.GRUCell: (dict(input_size=3, hidden_size=4), [(2, 3)],
                         torch.nn.GRUCell),
    seqkernels.RNNCell: (dict(input_size=3, hidden_size=4), [(2, 3)],
                         torch.nn.RNNCell),
    seqkernels.MultiheadAttention: (
        dict(embed_dim=4, num_heads=2, kdim=3, vdim=5, add_bias_kv=True),
        [(5, 2, 4), (6, 2, 3), (6, 2, 5)], torch.nn.MultiheadAttention),
    seqkernels.AdditiveAttention: (
        dict(query_size=3, key_size=4, hidden_size=5),
        [(2, 3, 3), (2, 6, 4)], None),
}


def _inputs(shapes):
    g = torch.Generator().manual_seed(seed(1))
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


def _flat(out):
    """The tensors of a module's output (nested tuples, None left out)."""
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out if o is not None for t in _flat(o)]


def _build(cls, backend="cpu"):
    kwargs, shapes, _ = MODULES[cls]
    torch.manual_seed(seed())
    return cls(**kwargs, dtype=torch.float64, backend=backend), _inputs(shapes)


def _save_load(obj, tmp_path, allowed):
    path = tmp_path / "model.pt"
    torch.save(obj, path)
    with torch.serialization.safe_globals(allowed):
        return torch.load(path, weights_only=True)


def test_every_module_class_is_listed():
    classes = [getattr(seqkernels.nn, n) for n in seqkernels.nn.__all__]
    assert set(MODULES) == set(classes)
    assert set(classes) <= set(seqkernels.serialization_globals())


@pytest.mark.parametrize("cls", MODULES, ids=lambda c: c.__name__)
def test_whole_module_loads_with_weights_only(cls, tmp_path):
    module, inputs = _build(cls, backend="reference")
    path = tmp_path / "module.pt"
    torch.save(module, path)
    with pytest.raises(pickle.UnpicklingError, match=cls.__name__):
        torch.load(path, weights_only=True)
    loaded = _save_load(module, tmp_path, seqkernels.serialization_globals())
    assert type(loaded) is cls and loaded.backend == "reference"
    for a, b in zip(_flat(module(*inputs)), _flat(loaded(*inputs))):
        assert torch.equal(a, b)


def test_whole_converted_model_loads_with_weights_only(tmp_path):
    """One model holding every seqkernels module class, and a converted
    TransformerEncoder whose fused paths stay off after loading."""
    modules = {cls.__name__: _build(cls) for cls in MODULES}
    torch.manual_seed(seed())
    encoder = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0,
                                         batch_first=True),
        num_layers=1, enable_nested_tensor=True)
    model = torch.nn.ModuleDict(
        {name: m for name, (m, _) in modules.items()}
        | {"encoder": encoder.double()}).eval()
    seqkernels.convert(model, backend="cpu")
    src = _inputs([(2, 5, 4)])[0]
    pad = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])

    def outputs(m):
        with torch.no_grad():
            return [t for name, (_, inputs) in modules.items()
                    for t in _flat(m[name](*inputs))] + [
                m["encoder"](src, src_key_padding_mask=pad)]

    torch_classes = [torch.nn.ModuleDict, torch.nn.ModuleList,
                     torch.nn.TransformerEncoder,
                     torch.nn.TransformerEncoderLayer, torch.nn.Linear,
                     torch.nn.LayerNorm, torch.nn.Dropout,
                     torch.nn.functional.relu]
    loaded = _save_load(model, tmp_path,
                        [*seqkernels.serialization_globals(), *torch_classes])
    assert [type(m) for m in loaded.modules()] == [
        type(m) for m in model.modules()]
    assert not loaded["encoder"].use_nested_tensor
    assert loaded["encoder"].layers[0].activation_relu_or_gelu == 0
    for a, b in zip(outputs(model), outputs(loaded), strict=True):
        assert torch.equal(a, b)
    seqkernels.convert(loaded, to="torch")
    assert loaded["encoder"].use_nested_tensor


@pytest.mark.parametrize("cls", [c for c, v in MODULES.items() if v[2]],
                         ids=lambda c: c.__name__)
def test_state_dict_round_trips_with_torch(cls):
    kwargs, shapes, torch_cls = MODULES[cls]
    inputs = _inputs(shapes)
    torch.manual_seed(seed())
    theirs = torch_cls(**kwargs, dtype=torch.float64)
    torch.manual_seed(seed(3))
    ours = cls(**kwargs, dtype=torch.float64, backend="cpu")
    ours.load_state_dict(theirs.state_dict())  # torch.nn -> seqkernels
    torch.manual_seed(seed(4))
    back = torch_cls(**kwargs, dtype=torch.float64)
    back.load_state_dict(ours.state_dict())  # seqkernels -> torch.nn
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ref = _flat(theirs(*inputs))
    for name, model in (("seqkernels", ours), ("torch.nn again", back)):
        out = _flat(model(*inputs))
        assert len(out) == len(ref)
        for i, (o, r) in enumerate(zip(out, ref)):
            assert_matches(f"{name} output {i}", o, r, r, torch.float64)
