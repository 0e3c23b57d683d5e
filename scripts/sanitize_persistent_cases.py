"""Small forward+backward runs of the persistent recurrence kernels, for
compute-sanitizer (memcheck, racecheck, synccheck).

    compute-sanitizer --tool racecheck python scripts/sanitize_persistent_cases.py
        [--backends cuda,triton]

Sets SEQKERNELS_RECURRENCE=persistent (read at every call) and runs LSTM,
GRU and vanilla RNN layers on CUDA tensors in bfloat16 and float16 (the
persistent kernels serve those, without a projection, where W_hh fits on
the chip) at three tiny shapes (float16 at the first only): odd sizes, a
full batch of 16 rows with lengths (PackedSequence), and two bidirectional
layers with lengths. A
backend runs its per-step kernels where its rule says the persistent kernel
does not serve a shape, so those kernels are checked too. Exits non-zero if
a kernel raises.
"""

import argparse
import os

os.environ["SEQKERNELS_RECURRENCE"] = "persistent"

import torch  # noqa: E402

import seqkernels  # noqa: E402

# (T, B, I, H, lengths or None, module arguments)
SHAPES = (
    (5, 3, 13, 37, None, {}),
    (6, 16, 32, 64, [6, 1, 4, 6, 2, 3, 5, 6, 1, 2, 6, 4, 3, 5, 6, 2], {}),
    (4, 2, 8, 24, [4, 3], dict(bidirectional=True, num_layers=2)),
)
DTYPES = (torch.bfloat16, torch.float16)


def run(module, T, B, I, lengths, device, dtype):
    """Forward and backward of ``module`` on a random [T, B, I] input
    (packed when ``lengths`` are given), from a random initial state."""
    x = torch.randn(T, B, I, device=device, dtype=dtype, requires_grad=True)
    inp = x
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths), enforce_sorted=False)
    out, state = module(inp)
    out = out.data if lengths is not None else out
    states = state if isinstance(state, tuple) else (state,)
    loss = out.float().square().sum() + sum(s.float().sum() for s in states)
    loss.backward()


def cases(backends, device):
    for backend in backends:
        for dtype in DTYPES:
            # float16 at the first shape only: the sanitizer is slow.
            shapes = SHAPES if dtype == DTYPES[0] else SHAPES[:1]
            for T, B, I, H, lengths, kw in shapes:
                for cls, extra in ((seqkernels.LSTM, {}), (seqkernels.GRU, {}),
                                   (seqkernels.RNN, dict(nonlinearity="tanh"))):
                    module = cls(I, H, backend=backend, device=device,
                                 dtype=dtype, **kw, **extra)
                    run(module, T, B, I, lengths, device, dtype)
                    yield (f"{cls.__name__} {backend} {dtype} T={T} B={B} "
                           f"I={I} H={H} {kw} lengths={lengths}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="cuda,triton",
                        help="comma-separated (default cuda,triton)")
    args = parser.parse_args()
    device = torch.device("cuda")
    backends = [b for b in args.backends.split(",") if b]
    for name in cases(backends, device):
        torch.cuda.synchronize()
        print("ok", name, flush=True)


if __name__ == "__main__":
    main()
