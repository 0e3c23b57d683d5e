"""_C.check_<op>: the argument checks of the C++ attention kernels, bound for
the variants written in Python. Each takes its op's schema arguments in
order; on good arguments it returns None, and on a bad one it raises the
RuntimeError, word for word, that the op's cpu kernel raises. The bad
arguments include the rules on which the CUDA kernels once differed (rng
of exactly 2 elements, a mask of the full shape, grad_weights of q's
dtype)."""

import pytest
import torch

import seqkernels  # noqa: F401  (loads the ops)
from seqkernels import _C

B, Hq, Hk, Tq, Tk, D, Dv = 2, 4, 2, 3, 5, 4, 3
H = 6  # hidden size of additive attention


def _t(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


def _sdpa():
    return [_t(B, Hq, Tq, D), _t(B, Hk, Tk, D), _t(B, Hk, Tk, Dv),
            _t(B, Hq, Tq, Tk, dtype=torch.bool), 0.1, False, 0.5,
            _t(2, dtype=torch.int64)]


def _sdpa_backward():
    q, k, v, mask, p, causal, scale, rng = _sdpa()
    return [_t(B, Hq, Tq, Dv), q, k, v, _t(B, Hq, Tq, Dv), _t(B, Hq, Tq),
            mask, p, causal, scale, rng]


def _scores():
    return [_t(B, Hq, Tq, D), _t(B, Hk, Tk, D), _t(B, Hq, Tq, Tk), False,
            0.5]


def _scores_backward():
    return [_t(B, Hq, Tq, Tk), _t(B, Hq, Tq, D), _t(B, Hk, Tk, D),
            _t(B, Hq, Tq, Tk), 0.5]


def _additive():
    return [_t(B, Tq, H), _t(B, Tk, H), _t(B, Tk, Dv), _t(H), _t(H),
            _t(B, Tq, Tk, dtype=torch.bool), True]


def _additive_backward():
    q, k, value, v, bias, mask, _ = _additive()
    return [_t(B, Tq, Dv), _t(B, Tq, Tk), q, k, value, v, bias, mask,
            _t(B, Tq, Dv), _t(B, Tq, 2)]


def _with(args, index, bad):
    args = list(args)
    args[index] = bad
    return args


# op name, good arguments, the same with one argument made bad.
CASES = {
    "sdpa": (_sdpa(), _with(_sdpa(), 7, _t(3, dtype=torch.int64))),
    "sdpa_backward": (_sdpa_backward(),
                      _with(_sdpa_backward(), 5,
                            _t(B, Hq, Tq, dtype=torch.float64))),
    "attention_scores": (_scores(), _with(_scores(), 2, _t(1, 1, Tq, Tk))),
    "attention_scores_backward": (_scores_backward(),
                                  _with(_scores_backward(), 3,
                                        _t(B, Hq, Tq, Tk + 1))),
    "additive_attention": (_additive(), _with(_additive(), 4, _t(H + 1))),
    "additive_attention_backward": (
        _additive_backward(),
        _with(_additive_backward(), 1, _t(B, Tq, Tk, dtype=torch.float64))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_good_arguments_pass(name):
    good, _ = CASES[name]
    assert getattr(_C, f"check_{name}")(*good) is None


@pytest.mark.parametrize("name", list(CASES))
def test_bad_argument_raises_as_the_cpu_kernel(name):
    _, bad = CASES[name]
    with pytest.raises(RuntimeError) as kernel:
        getattr(torch.ops.seqkernels, name)(*bad)
    with pytest.raises(RuntimeError) as check:
        getattr(_C, f"check_{name}")(*bad)
    assert str(check.value) == str(kernel.value)
    assert str(check.value).startswith("seqkernels: ")


@pytest.mark.parametrize("name", list(CASES))
def test_checks_read_no_data(name):
    # Meta tensors have no data: a check that read any (a device sync on
    # CUDA) would fail here.
    good, _ = CASES[name]
    meta = [a.to("meta") if isinstance(a, torch.Tensor) else a for a in good]
    assert getattr(_C, f"check_{name}")(*meta) is None
