r"""Autoregressive models as linear recurrences, and where they stop.

An autoregressive model of order d predicts a series from its last d values,

    y_{t+1} = a_1 y_t + a_2 y_{t-1} + ... + a_d y_{t-d+1} + u_{t+1},

with u the innovation (what the past does not predict). It is a linear
dynamical system ``x_t = A x_{t-1} + W v_t``: ``seqkernels.RNN`` with
``nonlinearity="identity"`` runs it, forward and backward through time in
its fused kernels. Two forms of the same coefficients appear here:

* the predictor, fed the observed series (v_t = y_t): A shifts the state up
  by one (ones above the diagonal) and W = (a_1, ..., a_d)^T, so
  ``x_t[i] = x_{t-1}[i+1] + a_{i+1} y_t`` and the first coordinate sums up
  to the prediction ``x_t[0] = a_1 y_t + ... + a_d y_{t-d+1}``. Its
  coefficients are fitted by gradient descent on the squared one-step error
  (L-BFGS, a quasi-Newton gradient method), which is the least-squares
  problem that statsmodels' ``AutoReg`` solves in closed form: the two fits
  must agree.
* the generator, fed the innovations (v_t = u_t): A is the companion
  matrix (first row a, ones below the diagonal), the state the last d
  values, ``x_t = (y_t, ..., y_{t-d+1})``. With zero innovations it runs
  the forecast (the picture: from 1950 on, with the coefficients of all
  years); the angle of A's dominant eigenvalue pair is the series' cycle
  (2 pi / angle steps).

The series is the yearly sunspot number, 1700-2008 (statsmodels'
``sunspots``), standardized. Then the limit: a model of order d cannot see
further back than d steps. Each window of WINDOW years of the series opens
with a marker of sign s (a value of +-MARKER) and the value after the window is
shifted by s * SHIFT; the best AR(d) on that task (least squares again)
cannot know s at the end (it is WINDOW - 1 > d steps back) and keeps an
error of about SHIFT, while an LSTM carries s in its state. Both are
fitted on the windows that end before 1950 and scored on the later ones
(whose cycles are higher than any before).

    python examples/autoregressive.py [--quick] [--out DIR] [--device cpu]
"""

from __future__ import annotations

import math
import pathlib
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import statsmodels.api as sm
import torch
from statsmodels.tsa.ar_model import AutoReg

import seqkernels
from shared import device as pick_device, parse_args, pyplot, save

ORDER = 9             # d: the order AIC and BIC pick (ar_select_order)
WINDOW = 16           # steps per window of the long-range task
MARKER = 3.0          # the marker's size (standard deviations)
SHIFT = 1.0           # the shift of the value after a window, times its sign
SPLIT_YEAR = 1950     # windows whose last year is before it train
SEED = 0


def sunspots() -> tuple[np.ndarray, np.ndarray]:
    """(years, standardized yearly sunspot numbers)."""
    data = sm.datasets.sunspots.load_pandas().data
    y = data["SUNACTIVITY"].to_numpy(dtype=np.float64)
    return data["YEAR"].to_numpy(), (y - y.mean()) / y.std()


