"""What every task provides; the training loop and the probes use nothing else."""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from gapbench import tasks
from gapbench.registry import declared_options, option_values

SUCCESS_FRACTION = 0.1
"""A run succeeds when its test loss is below SUCCESS_FRACTION × the task's baseline (a task with
another rule overrides Task.success: adding's hochreiter convention, memory_capacity's score), and
its training did not diverge (gapbench.job's rule, whatever the task)."""


class Task:
    """A seeded generator of (x, y) plus the loss and metric that score a model on it.

    Subclasses set `metric` ("accuracy" or "mse"), `input_size`, `output_size`, `scored`
    (which steps the loss and metric read, in words), and implement `seq_len`, `baseline`,
    `chance_score`, `sample`, `loss`, `score` and `probe_loss`.
    Model outputs reach the task as `pred`: the readout at every step, (batch, time, output_size).
    """

    metric: str
    input_size: int
    output_size: int
    scored: str = "last step"
    min_gap = 1
    version = 2  # bump when the generator changes, so old datasets are not mistaken for new

    def __init__(self, gap: int):
        self.gap = self.checked_gap(gap)

    @classmethod
    def checked_gap(cls, gap) -> int:
        """`gap` as an int, or a ValueError naming the task and the smallest gap it takes."""
        if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < cls.min_gap:
            raise ValueError(
                f"task {cls.registry_name!r}: gap must be an integer >= {cls.min_gap}, got {gap!r}"
            )
        return int(gap)

    def _undefined(self, what: str) -> NotImplementedError:
        """The error of a member every task defines, where a task leaves it out."""
        return NotImplementedError(f"{type(self).__name__} does not define {what} (every task provides it: "
                                   "Task in tasks/_base.py)")

    @property
    def seq_len(self) -> int:
        raise self._undefined("seq_len")

    @property
    def baseline(self) -> float:
        """The loss of the best predictor that ignores the dependency (chance/memoryless)."""
        raise self._undefined("baseline")

    @property
    def chance_score(self) -> float:
        """The metric that predictor reaches."""
        raise self._undefined("chance_score")

    @property
    def probe_step(self) -> int:
        """The step t whose loss L_t the gradient-decay probe differentiates: the last scored step."""
        return self.seq_len - 1

    def params(self) -> dict:
        """The options this instance was built with (recorded next to every dataset, and what
        `tasks.build(registry_name, gap, **params)` takes back): the value of each of
        `recorded_options()`, which a task keeps under the option's own name."""
        return option_values(self, self.recorded_options())

    def recorded_options(self) -> list[str]:
        """The options `params()` records: those the task's registered builder declares, in order."""
        return declared_options(tasks._registry.get(self.registry_name))

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """n sequences: {'x': float32 (n, seq_len, input_size), 'y': targets}."""
        raise self._undefined("sample(n, rng)")

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise self._undefined("loss(pred, y)")

    def score(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise self._undefined("score(pred, y)")

    def probe_loss(self, pred_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sequence loss at `probe_step` from the readout there, shape (batch,)."""
        raise self._undefined("probe_loss(pred_t, y)")

    @property
    def score_label(self) -> str:
        """The test score in words, as the figures label its axis (a task whose score is more
        specific than its metric's name says so here)."""
        return {"accuracy": "test accuracy", "mse": "test MSE"}.get(self.metric, self.metric)

    def success(self, test_loss: float, test_score: float | None = None) -> bool:
        """Solved: test loss below SUCCESS_FRACTION × baseline (tasks with a published criterion override)."""
        return self.below_success_threshold(test_loss)

    def below_success_threshold(self, value: float | None) -> bool:
        """Whether `value` (a loss, or a score on the loss's scale) is finite and below
        SUCCESS_FRACTION × baseline: the shared rule, for a task that applies it to its score."""
        return bool(value is not None and np.isfinite(value) and value < SUCCESS_FRACTION * self.baseline)

    def describe(self) -> dict:
        return {
            "task": self.registry_name,
            "gap": self.gap,
            "params": self.params(),
            "seq_len": self.seq_len,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "metric": self.metric,
            "baseline": self.baseline,
            "chance_score": self.chance_score,
            "probe_step": self.probe_step,
            "scored": self.scored,
            "generator_version": self.version,
        }


class LastStepClassification(Task):
    """One class label per sequence (y: int64 (n,)), read at the last step; chance is uniform.

    Loss: cross-entropy of the last step's readout. The memoryless predictor outputs the
    uniform distribution over balanced classes: loss ln(classes), accuracy 1/classes.
    """

    metric = "accuracy"
    scored = "last step"

    @property
    def baseline(self):
        return math.log(self.output_size)

    @property
    def chance_score(self):
        return 1.0 / self.output_size

    def loss(self, pred, y):
        return F.cross_entropy(pred[:, -1], y)

    def score(self, pred, y):
        return (pred[:, -1].argmax(-1) == y).to(torch.float64).mean()

    def probe_loss(self, pred_t, y):
        return F.cross_entropy(pred_t, y, reduction="none")


class LastStepRegression(Task):
    """One real target per sequence (y: float32 (n,)), read at the last step; loss and metric MSE."""

    metric = "mse"
    scored = "last step"
    output_size = 1

    @property
    def chance_score(self):
        return self.baseline

    def loss(self, pred, y):
        return ((pred[:, -1, 0] - y) ** 2).mean()

    def score(self, pred, y):
        return self.loss(pred, y)

    def probe_loss(self, pred_t, y):
        return (pred_t[:, 0] - y) ** 2


def choice(task: str, name: str, value, allowed) -> str:
    """`value` if it is one of `allowed`, else a ValueError naming the option and the allowed values."""
    if value not in allowed:
        raise ValueError(f"{task}: {name} must be one of {list(allowed)}, got {value!r}")
    return value


def check(task: str, name: str, ok: bool, value, wanted: str) -> None:
    """Raise a ValueError naming the option, what was wanted and what was given, unless `ok`."""
    if not ok:
        raise ValueError(f"{task}: {name} must be {wanted}, got {value!r}")


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
