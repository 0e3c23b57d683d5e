"""Counter-based dropout mask in PyTorch, bit for bit the one of
csrc/include/seqkernels/dropout_hash.h (see there): uint32 arithmetic is
done in int64 with the upper bits masked off."""

import torch
from torch import Tensor

_M32 = 0xFFFFFFFF


def _mix32(x: Tensor) -> Tensor:
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def dropout_key(rng: Tensor) -> Tensor:
    """Per-launch key (int64 holding a uint32) from ``rng = [seed, offset]``."""
    seed, offset = rng[0] & _M32, rng[1] & _M32
    return _mix32(seed ^ _mix32(offset ^ 0x9E3779B9))


def keep_mask(rng: Tensor, shape: tuple[int, ...], p: float,
              device: torch.device) -> Tensor:
    """Bool mask of kept elements for a contiguous tensor of ``shape``
    (the element index is its row-major position)."""
    key = dropout_key(rng.to(device))
    index = torch.arange(0, int(torch.tensor(shape).prod()), device=device,
                         dtype=torch.int64).view(shape)
    k = _mix32((index >> 32) ^ key)
    r = _mix32((index & _M32) ^ k)
    u = (r >> 8).to(torch.float32) * (1.0 / 16777216.0)
    return u >= torch.tensor(p, dtype=torch.float32)
