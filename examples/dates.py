r"""Translation-style seq2seq with Bahdanau attention: dates to ISO form.

The task is generated, not downloaded: a date between 1950 and 2049
written in one of many human formats ("Tuesday, March 4, 1997",
"4th of march 1997", "03/04/1997", "04.03.97", ...) is to be rewritten as
"1997-03-04". Source and target are strings of characters.

The model is Bahdanau, Cho and Bengio's (2015) attention encoder-decoder:

* the encoder: a 2-layer bidirectional ``seqkernels.GRU`` over the source
  characters' embeddings, the sources of a batch packed to their own
  lengths (PackedSequence), whose outputs are the annotations
  ``h_j = [forward_j; backward_j]``;
* the decoder: a ``seqkernels.GRUCell`` with additive attention
  (``seqkernels.AdditiveAttention``). At output step i, with state
  ``s_{i-1}`` and previous character ``y_{i-1}``,

      e_ij = v . tanh(W_q s_{i-1} + W_k h_j + b)   (padding masked)
      a_ij = softmax_j(e_ij),    c_i = sum_j a_ij h_j
      s_i  = GRU([embed(y_{i-1}); c_i], s_{i-1})
      p(y_i | ...) = softmax(W_o [s_i; c_i; embed(y_{i-1})])

  starting from ``s_0 = tanh(W_s backward_1)`` (the top layer's backward
  state at the first character) and a start token. It emits characters
  until its end token: greedy decoding at test time, teacher forcing in
  training (cross-entropy of each next character).

The result is the exact-match accuracy of the greedy translations of
unseen dates (every tenth day of the span is never drawn in training); the
picture, the alignment matrices a_ij of a few of them, drawn as in the
paper's figure 3 (white: weight 1).

    python examples/dates.py [--quick] [--out DIR] [--device cpu]

``--quick`` trains briefly on an easy subset (the numeric formats).
"""

from __future__ import annotations

import datetime
import pathlib
import random
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import seqkernels
from shared import device as pick_device, parse_args, pyplot, save

SEED = 0
HOLD_OUT = 10         # every tenth day is held out of training, for the test
FIRST, LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)
MONTHS = ("January", "February", "March", "April", "May", "June", "July",
          "August", "September", "October", "November", "December")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
        "Sunday")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(
        n % 10, "th")
    return f"{n}{suffix}"


# Each format writes a date; the numeric ones are the easy subset.
NUMERIC: dict[str, Callable[[datetime.date], str]] = {
    "m/d/Y": lambda t: f"{t.month}/{t.day}/{t.year}",
    "mm/dd/Y": lambda t: f"{t.month:02}/{t.day:02}/{t.year}",
    "dd.mm.Y": lambda t: f"{t.day:02}.{t.month:02}.{t.year}",
    "dd.mm.yy": lambda t: f"{t.day:02}.{t.month:02}.{t.year % 100:02}",
    "Y/mm/dd": lambda t: f"{t.year}/{t.month:02}/{t.day:02}",
    "Ymmdd": lambda t: f"{t.year}{t.month:02}{t.day:02}",
}
WORDS: dict[str, Callable[[datetime.date], str]] = {
    "Month d, Y": lambda t: f"{MONTHS[t.month - 1]} {t.day}, {t.year}",
    "d Month Y": lambda t: f"{t.day} {MONTHS[t.month - 1]} {t.year}",
    "Mon d Y": lambda t: f"{MONTHS[t.month - 1][:3]} {t.day} {t.year}",
    "d mon yy": lambda t: f"{t.day} {MONTHS[t.month - 1][:3].lower()} "
                          f"'{t.year % 100:02}",
    "Day, Month d, Y": lambda t: f"{DAYS[t.weekday()]}, "
                                 f"{MONTHS[t.month - 1]} {t.day}, {t.year}",
    "dth of month Y": lambda t: f"{_ordinal(t.day)} of "
                                f"{MONTHS[t.month - 1].lower()} {t.year}",
    "MONTH dd Y": lambda t: f"{MONTHS[t.month - 1].upper()} {t.day:02} "
                            f"{t.year}",
}
# Two-digit years: 50..99 are 19xx, 00..49 are 20xx (the span's rule).

