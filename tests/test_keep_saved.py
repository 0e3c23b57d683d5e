"""keep_saved=False, the sequence ops' inference form: the same outputs as
keep_saved=True with no saved values, on every backend this machine runs;
on the cpu backend the sequence then runs in chunks of steps (SeqSteps::
chunk_bytes in csrc/include/seqkernels/recurrent_host.h), tested across
chunk boundaries with lengths, a projection, the persistent and the
per-step algorithms; the modules pass keep_saved=False exactly where no
gradient can be asked for; and a backward through such a call fails with
a message that says why."""

import pytest
import torch

import seqkernels
from conftest import CPU, backend_params
from seqkernels import _C
from seqkernels.ops._variants import op

# name: (op, T, B, I, H, projection, lengths)
CASES = {
    "lstm": ("lstm_seq", 5, 3, 4, 6, None, None),
    "lstm_lengths": ("lstm_seq", 7, 3, 4, 6, None, [7, 2, 5]),
    "lstm_projection": ("lstm_seq", 5, 3, 4, 6, 4, [5, 1, 3]),
    "gru_lengths": ("gru_seq", 7, 3, 4, 5, None, [3, 7, 1]),
    "rnn_lengths": ("rnn_seq", 6, 2, 3, 5, None, [6, 4]),
}


def _args(case, dtype, device, requires_grad=False, seed=0):
    name, T, B, I, H, P, lengths = CASES[case]
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64)
                .to(device, dtype).requires_grad_(requires_grad))

    lens = torch.tensor(lengths, device=device) if lengths else None
    Pd = P or H
    if name == "lstm_seq":
        return (r(T, B, I), r(B, Pd), r(B, H), r(4 * H, I), r(4 * H, Pd),
                r(4 * H), r(Pd, H) if P else None, lens)
    if name == "gru_seq":
        return (r(T, B, I), r(B, H), r(3 * H, I), r(3 * H, H), r(3 * H),
                r(3 * H), lens)
    return (r(T, B, I), r(B, H), r(H, I), r(H, H), r(H), lens, "tanh")


def _states(name):
    return 3 if name == "lstm_seq" else 2  # y, h_n (, c_n)


@pytest.fixture
def chunks_of_two():
    """Chunks of 2 steps on the backends that chunk (the CPU's), so the
    small cases cross chunk boundaries."""
    _C.set_chunk_steps(2)
    yield
    _C.set_chunk_steps(0)


@pytest.mark.parametrize("backend,device,case", backend_params(CASES))
@pytest.mark.parametrize("algorithm", ["default", "per_step"])
def test_same_outputs_without_saved_values(backend, device, case, algorithm,
                                           chunks_of_two, monkeypatch):
    monkeypatch.setenv("SEQKERNELS_RECURRENCE", algorithm)
    name = CASES[case][0]
    args = _args(case, torch.float32, device)
    kept = op(name, backend)(*args)
    inference = op(name, backend)(*args, False)
    n = _states(name)
    for a, b in zip(kept[:n], inference[:n]):
        torch.testing.assert_close(b, a)
    for t in inference[n:]:
        assert t.numel() == 0


@pytest.mark.parametrize("case", list(CASES))
def test_cpu_runs_in_chunks(case, chunks_of_two):
    """Without keep_saved the cpu backend's persistent kernel runs once per
    chunk (T = 5, 6 or 7 in chunks of 2); with it, once."""
    name, T, _, _, _, P, _ = CASES[case]
    if P is not None:
        pytest.skip("projections run the per-step kernels")
    args = _args(case, torch.float32, CPU)
    before = _C.cpu_persistent_runs()
    op(name, "cpu")(*args)
    assert _C.cpu_persistent_runs() == before + 1
    op(name, "cpu")(*args, False)
    assert _C.cpu_persistent_runs() == before + 1 + (T + 1) // 2


@pytest.mark.parametrize("backend,device,case",
                         backend_params(["lstm_lengths", "gru_lengths"]))
def test_backward_of_an_inference_call_says_why_it_fails(backend, device,
                                                         case):
    name = CASES[case][0]
    args = _args(case, torch.float64, device, requires_grad=True)
    y = op(name, backend)(*args, False)[0]
    with pytest.raises(RuntimeError, match="keep_saved=False"):
        y.sum().backward()


@pytest.mark.parametrize("backend,device,case",
                         backend_params(["lstm_projection", "gru_lengths"]))
def test_opcheck_without_saved_values(backend, device, case):
    name = CASES[case][0]
    torch.library.opcheck(op(name, backend),
                          _args(case, torch.float32, device) + (False,))


@pytest.mark.parametrize("module", ["LSTM", "GRU", "RNN"])
def test_modules_keep_saved_values_only_for_a_gradient(module,
                                                       chunks_of_two):
    """Under no_grad (or with nothing that requires grad) a module runs the
    inference form, chunked on the CPU, with the outputs of the training
    form; with grad it keeps the saved values and its gradients flow."""
    torch.manual_seed(0)
    m = getattr(seqkernels, module)(4, 6, num_layers=2, backend="cpu")
    x = torch.randn(5, 3, 4)
    before = _C.cpu_persistent_runs()
    y, _ = m(x)
    assert _C.cpu_persistent_runs() == before + 2  # one run per layer
    y.sum().backward()
    with torch.no_grad():
        before = _C.cpu_persistent_runs()
        y_inference, _ = m(x)
        assert _C.cpu_persistent_runs() == before + 2 * 3  # 3 chunks each
    torch.testing.assert_close(y_inference, y.detach())
