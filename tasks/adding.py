"""The adding problem (Hochreiter & Schmidhuber 1997) in two conventions, and its multiplication twin.

`tasks.build("adding", gap, convention=...)` builds one class per convention: AddingArjovsky (the
default) or AddingHochreiter; both are recorded as task 'adding' with their convention.
"""
from __future__ import annotations

import numpy as np
import torch

from gapbench.tasks import register
from gapbench.tasks._base import LastStepRegression, choice
from gapbench.tasks._sampling import Sampled, Sampling

TOLERANCE = 0.04  # Hochreiter & Schmidhuber: a sequence is processed correctly if |error| < 0.04
FIRST_WINDOW = 10  # ... X1 is one of the first ten pairs


class MarkedPair(Sampled, LastStepRegression):
    """What both conventions share: x_t = (v_t, m_t) (then any time channels), and one target per
    sequence, a function of the two values marked m = 1, read at the last step."""

    registry_name = "adding"
    convention: str
    input_size = 2
    min_gap = 2

    def __init__(self, gap, **sampling_options):
        super().__init__(gap)
        self.sampling = Sampling(self.registry_name, **sampling_options)
        self.input_size = 2 + self.sampling.n_channels


class AddingArjovsky(MarkedPair):
    """The adding problem of Arjovsky et al. 2016 / Le et al. 2015 (adding's default convention).

    Length `gap`; x_t = (v_t, m_t), v_t ~ U(0, 1), m_t = 1 at one step of the first half and one
    of the second half (0 elsewhere); target v_i + v_j. Loss and metric MSE; predicting the mean 1
    scores Var(v_i + v_j) = 1/6, the baseline.
    Irregular sampling (tasks/_sampling.py): the cue is the first step, the query the last, span
    gap − 1 (the regular length gap); the markers fall in the first and second half of each
    sequence's observations.
    """

    convention = "arjovsky"

    @property
    def seq_len(self):
        return 1 + self.sampling.max_gap_steps(self.gap - 1)

    def _combine(self, a, b):
        return a + b

    @property
    def baseline(self):
        return 1.0 / 6.0

    def sample(self, n, rng):
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


class AddingHochreiter(MarkedPair):
    """The adding problem of Hochreiter & Schmidhuber 1997, experiment 4.

    With T = gap (>= 20), lengths uniform in [T, T + ⌊T/10⌋]; v_t ~ U[−1, 1]; X1 marked (m = 1)
    among the first ten steps, X2 among the other steps of the first ⌊T/2⌋; m = −1 at the first
    and last step (unless marked); a marked first step has its value set to 0. Target
    0.5 + (X1 + X2)/4. Shorter sequences are LEFT-padded with zero inputs so every one ends at
    the last step. Loss MSE; the metric is the fraction processed correctly (|error| < 0.04).
    With q = 1/10 + (9/10)/(⌊T/2⌋ − 1) the chance that one marked value is the zeroed first step,
    predicting the mean 0.5 scores baseline (2 − q)/48 and chance score (1 − q)(a − a²/4) + q·a
    with a = 4·0.04 (the triangular law of X1 + X2).
    Success: test MSE < 0.01 and every sequence processed correctly: their stopping rule
    (average training error < 0.01 and the 2000 most recent training sequences correct)
    applied to the test set, stricter than their reported test errors (never more than 3 of
    2560 sequences wrong).
    Sampling must be regular.
    """

    convention = "hochreiter"
    metric = "accuracy"
    scored = "last step (each sequence ends there; left-padded)"
    score_label = "fraction with |error| < 0.04"

    def __init__(self, gap, **sampling_options):
        super().__init__(gap, **sampling_options)
        if self.gap < 2 * FIRST_WINDOW:
            raise ValueError(f"task 'adding': gap must be an integer >= 20 with convention "
                             f"'hochreiter', got {gap!r}")
        self.sampling.require_plain("adding", "hochreiter", ["arjovsky"])

    @property
    def seq_len(self):
        return self.gap + self.gap // 10

    @property
    def _zeroed(self):
        """The chance that one of the two marked values is the zeroed first step."""
        return 0.1 + 0.9 / (self.gap // 2 - 1)

    @property
    def baseline(self):
        return (2.0 - self._zeroed) / 48.0

    @property
    def chance_score(self):
        a, q = 4 * TOLERANCE, self._zeroed
        return (1 - q) * (a - a * a / 4) + q * a

    def success(self, test_loss, test_score=None):
        return bool(test_loss < 0.01 and (test_score is None or test_score >= 1.0))

    def score(self, pred, y):
        return ((pred[:, -1, 0] - y).abs() < TOLERANCE).to(torch.float64).mean()

    def sample(self, n, rng):
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


CONVENTIONS = {"arjovsky": AddingArjovsky, "hochreiter": AddingHochreiter}


@register("adding")
class Adding(Sampled):
    """The adding problem: output a function of the two marked values of a sequence, read at the
    last step. `convention` picks the published variant, whose class is built: "arjovsky"
    (AddingArjovsky, the default) or "hochreiter" (AddingHochreiter). Both take the sampling
    options (tasks/_sampling.py); hochreiter only regular sampling.
    """

    def __new__(cls, gap, *, convention="arjovsky", **sampling_options):
        MarkedPair.checked_gap(gap)  # the gap first, as every task checks it
        convention = choice("adding", "convention", convention, tuple(CONVENTIONS))
        return CONVENTIONS[convention](gap, **sampling_options)


@register("multiplication")
class Multiplication(AddingArjovsky):
    """The multiplication problem's target (Hochreiter & Schmidhuber 1997 exp. 5; Pascanu et al.
    2013) in the adding task's arjovsky layout (v_t ~ U(0, 1), one marker in each half, length
    `gap`): target v_i·v_j. Their layouts put both marked values in the first part of the
    sequence (X1 among the first ten steps, X2 before T/2) and draw the length from
    [T, T + T/10]. Loss and metric MSE; predicting the mean 1/4 scores
    Var(v_i v_j) = E[v²]² − E[v]⁴ = 1/9 − 1/16 = 7/144, the baseline.
    Takes the same sampling options as adding.
    """

    def _combine(self, a, b):
        return a * b

    @property
    def baseline(self):
        return 7.0 / 144.0
