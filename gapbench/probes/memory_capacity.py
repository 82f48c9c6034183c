"""memory_capacity: Jaeger's short-term memory capacity MC_k per delay k, of any model."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from gapbench.probes._linearisation import float64_states, require_model
from gapbench.probes._numerics import one_thread
from gapbench.probes._registry import probe


@probe("memory_capacity", row_order=["stage", "delay"], order=5)
def memory_capacity(
    model,
    max_delay: int | None = None,
    washout: int = 500,
    train_length: int = 10_000,
    test_length: int = 5000,
    ridge: float = 0.0,
    input_scale: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Jaeger's (2001) short-term memory capacity of the frozen network, per delay.

        x_t = input_scale · u(t) · v,   u(t) ~ U(−1, 1) i.i.d.,   v a seeded unit vector in ℝ^I
        y_k(t) = β_kᵀ z(t) + c_k  (least squares of u(t − k) on the standardised state z(t))
        MC_k = corr²(u(t − k), y_k(t)) on held-out steps,   MC = Σ_{k=0..K} MC_k ≤ H

    One sequence of washout + train_length + test_length steps in float64 from the model's
    initial state (h_0 = 0);
    the washout (raised to max_delay K if shorter; K defaults to 2H) is discarded, readouts fit on the
    next train_length steps, scored on the last test_length. Delays start at 0 because
    h_t already contains u(t) here; with that indexing MC ≤ H for any network, and a stable
    linear network (ρ(W_h) < 1) reaches rank[w, W_h w, …, W_h^(H−1) w], which is H for generic
    w = W_in v when W_h is cyclic (W_h = aI gives 1) (Jaeger 2001;
    Gonon, Grigoryeva & Ortega 2020). The input enters along one direction v so any
    input_size works (it is not the task's input distribution). State units are standardised
    with the training mean and std; the readout is plain least squares, min ||Z β − y||², solved
    through the SVD of Z (no normal equations) with singular values below eps·max(n, H)·σ_max
    treated as zero (numpy's lstsq cut-off: only directions that are rounding noise are
    dropped). The small directions carry the long delays of a contracting linear network
    (u(t − k) enters with weight ~a^k): a ridge penalty drops them, which is why `ridge`
    (min ||Z β − y||² + ridge·n ||β||²) is 0 unless asked for; the held-out split keeps the fit
    honest. Checked against the exact memory capacity of linear networks evaluated in 50-digit
    arithmetic (tests/test_probes_on_baselines.py). Finite data: each MC_k is within ~0.01–0.02
    of its infinite-data value, but the errors add up over delays: MC ± ~0.2 for H = 8–32.
    The sum stops at K = 2H: a network that still remembers at lag 2H (a linear one with
    spectral radius near 1) reads low for that reason alone; only at a = 1 itself does MC
    collapse (the state is then not a stationary function of recent inputs). MC_0, the
    current input, counts here; Jaeger 2001 and reservoir-computing tools start at k = 1:
    propagation_summary reports both (memory_capacity, memory_capacity_from_1).
    mc is NaN where the states overflow (an unstable network).
    Any model: the states regressed on are what the readout sees (observe(s_t), hidden_size
    of them) from the model's own forward (its fast path), in float64; one path for all.
    Columns: delay, mc.
    """
    require_model(model)
    hidden, inputs = model.hidden_size, model.input_size
    max_delay = 2 * hidden if max_delay is None else int(max_delay)
    washout = max(int(washout), max_delay)
    length = washout + train_length + test_length
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(inputs)
    direction /= np.linalg.norm(direction)
    u = rng.uniform(-1.0, 1.0, length)
    x = torch.from_numpy(input_scale * u[:, None] * direction).unsqueeze(0)
    _, states = float64_states(model, x)
    states = states[0, washout:]
    delays = np.arange(max_delay + 1)
    if not torch.isfinite(states).all():
        return pd.DataFrame({"delay": delays, "mc": np.full(delays.size, np.nan)})
    # targets[j, k] = u(t − k) for the state at t = washout + j
    targets = torch.from_numpy(np.stack([u[washout - k: length - k] for k in delays], axis=1))

    train, test = slice(0, train_length), slice(train_length, None)
    mean, std = states[train].mean(0), states[train].std(0, correction=0)
    std[std == 0] = 1.0  # a constant unit (dead ReLU, saturated tanh) contributes nothing
    z = (states - mean) / std
    with one_thread():  # torch, not numpy: numpy's BLAS threads are not under our control
        left, singular, right_t = torch.linalg.svd(z[train], full_matrices=False)
        if ridge > 0:
            shrink = singular / (singular**2 + ridge * train_length)
        else:  # least squares; rounding-noise directions dropped as numpy.linalg.lstsq does
            cutoff = torch.finfo(z.dtype).eps * max(z[train].shape) * singular[0]
            shrink = torch.where(singular > cutoff, 1.0 / singular, torch.zeros_like(singular))
        readout = right_t.T @ (shrink[:, None] * (left.T @ (targets[train] - targets[train].mean(0))))
        prediction = (z[test] @ readout).numpy()
    targets = targets.numpy()
    mc = np.array([_squared_correlation(prediction[:, k], targets[test, k]) for k in delays])
    return pd.DataFrame({"delay": delays, "mc": mc})


def _squared_correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = (a @ a) * (b @ b)
    return float((a @ b) ** 2 / denominator) if denominator > 0 else 0.0
