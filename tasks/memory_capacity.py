"""Short-term memory capacity (Jaeger 2001): recall i.i.d. inputs at several delays."""
from __future__ import annotations

import numpy as np

from gapbench.tasks import register
from gapbench.tasks._base import Task, check, is_int


@register("memory_capacity")
class MemoryCapacity(Task):
    """Output u(t − k) for each delay k of a set ending at `gap`, from i.i.d. u(t) ~ U(−1, 1).

    The `delays` (K) delays, kept as `lags`, are k_j = ⌈j·gap/K⌉, j = 1..K (Jaeger's k = 1..K
    when gap = K; the distinct values, i.e. 1..gap, when gap < K), one output unit each. Length
    gap + outputs: the first gap steps are the washout (every target exists after it), the last
    `outputs` steps are scored. Loss: MSE over scored steps and delays. Score: the MSE of the
    largest delay, the gap, alone, and success is that score below SUCCESS_FRACTION × Var(u):
    with the loss's mean over K delays, a network that recalls every shorter delay exactly and
    nothing of the gap's has a loss of exactly SUCCESS_FRACTION × Var(u) at K = 10 (the
    default), so the shared rule (loss below it) was met by chance, on 17 of 40 test sets of
    2048 sequences at gap 30 (docs/measurements/task_shortcuts.py), a gap "solved" without
    memory of it. Predicting the mean 0 scores Var(u) = 1/3 in both, the baseline.
    Jaeger's capacity Σ_k r_k² can be computed from the predictions; 1 − MSE_k / Var(u) is its
    value for a prediction with the optimal scale.
    """

    metric = "mse"
    input_size = 1

    def __init__(self, gap, *, delays=10, outputs=10):
        super().__init__(gap)
        check("memory_capacity", "delays", is_int(delays) and delays >= 1, delays, "an integer >= 1")
        check("memory_capacity", "outputs", is_int(outputs) and outputs >= 1, outputs, "an integer >= 1")
        self.delays, self.outputs = int(delays), int(outputs)
        j = np.arange(1, self.delays + 1)
        self.lags = np.unique(-(-j * self.gap // self.delays))  # the delays k_j (integer ceil)
        self.output_size = len(self.lags)

    @property
    def seq_len(self):
        return self.gap + self.outputs

    @property
    def scored(self):
        return f"last {self.outputs} steps × delays {self.lags.tolist()}"

    @property
    def baseline(self):
        return 1.0 / 3.0

    @property
    def chance_score(self):
        return self.baseline

    def sample(self, n, rng):
        u = rng.uniform(-1.0, 1.0, size=(n, self.seq_len)).astype(np.float32)
        source = self.gap + np.arange(self.outputs)[:, None] - self.lags[None, :]  # (outputs, K)
        return {"x": u[..., None], "y": u[:, source]}

    def loss(self, pred, y):
        return ((pred[:, -self.outputs :] - y) ** 2).mean()

    @property
    def score_label(self):
        return "test MSE at delay = gap"

    def score(self, pred, y):
        # the last delay is the largest, the gap: the recall the gap is about (a mean over
        # sequences and steps, so a split's score is the same in batches of any size)
        return ((pred[:, -self.outputs :, -1] - y[..., -1]) ** 2).mean()

    def success(self, test_loss, test_score=None):
        return self.below_success_threshold(test_score)

    def probe_loss(self, pred_t, y):
        return ((pred_t - y[:, -1]) ** 2).mean(-1)
