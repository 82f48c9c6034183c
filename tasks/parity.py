"""Delayed parity: XOR of two bits `gap` steps apart."""
from __future__ import annotations

import numpy as np

from gapbench.tasks import register
from gapbench.tasks._base import LastStepClassification, check


@register("parity")
class Parity(LastStepClassification):
    """Output the XOR of the bit at step 0 and the bit at step `gap` (the last step).

    Two input channels: the bit as ±1 and a marker, 1 on the two relevant steps; length
    gap + 1. With `distractors`, every other step carries a random ±1 bit (marker 0) that
    must be ignored; without, those steps are zero. Neither bit alone says anything about
    the XOR: cross-entropy at the last step, baseline ln 2, chance 1/2.
    """

    input_size, output_size = 2, 2

    def __init__(self, gap, *, distractors=False):
        super().__init__(gap)
        check("parity", "distractors", isinstance(distractors, bool), distractors, "true or false")
        self.distractors = distractors

    @property
    def seq_len(self):
        return self.gap + 1

    def sample(self, n, rng):
        bits = rng.integers(0, 2, size=(n, self.seq_len))
        x = np.zeros((n, self.seq_len, 2), dtype=np.float32)
        x[:, :, 0] = (2 * bits - 1) if self.distractors else 0.0
        x[:, [0, -1], 0] = 2 * bits[:, [0, -1]] - 1
        x[:, [0, -1], 1] = 1.0
        return {"x": x, "y": (bits[:, 0] ^ bits[:, -1]).astype(np.int64)}
