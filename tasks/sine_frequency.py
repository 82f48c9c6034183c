"""Frequency discrimination of a noisy sine (after the Phased LSTM task of Neil et al. 2016)."""
from __future__ import annotations

import math

import numpy as np

from gapbench.tasks import register
from gapbench.tasks._base import LastStepClassification, check, is_int
from gapbench.tasks._sampling import Sampled, Sampling

FREQUENCIES = (1 / 100, 1 / 4)  # cycles per unit time: periods 4..100, below the unit grid's Nyquist 1/2


@register("sine_frequency")
class SineFrequency(Sampled, LastStepClassification):
    """Classify which frequency band a noisy sine observed over `gap` time units belongs to.

    The range FREQUENCIES is cut into `classes` bands of equal width in log-frequency; a class
    c is drawn uniformly (balanced), then f log-uniform in band c and a phase φ ~ U(0, 2π).
    Input x_t = sin(2π f t + φ) + noise·N(0, 1) at the observation times t (regular: t = 0..gap−1).
    Neil et al. discriminate periods in [5, 6] from the rest of [1, 100]; bands make the classes
    balanced and keep every frequency resolvable on the unit grid. Cross-entropy at the last
    step; baseline ln(classes), chance 1/classes.
    Irregular sampling (tasks/_sampling.py): first observation at t = 0 (cue), the last (query)
    at t = gap − 1, the regular span.
    """

    min_gap = 2

    def __init__(self, gap, *, classes=2, noise=0.1, **sampling_options):
        super().__init__(gap)
        check("sine_frequency", "classes", is_int(classes) and classes >= 2, classes, "an integer >= 2")
        check("sine_frequency", "noise", isinstance(noise, (int, float)) and 0 <= noise < math.inf,
              noise, "a number >= 0")
        self.classes, self.noise = int(classes), float(noise)
        self.output_size = self.classes
        self.sampling = Sampling("sine_frequency", **sampling_options)
        self.input_size = 1 + self.sampling.n_channels
        self.band_edges = np.geomspace(*FREQUENCIES, self.output_size + 1)

    @property
    def seq_len(self):
        return 1 + self.sampling.max_gap_steps(self.gap - 1)

    def sample(self, n, rng):
        timeline = self.sampling.timeline(rng, n, 1, self.gap - 1, 0)
        y = rng.integers(0, self.output_size, size=n)
        log_edges = np.log(self.band_edges)
        frequency = np.exp(rng.uniform(log_edges[y], log_edges[y + 1]))
        phase = rng.uniform(0.0, 2 * np.pi, size=n)
        noise = self.noise * rng.standard_normal(timeline.time.shape)
        signal = np.sin(2 * np.pi * frequency[:, None] * timeline.time + phase[:, None]) + noise
        x = (signal * timeline.observed)[..., None].astype(np.float32)
        return {"x": self.sampling.with_channels(x, timeline), "y": y.astype(np.int64)}
