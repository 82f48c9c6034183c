"""Measurements of how information propagates through an elementwise RNN, backward and forward.

Every probe takes a model of `models/` (h_t = φ(W_h h_{t-1} + u_t), u_t = W_in x_t + b), works
on a float64 CPU copy of it, and returns a tidy DataFrame (one row per observation):

    gradient_decay     ||∂L_t/∂h_k|| against the lag t − k           lag, log10_grad_norm, grad_norm
    jacobian_spectrum  spectra of W_h, D_l, J_l = D_l W_h, ∂h_t/∂h_k  quantity, step, lag, statistic, index, value
    sensitivity        ||∂h_t/∂x_l||_F against the lag t − l         lag, log10_sensitivity
    lyapunov           the k largest Lyapunov exponents (QR method)   index, exponent, cumulative_sum
    memory_capacity    Jaeger's MC_k per delay k                       delay, mc

`fit_decay_rate` and `propagation_summary` reduce tables to numbers; `probe_all` runs
everything a training run records. Index conventions: states[:, l] is h_{l+1} (the
model's output at 0-based step l); D_l = diag(φ'(a_l)) uses that step's output, and J_l = ∂h_l/∂h_{l-1} = D_l W_h (the lecture writes D_{l+1} W_hᵀ for the row-vector form).

All probes run their small batched linear algebra on one thread: 64×64 QR/SVD do not gain
from two threads, and with OpenMP on a loaded 2-core machine they were measured 100–400×
slower (spinning threads fighting the other jobs).
"""
from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import pandas as pd
import torch

from gapbench.engine import activation as get_activation

# log10 of the smallest normal float64 (2.2e-308): below it a plainly computed norm has
# underflowed (to a subnormal or 0), so such points carry no information about the slope.
FLOAT64_LOG10_FLOOR = math.log10(np.finfo(np.float64).tiny)


@contextlib.contextmanager
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _require_elementwise(model):
    if getattr(model, "recurrent_weight", None) is None or getattr(model, "weight_ih", None) is None:
        raise TypeError(
            f"{type(model).__name__} has no recurrent_weight()/weight_ih: the probes need an "
            "elementwise RNN h_t = φ(W_h h_(t-1) + W_in x_t + b) from models/"
        )


@torch.no_grad()
def _float64_states(model, x):
    model64 = copy.deepcopy(model).cpu().double()
    with _one_thread():
        output, _ = model64(x.cpu().double())
    return model64, output


@torch.no_grad()
def _trajectory(model, x):
    """(model64, states (B, T, H), W_h (H, H), slopes φ'(a) (B, T, H)), all float64.

    Slopes are ones for the linear activation, so the probes need no special case for it.
    """
    _require_elementwise(model)
    derivative = get_activation(model.activation).derivative_from_output
    model64, states = _float64_states(model, x)
    weight = model64.recurrent_weight().detach()
    slopes = torch.ones_like(states) if derivative is None else derivative(states)
    return model64, states, weight, slopes


def _logmeanexp(rows: np.ndarray) -> np.ndarray:
    """log(mean_i exp(rows[:, i])) per row, exact for any range of exponents."""
    top = rows.max(axis=1, keepdims=True)
    finite_top = np.where(np.isfinite(top), top, 0.0)
    return (finite_top + np.log(np.exp(rows - finite_top).mean(axis=1, keepdims=True)))[:, 0]


def _mean_log10(log_rows: np.ndarray) -> np.ndarray:
    """log10 of the batch mean of exp(log_rows) (natural logs in, one row per lag)."""
    with np.errstate(divide="ignore"):
        return _logmeanexp(log_rows) / math.log(10.0)


# ----------------------------------------------------------------------------- gradient decay

