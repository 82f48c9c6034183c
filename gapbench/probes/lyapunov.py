"""lyapunov: the k largest Lyapunov exponents of the input-driven map, by the QR method."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from gapbench.probes._linearisation import linearisation
from gapbench.probes._numerics import one_thread
from gapbench.probes._registry import probe


@probe("lyapunov", row_order=["stage", "index"], order=4)
def lyapunov(model, x, k: int | None = None, warmup: int | None = None, sequences: int | None = None,
             seed: int = 0, *, method: str = "auto") -> pd.DataFrame:
    """The k largest Lyapunov exponents of the input-driven map s_l = F(s_{l-1}, x_l).

        Q_0 random orthonormal (S×k);   J_l Q_{l-1} = Q_l R_l (QR);
        λ_i^(b) = 1/(T − warmup) Σ_{l ≥ warmup} ln |R_l[i, i]|   along sequence b (Benettin et
                                                     al. 1980; Eckmann & Ruelle 1985)
        λ_i = mean over b of the i-th largest of λ^(b)

    Natural log per step, along each of the first `sequences` sequences of x from the initial
    state (a QR per step and sequence is the cost; exponents are time averages already); each
    sequence's exponents sorted in decreasing order, then averaged index by index: λ_i is the
    mean of the sequences' i-th largest. (At finite T the QR's columns need not come out in
    decreasing order, and a column a singular step annihilated, −inf, is that sequence's own:
    averaged by column first, one sequence's dead column 1 made λ_1 = −inf for the run.) The
    first `warmup` steps (default T/4) only align Q with the dominant directions and let the
    state forget s_0. Σ_{i≤k} λ_i is the mean log growth
    of k-volumes; with k = S (the default: the state size) it is the mean ln|det J_l| =
    dissipation (negative: volumes contract). λ_1 < 0 means perturbations of the state (and
    therefore memories of the input) fade, λ_1 > 0 chaos. Exact values: W_h = aQ, linear →
    all λ_i = ln a at any T (every J_l Q is a times an orthonormal basis). The limits as
    T − warmup grows (the finite-time estimates converge like 1/(T − warmup), as Q aligns with
    the eigen-directions): linear W_h → ln|eigenvalues|; a diagonal complex recurrence
    (state [Re, Im]) → ln|λ_j|, each twice. A ReLU unit that is off makes J_l singular: −inf
    (a |R_l[i, i]| at the QR's rounding level counts as 0: `_resolved`).
    `sequences` defaults to 8 on the analytic path and GENERIC_SEQUENCES["lyapunov"] = 2 on
    the generic one. Generic path: J_l from one batched vjp of the identity rows, then J_l Q
    (cheaper than k = S batched jvps up to S = 128, see _linearisation.Generic); with the QR
    that is ~3 (S×S) products per step and sequence (an LSTM cell at H = 128, S = 256,
    T = 1000, 8 sequences, float64: 35 s either path, the 2-core Intel VM at af71b99, with
    _resolved's norm per step).
    Columns: index (1..k), exponent, cumulative_sum (the last row's is Σλ).
    """
    kind = linearisation(model, method)
    with kind.along(model, kind.first(x, "lyapunov", sequences)) as run:
        batch, steps, size = run.states.shape
        k, warmup, start = _lyapunov_start(size, steps, k, warmup, seed)
        with one_thread():
            basis = torch.linalg.qr(start)[0].expand(batch, size, k)
            log_growth = torch.zeros(batch, k, dtype=torch.float64)
            for l in range(steps):
                grown = run.apply(l, basis)  # J_l Q_{l-1}
                with torch.no_grad():
                    basis, triangular = torch.linalg.qr(grown)
                    if l >= warmup:
                        log_growth += torch.log(_resolved(torch.diagonal(triangular, dim1=-2, dim2=-1).abs(), grown))
    exponents = np.sort((log_growth / (steps - warmup)).numpy(), axis=1)[:, ::-1].mean(0)
    return pd.DataFrame(
        {"index": np.arange(1, k + 1), "exponent": exponents, "cumulative_sum": np.cumsum(exponents)}
    )


# How far above matrix_rank's rule the QR's rounding of an annihilated direction can land:
# measured up to 188 times it, in 0.2-3% of exactly singular steps (12,000 of them, S = 8 to 128),
# while every true stretch lay at least 1e8 times above it (docs/measurements/qr_singular_noise.py)
ROUNDING_MARGIN = 1000.0


def _resolved(stretches, grown):
    """|R_l[i, i]| with those below the QR's rounding set to 0: a direction J_l annihilates (a
    ReLU unit off, J_l singular) comes out of the QR as rounding noise, ~1e-16 · ‖J_l Q‖, not 0,
    and would enter the average as ln 1e-16 ≈ −37 instead of −inf. The threshold
    ROUNDING_MARGIN · max(S, k) · ε · ‖J_l Q_{l−1}‖_F (ε the float64 machine epsilon) is the
    numerical-rank rule of numpy.linalg.matrix_rank (Press et al. 2007, Numerical Recipes, 3rd
    ed., p. 795) with the Frobenius norm in place of σ_max (an upper bound, at most √k times
    σ_max, that costs no decomposition), times a margin: Householder QR's rounding of a singular
    J_l Q was measured up to 188 times the rule itself, which then read a ReLU unit switched off
    as a finite exponent."""
    size, k = grown.shape[-2:]
    resolution = ROUNDING_MARGIN * max(size, k) * torch.finfo(grown.dtype).eps * torch.linalg.matrix_norm(grown)
    return stretches.masked_fill(stretches <= resolution[..., None], 0.0)


def _lyapunov_start(size: int, steps: int, k, warmup, seed: int):
    """(k, warmup, a random S×k start for Q_0) with the defaults filled in and checked."""
    k = size if k is None else int(k)
    warmup = steps // 4 if warmup is None else int(warmup)
    if not 1 <= k <= size or not 0 <= warmup < steps:
        raise ValueError(f"need 1 <= k <= {size} and 0 <= warmup < {steps}, got k={k}, warmup={warmup}")
    # a random start: a basis vector could be orthogonal to the leading direction forever
    return k, warmup, torch.randn(size, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
