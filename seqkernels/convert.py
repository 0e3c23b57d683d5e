"""``seqkernels.convert``: swap the torch.nn recurrent and attention modules
of a model for their seqkernels twins, and back (for export)."""

import warnings
from dataclasses import dataclass, field
from typing import Literal, Optional, Union, overload

import torch

from ._backend import BACKENDS
from .nn import (GRU, LSTM, RNN, AdditiveAttention, GRUCell, LSTMCell,
                 MultiheadAttention, RNNCell)

# torch.nn class -> seqkernels twin.
_TWINS: dict[type, type] = {
    torch.nn.LSTM: LSTM,
    torch.nn.GRU: GRU,
    torch.nn.RNN: RNN,
    torch.nn.LSTMCell: LSTMCell,
    torch.nn.GRUCell: GRUCell,
    torch.nn.RNNCell: RNNCell,
    torch.nn.MultiheadAttention: MultiheadAttention,
}

# Every seqkernels module class (each has a ``backend``).
_OURS = (*_TWINS.values(), AdditiveAttention)

# Instance dicts that hold hooks. The twin shares these very dicts with the
# original, so the handles that register_*_hook returned keep working.
_HOOK_DICTS = (
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
    "_forward_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_backward_pre_hooks",
    "_backward_hooks", "_state_dict_hooks", "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
)

# torch's Transformer modules take fused inference paths that would bypass a
# seqkernels.MultiheadAttention inside them: class -> (the instance
# attribute that gates the path, the value that turns it off, what it is).
#
# * TransformerEncoderLayer.forward, in eval() when no gradient is needed
#   (batch_first, even num_heads, relu/gelu, ...), hands the whole layer to
#   torch._transformer_encoder_layer_fwd, which reads self_attn's weights and
#   never calls self_attn. Of the conditions it checks, activation_relu_or_gelu
#   is the one that says nothing about the layer's math: set in __init__, it
#   only tells that fused kernel which activation to apply, while the
#   unfused path applies ``self.activation`` (torch 2.11 to 2.15 read it
#   nowhere else but TransformerEncoder.__init__'s own nested-tensor check).
#   At 0 the layer runs torch's own unfused forward, self_attn included, in
#   every mode: masks canonicalized and is_causal handled exactly as in
#   training.
# * TransformerEncoder.forward, on the same conditions and a
#   src_key_padding_mask, packs src into a NestedTensor for its layers.
#   seqkernels.MultiheadAttention takes dense tensors with a
#   key_padding_mask instead (as torch's own takes NestedTensors only on its
#   fused path), so use_nested_tensor goes False, as torch's __init__ sets
#   it for any layer that cannot take the nested path.
#
# Why not a twin class or the global switch: a twin would re-implement
# torch's forward and drift from it between torch versions; the global
# torch.backends.mha.set_fastpath_enabled(False) is process-wide state, which
# would slow every torch module and race between threads.
_FUSED_PATHS: dict[type, tuple[str, object, str]] = {
    torch.nn.TransformerEncoderLayer: (
        "activation_relu_or_gelu", 0,
        "torch's fused inference kernel "
        "(torch._transformer_encoder_layer_fwd)"),
    torch.nn.TransformerEncoder: (
        "use_nested_tensor", False,
        "torch's NestedTensor packing of src (use_nested_tensor)"),
}

# Where convert keeps the values it changed, to restore them with to="torch".
_SAVED = "_seqkernels_fused_path"


@dataclass(frozen=True)
class ConvertEntry:
    """One thing :func:`convert` did, or did not do, to one module.

    ``name``: the module's qualified name (as in ``named_modules()``, ""
    for the root; a module reachable at several places under the first).
    ``action``: "replaced" (by its twin), "backend" (a seqkernels module
    whose backend changed), "adjusted" (a torch module whose fused path was
    switched off or restored) or "left" (a module of a convertible kind
    left as it was). ``detail``: what, or why not, in words.
    """

    name: str
    action: str
    detail: str


@dataclass
class ConvertReport:
    """What :func:`convert` replaced, changed and left; ``print`` it for a
    table. ``entries`` in the order of the model's modules, except that a
    module's "adjusted" entry follows those of the modules inside it."""

    to: str
    backend: Optional[str]
    entries: list[ConvertEntry] = field(default_factory=list)

    def add(self, name: str, action: str, detail: str) -> None:
        self.entries.append(ConvertEntry(name, action, detail))

    def __str__(self) -> str:
        counts = {}
        for e in self.entries:
            counts[e.action] = counts.get(e.action, 0) + 1
        head = f"seqkernels.convert(to={self.to!r}"
        if self.to == "seqkernels":
            head += f", backend={self.backend!r}"
        head += "): " + (", ".join(f"{n} {a}" for a, n in counts.items())
                         or "nothing to convert")
        width = max((len(e.name or "(root)") for e in self.entries), default=0)
        return "\n".join([head] + [
            f"  {e.action:<9} {e.name or '(root)':<{width}}  {e.detail}"
            for e in self.entries])


@overload
def convert(module: torch.nn.Module, backend: Optional[str] = ...,
            to: str = ..., *, verbose: bool = ...,
            return_report: Literal[False] = ...) -> torch.nn.Module: ...


