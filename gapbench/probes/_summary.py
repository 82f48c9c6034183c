"""Numbers per run from the probe tables: fit_decay_rate and propagation_summary."""
from __future__ import annotations

import math

import numpy as np

# log10 of the smallest normal float64 (2.2e-308): below it a plainly computed norm has
# underflowed (to a subnormal or 0), so such points carry no information about the slope.
FLOAT64_LOG10_FLOOR = math.log10(np.finfo(np.float64).tiny)

# A fitted decay rate whose total change over the curve, |r|·(lag span), is below this
# fraction of the curve's own magnitude max(1, max |ln ||g|| |) is rounding, reported as 0.
RATE_ROUNDING = 1e-12

# the keys of propagation_summary's dict, in its order (the summary table's columns after
# the run keys and stage). Gradient decay is in the unit every table, figure and doc uses: log10
# per step, negative when decaying (the slope of gradient_decay's log10_grad_norm against lag),
# and its half-life in steps; the Lyapunov exponents are in ln per step, as they are defined.
SUMMARY_COLUMNS = ["decay_log10_per_step", "half_life_steps", "lyapunov_max", "lyapunov_sum", "spectral_radius",
                   "memory_capacity", "memory_capacity_from_1"]


def fit_decay_rate(lag, log10_grad_norm, floor: float = FLOAT64_LOG10_FLOOR) -> tuple[float, float]:
    """Exponential decay rate r (ln per step) and half-life (steps) of a gradient-norm curve
    ||g_k|| ≈ C e^(−r (t−k)); the tables report it as −r / ln 10, log10 per step
    (`propagation_summary`).

        r = −slope of the least-squares line through (lag, ln ||g||),   half_life = ln 2 / r

    (the per-step decay; the norm bound of Bengio et al. 1994 and Pascanu et al. 2013 gives
    r ≥ −ln(max_l ||D_l|| ||W_h||₂), which the lecture approximates by −ln(ρ(D) ρ(W_h))). Only
    finite points strictly above `floor` (log10 units) are used. The default floor is
    log10 of the smallest normal float64, 2.2e-308: a norm computed plainly (autograd, the
    `grad_norm` column) has underflowed there, and −inf marks a path a ReLU cut exactly.
    `gradient_decay`'s `log10_grad_norm` is exact below it too; pass floor=-inf to use it all.
    r > 0 is decay, r < 0 growth (then half_life = inf); (nan, nan) with < 2 usable lags.

    A flat curve (the identity RNN's) fits a rate of ±1e-17 from rounding alone, whose
    ln 2 / r would be a half-life of ~1e16 steps; so a rate whose total change over the
    fitted lags, |r|·(max lag − min lag), is at most RATE_ROUNDING = 1e-12 of the curve's
    magnitude max(1, max |ln ||g|| |) is reported as exactly 0.0, half_life inf. Rounding
    in the accumulated log-norms is ~1e-16 of that magnitude per step, and real slopes are far
    above it: in the default grid (eccb4d2, docs/probes.md) the identity RNN's flat curves
    measured 4e-19 to 8e-16 on that scale, the orthogonal RNN's (its W_h orthogonal to float32
    precision only: a drift of ~1e-9 log10 per step) 5e-9 to 3e-6.
    """
    lag = np.asarray(lag, dtype=np.float64)
    value = np.asarray(log10_grad_norm, dtype=np.float64)
    usable = np.isfinite(lag) & np.isfinite(value) & (value > floor)
    if np.unique(lag[usable]).size < 2:
        return math.nan, math.nan
    log_norm = value[usable] * math.log(10.0)
    slope = np.polyfit(lag[usable], log_norm, 1)[0]
    rate = float(-slope)
    span = np.ptp(lag[usable])
    if abs(rate) * span <= RATE_ROUNDING * max(1.0, float(np.abs(log_norm).max())):
        return 0.0, math.inf
    return rate, (math.log(2.0) / rate if rate > 0 else math.inf)


def propagation_summary(decay=None, spectrum=None, lyapunov_table=None, memory=None,
                        floor: float = FLOAT64_LOG10_FLOOR) -> dict:
    """One dict per run (and stage) from the probe tables; NaN for a table not given.

        decay_log10_per_step    −r / ln 10 for fit_decay_rate's r on gradient_decay's (lag,
                                log10_grad_norm): the fitted slope of log10 ||g|| per step,
                                negative when the gradient decays, 0 when it does not
        half_life_steps         ln 2 / r = −log10 2 / decay_log10_per_step (∞ without decay)
        spectral_radius         ρ(W_h) from jacobian_spectrum (NaN for a model without W_h)
        lyapunov_max            λ_1;   lyapunov_sum  Σ_i λ_i (the last cumulative_sum)
        memory_capacity         MC = Σ_{k≥0} MC_k (h_t already holds u(t))
        memory_capacity_from_1  Σ_{k≥1} MC_k, as Jaeger 2001 and reservoir-computing tools count it
    Keys: SUMMARY_COLUMNS, in that order.
    """
    rate, half_life = (math.nan, math.nan) if decay is None else fit_decay_rate(
        decay["lag"], decay["log10_grad_norm"], floor=floor)
    radius = math.nan
    if spectrum is not None:
        pick = spectrum[(spectrum.quantity == "W_h") & (spectrum.statistic == "spectral_radius")]
        radius = float(pick.value.iloc[0]) if len(pick) else math.nan
    values = (
        -rate / math.log(10.0) + 0.0,  # + 0.0: no "-0.0" for a flat curve
        half_life,
        math.nan if lyapunov_table is None else float(lyapunov_table.exponent.iloc[0]),
        math.nan if lyapunov_table is None else float(lyapunov_table.cumulative_sum.iloc[-1]),
        radius,
        math.nan if memory is None else float(memory.mc.sum(skipna=False)),
        math.nan if memory is None else float(memory.mc[memory.delay >= 1].sum(skipna=False)),
    )
    return dict(zip(SUMMARY_COLUMNS, values))