# Every character the formats write: a sample of dates covers them (each
# month, weekday and ordinal suffix), and the digits.
SOURCE_CHARS = sorted(set("".join(
    f(datetime.date(2000, m, d)) for f in (NUMERIC | WORDS).values()
    for m in range(1, 13) for d in (1, 2, 3, 11, 22, 28))
    + "0123456789"))
PAD, START, END = 0, 1, 2
TARGET_CHARS = "0123456789-"
SOURCE_INDEX = {c: i + 1 for i, c in enumerate(SOURCE_CHARS)}   # 0: padding


def random_dates(n: int, rng: random.Random,
                 held_out: bool) -> list[datetime.date]:
    """``n`` dates drawn from the span: the held-out ones (every tenth day,
    which the test draws from) or the others (training's)."""
    span = (LAST - FIRST).days
    days = [d for d in range(span + 1) if (d % HOLD_OUT == 0) == held_out]
    return [FIRST + datetime.timedelta(days=rng.choice(days))
            for _ in range(n)]


def batch(dates: Sequence[datetime.date], formats: Sequence[Callable],
          rng: random.Random, dev: torch.device):
    """(sources, their strings, source lengths, targets): sources [B, S]
    padded with 0, targets [B, 11] (the ISO characters, then END)."""
    texts = [rng.choice(formats)(t) for t in dates]
    lengths = torch.tensor([len(s) for s in texts])
    src = torch.zeros(len(texts), int(lengths.max()), dtype=torch.long)
    for row, s in enumerate(texts):
        src[row, :len(s)] = torch.tensor([SOURCE_INDEX[c] for c in s])
    tgt = torch.tensor([[TARGET_CHARS.index(c) + 3 for c in t.isoformat()]
                        + [END] for t in dates])
    return src.to(dev), texts, lengths, tgt.to(dev)


def decode(tokens: Sequence[int]) -> str:
    """Target tokens to text, up to the first END."""
    out = []
    for tok in tokens:
        if tok == END:
            break
        out.append(TARGET_CHARS[tok - 3] if tok >= 3 else "?")
    return "".join(out)


class Encoder(nn.Module):
    """Embedding, then a 2-layer bidirectional GRU over packed sources."""

    def __init__(self, embed: int, hidden: int):
        super().__init__()
        self.embed = nn.Embedding(len(SOURCE_CHARS) + 1, embed,
                                  padding_idx=PAD)
        self.gru = seqkernels.GRU(embed, hidden, num_layers=2,
                                  bidirectional=True, batch_first=True)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor):
        """Annotations [B, S, 2H] (zero at padding) and the top layer's
        backward state at the first character [B, H]."""
        packed = pack_padded_sequence(self.embed(src), lengths,
                                      batch_first=True, enforce_sorted=False)
        out, h_n = self.gru(packed)
        annotations, _ = pad_packed_sequence(out, batch_first=True,
                                             total_length=src.shape[1])
        return annotations, h_n[-1]     # h_n: layer 0 fwd, bwd, layer 1 ...