def ar_predictor(order: int, dev: torch.device) -> seqkernels.RNN:
    """The predictor form, float64: state shift A fixed, coefficients W
    (zero) to learn."""
    rnn = seqkernels.RNN(1, order, nonlinearity="identity", bias=False,
                         device=dev, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(torch.diag(torch.ones(order - 1), 1))
        rnn.weight_ih_l0.zero_()
    rnn.weight_hh_l0.requires_grad_(False)
    return rnn


def fit_lbfgs(params: Sequence[torch.Tensor], loss_fn, steps: int) -> None:
    """Minimize ``loss_fn()`` over ``params`` with L-BFGS."""
    opt = torch.optim.LBFGS(params, max_iter=steps, tolerance_grad=1e-7,
                            tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss
    opt.step(closure)


def fit_ar(y: np.ndarray, order: int, dev: torch.device) -> np.ndarray:
    """a_1..a_d fitted by gradient descent on the one-step squared error of
    ``y`` (the same regression rows as AutoReg: t = d .. N-1)."""
    rnn = ar_predictor(order, dev)
    series = torch.tensor(y, device=dev)
    inputs = series[:-1].view(-1, 1, 1)          # [T, B=1, 1]
    targets = series[order:]

    def loss():
        states, _ = rnn(inputs)
        # states[t, 0, 0] predicts y[t + 1]; from t = d - 1 on it has d lags.
        return ((states[order - 1:, 0, 0] - targets) ** 2).mean()
    fit_lbfgs([rnn.weight_ih_l0], loss, steps=100)
    return rnn.weight_ih_l0.detach().view(-1).cpu().numpy()


def companion(a: np.ndarray) -> np.ndarray:
    """The companion matrix of a_1..a_d."""
    d = len(a)
    A = np.zeros((d, d))
    A[0] = a
    A[1:, :-1] = np.eye(d - 1)
    return A


def forecast(a: np.ndarray, history: np.ndarray, steps: int,
             dev: torch.device) -> np.ndarray:
    """``steps`` values after ``history`` from the generator form, run with
    zero innovations from the state of the last d values."""
    d = len(a)
    rnn = seqkernels.RNN(1, d, nonlinearity="identity", bias=False,
                         device=dev, dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(torch.tensor(companion(a)))
        rnn.weight_ih_l0.copy_(torch.eye(d, 1))      # u_t enters y_t
        h0 = torch.tensor(history[::-1][:d].copy(), device=dev).view(1, 1, d)
        zeros = torch.zeros(steps, 1, 1, device=dev, dtype=torch.float64)
        states, _ = rnn(zeros, h0)
    return states[:, 0, 0].cpu().numpy()


def cycle_length(a: np.ndarray) -> float:
    """Steps per turn of the companion matrix's dominant oscillation."""
    eig = np.linalg.eigvals(companion(a))
    oscillating = eig[np.abs(eig.imag) > 1e-9]
    top = oscillating[np.argmax(np.abs(oscillating))]
    return 2 * math.pi / abs(np.angle(top))


def marked_windows(y: np.ndarray, starts: np.ndarray,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The long-range task: inputs [WINDOW, n, 1] (the window, its first value
    replaced by s * MARKER) and targets [n] (the value after the window plus
    s * SHIFT), one random sign s per window."""
    n = len(starts)
    sign = torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1
    index = (torch.as_tensor(starts).view(1, -1)
             + torch.arange(WINDOW).view(-1, 1))          # [WINDOW, n]
    series = torch.tensor(y)
    inputs = series[index].clone()
    inputs[0] = sign * MARKER
    targets = series[index[-1] + 1] + sign * SHIFT
    return inputs.unsqueeze(-1), targets


class LSTMForecaster(torch.nn.Module):
    """An LSTM over the window and a linear read-out of its last state.

    The forget gates start mostly open (bias 3: f = sigmoid(3) = 0.95), so
    what the first step writes into the cell survives the window from the
    start of training.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.lstm = seqkernels.LSTM(1, hidden)
        self.head = torch.nn.Linear(hidden, 1)
        with torch.no_grad():    # gate order i, f, g, o
            self.lstm.bias_ih_l0[hidden:2 * hidden] = 3.0

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(inputs)
        return self.head(out[-1]).squeeze(-1)


class ARForecaster(torch.nn.Module):
    """The AR(d) predictor on the same task: its prediction after the window
    (plus an intercept)."""

    def __init__(self, order: int, dev: torch.device):
        super().__init__()
        self.rnn = ar_predictor(order, dev)
        self.intercept = torch.nn.Parameter(
            torch.zeros((), device=dev, dtype=torch.float64))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(inputs.double())
        return (states[-1, :, 0] + self.intercept).float()

    def fit(self, y: np.ndarray, starts: np.ndarray, dev: torch.device,
            gen: torch.Generator) -> None:
        """The least-squares fit (L-BFGS) on one draw of the signs."""
        inputs, targets = marked_windows(y, starts, gen)
        inputs, targets = inputs.to(dev), targets.to(dev)
        fit_lbfgs([self.rnn.weight_ih_l0, self.intercept],
                  lambda: ((self.forward(inputs).double() - targets) ** 2
                           ).mean(), steps=200)


def train_lstm(model: LSTMForecaster, y: np.ndarray, starts: np.ndarray,
               steps: int, dev: torch.device, gen: torch.Generator) -> None:
    """Adam on the task's squared error, a fresh draw of signs per step."""
    model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        inputs, targets = marked_windows(y, starts, gen)
        loss = ((model(inputs.float().to(dev)) - targets.float().to(dev)) ** 2
                ).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def rmse(model: torch.nn.Module, y: np.ndarray, starts: np.ndarray,
         dev: torch.device) -> float:
    """Root-mean-square error on ``starts``, each window with both signs."""
    model.eval()
    errors = []
    with torch.no_grad():
        for sign_seed in (1, 2):
            inputs, targets = marked_windows(
                y, starts, torch.Generator().manual_seed(sign_seed))
            pred = model(inputs.float().to(dev)).cpu().double()
            errors.append((pred - targets) ** 2)
    return float(torch.cat(errors).mean().sqrt())


@dataclass
class Result:
    coefficients: np.ndarray           # ours, a_1..a_d
    autoreg: np.ndarray                # statsmodels' AutoReg least squares
    cycle_years: float
    ar_rmse: float                     # the long-range task, held out
    lstm_rmse: float

    @property
    def max_difference(self) -> float:
        return float(np.abs(self.coefficients - self.autoreg).max())

    def line(self) -> str:
        return (f"AR({len(self.autoreg)}) on sunspots: coefficients within "
                f"{self.max_difference:.1e} of AutoReg's, cycle "
                f"{self.cycle_years:.1f} years; marked-window task (held "
                f"out, RMSE in std): AR {self.ar_rmse:.2f}, LSTM "
                f"{self.lstm_rmse:.2f}")


def plot(years, y, a, fc_years, fc, result: Result, out: pathlib.Path):
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2),
                                      width_ratios=(2, 1))
    left.plot(years, y, color="0.3", lw=1, label="sunspots (standardized)")
    left.plot(fc_years, fc, color="C1", lw=1.5,
              label=f"AR({len(a)}) from 1950, zero innovations "
                    "(companion form)")
    left.set_xlabel("year")
    left.legend(loc="upper left", fontsize=8)
    x = np.arange(1, len(a) + 1)
    right.bar(x - 0.2, result.autoreg, 0.4, label="AutoReg (least squares)")
    right.bar(x + 0.2, a, 0.4, label="seqkernels.RNN, gradient descent")
    right.set_xlabel("lag")
    right.set_title(f"coefficients; marked task RMSE: AR {result.ar_rmse:.2f}"
                    f", LSTM {result.lstm_rmse:.2f}", fontsize=8)
    right.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, out, "autoregressive.png")


def main(argv: Optional[Sequence[str]] = None) -> Result:
    args = parse_args(__doc__.split("\n")[0], argv)
    dev = pick_device(args.device)
    torch.manual_seed(SEED)
    years, y = sunspots()

    a = fit_ar(y, ORDER, dev)
    reference = AutoReg(y, lags=ORDER, trend="n").fit().params
    split = int(np.searchsorted(years, SPLIT_YEAR))
    horizon = len(y) - split
    fc = forecast(a, y[:split], horizon, dev)

    # Windows [s, s + WINDOW) and their next value; training ones end
    # before SPLIT_YEAR.
    starts = np.arange(len(y) - WINDOW)
    train_starts = starts[starts + WINDOW < split]
    test_starts = starts[starts + WINDOW >= split]
    gen = torch.Generator().manual_seed(SEED)
    ar_model = ARForecaster(ORDER, dev)
    ar_model.fit(y, train_starts, dev, gen)
    lstm_model = LSTMForecaster(32)
    train_lstm(lstm_model, y, train_starts, 80 if args.quick else 300, dev,
               gen)
    result = Result(a, reference, cycle_length(a),
                    rmse(ar_model, y, test_starts, dev),
                    rmse(lstm_model, y, test_starts, dev))
    path = plot(years, y, a, years[split:], fc, result, args.out)
    print(f"wrote {path}")
    print(result.line())
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
