"""Information latching (Bengio, Simard & Frasconi 1994)."""
from __future__ import annotations

import numpy as np

from gapbench.tasks import register
from gapbench.tasks._base import LastStepClassification, check, is_int


@register("latch")
class Latch(LastStepClassification):
    """Report at the end the class announced by the first input, across `gap` steps of noise.

    One input channel: x_0 = −1 + 2c/(classes − 1) for class c (balanced), then `gap` steps
    x_t ~ N(0, noise²); length gap + 1. Bengio et al. 1994 show that storing the bit robustly
    against the noise drives gradients to vanish. Cross-entropy at the last step; baseline
    ln(classes), chance 1/classes.
    """

    input_size = 1

    def __init__(self, gap, *, classes=2, noise=0.2):
        super().__init__(gap)
        check("latch", "classes", is_int(classes) and classes >= 2, classes, "an integer >= 2")
        check("latch", "noise", isinstance(noise, (int, float)) and 0 <= noise < np.inf, noise, "a number >= 0")
        self.classes, self.noise = int(classes), float(noise)
        self.output_size = self.classes

    @property
    def seq_len(self):
        return self.gap + 1

    def sample(self, n, rng):
        y = rng.integers(0, self.output_size, size=n)
        x = np.empty((n, self.seq_len, 1), dtype=np.float32)
        x[:, 0, 0] = -1.0 + 2.0 * y / (self.output_size - 1)
        x[:, 1:, 0] = self.noise * rng.standard_normal((n, self.gap))
        return {"x": x, "y": y.astype(np.int64)}
