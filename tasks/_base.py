"""What every task provides; the training loop and the probes use nothing else."""
from __future__ import annotations

import numpy as np
import torch

SUCCESS_FRACTION = 0.1
"""A run succeeds when its test loss is below SUCCESS_FRACTION × the task's baseline."""


class Task:
    """A seeded generator of (x, y) plus the loss and metric that score a model on it.

    Subclasses set `metric` ("accuracy" or "mse"), `input_size`, `output_size`,
    and implement `seq_len`, `baseline`, `sample`, `loss`, `score` and `probe_loss`.
    Model outputs reach the task as `pred`: the readout at every step, (batch, time, output_size).
    """

    metric: str
    input_size: int
    output_size: int
    min_gap = 1
    version = 1  # bump when the generator changes, so old datasets are not mistaken for new

    def __init__(self, gap: int):
        if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < self.min_gap:
            raise ValueError(
                f"task {self.registry_name!r}: gap must be an integer >= {self.min_gap}, got {gap!r}"
            )
        self.gap = int(gap)

    @property
    def seq_len(self) -> int:
        raise NotImplementedError

    @property
    def baseline(self) -> float:
        """The loss of the best predictor that ignores the dependency (chance/memoryless)."""
        raise NotImplementedError

    @property
    def chance_score(self) -> float:
        """The metric that predictor reaches."""
        raise NotImplementedError

    @property
    def probe_step(self) -> int:
        """The step t whose loss L_t the gradient-decay probe differentiates: the last scored step."""
        return self.seq_len - 1

    def params(self) -> dict:
        """The options this instance was built with (recorded next to every dataset)."""
        return {}

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """n sequences: {'x': float32 (n, seq_len, input_size), 'y': targets}."""
        raise NotImplementedError

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def probe_loss(self, pred_t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sequence loss at `probe_step` from the readout there, shape (batch,)."""
        raise NotImplementedError

    def success(self, test_loss: float) -> bool:
        return bool(np.isfinite(test_loss) and test_loss < SUCCESS_FRACTION * self.baseline)

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
            "generator_version": self.version,
        }