def gradient_decay(model, readout, task, x, y) -> pd.DataFrame:
    """||∂L_t/∂h_k|| for the loss L_t at the task's probe step t and every k ≤ t.

        ∂L_t/∂h_k = ∂L_t/∂h_t · ∏_{l=k+1..t} J_l,   J_l = ∂h_l/∂h_{l-1} = D_l W_h,
        D_l = diag(φ'(a_l))   (Bengio et al. 1994; Pascanu et al. 2013, eq. 5)

    One backward sweep in float64 per probe sequence, renormalised at every step: the
    unit direction is propagated and the log-norm accumulated, so norms far below the
    float64 range (1e-308) are still exact in `log10_grad_norm`. The norm is taken per
    sequence and averaged over the probe batch (arithmetic mean, computed in log space).
    Returns one row per lag = t − k: lag, log10_grad_norm, grad_norm (0 where it underflows).
    """
    _require_elementwise(model)
    derivative = get_activation(model.activation).derivative_from_output
    model64, states = _float64_states(model, x)
    weight = model64.recurrent_weight().detach()
    t = task.probe_step

    h_t = states[:, t].clone().requires_grad_(True)
    readout64 = copy.deepcopy(readout).cpu().double()
    y = y.cpu()
    with torch.enable_grad():
        loss = task.probe_loss(readout64(h_t), y).sum()  # sum: sequences stay independent
        (g,) = torch.autograd.grad(loss, h_t)
    g = g.detach()

    log_norm = torch.zeros(g.shape[0], dtype=torch.float64)
    rows = np.empty((t + 1, g.shape[0]))
    with _one_thread():
        for lag in range(t + 1):
            norm = g.norm(dim=1)
            log_norm += torch.log(norm)  # -inf once a ReLU path has cut the gradient exactly
            rows[lag] = log_norm.numpy()
            g = g / torch.where(norm > 0, norm, torch.ones_like(norm)).unsqueeze(1)
            k = t - lag
            if k > 0:  # g_{k-1} ∝ g_k D_k W_h: the row-vector form of J_kᵀ g_k
                if derivative is not None:
                    g = g * derivative(states[:, k])
                g = g @ weight

    log10 = _mean_log10(rows)
    return pd.DataFrame(
        {"lag": np.arange(t + 1), "log10_grad_norm": log10, "grad_norm": np.power(10.0, log10)}
    )


def fit_decay_rate(lag, log10_grad_norm, floor: float = FLOAT64_LOG10_FLOOR) -> tuple[float, float]:
    """Exponential decay rate r and half-life of a gradient-norm curve ||g_k|| ≈ C e^(−r (t−k)).

        r = −slope of the least-squares line through (lag, ln ||g||),   half_life = ln 2 / r

    (the per-step decay; the norm bound of Bengio et al. 1994 and Pascanu et al. 2013 gives
    r ≥ −ln(max_l ||D_l|| ||W_h||₂), which the lecture approximates by −ln(ρ(D) ρ(W_h))). Only
    finite points strictly above `floor` (log10 units) are used. The default floor is
    log10 of the smallest normal float64, 2.2e-308: a norm computed plainly (autograd, the
    `grad_norm` column) has underflowed there, and −inf marks a path a ReLU cut exactly.
    `gradient_decay`'s `log10_grad_norm` is exact below it too; pass floor=-inf to use it all.
    r > 0 is decay, r < 0 growth (then half_life = inf); (nan, nan) with < 2 usable lags.
    """
    lag = np.asarray(lag, dtype=np.float64)
    value = np.asarray(log10_grad_norm, dtype=np.float64)
    usable = np.isfinite(lag) & np.isfinite(value) & (value > floor)
    if np.unique(lag[usable]).size < 2:
        return math.nan, math.nan
    slope = np.polyfit(lag[usable], value[usable] * math.log(10.0), 1)[0]
    rate = float(-slope)
    return rate, (math.log(2.0) / rate if rate > 0 else math.inf)


# ------------------------------------------------------------------------- Jacobian spectra

def _where_finite(fn, matrices: torch.Tensor) -> torch.Tensor:
    """fn over a (..., H, H) batch; NaN rows for matrices with a non-finite entry, which LAPACK
    refuses (a diverged run must still get its tables)."""
    finite = torch.isfinite(matrices).all(-1).all(-1)
    if finite.all():
        return fn(matrices)
    out = torch.full(matrices.shape[:-1], math.nan, dtype=torch.float64)
    out[finite] = fn(matrices[finite])
    return out


def _spectrum_rows(matrices: torch.Tensor):
    """(spectral radius, σ_max, σ_min) of each matrix in a (..., H, H) batch."""
    singular = _where_finite(torch.linalg.svdvals, matrices)
    radius = _where_finite(lambda m: torch.linalg.eigvals(m).abs(), matrices).amax(-1)
    return radius, singular[..., 0], singular[..., -1]


