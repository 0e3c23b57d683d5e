"""Small forward+backward runs of every CUDA kernel, for compute-sanitizer.

    compute-sanitizer --tool memcheck python scripts/sanitize_cases.py

Odd sizes on purpose (partial tiles, inactive rows), tiny so the sanitizer
finishes in seconds. Exits non-zero if a kernel raises.
"""

import torch

import seqkernels


def run_seq(m, device, dtype, lengths):
    """``m`` on a [T=7, B=3, 13] input that requires grad, packed when
    ``lengths`` are given; returns the output (its data when packed) and
    the final state."""
    x = torch.randn(7, 3, 13, device=device, dtype=dtype, requires_grad=True)
    inp = x
    if lengths is not None:
        inp = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths), enforce_sorted=False)
    out, state = m(inp)
    return (out.data if lengths is not None else out), state


def lstm_cases(device):
    for dtype in (torch.float32, torch.bfloat16):
        for kw, lengths in (
            (dict(), None),
            (dict(bidirectional=True, num_layers=2), [5, 2, 7]),
            (dict(proj_size=5), [7, 1, 3]),
        ):
            m = seqkernels.LSTM(13, 37, backend="cuda", device=device,
                                dtype=dtype, **kw)
            out, (h, c) = run_seq(m, device, dtype, lengths)
            (out.float().sum() + h.float().sum() + c.float().sum()).backward()
            yield f"lstm {dtype} {kw} lengths={lengths}"


def gru_rnn_cases(device):
    for dtype in (torch.float32, torch.bfloat16):
        for cls, kw in ((seqkernels.GRU, dict()),
                        (seqkernels.RNN, dict(nonlinearity="relu")),
                        (seqkernels.RNN, dict(nonlinearity="identity"))):
            for extra, lengths in (
                (dict(), None),
                (dict(bidirectional=True, num_layers=2), [5, 2, 7]),
            ):
                m = cls(13, 37, backend="cuda", device=device, dtype=dtype,
                        **kw, **extra)
                out, h = run_seq(m, device, dtype, lengths)
                (out.float().sum() + h.float().sum()).backward()
                yield f"{cls.__name__} {kw} {dtype} {extra} lengths={lengths}"


def cell_cases(device):
    for dtype in (torch.float32, torch.float16):
        cell = seqkernels.LSTMCell(13, 37, backend="cuda", device=device,
                                   dtype=dtype)
        x = torch.randn(5, 13, device=device, dtype=dtype, requires_grad=True)
        h, c = cell(x)
        (h.float().sum() + c.float().sum()).backward()
        yield f"lstm_cell {dtype}"
        for cell in (seqkernels.GRUCell(13, 37, backend="cuda",
                                        device=device, dtype=dtype),
                     seqkernels.RNNCell(13, 37, nonlinearity="identity",
                                        backend="cuda", device=device,
                                        dtype=dtype)):
            h = cell(x, torch.randn(5, 37, device=device, dtype=dtype))
            h.float().sum().backward()
            yield f"{type(cell).__name__} {dtype}"


def main():
    device = torch.device("cuda")
    for gen in (lstm_cases(device), gru_rnn_cases(device),
                cell_cases(device)):
        for name in gen:
            torch.cuda.synchronize()
            print("ok", name, flush=True)


if __name__ == "__main__":
    main()
