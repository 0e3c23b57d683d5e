"""The kernel families the benchmark job runs, by name.

Each module has KERNEL, configs, plan, build, reference, flops,
pointwise_bytes and PAIRINGS; io_mem_mb is optional.
"""

from __future__ import annotations

from typing import Iterable

from . import attention, gru_rnn, lstm, seq2seq
from .targets import Pairing

KERNELS = {"lstm": lstm, "gru_rnn": gru_rnn, "attention": attention,
           "seq2seq": seq2seq}


def pairings(names: Iterable[str]) -> list[Pairing]:
    """The target rows of the kernel families ``names``."""
    return [p for name in names for p in KERNELS[name].PAIRINGS]