class AttentionDecoder(nn.Module):
    """The GRU decoder with additive attention (module docstring)."""

    def __init__(self, embed: int, key_size: int, hidden: int,
                 attention: int):
        super().__init__()
        vocab = len(TARGET_CHARS) + 3
        self.embed = nn.Embedding(vocab, embed)
        self.init = nn.Linear(key_size // 2, hidden)
        self.attention = seqkernels.AdditiveAttention(hidden, key_size,
                                                      attention)
        self.cell = seqkernels.GRUCell(embed + key_size, hidden)
        self.readout = nn.Linear(hidden + key_size + embed, vocab)

    def start(self, backward_state: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.init(backward_state))

    def step(self, previous: torch.Tensor, state: torch.Tensor,
             annotations: torch.Tensor, padding: torch.Tensor):
        """One output step: (logits, new state, attention weights [B, S])."""
        context, weights = self.attention(state, annotations,
                                          key_padding_mask=padding,
                                          need_weights=True)
        e = self.embed(previous)
        state = self.cell(torch.cat([e, context], -1), state)
        logits = self.readout(torch.cat([state, context, e], -1))
        return logits, state, weights


class Translator(nn.Module):
    def __init__(self, embed: int = 32, hidden: int = 64,
                 attention: int = 64):
        super().__init__()
        self.encoder = Encoder(embed, hidden)
        self.decoder = AttentionDecoder(embed, 2 * hidden, 2 * hidden,
                                        attention)

    def _encode(self, src, lengths):
        annotations, backward = self.encoder(src, lengths)
        return annotations, src == PAD, self.decoder.start(backward)

    def loss(self, src, lengths, tgt) -> torch.Tensor:
        """Cross-entropy of each target character, teacher forced."""
        annotations, padding, state = self._encode(src, lengths)
        previous = torch.full_like(tgt[:, 0], START)
        total = 0.0
        for i in range(tgt.shape[1]):
            logits, state, _ = self.decoder.step(previous, state,
                                                 annotations, padding)
            total = total + nn.functional.cross_entropy(logits, tgt[:, i])
            previous = tgt[:, i]
        return total / tgt.shape[1]

    @torch.no_grad()
    def translate(self, src, lengths, max_len: int = 16):
        """Greedy decoding: (texts, alignments [B, steps, S])."""
        annotations, padding, state = self._encode(src, lengths)
        previous = torch.full((src.shape[0],), START, dtype=torch.long,
                              device=src.device)
        tokens, alignments = [], []
        for _ in range(max_len):
            logits, state, weights = self.decoder.step(previous, state,
                                                       annotations, padding)
            previous = logits.argmax(-1)
            tokens.append(previous)
            alignments.append(weights)
            if (torch.stack(tokens, 1) == END).any(1).all():
                break
        tokens = torch.stack(tokens, 1).tolist()
        return [decode(t) for t in tokens], torch.stack(alignments, 1).cpu()


@dataclass
class Result:
    formats: str                 # "numeric" (the easy subset) or "all"
    steps: int
    exact_match: float           # fraction of held-out dates exactly right
    tested: int

    def line(self) -> str:
        return (f"dates to ISO ({self.formats} formats, {self.steps} "
                f"training steps): exact match {100 * self.exact_match:.1f}% "
                f"of {self.tested} unseen dates")


def plot(texts, alignments, outputs, out: pathlib.Path):
    plt = pyplot()
    n = len(texts)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.0))
    for ax, text, a, output in zip(axes, texts, alignments, outputs):
        rows = len(output) + 1                        # the characters + END
        ax.imshow(a[:rows, :len(text)].numpy(), cmap="gray", vmin=0, vmax=1,
                  aspect="auto")
        ax.set_xticks(range(len(text)), list(text), fontsize=7)
        ax.set_yticks(range(rows), list(output) + ["<end>"], fontsize=7)
        ax.tick_params(length=0)
    fig.tight_layout()
    return save(fig, out, "dates.png")


def main(argv: Optional[Sequence[str]] = None) -> Result:
    args = parse_args(__doc__.split("\n")[0], argv)
    dev = pick_device(args.device)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    formats = list(NUMERIC.values()) + ([] if args.quick else
                                        list(WORDS.values()))
    steps, batch_size = (150, 64) if args.quick else (600, 128)
    model = Translator().to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2 if args.quick
                           else 3e-3)
    for _ in range(steps):
        src, _, lengths, tgt = batch(random_dates(batch_size, rng, False),
                                     formats, rng, dev)
        loss = model.loss(src, lengths, tgt)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    model.eval()
    test_rng = random.Random(SEED + 1)
    dates = random_dates(500 if args.quick else 2000, test_rng, True)
    src, texts, lengths, _ = batch(dates, formats, test_rng, dev)
    outputs, alignments = model.translate(src, lengths)
    right = sum(o == t.isoformat() for o, t in zip(outputs, dates))
    result = Result("numeric" if args.quick else "all", steps,
                    right / len(dates), len(dates))
    shown = [0, 1, 2]                      # three of the unseen dates
    path = plot([texts[i] for i in shown], alignments[shown],
                [outputs[i] for i in shown], args.out)
    print(f"wrote {path}")
    print(result.line())
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