@overload
def convert(module: torch.nn.Module, backend: Optional[str] = ...,
            to: str = ..., *, verbose: bool = ...,
            return_report: Literal[True]
            ) -> tuple[torch.nn.Module, ConvertReport]: ...


def convert(module: torch.nn.Module, backend: Optional[str] = "auto",
            to: str = "seqkernels", *, verbose: bool = False,
            return_report: bool = False
            ) -> Union[torch.nn.Module, tuple[torch.nn.Module, ConvertReport]]:
    """Replace, in place, every torch.nn.LSTM, GRU, RNN, LSTMCell, GRUCell,
    RNNCell and MultiheadAttention inside ``module`` with its seqkernels
    twin (``to="seqkernels"``), or every seqkernels twin with its torch.nn
    class (``to="torch"``, e.g. before ``torch.onnx.export`` or to run on a
    platform without seqkernels). Returns ``module``, or the twin when
    ``module`` itself is converted; with ``return_report=True``, ``(module,
    report)``, the :class:`ConvertReport` of what was replaced, changed and
    left. ``verbose=True`` prints that report.

    ``backend``: the twins' ``backend`` (one of ``seqkernels.BACKENDS``;
    None reads ``SEQKERNELS_BACKEND`` at each call); ignored with
    ``to="torch"``. Modules that are seqkernels' already (converted before,
    or built so, AdditiveAttention included) take this backend too: convert
    a converted model again to move it to another backend.

    torch's Transformer modules (TransformerEncoderLayer, TransformerEncoder,
    and so nn.Transformer; the decoder layers have no fused path) with a
    seqkernels MultiheadAttention inside stay torch's, but their fused
    inference paths, which would bypass that attention in eval(), are
    switched off: the encoder layer's fused kernel and the encoder's
    NestedTensor packing (``use_nested_tensor``). ``to="torch"`` switches
    them back on. Should a torch version no longer have the attribute that
    gates a fused path, a warning names the module (its attention may then
    be bypassed in eval).

    What a twin keeps of the module it replaces:

    * the parameters and buffers themselves (the same tensor objects, so
      device, dtype, ``requires_grad``, tied weights and optimizers that
      hold them are unchanged), the training mode, every constructor
      setting and any other instance attribute;
    * its hooks: forward pre-hooks and forward hooks (with their
      ``with_kwargs`` / ``always_call`` flags), full backward hooks and
      backward pre-hooks (``register_full_backward_hook``,
      ``register_full_backward_pre_hook``), state_dict and load_state_dict
      hooks. The twin holds the same hook dictionaries, so a handle from
      ``register_*_hook`` on the original removes the hook from the twin.
      Hook-based tools (pruning, ``torch.nn.utils.weight_norm``) carry over
      with them;
    * its place: the same name in its parent, and a module reachable at
      several places becomes one twin at all of them.

    What it refuses, with a ValueError rather than a silent loss:

    * old-style backward hooks (``register_backward_hook``): they see the
      gradients of the last autograd node inside the module, which differs
      between torch's kernels and seqkernels';
    * modules with parametrizations (``torch.nn.utils.parametrize``):
      their class is generated by torch and cannot be exchanged;
    * ``to="torch"`` for an RNN or RNNCell with ``nonlinearity="identity"``,
      which torch.nn.RNN cannot run.

    Subclasses of the torch.nn classes (a user's own LSTM with its own
    forward) are not converted: only exact instances of the classes above
    (and of the seqkernels twins, for ``to="torch"``) are; the report lists
    them as left, as it lists AdditiveAttention with ``to="torch"`` (torch
    has no such module).
    """
    if to not in ("seqkernels", "torch"):
        raise ValueError(
            f"seqkernels.convert: to must be 'seqkernels' or 'torch', got "
            f"{to!r}")
    if to == "seqkernels" and backend is not None and backend not in BACKENDS:
        raise ValueError(
            f"seqkernels.convert: backend must be one of {BACKENDS} or None, "
            f"got {backend!r}")
    table = _TWINS if to == "seqkernels" else {
        ours: theirs for theirs, ours in _TWINS.items()}
    report = ConvertReport(to, backend if to == "seqkernels" else None)
    memo: dict[int, torch.nn.Module] = {}

    def swap(m: torch.nn.Module, name: str) -> torch.nn.Module:
        if id(m) in memo:
            return memo[id(m)]
        cls = table.get(type(m))
        if cls is not None:
            new = _twin(m, cls, backend, to)
            report.add(name, "replaced",
                       f"{_qualname(type(m))} -> {_qualname(cls)}")
        elif to == "seqkernels" and isinstance(m, _OURS):
            new = m
            _set_backend(m, name, backend, report)
        else:
            _refuse_parametrized(m, table)
            new = m
            if isinstance(m, _OURS):
                # to="torch": a subclass of a twin, or AdditiveAttention.
                report.add(name, "left", f"{_qualname(type(m))}: no "
                           f"torch.nn class to convert it to")
            else:
                _report_subclass(m, name, to, report)
                for child_name, child in list(m._modules.items()):
                    if child is not None:
                        new_child = swap(child, f"{name}.{child_name}"
                                         if name else child_name)
                        if new_child is not child:
                            setattr(m, child_name, new_child)
                # After the children: whether a seqkernels attention is
                # inside is known only once they are converted.
                _set_fused_path(m, name, report)
        memo[id(m)] = new
        return new

    converted = swap(module, "")
    if verbose:
        print(report)
    return (converted, report) if return_report else converted


