"""The LSTM case of the shared recurrent harness (recurrent_harness.py):
runs one LSTM configuration three ways (float64 torch reference, torch in
the test dtype, seqkernels in the test dtype) and checks outputs, final
states and every gradient with the tolerance rule."""

import torch

from recurrent_harness import compare_recurrent


def compare_lstm(backend, device, dtype, ctor, **run):
    """``ctor``: torch.nn.LSTM keyword arguments; ``run``: see
    :func:`recurrent_harness.compare_recurrent`."""
    import seqkernels
    compare_recurrent(torch.nn.LSTM, seqkernels.LSTM, backend, device, dtype,
                      ctor, **run)
