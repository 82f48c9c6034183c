"""Irregular sampling, shared by every task that takes the options `sampling`, `rate`, `keep`,
`gap_unit` and `time_channels` (copy, adding, multiplication, delay, sine_frequency).

The options are defined once, by the keyword-only parameters of `Sampling`. A task takes them by
deriving from `Sampled` and accepting `**sampling_options`, which it hands to `Sampling`; `Sampled`
gives the class a signature listing them one by one (what the registry reports as its options).

Each step of a sequence is one observation. A task lays its sequence out as

    [left padding] [prefix: p steps, the last is the cue] [gap region: g steps, the last is the query] [suffix: s steps]

and the inter-arrival times (spacing between consecutive observations) come from
    regular: 1                                  (the classic tasks; their arrays are unchanged)
    poisson: Exponential, mean 1/rate           (a Poisson process of rate λ = rate)
    thinned: Geometric(keep) on the integer grid (each grid step kept with probability p = keep)
The gap is measured from the cue to the query:
    gap_unit="time":  Δ = t_query − t_cue = span exactly; the step count g varies:
                      regular g = span, thinned g = 1 + Binomial(span−1, p), poisson g = 1 + Poisson(λ·span)
                      (poisson counts are capped at λ·span + 6·sqrt(λ·span) + 6: rows past the cap,
                      probability < 1e-8, are redrawn)
    gap_unit="steps": g = span exactly; Δ varies (the sum of span inter-arrival times)
so both "accuracy vs Δ at fixed λ" and "accuracy vs step count" can be measured.

Sequences of different lengths share one array by LEFT padding with zero inputs, so every
sequence ends at the last step, where the tasks read their answer. The optional time channels,
appended after the task's own inputs so any model consumes them unchanged:
    "dt":   time since the previous observation (0 at the first observation and on padding)
    "mask": 1 on observations, 0 on padding
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np

from gapbench.tasks._base import check, choice

SAMPLINGS = ("regular", "poisson", "thinned")
GAP_UNITS = ("time", "steps")
TIME_CHANNELS = ("dt", "mask")
POISSON_CAP_SDS = 6  # a count past mean + 6 sd + 6 has probability < 1e-8


@dataclass
class Timeline:
    """Observation times of n sequences laid out right-aligned in T = prefix + max_gap + suffix steps."""

    time: np.ndarray  # (n, T) float64, 0 on padding
    dt: np.ndarray  # (n, T) float64, time since the previous observation
    observed: np.ndarray  # (n, T) bool
    start: np.ndarray  # (n,) index of the first observation
    cue: np.ndarray  # (n,) index of the cue (last prefix step)
    query: int  # index of the query, the same in every row: T − suffix − 1
    gap_steps: np.ndarray  # (n,) steps from the cue to the query


class Sampling:
    """The sampling options of one task instance; `timeline` draws the observation times."""

    def __init__(self, task: str, *, sampling="regular", rate=1.0, keep=0.5, gap_unit="time", time_channels=()):
        self.sampling = choice(task, "sampling", sampling, SAMPLINGS)
        self.gap_unit = choice(task, "gap_unit", gap_unit, GAP_UNITS)
        check(task, "rate", isinstance(rate, (int, float)) and 0 < rate < math.inf, rate, "a number > 0")
        check(task, "keep", isinstance(keep, (int, float)) and 0 < keep <= 1, keep, "a number in (0, 1]")
        check(task, "time_channels", isinstance(time_channels, (list, tuple)), time_channels,
              f"a list drawn from {list(TIME_CHANNELS)}")
        for channel in time_channels:
            choice(task, "time_channels entry", channel, TIME_CHANNELS)
        check(task, "time_channels", len(set(time_channels)) == len(time_channels), time_channels, "without repeats")
        self.rate, self.keep, self.time_channels = float(rate), float(keep), tuple(time_channels)

    @property
    def regular(self) -> bool:
        return self.sampling == "regular"

    def require_plain(self, task: str, convention: str, implemented: list[str]) -> None:
        """A ValueError unless sampling is regular and adds no time channels: for a convention whose
        generator lays out its own steps (`implemented`: the task's conventions that take both)."""
        if not self.regular:
            raise ValueError(f"{task}: convention {convention!r} needs sampling 'regular'; "
                             f"irregular sampling is implemented for {implemented}")
        if self.time_channels:
            raise ValueError(f"{task}: convention {convention!r} takes no time_channels (its steps are regular), "
                             f"got {list(self.time_channels)}; time channels are implemented for {implemented}")

    @property
    def n_channels(self) -> int:
        return len(self.time_channels)

    def params(self) -> dict:
        """Only the options that matter for this sampling (what rebuilding the task needs)."""
        params = {"sampling": self.sampling}
        if not self.regular:
            params["gap_unit"] = self.gap_unit
            params.update({"poisson": {"rate": self.rate}, "thinned": {"keep": self.keep}}[self.sampling])
        if self.time_channels:
            params["time_channels"] = list(self.time_channels)
        return params

    def spacings(self, rng: np.random.Generator, shape) -> np.ndarray:
        """Inter-arrival times, float64."""
        if self.sampling == "poisson":
            return rng.exponential(1.0 / self.rate, size=shape)
        if self.sampling == "thinned":
            return rng.geometric(self.keep, size=shape).astype(np.float64)
        return np.ones(shape)

    def max_gap_steps(self, span: int) -> int:
        """The most steps the gap region can take (the width reserved for it in every row)."""
        if self.sampling == "poisson" and self.gap_unit == "time":
            mean = self.rate * span
            return math.ceil(mean + POISSON_CAP_SDS * math.sqrt(mean) + POISSON_CAP_SDS)
        return span

    def _gap_offsets(self, rng, n: int, span: int) -> tuple[np.ndarray, np.ndarray]:
        """Times after the cue of the gap region's observations, left-aligned (n, G); step counts (n,)."""
        if self.gap_unit == "steps" or self.regular:
            return np.cumsum(self.spacings(rng, (n, span)), axis=1), np.full(n, span)
        width = self.max_gap_steps(span)
        offsets = np.cumsum(self.spacings(rng, (n, width)), axis=1)
        # a row whose last arrival is still inside the span has more than `width` steps: redraw it
        while (short := offsets[:, -1] < span).any():
            offsets[short] = np.cumsum(self.spacings(rng, (int(short.sum()), width)), axis=1)
        counts = (offsets < span).sum(axis=1) + 1  # the arrivals strictly inside, then the query
        offsets[np.arange(n), counts - 1] = span  # the query sits exactly span after the cue
        return offsets, counts

    def timeline(self, rng: np.random.Generator, n: int, prefix: int, span: int, suffix: int) -> Timeline:
        """Draw the observation times of n sequences (see the module docstring for the layout)."""
        width = self.max_gap_steps(span)
        offsets, gap_steps = self._gap_offsets(rng, n, span)
        head = np.zeros((n, prefix + width))  # [prefix][gap region], left-aligned, valid prefix + g
        head[:, 1:prefix] = self.spacings(rng, (n, prefix - 1))  # the first observation is at t = 0
        head[:, prefix:] = np.diff(offsets, axis=1, prepend=0.0)
        tail = self.spacings(rng, (n, suffix))
        pad = width - gap_steps
        shifted = np.arange(prefix + width) - pad[:, None]  # right-align each row by its padding
        head = np.where(shifted >= 0, np.take_along_axis(head, np.maximum(shifted, 0), axis=1), 0.0)
        dt = np.concatenate([head, tail], axis=1)
        observed = np.arange(dt.shape[1]) >= pad[:, None]
        return Timeline(
            time=np.cumsum(dt, axis=1), dt=dt, observed=observed, start=pad, cue=pad + prefix - 1,
            query=prefix + width - 1, gap_steps=gap_steps,
        )

    def channels(self, timeline: Timeline) -> np.ndarray:
        """The requested time channels, float32 (n, T, n_channels)."""
        columns = {"dt": timeline.dt, "mask": timeline.observed}
        stacked = [columns[name].astype(np.float32) for name in self.time_channels]
        return np.stack(stacked, axis=-1) if stacked else np.zeros((*timeline.dt.shape, 0), np.float32)

    def with_channels(self, x: np.ndarray, timeline: Timeline) -> np.ndarray:
        """The task's inputs x (n, T, k) followed by the time channels."""
        return np.concatenate([x, self.channels(timeline)], axis=-1) if self.time_channels else x


SAMPLING_OPTIONS = tuple(
    p for p in inspect.signature(Sampling).parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
)
"""The sampling options with their defaults: the keyword-only parameters of `Sampling`, their one definition."""
SAMPLING_NAMES = frozenset(p.name for p in SAMPLING_OPTIONS)


class Sampled:
    """A task, or a builder of tasks, that takes the sampling options.

    Its `__init__` (or `__new__`) takes them as `**sampling_options` and passes them on to
    `Sampling(task_name, **sampling_options)`, stored as `self.sampling`. The class's signature,
    which the registry reads for the options a builder accepts, lists them in place of the
    `**sampling_options`, with their defaults. `params()` records them as `Sampling.params()`
    does: only those that matter for the chosen sampling.
    """

    sampling: Sampling

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__signature__ = None  # read this class's own __init__/__new__, not an inherited signature
        signature = inspect.signature(cls)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        if len(own) == len(signature.parameters):
            raise TypeError(f"{cls.__name__} takes the sampling options: its signature needs **sampling_options")
        cls.__signature__ = signature.replace(parameters=[*own, *SAMPLING_OPTIONS])

    def recorded_options(self) -> list[str]:
        return [name for name in super().recorded_options() if name not in SAMPLING_NAMES]

    def params(self) -> dict:
        return {**super().params(), **self.sampling.params()}