def jacobian_spectrum(model, x, lags=None, sequences: int = 4, jacobian_steps: int = 25) -> pd.DataFrame:
    """Spectra of the step Jacobians along the trajectories driven by x, and of their products.

        J_l = ∂h_l/∂h_{l-1} = D_l W_h,   D_l = diag(φ'(a_l)),   ||J_l|| ≤ ||D_l|| ||W_h||
        ∂h_t/∂h_{t-L} = J_t J_{t-1} ⋯ J_{t-L+1}                    (Pascanu et al. 2013)

    Rows (`quantity`, `statistic`):
      W_h      spectral_radius ρ, sigma_max, sigma_min                       (step, lag, index NaN)
      D        spectral_radius, sigma_max, sigma_min at every step l (0-based; lag 1)
      J        the same at `jacobian_steps` evenly spaced steps, first and last included
      product  log10_singular_value for index i = 1..H (descending) of ∂h_t/∂h_{t-L},
               t = the last step, for each lag L in `lags`                    (step = t)
    Only the first `sequences` sequences of x are used (SVDs and eigenvalues of many H×H
    matrices are the costly part); D and J values are means over them, product singular
    values geometric means (mean of log10). D_l is diagonal with φ' ≥ 0, so its singular
    values and |eigenvalues| are the slopes themselves. The product is renormalised every
    step, so its scale is exact at any lag; its direction is a plain float64 product, so
    singular values below ~1e-15 σ_1 are rounding noise. A flat top of the spectrum, all
    σ_i ≈ 1, is dynamical isometry (Pennington et al. 2017); a few large σ_i over a cliff
    means only a few directions of h_{t-L} still reach h_t.
    Default lags: 1, T/4, T/2, T (deduplicated); lags beyond T (down to h_0) are dropped.
    """
    _, states, weight, slopes = _trajectory(model, x[:sequences])
    n, steps, hidden = states.shape
    lags = sorted({max(1, round(steps * f)) for f in (0, 0.25, 0.5, 1.0)} if lags is None else
                  {int(lag) for lag in lags if 1 <= int(lag) <= steps})
    picked = np.unique(np.linspace(0, steps - 1, min(jacobian_steps, steps)).round().astype(int))
    nan = math.nan
    names = ("spectral_radius", "sigma_max", "sigma_min")
    with _one_thread(), torch.no_grad():
        w_stats = [v.item() for v in _spectrum_rows(weight)]
        rows = [("W_h", nan, nan, s, nan, v) for s, v in zip(names, w_stats)]
        d_max, d_min = slopes.amax(-1).mean(0).tolist(), slopes.amin(-1).mean(0).tolist()
        for statistic, values in zip(names, (d_max, d_max, d_min)):
            rows += [("D", l, 1, statistic, nan, v) for l, v in enumerate(values)]
        jacobians = slopes[:, picked].unsqueeze(-1) * weight  # row i of W_h times φ'_i
        for statistic, values in zip(names, _spectrum_rows(jacobians)):
            rows += [("J", l, 1, statistic, nan, v) for l, v in zip(picked.tolist(), values.mean(0).tolist())]

        # ∂h_t/∂h_{t-L} grown one factor at a time from the right: M ← M J_l = (M D_l) W_h
        product = torch.eye(hidden, dtype=torch.float64).expand(n, hidden, hidden).clone()
        log_scale = torch.zeros(n, dtype=torch.float64)
        for lag in range(1, (max(lags) if lags else 0) + 1):
            product = (product * slopes[:, steps - lag].unsqueeze(1)) @ weight
            norm = torch.linalg.matrix_norm(product)
            log_scale += torch.log(norm)
            product /= torch.where(norm > 0, norm, torch.ones_like(norm))[:, None, None]
            if lag in lags:
                singular = _where_finite(torch.linalg.svdvals, product)
                log10_singular = torch.log10(singular) + (log_scale / math.log(10))[:, None]
                rows += [("product", steps - 1, lag, "log10_singular_value", i + 1, v)
                         for i, v in enumerate(log10_singular.mean(0).tolist())]
    return pd.DataFrame(rows, columns=["quantity", "step", "lag", "statistic", "index", "value"])


# ----------------------------------------------------------------------- forward sensitivity

def sensitivity(model, x) -> pd.DataFrame:
    """||∂h_t/∂x_l||_F for the last step t and every l ≤ t (the lecture's memory sensitivity).

        ∂h_t/∂x_l = (∏_{i=l+1..t} J_i) D_l W_in,   J_i = D_i W_h

    One reverse sweep per sequence carries the full H×H propagator M_L = ∂h_t/∂h_{t-L} (all H
    output directions at once, so every lag costs one H×H product instead of a new sweep):
    M_{L+1} = M_L D_{t-L} W_h. M is renormalised every step with its log-norm accumulated,
    so norms far below 1e-308 stay exact; 0 (log −inf) only where a ReLU cut every path.
    Norms are per sequence, averaged over the batch in log space (arithmetic mean, like
    gradient_decay). Returns one row per lag = t − l: lag, log10_sensitivity.
    """
    model64, states, weight, slopes = _trajectory(model, x)
    batch, steps, hidden = states.shape
    weight_in = model64.weight_ih.detach()
    log_rows = np.empty((steps, batch))
    with _one_thread(), torch.no_grad():
        propagator = torch.eye(hidden, dtype=torch.float64).expand(batch, hidden, hidden).clone()
        log_scale = torch.zeros(batch, dtype=torch.float64)
        for lag in range(steps):
            propagator = propagator * slopes[:, steps - 1 - lag].unsqueeze(1)  # M D_l, shared by both products
            log_rows[lag] = (log_scale + torch.log(torch.linalg.matrix_norm(propagator @ weight_in))).numpy()
            propagator = propagator @ weight
            norm = torch.linalg.matrix_norm(propagator)
            log_scale += torch.log(norm)
            propagator /= torch.where(norm > 0, norm, torch.ones_like(norm))[:, None, None]
    return pd.DataFrame({"lag": np.arange(steps), "log10_sensitivity": _mean_log10(log_rows)})


