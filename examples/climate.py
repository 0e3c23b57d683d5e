r"""Forecasting a climate series with an attention encoder-decoder.

The series is the monthly mean CO2 concentration at Mauna Loa, March 1958
to December 2001 (statsmodels' weekly ``co2`` data set, averaged per month;
the 5 months without a measurement interpolated). From the last WINDOW = 36
months the model forecasts the next HORIZON = 12.

The model: an LSTM encoder over the window and an LSTM decoder with
additive (Bahdanau) attention over the encoder's states,

    (e_1 .. e_W), (h, c) = LSTM_enc(x_1 .. x_W)
    a_ij = softmax_j(v . tanh(W_q h_{i-1} + W_k e_j + b))
    q_i  = sum_j a_ij e_j
    (h_i, c_i) = LSTMCell([yhat_{i-1}; q_i], (h_{i-1}, c_{i-1}))
    yhat_i = W_o [h_i; q_i] + b_o,          i = 1 .. HORIZON

(``seqkernels.LSTM``, ``seqkernels.LSTMCell`` and
``seqkernels.AdditiveAttention``), starting from the encoder's final state
and ``yhat_0 = 0``. The decoder is fed its own forecasts, in training as at
test time. Values are seen relative to the window's last month, in units of
SCALE ppm, so a window's level does not matter, only its shape: the inputs
are ``x_j = (y_j - y_W) / SCALE`` and the targets ``(y_{W+i} - y_W) /
SCALE``. Trained with Adam (the learning rate annealed to zero on a
cosine) on the squared error of minibatches of BATCH windows, drawn from all
those that end before the held-out span.

The held-out span is the last TEST_YEARS years: one forecast from the start
of each of them, of its 12 months, by the model and by two baselines: the
seasonal-naive forecast (each month as a year before) and statsmodels'
SARIMAX(1,1,1)(0,1,1)_12, Box and Jenkins' airline model, fitted on the same
training span and run from each forecast origin. The picture: the forecasts
against the truth, and the attention weights a_ij of the last forecast over
its input window.

    python examples/climate.py [--quick] [--out DIR] [--device cpu]

statsmodels is imported where the data and the baseline need it, so the
model can be imported without it (benchmarks/seq2seq.py times it).
"""

from __future__ import annotations

import pathlib
import sys
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

import seqkernels
from shared import device as pick_device, parse_args, pyplot, save

WINDOW = 36           # months the encoder reads
HORIZON = 12          # months the decoder forecasts
TEST_YEARS = 5        # the held-out span: the last 5 years, 1997-2001
SCALE = 2.0           # ppm: about the change of a window
BATCH = 128           # windows per training step
SEED = 0


def co2_monthly():
    """(month start dates, monthly mean CO2 in ppm)."""
    import statsmodels.api as sm
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()
    return monthly.index, monthly.to_numpy(dtype=np.float64)


def windows(y: np.ndarray, origins: np.ndarray):
    """Inputs [B, WINDOW, 1] and targets [B, HORIZON] of the forecasts made
    at ``origins`` (the index of each forecast's first month), both relative
    to the month before the origin, in units of SCALE."""
    past = np.stack([y[o - WINDOW:o] for o in origins])
    future = np.stack([y[o:o + HORIZON] for o in origins])
    last = past[:, -1:]
    return (torch.tensor((past - last) / SCALE, dtype=torch.float32
                         ).unsqueeze(-1),
            torch.tensor((future - last) / SCALE, dtype=torch.float32))


class Forecaster(nn.Module):
    """The attention encoder-decoder of the module docstring."""

    def __init__(self, hidden: int = 32, attention: int = 32):
        super().__init__()
        self.encoder = seqkernels.LSTM(1, hidden, batch_first=True)
        self.attention = seqkernels.AdditiveAttention(hidden, hidden,
                                                      attention)
        self.decoder = seqkernels.LSTMCell(1 + hidden, hidden)
        self.readout = nn.Linear(2 * hidden, 1)

    def forward(self, past: torch.Tensor):
        """Forecasts [B, HORIZON] and attention weights [B, HORIZON, W]."""
        states, (h, c) = self.encoder(past)
        h, c = h[0], c[0]
        previous = past.new_zeros(past.shape[0], 1)
        forecasts, weights = [], []
        for _ in range(HORIZON):
            context, a = self.attention(h, states, need_weights=True)
            h, c = self.decoder(torch.cat([previous, context], -1), (h, c))
            previous = self.readout(torch.cat([h, context], -1))
            forecasts.append(previous)
            weights.append(a)
        return torch.cat(forecasts, -1), torch.stack(weights, 1)


