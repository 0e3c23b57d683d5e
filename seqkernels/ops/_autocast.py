"""Autocast for every forward op: run in the autocast dtype, as torch.nn
does on CUDA.

Policy. Under ``torch.autocast(device_type, dtype)``, each forward op of
seqkernels (the recurrent sequence and cell ops, ``sdpa``,
``attention_scores``, ``additive_attention``; every variant) casts its
floating-point tensor arguments on that device type to ``dtype`` and runs
with autocast off, so its outputs (the final states h_n, c_n included) come
back in ``dtype``. That is torch's policy for its twins on CUDA, where
cuDNN's RNNs, the fused cells and SDPA are on autocast's lower-precision
list. On the CPU torch is not uniform (nn.LSTM, nn.RNN, nn.RNNCell, SDPA and
nn.MultiheadAttention return the autocast dtype; nn.GRU, nn.GRUCell and
nn.LSTMCell return float32, an artefact of how their CPU code is composed);
seqkernels applies the one policy on both device types. float64 tensors are
not cast (autocast never casts them), nor are integer ones (``lengths``).

The cast itself is differentiable (``Tensor.to`` under autograd), so
float32 parameters receive float32 gradients. The backward ops have no
autocast rule: they receive the forward's saved tensors, already in the
autocast dtype.

The rule is registered at the Autocast dispatch keys of the op (so eager
calls take it) and as the op's Python kernel for those keys (so the tracers
of torch.compile and torch.export, which run the Python dispatcher, take the
same), the two ways torch.library.register_autocast uses. torch's own
helper casts to one dtype fixed at registration; here the dtype is the one
autocast gives at the call.
"""

from typing import Any

import torch

from .._common import AUTOCAST_DEVICE_TYPES, autocast_dtype

# One Library object for the autocast and autograd registrations of every
# op (it owns their lifetime).
LIB = torch.library.Library("seqkernels", "IMPL")


def _cast(value: Any) -> Any:
    dtype = autocast_dtype(value) if isinstance(value, torch.Tensor) else None
    return value if dtype is None else value.to(dtype)


def _autocast_rule(op: torch._ops.OpOverload, device_type: str):
    key = getattr(torch._C.DispatchKey,
                  "Autocast" + torch._C._dispatch_key_for_device(device_type))

    def rule(*args: Any) -> Any:
        cast = [_cast(a) for a in args]
        with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(key)):
            return op(*cast)
    return key, rule


def register_autocast(op: torch._ops.OpOverloadPacket) -> None:
    """Register the module's policy for the forward op ``op`` on every
    device type of AUTOCAST_DEVICE_TYPES."""
    overload = op.default
    name = overload.name().split("::", 1)[1]
    for device_type in AUTOCAST_DEVICE_TYPES:
        key, rule = _autocast_rule(overload, device_type)
        overload.py_impl(key)(rule)
        LIB.impl(name, lambda _keys, *args, _rule=rule: _rule(*args),
                  key.name, with_keyset=True)
