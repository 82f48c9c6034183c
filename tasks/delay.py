"""Delayed recall of a band-limited signal (a delay line: the memory task of reservoir computing)."""
from __future__ import annotations

import math

import numpy as np

from gapbench.tasks import register
from gapbench.tasks._base import Task, check, is_int
from gapbench.tasks._sampling import Sampled, Sampling


def random_signal(times, frequencies, phases):
    """s(t) = sqrt(2/M) Σ_m cos(2π f_m t + φ_m), per row; one component at a time to bound memory."""
    signal = np.zeros(times.shape)
    for m in range(frequencies.shape[1]):
        signal += np.cos(2 * np.pi * frequencies[:, m, None] * times + phases[:, m, None])
    return signal * math.sqrt(2.0 / frequencies.shape[1])


@register("delay")
class Delay(Sampled, Task):
    """Output, at each of the last `outputs` steps, the input signal as it was `gap` time units ago.

    The input is s(t) = sqrt(2/M) Σ_m cos(2π f_m t + φ_m) with M = `components`, f_m ~ U(0,
    `bandwidth`) cycles per unit time and φ_m ~ U(0, 2π) per sequence: band-limited, and with
    E[s(t)] = 0, E[s(t)²] = 1 at every t (the phases are uniform). Length gap + outputs; the
    target at scored step t is s(t − gap). Loss and metric: MSE over the scored steps; predicting
    the mean 0 scores the signal's variance 1, the baseline.
    Irregular sampling (tasks/_sampling.py): the cue is the first observation, the query (the
    first scored step) comes `gap` later, the other scored steps follow. With gap_unit="time"
    the target is the signal at t − gap in continuous time (possibly between observations);
    with gap_unit="steps" it is the input observed `gap` steps earlier.
    """

    metric = "mse"
    output_size = 1

    def __init__(self, gap, *, outputs=10, components=16, bandwidth=0.1, **sampling_options):
        super().__init__(gap)
        check("delay", "outputs", is_int(outputs) and outputs >= 1, outputs, "an integer >= 1")
        check("delay", "components", is_int(components) and components >= 1, components, "an integer >= 1")
        check("delay", "bandwidth", isinstance(bandwidth, (int, float)) and 0 < bandwidth <= 0.5,
              bandwidth, "a frequency in (0, 0.5] cycles per unit time")
        self.outputs, self.components, self.bandwidth = int(outputs), int(components), float(bandwidth)
        self.sampling = Sampling("delay", **sampling_options)
        self.input_size = 1 + self.sampling.n_channels

    @property
    def seq_len(self):
        return self.sampling.max_gap_steps(self.gap) + self.outputs

    @property
    def scored(self):
        return f"last {self.outputs} steps"

    @property
    def baseline(self):
        return 1.0

    @property
    def chance_score(self):
        return self.baseline

    def sample(self, n, rng):
        timeline = self.sampling.timeline(rng, n, 1, self.gap, self.outputs - 1)
        frequencies = rng.uniform(0.0, self.bandwidth, size=(n, self.components))
        phases = rng.uniform(0.0, 2 * np.pi, size=(n, self.components))
        T, K = self.seq_len, self.outputs
        if self.sampling.gap_unit == "steps":  # no padding here: step k − gap exists for every scored k
            targets = timeline.time[:, T - K - self.gap : T - self.gap]
        else:
            targets = timeline.time[:, T - K :] - self.gap
        signal = random_signal(np.concatenate([timeline.time, targets], axis=1), frequencies, phases)
        x = (signal[:, :T] * timeline.observed)[..., None].astype(np.float32)
        return {"x": self.sampling.with_channels(x, timeline), "y": signal[:, T:].astype(np.float32)}

    def loss(self, pred, y):
        return ((pred[:, -self.outputs :, 0] - y) ** 2).mean()

    def score(self, pred, y):
        return self.loss(pred, y)

    def probe_loss(self, pred_t, y):
        return (pred_t[:, 0] - y[:, -1]) ** 2
