"""The adding problem (Hochreiter & Schmidhuber 1997), in the convention of Arjovsky et al. 2016 / Le et al. 2015."""
from __future__ import annotations

import numpy as np

from tasks import register
from tasks._base import Task


@register("adding")
class Adding(Task):
    """Sum the two marked values of a sequence of length `gap`.

    x_t = (v_t, m_t) with v_t ~ U(0, 1) and m_t = 1 at one step of the first half and
    one of the second half (0 elsewhere); the target v_i + v_j is read at the last step.
    Loss and metric: MSE. Predicting the constant 1 gives Var(v_i + v_j) = 1/6, the baseline.
    """

    metric = "mse"
    input_size, output_size = 2, 1
    min_gap = 2

    @property
    def seq_len(self):
        return self.gap

    @property
    def baseline(self):
        return 1.0 / 6.0

    @property
    def chance_score(self):
        return self.baseline

    def sample(self, n, rng):
        half = self.gap // 2
        values = rng.random((n, self.gap), dtype=np.float64).astype(np.float32)
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, self.gap, size=n)
        markers = np.zeros((n, self.gap), dtype=np.float32)
        rows = np.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        y = values[rows, first] + values[rows, second]
        return {"x": np.stack([values, markers], axis=-1), "y": y.astype(np.float32)}

    def loss(self, pred, y):
        return ((pred[:, -1, 0] - y) ** 2).mean()

    def score(self, pred, y):
        return self.loss(pred, y)

    def probe_loss(self, pred_t, y):
        return (pred_t[:, 0] - y) ** 2
