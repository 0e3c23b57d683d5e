"""Counter-based dropout mask in Triton: bit for bit the one of
``csrc/include/seqkernels/dropout_hash.h`` and
``seqkernels/reference/dropout.py`` (the same uint32 steps in the same
order; change one, change all three).

Whether element ``index`` is kept is a pure function of (seed, offset,
index), so a backward kernel regenerates the forward's mask. The kernels
read ``rng = [seed, offset]`` (int64, on the data's device) themselves.
"""

import triton
import triton.language as tl


@triton.jit
def mix32(x):
    """32-bit finalizer on a uint32 tile; products wrap modulo 2^32."""
    x = x ^ (x >> 16)
    x = x * tl.full(x.shape, 0x7FEB352D, tl.uint32)
    x = x ^ (x >> 15)
    x = x * tl.full(x.shape, 0x846CA68B, tl.uint32)
    return x ^ (x >> 16)


@triton.jit
def dropout_key(rng_ptr):
    """Per-launch key (uint32) from ``rng_ptr -> [seed, offset]`` (int64):
    mix32(seed ^ mix32(offset ^ 0x9E3779B9)), each taken modulo 2^32."""
    seed = tl.load(rng_ptr).to(tl.uint32)  # int64 -> uint32 keeps the low bits
    offset = tl.load(rng_ptr + 1).to(tl.uint32)
    inner = mix32(offset ^ tl.full(offset.shape, 0x9E3779B9, tl.uint32))
    return mix32(seed ^ inner)


@triton.jit
def dropout_keep(key, index, p):
    """Bool tile: element ``index`` (int64, >= 0) is kept. Its uniform is
    (r >> 8) / 2^24 with r = mix32(lo ^ mix32(hi ^ key)) over the index's
    32-bit halves; kept when the uniform is >= p (float32)."""
    k = mix32((index >> 32).to(tl.uint32) ^ key)
    r = mix32(index.to(tl.uint32) ^ k)
    u = (r >> 8).to(tl.float32) * (1.0 / 16777216.0)
    return u >= p