# ------------------------------------------------------------------------ Lyapunov exponents

def lyapunov(model, x, k: int | None = None, warmup: int | None = None, sequences: int = 8,
             seed: int = 0) -> pd.DataFrame:
    """The k largest Lyapunov exponents of the input-driven map h_l = φ(W_h h_{l-1} + u_l).

        Q_0 random orthonormal (H×k);   J_l Q_{l-1} = Q_l R_l (QR);
        λ_i = 1/(T − warmup) Σ_{l ≥ warmup} ln |R_l[i, i]|    (Benettin et al. 1980;
                                                                Eckmann & Ruelle 1985)

    Natural log per step, along each of the first `sequences` sequences of x from h_0 = 0
    (a QR per step and sequence is the cost; exponents are time averages already), averaged,
    sorted in decreasing order. The first `warmup` steps (default T/4) only align Q with the
    dominant directions and let the state forget h_0. Σ_{i≤k} λ_i is the mean log growth
    of k-volumes; with k = H (the default) it is the mean ln|det J_l| = dissipation
    (negative: volumes contract). λ_1 < 0 means perturbations of the state (and therefore
    memories of the input) fade, λ_1 > 0 chaos. Exact values: W_h = aQ, linear → all λ_i =
    ln a; linear W_h → ln|eigenvalues|. A ReLU unit that is off makes J_l singular: −inf.
    Columns: index (1..k), exponent, cumulative_sum (the last row's is Σλ).
    """
    _, states, weight, slopes = _trajectory(model, x[:sequences])
    batch, steps, hidden = states.shape
    k = hidden if k is None else int(k)
    warmup = steps // 4 if warmup is None else int(warmup)
    if not 1 <= k <= hidden or not 0 <= warmup < steps:
        raise ValueError(f"need 1 <= k <= {hidden} and 0 <= warmup < {steps}, got k={k}, warmup={warmup}")
    # a random start: a basis vector could be orthogonal to the leading direction forever
    start = torch.randn(hidden, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with _one_thread(), torch.no_grad():
        basis = torch.linalg.qr(start)[0].expand(batch, hidden, k)
        log_growth = torch.zeros(batch, k, dtype=torch.float64)
        for l in range(steps):
            basis, triangular = torch.linalg.qr(slopes[:, l].unsqueeze(-1) * (weight @ basis))
            if l >= warmup:
                log_growth += torch.log(torch.diagonal(triangular, dim1=-2, dim2=-1).abs())
    exponents = np.sort((log_growth.mean(0) / (steps - warmup)).numpy())[::-1]
    return pd.DataFrame(
        {"index": np.arange(1, k + 1), "exponent": exponents, "cumulative_sum": np.cumsum(exponents)}
    )


# --------------------------------------------------------------------------- memory capacity

def memory_capacity(
    model,
    max_delay: int | None = None,
    washout: int = 500,
    train_length: int = 10_000,
    test_length: int = 5000,
    ridge: float = 1e-10,
    input_scale: float = 1.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Jaeger's (2001) short-term memory capacity of the frozen network, per delay.

        x_t = input_scale · u(t) · v,   u(t) ~ U(−1, 1) i.i.d.,   v a seeded unit vector in ℝ^I
        y_k(t) = β_kᵀ z(t) + c_k  (ridge regression of u(t − k) on the standardised state z(t))
        MC_k = corr²(u(t − k), y_k(t)) on held-out steps,   MC = Σ_{k=0..K} MC_k ≤ H

    One sequence of washout + train_length + test_length steps in float64 from h_0 = 0;
    the washout (raised to max_delay K if shorter; K defaults to 2H) is discarded, readouts fit on the
    next train_length steps, scored on the last test_length. Delays start at 0 because
    h_t already contains u(t) here; with that indexing MC ≤ H for any network, and a linear
    network reaches rank[w, W_h w, …, W_h^(H−1) w] = H for generic w = W_in v (Jaeger 2001;
    Gonon, Grigoryeva & Ortega 2020). The input enters along one direction v so any
    input_size works (it is not the task's input distribution). State units are standardised
    with the training mean and std; the readout solves min ||Z β − y||² + ridge·n ||β||²
    through the SVD of Z (no normal equations), i.e. it drops directions whose share of the
    state correlation matrix is below ~`ridge`. Those are exactly what carries the long
    delays of a contracting linear network (u(t − k) enters with weight ~a^k), so ridge is
    tiny: with 1e-10 a linear aQ network loses delays beyond k ≈ ln(1e-10)/(2 ln a) (≈ 17
    for a = 0.5); nonlinear networks gave the same MC from 1e-8 down to 1e-14. Finite data:
    each MC_k is within ~0.01–0.02 of its infinite-data value (checked against the exact
    linear formula), but the errors add up over delays: MC ± ~0.2 for H = 8–16 and K = 2–5H.
    mc is NaN where the states overflow (an unstable network).
    Columns: delay, mc.
    """
    _require_elementwise(model)
    hidden, inputs = model.hidden_size, model.input_size
    max_delay = 2 * hidden if max_delay is None else int(max_delay)
    washout = max(int(washout), max_delay)
    length = washout + train_length + test_length
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(inputs)
    direction /= np.linalg.norm(direction)
    u = rng.uniform(-1.0, 1.0, length)
    x = torch.from_numpy(input_scale * u[:, None] * direction).unsqueeze(0)
    _, states = _float64_states(model, x)
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
    with _one_thread():  # torch, not numpy: numpy's BLAS threads are not under our control
        left, singular, right_t = torch.linalg.svd(z[train], full_matrices=False)
        shrink = singular / (singular**2 + ridge * train_length)
        readout = right_t.T @ (shrink[:, None] * (left.T @ (targets[train] - targets[train].mean(0))))
        prediction = (z[test] @ readout).numpy()
    targets = targets.numpy()
    mc = np.array([_squared_correlation(prediction[:, k], targets[test, k]) for k in delays])
    return pd.DataFrame({"delay": delays, "mc": mc})


def _squared_correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = (a @ a) * (b @ b)
    return float((a @ b) ** 2 / denominator) if denominator > 0 else 0.0


# ------------------------------------------------------------------------------ summaries

def propagation_summary(decay=None, spectrum=None, lyapunov_table=None, memory=None,
                        floor: float = FLOAT64_LOG10_FLOOR) -> dict:
    """One dict per run (and stage) from the probe tables; NaN for a table not given.

        decay_rate, half_life   fit_decay_rate on gradient_decay's (lag, log10_grad_norm)
        spectral_radius         ρ(W_h) from jacobian_spectrum
        lyapunov_max            λ_1;   lyapunov_sum  Σ_i λ_i (the last cumulative_sum)
        memory_capacity         MC = Σ_k MC_k
    """
    rate, half_life = (math.nan, math.nan) if decay is None else fit_decay_rate(
        decay["lag"], decay["log10_grad_norm"], floor=floor)
    radius = math.nan
    if spectrum is not None:
        pick = spectrum[(spectrum.quantity == "W_h") & (spectrum.statistic == "spectral_radius")]
        radius = float(pick.value.iloc[0])
    return {
        "decay_rate": rate,
        "half_life": half_life,
        "lyapunov_max": math.nan if lyapunov_table is None else float(lyapunov_table.exponent.iloc[0]),
        "lyapunov_sum": math.nan if lyapunov_table is None else float(lyapunov_table.cumulative_sum.iloc[-1]),
        "spectral_radius": radius,
        "memory_capacity": math.nan if memory is None else float(memory.mc.sum(skipna=False)),
    }


def probe_all(model, readout, task, x, y) -> dict:
    """Every probe with its defaults on one probe batch: {name: DataFrame} plus "summary"."""
    tables = {
        "gradient_decay": gradient_decay(model, readout, task, x, y),
        "jacobian_spectrum": jacobian_spectrum(model, x),
        "sensitivity": sensitivity(model, x),
        "lyapunov": lyapunov(model, x),
        "memory_capacity": memory_capacity(model),
    }
    tables["summary"] = propagation_summary(
        tables["gradient_decay"], tables["jacobian_spectrum"], tables["lyapunov"], tables["memory_capacity"])
    return tables