def sarimax_forecasts(y: np.ndarray, origins: np.ndarray) -> np.ndarray:
    """The airline model fitted before the first origin, then run on the
    data up to each origin: its forecasts [len(origins), HORIZON]."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX
    fit = SARIMAX(y[:origins[0]], order=(1, 1, 1),
                  seasonal_order=(0, 1, 1, 12)).fit(disp=False)
    return np.stack([fit.apply(y[:o]).forecast(HORIZON) for o in origins])


def rmse(forecast: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((forecast - truth) ** 2)))


@dataclass
class Result:
    steps: int
    model_rmse: float          # ppm, over the held-out span
    naive_rmse: float
    sarimax_rmse: float

    def line(self) -> str:
        return (f"CO2, 12-month forecasts over {TEST_YEARS} held-out years "
                f"({self.steps} training steps): RMSE encoder-decoder "
                f"{self.model_rmse:.2f} ppm, seasonal naive "
                f"{self.naive_rmse:.2f}, SARIMAX {self.sarimax_rmse:.2f}")


def plot(dates, y, origins, forecasts: dict, weights: np.ndarray,
         out: pathlib.Path):
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6),
                                      height_ratios=(3, 2))
    start = origins[0] - 2 * HORIZON
    top.plot(dates[start:], y[start:], color="0.2", lw=1.5, label="measured")
    for (name, values), color in zip(forecasts.items(), ("C1", "C2", "C0")):
        for k, o in enumerate(origins):
            top.plot(dates[o:o + HORIZON], values[k], color=color, lw=1,
                     label=name if k == 0 else None)
    top.set_ylabel("CO2 (ppm)")
    top.legend(fontsize=8, loc="upper left")
    image = bottom.imshow(weights, cmap="gray", vmin=0, aspect="auto",
                          extent=(-WINDOW - 0.5, -0.5, HORIZON + 0.5, 0.5))
    bottom.set_xlabel("input month (relative to the forecast origin)")
    bottom.set_ylabel("month forecast")
    bottom.set_title("attention weights of the last forecast", fontsize=9)
    fig.colorbar(image, ax=bottom)
    fig.tight_layout()
    return save(fig, out, "climate.png")


def main(argv: Optional[Sequence[str]] = None) -> Result:
    args = parse_args(__doc__.split("\n")[0], argv)
    dev = pick_device(args.device)
    torch.manual_seed(SEED)
    dates, y = co2_monthly()
    test_start = len(y) - 12 * TEST_YEARS
    origins = test_start + HORIZON * np.arange(TEST_YEARS)
    # Training windows: every forecast whose months end before test_start.
    train_past, train_future = windows(
        y, np.arange(WINDOW, test_start - HORIZON + 1))
    train_past, train_future = train_past.to(dev), train_future.to(dev)

    model = Forecaster().to(dev)
    steps = 200 if args.quick else 2000
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(SEED)
    for _ in range(steps):
        pick = torch.randint(0, len(train_past), (BATCH,), generator=gen)
        forecast, _ = model(train_past[pick.to(dev)])
        loss = ((forecast - train_future[pick.to(dev)]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()

    model.eval()
    test_past, _ = windows(y, origins)
    with torch.no_grad():
        forecast, weights = model(test_past.to(dev))
    last = y[origins - 1, None]
    truth = np.stack([y[o:o + HORIZON] for o in origins])
    forecasts = {
        "encoder-decoder": last + SCALE * forecast.cpu().double().numpy(),
        "seasonal naive": np.stack([y[o - 12:o - 12 + HORIZON]
                                    for o in origins]),
        "SARIMAX": sarimax_forecasts(y, origins),
    }
    result = Result(steps, *(rmse(f, truth) for f in forecasts.values()))
    path = plot(dates, y, origins, forecasts, weights[-1].cpu().numpy(),
                args.out)
    print(f"wrote {path}")
    print(result.line())
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
