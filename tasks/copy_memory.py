"""Copying memory (Hochreiter & Schmidhuber 1997) in three published conventions."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from gapbench.tasks import register
from gapbench.tasks._base import Task, check, choice, is_int
from gapbench.tasks._sampling import Sampled, Sampling

CONVENTIONS = ("arjovsky", "expRNN", "selective")


@register("copy")
class Copy(Sampled, Task):
    """Remember `length` (L) symbols from an alphabet of `alphabet` (A) across `gap` steps.

    Input tokens (one-hot): symbols 1..A, blank 0, delimiter A+1. All conventions have length
    gap + 2L and y = [0 × (gap+L), s_1..s_L]: the symbols are recalled at the last L steps.
      arjovsky  (Arjovsky, Shah & Bengio 2016): x = [s_1..s_L, 0 × (gap−1), delimiter, 0 × L];
                recall begins one step after the delimiter. Loss: cross-entropy averaged over
                all gap + 2L outputs; outputting blanks and then guessing uniformly scores
                baseline L·ln(A)/(gap + 2L).
      expRNN    (Lezcano-Casado & Martínez-Rubio 2019): x = [s_1..s_L, 0 × gap, delimiter, 0 × (L−1)];
                recall begins at the delimiter. Loss as in their code: cross-entropy over all
                outputs, baseline L·ln(A)/(gap + 2L).
      selective (the selective copying task of Gu & Dao 2023, Mamba): the L symbols sit at L
                random distinct steps among the first gap + L − 1 (blanks elsewhere), the
                delimiter at step gap + L − 1, recall of the symbols in order of appearance after
                it. Loss: cross-entropy over the L recall steps only, baseline ln(A). (Gu & Dao's
                generator, state-spaces/s4 copying.py, marks every recall step instead of one
                delimiter; here the recall steps are blank, as in the other conventions.)
    Accuracy always counts the L recall steps only (chance 1/A).

    Irregular sampling (arjovsky and expRNN; see tasks/_sampling.py): the cue is the last
    symbol, the query the delimiter (span gap for arjovsky, gap + 1 for expRNN, the regular
    distances), recall steps follow at the process's inter-arrival times.
    """

    metric = "accuracy"

    def __init__(self, gap, *, length=10, alphabet=8, convention="arjovsky", **sampling_options):
        super().__init__(gap)
        check("copy", "length", is_int(length) and length >= 1, length, "an integer >= 1")
        check("copy", "alphabet", is_int(alphabet) and alphabet >= 2, alphabet, "an integer >= 2")
        self.convention = choice("copy", "convention", convention, CONVENTIONS)
        self.sampling = Sampling("copy", **sampling_options)
        if convention == "selective":
            self.sampling.require_plain("copy", "selective", ["arjovsky", "expRNN"])
        self.length, self.alphabet = int(length), int(alphabet)
        self.input_size = alphabet + 2 + self.sampling.n_channels
        self.output_size = alphabet + 1
        self.recall_only = convention == "selective"
        # (prefix, span, suffix) of the timeline: symbols, cue → delimiter, steps after the delimiter
        self.layout = (self.length, self.gap + (convention == "expRNN"), self.length - (convention == "expRNN"))

    @property
    def seq_len(self):
        prefix, span, suffix = self.layout
        return prefix + self.sampling.max_gap_steps(span) + suffix

    @property
    def score_label(self):
        return "test accuracy (recall positions)"

    @property
    def scored(self):
        recall = f"last {self.length} steps (recall)"
        return recall if self.recall_only else f"loss: all {self.seq_len} steps; accuracy: {recall}"

    @property
    def baseline(self):
        if self.recall_only:
            return math.log(self.alphabet)
        return self.length * math.log(self.alphabet) / self.seq_len

    @property
    def chance_score(self):
        return 1.0 / self.alphabet

    def sample(self, n, rng):
        L, T, delimiter = self.length, self.seq_len, self.alphabet + 1
        symbols = rng.integers(1, self.alphabet + 1, size=(n, L))
        tokens = np.zeros((n, T), dtype=np.int64)
        rows = np.arange(n)[:, None]
        if self.convention == "selective":
            where = np.sort(rng.random((n, self.gap + L - 1)).argsort(axis=1)[:, :L], axis=1)
            tokens[rows, where] = symbols
            tokens[:, T - L - 1] = delimiter
            timeline = None
        else:
            timeline = self.sampling.timeline(rng, n, *self.layout)  # regular: no draws, steps 0..T−1
            tokens[rows, timeline.start[:, None] + np.arange(L)] = symbols
            tokens[:, timeline.query] = delimiter
        y = np.zeros((n, T), dtype=np.int64)
        y[:, -L:] = symbols
        x = np.eye(self.alphabet + 2, dtype=np.float32)[tokens]
        if timeline is not None:
            x[~timeline.observed] = 0.0  # padding is all-zero input, not a blank token
            x = self.sampling.with_channels(x, timeline)
        return {"x": x, "y": y}

    def loss(self, pred, y):
        if self.recall_only:
            pred, y = pred[:, -self.length:], y[:, -self.length:]
        return F.cross_entropy(pred.reshape(-1, self.output_size), y.reshape(-1))

    def score(self, pred, y):
        recall = slice(self.seq_len - self.length, self.seq_len)
        return (pred[:, recall].argmax(-1) == y[:, recall]).to(torch.float64).mean()

    def probe_loss(self, pred_t, y):
        return F.cross_entropy(pred_t, y[:, self.probe_step], reduction="none")