def _qualname(cls: type) -> str:
    """``torch.nn.LSTM`` / ``seqkernels.LSTM``, the names users know, rather
    than the defining submodule; other classes by their full name."""
    if cls in _OURS:
        return f"seqkernels.{cls.__name__}"
    if getattr(torch.nn, cls.__name__, None) is cls:
        return f"torch.nn.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def _set_backend(m: torch.nn.Module, name: str, backend: Optional[str],
                 report: ConvertReport) -> None:
    """A seqkernels module met by to="seqkernels" takes the backend asked
    for."""
    what = _qualname(type(m))
    if m.backend != backend:
        report.add(name, "backend", f"{what}: {m.backend!r} -> {backend!r}")
        m.backend = backend
    else:
        report.add(name, "left", f"{what}: already on backend {backend!r}")


def _report_subclass(m: torch.nn.Module, name: str, to: str,
                     report: ConvertReport) -> None:
    """With to="seqkernels", a user's subclass of a torch.nn class that has
    a twin is left (its forward is its own)."""
    base = next((b for b in _TWINS if isinstance(m, b)), None)
    if to == "seqkernels" and base is not None:
        report.add(name, "left", f"{_qualname(type(m))}: a subclass of "
                   f"{_qualname(base)}, not converted (only exact instances "
                   f"are)")


def _set_fused_path(m: torch.nn.Module, name: str,
                    report: ConvertReport) -> None:
    """Switch torch's fused inference path of ``m`` off while a seqkernels
    MultiheadAttention is inside it, back on once none is (see
    _FUSED_PATHS)."""
    base = next((b for b in _FUSED_PATHS if isinstance(m, b)), None)
    if base is None:
        return
    attr, off, what = _FUSED_PATHS[base]
    ours_inside = any(isinstance(sub, MultiheadAttention)
                      for sub in m.modules())
    saved = m.__dict__.get(_SAVED)
    if ours_inside:
        if not hasattr(m, attr):
            message = (f"{_qualname(type(m))} {name or '(root)'} has no "
                       f"attribute {attr!r} (in this torch version), through "
                       f"which seqkernels.convert switches off {what}; in "
                       f"eval() that path may bypass its "
                       f"seqkernels.MultiheadAttention")
            warnings.warn(f"seqkernels.convert: {message}")
            report.add(name, "left", message)
        elif getattr(m, attr) != off:
            m.__dict__.setdefault(_SAVED, {})[attr] = getattr(m, attr)
            setattr(m, attr, off)
            report.add(name, "adjusted",
                       f"{_qualname(type(m))}: {what} off, so that its "
                       f"seqkernels.MultiheadAttention runs in eval() too")
    elif saved is not None:
        for key, value in saved.items():
            setattr(m, key, value)
        del m.__dict__[_SAVED]
        report.add(name, "adjusted", f"{_qualname(type(m))}: {what} back on")


def _refuse_parametrized(m: torch.nn.Module, table: dict) -> None:
    if torch.nn.utils.parametrize.is_parametrized(m) and any(
            base in table for base in type(m).__mro__[1:]):
        raise ValueError(
            f"seqkernels.convert: cannot convert {type(m).__name__}: it has "
            f"parametrizations (torch.nn.utils.parametrize) on "
            f"{sorted(m.parametrizations.keys())}; convert before adding "
            f"them, or remove them first")


def _twin(m: torch.nn.Module, cls: type, backend: Optional[str],
          to: str) -> torch.nn.Module:
    name = type(m).__name__
    if m._backward_hooks and m._is_full_backward_hook is False:
        raise ValueError(
            f"seqkernels.convert: cannot carry the old-style backward hooks "
            f"(register_backward_hook) of this {name}: they see the "
            f"gradients of the module's last internal autograd node, which "
            f"differ between implementations. Use "
            f"register_full_backward_hook instead")
    if to == "torch" and getattr(m, "nonlinearity", None) == "identity":
        raise ValueError(
            f"seqkernels.convert: cannot convert this {name} with "
            f"nonlinearity='identity' to torch: torch.nn has no linear RNN")
    new = cls.__new__(cls)
    state = dict(m.__dict__)
    # Own containers (same tensors and submodules inside); shared hook
    # dicts (see _HOOK_DICTS).
    for key in ("_parameters", "_buffers", "_modules",
                "_non_persistent_buffers_set"):
        if key in state:
            state[key] = type(state[key])(state[key])
    for key in ("_flat_weights", "_flat_weights_names", "_flat_weight_refs"):
        if key in state:
            state[key] = list(state[key])
    if to == "seqkernels":
        state["backend"] = backend
    else:
        state.pop("backend", None)
    new.__dict__.update(state)
    return new
