"""The adding problem (Hochreiter & Schmidhuber 1997) in two conventions, and its multiplication twin."""
from __future__ import annotations

import numpy as np
import torch

from gapbench.tasks import register
from gapbench.tasks._base import LastStepRegression, choice
from gapbench.tasks._sampling import Sampling

CONVENTIONS = ("arjovsky", "hochreiter")
TOLERANCE = 0.04  # Hochreiter & Schmidhuber: a sequence is processed correctly if |error| < 0.04
FIRST_WINDOW = 10  # ... X1 is one of the first ten pairs


@register("adding")
class Adding(LastStepRegression):
    """Output a function of the two marked values of a sequence, read at the last step.

    arjovsky (Arjovsky et al. 2016 / Le et al. 2015; the default): length `gap`; x_t = (v_t, m_t),
        v_t ~ U(0, 1), m_t = 1 at one step of the first half and one of the second half (0
        elsewhere); target v_i + v_j. Loss and metric MSE; predicting the mean 1 scores
        Var(v_i + v_j) = 1/6, the baseline.
    hochreiter (Hochreiter & Schmidhuber 1997, experiment 4): with T = gap (>= 20), lengths
        uniform in [T, T + ⌊T/10⌋]; v_t ~ U[−1, 1]; X1 marked (m = 1) among the first ten steps,
        X2 among the other steps of the first ⌊T/2⌋; m = −1 at the first and last step (unless
        marked); a marked first step has its value set to 0. Target 0.5 + (X1 + X2)/4.
        Shorter sequences are LEFT-padded with zero inputs so every one ends at the last step.
        Loss MSE; the metric is the fraction processed correctly (|error| < 0.04). With
        q = 1/10 + (9/10)/(⌊T/2⌋ − 1) the chance that one marked value is the zeroed first step,
        predicting the mean 0.5 scores baseline (2 − q)/48 and chance score
        (1 − q)(a − a²/4) + q·a with a = 4·0.04 (the triangular law of X1 + X2).
        Success: test MSE < 0.01 and every sequence processed correctly (their stopping rule).
    Irregular sampling (arjovsky; tasks/_sampling.py): the cue is the first step, the query
    the last, span gap − 1 (the regular length gap); the markers fall in the first and second
    half of each sequence's observations.
    """

    input_size = 2
    min_gap = 2

    def __init__(self, gap, *, convention="arjovsky",
                 sampling="regular", rate=1.0, keep=0.5, gap_unit="time", time_channels=()):
        super().__init__(gap)
        self.convention = choice(self.registry_name, "convention", convention, CONVENTIONS)
        self.sampling = Sampling(self.registry_name, sampling, rate, keep, gap_unit, time_channels)
        if convention == "hochreiter":
            if self.gap < 2 * FIRST_WINDOW:
                raise ValueError(f"task 'adding': gap must be an integer >= 20 with convention "
                                 f"'hochreiter', got {gap!r}")
            if not self.sampling.regular:
                raise ValueError("adding: convention 'hochreiter' needs sampling 'regular'; "
                                 "irregular sampling is implemented for ['arjovsky']")
            self.metric = "accuracy"
            self.scored = "last step (each sequence ends there; left-padded)"
        self.input_size = 2 + self.sampling.n_channels

    def params(self):
        return {"convention": self.convention, **self.sampling.params()}

    @property
    def seq_len(self):
        if self.convention == "hochreiter":
            return self.gap + self.gap // 10
        return 1 + self.sampling.max_gap_steps(self.gap - 1)

    def _combine(self, a, b):
        return a + b

    @property
    def _zeroed(self):
        """Hochreiter: chance that one of the two marked values is the zeroed first step."""
        return 0.1 + 0.9 / (self.gap // 2 - 1)

    @property
    def baseline(self):
        if self.convention == "hochreiter":
            return (2.0 - self._zeroed) / 48.0
        return 1.0 / 6.0

    @property
    def chance_score(self):
        if self.convention == "hochreiter":
            a, q = 4 * TOLERANCE, self._zeroed
            return (1 - q) * (a - a * a / 4) + q * a
        return self.baseline

    def success(self, test_loss, test_score=None):
        if self.convention == "hochreiter":
            return bool(test_loss < 0.01 and (test_score is None or test_score >= 1.0))
        return super().success(test_loss, test_score)

    def score(self, pred, y):
        if self.convention == "hochreiter":
            return ((pred[:, -1, 0] - y).abs() < TOLERANCE).to(torch.float64).mean()
        return self.loss(pred, y)

    def sample(self, n, rng):
        if self.convention == "hochreiter":
            return self._sample_hochreiter(n, rng)
        if self.sampling.regular and not self.sampling.time_channels:
            return self._sample_regular(n, rng)
        return self._sample_timeline(n, rng)

    def _sample_regular(self, n, rng):
        # the published generator: its random draws must stay in this order (see tests)
        half = self.gap // 2
        values = rng.random((n, self.gap), dtype=np.float64).astype(np.float32)
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, self.gap, size=n)
        markers = np.zeros((n, self.gap), dtype=np.float32)
        rows = np.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        y = self._combine(values[rows, first], values[rows, second])
        return {"x": np.stack([values, markers], axis=-1), "y": y.astype(np.float32)}

    def _sample_timeline(self, n, rng):
        timeline = self.sampling.timeline(rng, n, 1, self.gap - 1, 0)
        values = rng.random(timeline.observed.shape).astype(np.float32) * timeline.observed
        steps = 1 + timeline.gap_steps  # observations per sequence
        first = timeline.start + rng.integers(0, steps // 2)
        second = timeline.start + rng.integers(steps // 2, steps)
        markers = np.zeros_like(values)
        rows = np.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        y = self._combine(values[rows, first], values[rows, second])
        x = self.sampling.with_channels(np.stack([values, markers], axis=-1), timeline)
        return {"x": x, "y": y.astype(np.float32)}

    def _sample_hochreiter(self, n, rng):
        T, rows = self.seq_len, np.arange(n)
        start = T - rng.integers(self.gap, T + 1, size=n)  # left padding
        observed = np.arange(T) >= start[:, None]
        values = rng.uniform(-1.0, 1.0, size=(n, T)) * observed
        markers = np.zeros((n, T))
        markers[rows, start] = markers[:, -1] = -1.0
        first = rng.integers(0, FIRST_WINDOW, size=n)
        other = rng.integers(0, self.gap // 2 - 1, size=n)
        second = other + (other >= first)  # one of the first ⌊T/2⌋ steps other than `first`
        for marked in (first, second):
            markers[rows, start + marked] = 1.0
            values[rows, start + marked] *= marked != 0  # a marked first pair counts as 0
        y = 0.5 + (values[rows, start + first] + values[rows, start + second]) / 4.0
        x = np.stack([values, markers], axis=-1).astype(np.float32)
        return {"x": x, "y": y.astype(np.float32)}


@register("multiplication")
class Multiplication(Adding):
    """The multiplication problem (Hochreiter & Schmidhuber 1997 exp. 5; Pascanu et al. 2013).

    The adding task's arjovsky layout (v_t ~ U(0, 1), one marker in each half, length `gap`)
    with target v_i·v_j. Loss and metric MSE; predicting the mean 1/4 scores
    Var(v_i v_j) = E[v²]² − E[v]⁴ = 1/9 − 1/16 = 7/144, the baseline.
    Takes the same sampling options as adding.
    """

    def __init__(self, gap, *, sampling="regular", rate=1.0, keep=0.5, gap_unit="time", time_channels=()):
        super().__init__(gap, convention="arjovsky", sampling=sampling, rate=rate, keep=keep,
                         gap_unit=gap_unit, time_channels=time_channels)

    def params(self):
        return self.sampling.params()

    def _combine(self, a, b):
        return a * b

    @property
    def baseline(self):
        return 7.0 / 144.0
