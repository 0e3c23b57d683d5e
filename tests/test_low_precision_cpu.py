"""float16 and bfloat16 through the Python sequence driver on the CPU.

The reference and Triton backends keep the gate pre-activations and their
gradients in the accumulation dtype (float32) while the weights, inputs and
outputs stay in the storage dtype; on the GPU that is most of what they run.
These cases run the same mixing on the CPU (torch's own CPU modules take
both dtypes), against torch.nn under the tolerance rule. The Triton cases use
float16 only: the interpreter's tl.dot is wrong for bfloat16.
"""

import pytest
import torch

import seqkernels
from conftest import CPU
from recurrent_harness import compare_recurrent

MODULES = {
    "lstm": (torch.nn.LSTM, seqkernels.LSTM, {}),
    "lstm_proj": (torch.nn.LSTM, seqkernels.LSTM, dict(proj_size=3)),
    "gru": (torch.nn.GRU, seqkernels.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, seqkernels.RNN, {}),
}
CASES = [("reference", torch.bfloat16), ("reference", torch.float16),
         ("triton", torch.float16)]


@pytest.mark.parametrize("backend,dtype", CASES,
                         ids=[f"{b}-{str(d)[6:]}" for b, d in CASES])
@pytest.mark.parametrize("kind", list(MODULES))
def test_python_driver_in_half_precision(kind, backend, dtype):
    if backend == "triton" and torch.cuda.is_available():
        pytest.skip("the Triton backend runs on the GPU there (test_lstm.py, "
                    "test_gru_rnn.py)")
    oracle, ours, extra = MODULES[kind]
    ctor = dict(input_size=5, hidden_size=6, num_layers=2, **extra)
    compare_recurrent(oracle, ours, backend, CPU, dtype, ctor, T=24, B=3,
                      lengths=[24, 9, 17], enforce_sorted=False,
                      with_hx=True)
