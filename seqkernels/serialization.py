"""What ``torch.load(weights_only=True)`` must be allowed to build for a
whole model (``torch.save(model)``) that holds seqkernels modules."""

import torch

from . import nn


def serialization_globals() -> list[type]:
    """Every class that pickling a seqkernels module refers to and torch's
    weights-only unpickler does not allow by default: the seqkernels module
    classes, and torch's NonDynamicallyQuantizableLinear (the ``out_proj``
    of every MultiheadAttention, seqkernels' as torch's)::

        torch.serialization.add_safe_globals(
            seqkernels.serialization_globals())
        model = torch.load(path)  # weights_only=True, the default

    or, for one load, ``with torch.serialization.safe_globals(
    seqkernels.serialization_globals()): ...``. The torch.nn classes of the
    rest of the model (torch.nn.Sequential, Linear, ...) must be allowed
    too, as for any whole torch.nn model; ``torch.serialization.
    get_unsafe_globals_in_checkpoint(path)`` lists what a file still needs.
    Loading a state_dict (``model.load_state_dict(torch.load(path))``)
    needs none of this.
    """
    return [*(getattr(nn, name) for name in nn.__all__),
            torch.nn.modules.linear.NonDynamicallyQuantizableLinear]
