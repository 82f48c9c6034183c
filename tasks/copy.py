"""Copying memory (Hochreiter & Schmidhuber 1997), in the convention of Arjovsky et al. 2016."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from tasks import register
from tasks._base import Task


@register("copy")
class Copy(Task):
    """Remember `length` symbols from an alphabet of `alphabet` across `gap` blanks.

    Input tokens: symbols 1..alphabet, blank 0, delimiter alphabet+1 (one-hot).
    x = [s_1..s_L, 0 × (gap−1), delimiter, 0 × L];  y = [0 × (gap+L), s_1..s_L];
    sequence length gap + 2L (Arjovsky's T = gap). The loss is cross-entropy averaged
    over all gap + 2L outputs; a memoryless model that outputs blanks and then guesses
    uniformly scores L·ln(alphabet)/(gap + 2L), the baseline. Accuracy counts the L recall
    positions only (chance 1/alphabet).
    """

    metric = "accuracy"

    def __init__(self, gap, *, length=10, alphabet=8):
        super().__init__(gap)
        if length < 1 or alphabet < 2:
            raise ValueError(f"copy: length must be >= 1 and alphabet >= 2, got {length}, {alphabet}")
        self.length, self.alphabet = int(length), int(alphabet)
        self.input_size = alphabet + 2
        self.output_size = alphabet + 1

    def params(self):
        return {"length": self.length, "alphabet": self.alphabet}

    @property
    def seq_len(self):
        return self.gap + 2 * self.length

    @property
    def baseline(self):
        return self.length * math.log(self.alphabet) / self.seq_len

    @property
    def chance_score(self):
        return 1.0 / self.alphabet

    def sample(self, n, rng):
        L = self.length
        symbols = rng.integers(1, self.alphabet + 1, size=(n, L))
        tokens = np.zeros((n, self.seq_len), dtype=np.int64)
        tokens[:, :L] = symbols
        tokens[:, self.gap + L - 1] = self.alphabet + 1
        y = np.zeros((n, self.seq_len), dtype=np.int64)
        y[:, -L:] = symbols
        x = np.eye(self.input_size, dtype=np.float32)[tokens]
        return {"x": x, "y": y}

    def loss(self, pred, y):
        return F.cross_entropy(pred.reshape(-1, self.output_size), y.reshape(-1))

    def score(self, pred, y):
        recall = slice(self.seq_len - self.length, self.seq_len)
        return (pred[:, recall].argmax(-1) == y[:, recall]).to(torch.float64).mean()

    def probe_loss(self, pred_t, y):
        return F.cross_entropy(pred_t, y[:, self.probe_step], reduction="none")
