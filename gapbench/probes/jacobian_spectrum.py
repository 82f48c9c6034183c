"""jacobian_spectrum: spectra of W_h, D_l, J_l and of the products ∂s_t/∂s_{t-L}."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from gapbench.probes._linearisation import Linearisation, linearisation
from gapbench.probes._numerics import kept_positions, one_thread, renormalise
from gapbench.probes._registry import probe

_COLUMNS = ["quantity", "step", "lag", "statistic", "index", "value"]
_STATISTICS = ("spectral_radius", "sigma_max", "sigma_min")


@probe("jacobian_spectrum", row_order=["stage", "quantity", "lag", "step", "statistic", "index"], order=2)
def jacobian_spectrum(model, x, lags=None, sequences: int = 4, jacobian_steps: int = 25, *,
                      method: str = "auto") -> pd.DataFrame:
    """Spectra of the step Jacobians along the trajectories driven by x, and of their products.

        J_l = ∂s_l/∂s_{l-1}   (elementwise RNNs: D_l W_h, D_l = diag(φ'(a_l)), ||J_l|| ≤ ||D_l|| ||W_h||)
        ∂s_t/∂s_{t-L} = J_t J_{t-1} ⋯ J_{t-L+1}                    (Pascanu et al. 2013)

    Rows (`quantity`, `statistic`):
      W_h      spectral_radius ρ, sigma_max, sigma_min                       (step, lag, index NaN)
               NaN values where the model has no W_h (recurrent_weight() is None)
      D        spectral_radius, sigma_max, sigma_min at every step l (0-based; lag 1) up to
               LAG_LIMIT, log-spaced steps beyond (kept_positions);
               elementwise RNNs only (the analytic path): other models have no D rows
      J        the same for J_l at `jacobian_steps` evenly spaced steps, first and last included
      product  log10_singular_value for index i = 1..S (descending) of ∂s_t/∂s_{t-L},
               t = the last step, for each lag L in `lags`                    (step = t)
    Only the first `sequences` sequences of x are used (SVDs and eigenvalues of many S×S
    matrices are the costly part); D and J values are means over them, product singular
    values geometric means (mean of log10). D_l is diagonal with φ' ≥ 0, so its singular
    values and |eigenvalues| are the slopes themselves. The product is renormalised every
    step, so its scale is exact at any lag; its direction is a plain float64 product, so
    log10 σ_i carries a rounding error of ~L·eps·σ_1/σ_i (1e-10 at σ_i ≈ 1e-5 σ_1 for
    L ≈ 30) and singular values below ~1e-15 σ_1 are rounding noise. A flat top of the spectrum, all
    σ_i ≈ 1, is dynamical isometry (Pennington et al. 2017); a few large σ_i over a cliff
    means only a few directions of s_{t-L} still reach s_t.
    Default lags: 1, T/4, T/2, T (deduplicated); lags beyond T (down to s_0) are dropped.
    Generic path: J_l at the picked steps from one batched vjp of the identity rows each;
    the product is grown as on the analytic path, M ← M J_l, by one batched vjp of M's S
    rows per step (max(lags) steps), without forming J_l.
    """
    kind = linearisation(model, method)
    nan = math.nan
    with kind.along(model, x[:sequences]) as run:
        n, steps, size = run.states.shape
        lags, picked = _spectrum_steps(steps, lags, jacobian_steps)
        with one_thread():
            with torch.no_grad():
                weight = run.recurrent_weight
                w_stats = [nan] * 3 if weight is None else [v.item() for v in _spectrum_rows(weight)]
                rows = [("W_h", nan, nan, s, nan, v) for s, v in zip(_STATISTICS, w_stats)]
                if run.slopes is not None:
                    d_max, d_min = run.slopes.amax(-1).mean(0).tolist(), run.slopes.amin(-1).mean(0).tolist()
                    kept = set(kept_positions(steps - 1).tolist())  # every step up to LAG_LIMIT, log-spaced beyond
                    for statistic, values in zip(_STATISTICS, (d_max, d_max, d_min)):
                        rows += [("D", l, 1, statistic, nan, v) for l, v in enumerate(values) if l in kept]
            jacobians = torch.stack([run.jacobian(l) for l in picked.tolist()], 1)  # (n, picked, S, S)
            with torch.no_grad():
                for statistic, values in zip(_STATISTICS, _spectrum_rows(jacobians)):
                    rows += [("J", l, 1, statistic, nan, v) for l, v in zip(picked.tolist(), values.mean(0).tolist())]
            rows += _product_rows(run, lags)
    return pd.DataFrame(rows, columns=_COLUMNS)


def _spectrum_steps(steps: int, lags, jacobian_steps: int):
    """(sorted lags within 1..T, the picked steps for the J rows)."""
    lags = sorted({max(1, round(steps * f)) for f in (0, 0.25, 0.5, 1.0)} if lags is None else
                  {int(lag) for lag in lags if 1 <= int(lag) <= steps})
    picked = np.unique(np.linspace(0, steps - 1, min(jacobian_steps, steps)).round().astype(int))
    return lags, picked


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


def _product_rows(run: Linearisation, lags) -> list[tuple]:
    """The `product` rows: log10 singular values of ∂s_t/∂s_{t-L} for each L in lags, t the last
    step, grown one factor at a time from the right, M ← M J_{t-L+1} (the rows of M pulled back
    through that step; analytic: (M D_l) W_h). M is renormalised every step, its log-norm
    accumulated, so the scale stays exact."""
    n, steps, size = run.states.shape
    rows = []
    product = torch.eye(size, dtype=torch.float64).expand(n, size, size).clone()
    log_scale = torch.zeros(n, dtype=torch.float64)
    for lag in range(1, (max(lags) if lags else 0) + 1):
        product = renormalise(run.pullback(steps - lag, product)[0], log_scale)
        if lag in lags:
            with torch.no_grad():
                singular = _where_finite(torch.linalg.svdvals, product)
                log10_singular = torch.log10(singular) + (log_scale / math.log(10))[:, None]
            rows += [("product", steps - 1, lag, "log10_singular_value", i + 1, v)
                     for i, v in enumerate(log10_singular.mean(0).tolist())]
    return rows
