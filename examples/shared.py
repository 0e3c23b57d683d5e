"""What the examples share: their command line, the device, the picture.

Every example runs as ``python examples/<name>.py [--quick] [--out DIR]
[--device cuda|cpu]``, prints a one-line result last and writes its PNG
into DIR (default: this folder). ``--quick`` is the small run of a few
seconds that the test suite makes (tests/test_examples.py).
"""

from __future__ import annotations

import argparse
import io
import pathlib
from typing import Optional, Sequence

import torch

HERE = pathlib.Path(__file__).resolve().parent


def parse_args(description: str,
               argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The examples' common options, parsed from ``argv``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="a small run of a few seconds (the tests')")
    parser.add_argument("--out", type=pathlib.Path, default=HERE,
                        help="folder for the PNG (default: examples/)")
    parser.add_argument("--device", default=None, choices=("cuda", "cpu"),
                        help="default: cuda if available, else cpu")
    return parser.parse_args(argv)


def device(name: Optional[str]) -> torch.device:
    """``name``, or the GPU where one is at hand."""
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no GPU is available")
    return torch.device(name)


def pyplot():
    """matplotlib.pyplot, drawing into files (no window is opened).
    Imported only to draw, so the models can be imported without it (the
    benchmarks do)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(figure, out: pathlib.Path, name: str) -> pathlib.Path:
    """Write ``figure`` to ``out/name`` and close it: a PNG of 64 colours,
    small enough for the README (about 20 KB)."""
    from PIL import Image   # matplotlib's own dependency
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    image = Image.open(buffer).convert("RGB").quantize(64)
    image.save(path, optimize=True)
    return path
