"""The temporal order problem (Hochreiter & Schmidhuber 1997, experiments 6a/6b; Pascanu et al. 2013)."""
from __future__ import annotations

import numpy as np

from gapbench.tasks import register
from gapbench.tasks._base import LastStepClassification, choice

# one-hot input tokens: distractors a, b, c, d; end and start markers B, E; relevant symbols X, Y
DISTRACTORS, B, E, X = 4, 4, 5, 6
# where the relevant symbols sit, as fractions of the length (H&S at T = 100: 10-20, 50-60 for two;
# 10-20, 33-43, 66-76 for three)
WINDOWS = {2: ((0.10, 0.20), (0.50, 0.60)), 3: ((0.10, 0.20), (0.33, 0.43), (0.66, 0.76))}


@register("temporal_order")
class TemporalOrder(LastStepClassification):
    """Classify the order of `relevant` (2 or 3) symbols, each X or Y, hidden among distractors.

    Length T = gap (fixed, where H&S draw it in [100, 110]): E at step 0, B at step T − 1,
    distractors a-d uniformly elsewhere, except that relevant symbol k sits at a uniformly random
    step of the window round(f0·T)..round(f1·T) (WINDOWS; H&S's windows scaled to T). The class
    is the X/Y pattern read as a binary number (X = 0): 4 classes for 2 symbols, 8 for 3,
    balanced. Cross-entropy at the last step; baseline ln(classes), chance 1/classes.
    """

    input_size = 8
    min_gap = 10

    def __init__(self, gap, *, relevant=2):
        super().__init__(gap)
        self.relevant = int(choice("temporal_order", "relevant", relevant, tuple(WINDOWS)))  # 3.0 -> 3
        self.output_size = 2 ** self.relevant
        self.windows = [(round(lo * self.gap), round(hi * self.gap)) for lo, hi in WINDOWS[self.relevant]]

    @property
    def seq_len(self):
        return self.gap

    def sample(self, n, rng):
        tokens = rng.integers(0, DISTRACTORS, size=(n, self.gap))
        tokens[:, 0], tokens[:, -1] = E, B
        bits = rng.integers(0, 2, size=(n, self.relevant))
        rows = np.arange(n)
        for k, (lo, hi) in enumerate(self.windows):
            tokens[rows, rng.integers(lo, hi + 1, size=n)] = X + bits[:, k]
        y = bits @ (2 ** np.arange(self.relevant)[::-1])
        return {"x": np.eye(self.input_size, dtype=np.float32)[tokens], "y": y.astype(np.int64)}
