"""The numerical steps every probe shares: one thread, renormalise-and-accumulate, the batch mean of norms."""
from __future__ import annotations

import contextlib
import math

import numpy as np
import torch


@contextlib.contextmanager
def one_thread():
    """torch on one thread inside, the previous count restored after.

    The probes run their small batched linear algebra here: 64×64 QR/SVD do not gain from two
    threads, and with OpenMP on a loaded 2-core machine they were measured 100–400× slower
    (spinning threads fighting the other jobs)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def renormalise(tensor: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """tensor divided by its norm per sequence, with ln(norm) added to `log_scale` (B,) in place.

        (B, S) rows: the vector norm;   (B, R, S) blocks: the Frobenius norm

    The probes propagate a unit direction and accumulate its log-norm, so norms far below the
    float64 range (1e-308) stay exact. A zero norm (a ReLU path cut exactly) leaves the tensor
    as it is and makes log_scale −inf."""
    norm = tensor.norm(dim=1) if tensor.dim() == 2 else torch.linalg.matrix_norm(tensor)
    log_scale += torch.log(norm)
    divisor = torch.where(norm > 0, norm, torch.ones_like(norm))
    return tensor / divisor.reshape(-1, *[1] * (tensor.dim() - 1))


def _logmeanexp(rows: np.ndarray) -> np.ndarray:
    """log(mean_i exp(rows[:, i])) per row, exact for any range of exponents."""
    top = rows.max(axis=1, keepdims=True)
    finite_top = np.where(np.isfinite(top), top, 0.0)
    return (finite_top + np.log(np.exp(rows - finite_top).mean(axis=1, keepdims=True)))[:, 0]


def mean_log10(log_rows: np.ndarray) -> np.ndarray:
    """log10 of the batch mean of exp(log_rows) (natural logs in, one row per lag, one column
    per sequence): the arithmetic mean of per-sequence norms, computed in log space."""
    with np.errstate(divide="ignore"):
        return _logmeanexp(log_rows) / math.log(10.0)


# The resolution of the per-lag tables as written: every lag up to LAG_LIMIT, LAGS_PER_DECADE
# log-spaced lags per decade beyond it, and the last lag. Fits (propagation_summary) use every
# lag, computed in the job before the tables are cut; T ≤ LAG_LIMIT keeps every lag.
LAG_LIMIT = 256
LAGS_PER_DECADE = 64


def kept_positions(last: int) -> np.ndarray:
    """The lags (or steps) 0..last a table keeps: all up to LAG_LIMIT, then LAGS_PER_DECADE
    log-spaced ones per decade up to `last` (rounded, deduplicated), `last` included."""
    if last <= LAG_LIMIT:
        return np.arange(last + 1)
    count = math.ceil(LAGS_PER_DECADE * math.log10(last / LAG_LIMIT)) + 1
    beyond = np.round(np.geomspace(LAG_LIMIT, last, count)).astype(int)
    return np.union1d(np.arange(LAG_LIMIT + 1), beyond)
