"""sensitivity: ||∂s_t/∂x_l||_F against the lag t − l, for the full state and what the readout sees."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from gapbench.probes._linearisation import linearisation
from gapbench.probes._numerics import mean_log10, one_thread, renormalise
from gapbench.probes._registry import probe


@probe("sensitivity", row_order=["stage", "lag"], order=3, resolution="lag")
def sensitivity(model, x, sequences: int | None = None, *, method: str = "auto") -> pd.DataFrame:
    """||∂s_t/∂x_l||_F for the last step t and every l ≤ t (the lecture's memory sensitivity).

        ∂s_t/∂x_l = J_t J_{t-1} ⋯ J_{l+1} ∂s_l/∂x_l   (elementwise RNNs: J_i = D_i W_h, ∂h_l/∂x_l = D_l W_in)

    One reverse sweep per sequence carries the full S×S propagator M_L = ∂s_t/∂s_{t-L} (all S
    output directions at once, so every lag costs one S×S product instead of a new sweep):
    M_{L+1} = M_L J_{t-L}. M is renormalised every step with its log-norm accumulated,
    so norms far below 1e-308 stay exact; 0 (log −inf) only where a ReLU cut every path.
    Norms are per sequence, averaged over the batch in log space (arithmetic mean, like
    gradient_decay). `log10_sensitivity_observed` is the same for what the readout sees,
    ||∂o_t/∂x_l||_F with o_t = observe(s_t) (equal to log10_sensitivity for elementwise
    RNNs). Generic path: one batched vjp of M's rows per step gives both M J_l and
    M ∂s_l/∂x_l; when observe is not a selection of coordinates, the propagator carries H
    more rows, O_t ∂s_t/∂s_{t-L}, each block renormalised on its own. Returns one row per
    lag = t − l: lag, log10_sensitivity, log10_sensitivity_observed.
    Only the first `sequences` sequences of x are used; the default is all of them on the
    analytic path and GENERIC_SEQUENCES["sensitivity"] = 8 on the generic one, where a step
    pulls back S rows per sequence through the model's whole step (an LSTM cell at H = 128,
    S = 256, T = 1000: 50 s for 32 sequences, the cost that dominated probe_all).
    """
    kind = linearisation(model, method)
    with kind.along(model, kind.first(x, "sensitivity", sequences)) as run:
        batch, steps, size = run.states.shape
        observed = run.observed  # None: the readout sees the whole state
        general = observed is not None and observed.index is None  # observe is no selection
        blocks = [slice(0, size)]
        propagator = torch.eye(size, dtype=torch.float64).expand(batch, size, size)
        if general:
            with torch.no_grad():
                readable = observed.rows(run.states[:, -1])
            blocks.append(slice(size, size + readable.shape[1]))
            propagator = torch.cat([propagator, readable], 1)
        propagator = propagator.clone()
        log_scale = torch.zeros(batch, len(blocks), dtype=torch.float64)
        log_rows, observed_rows = np.empty((steps, batch)), np.empty((steps, batch))
        with one_thread():
            for lag in range(steps):
                propagator, through_input = run.pullback(steps - 1 - lag, propagator, inputs=True)
                with torch.no_grad():
                    full = through_input[:, blocks[0]]
                    log_rows[lag] = (log_scale[:, 0] + torch.log(torch.linalg.matrix_norm(full))).numpy()
                    if observed is not None:
                        if general:
                            seen, seen_scale = through_input[:, blocks[1]], log_scale[:, 1]
                        else:
                            seen, seen_scale = full[:, observed.index], log_scale[:, 0]
                        observed_rows[lag] = (seen_scale + torch.log(torch.linalg.matrix_norm(seen))).numpy()
                    for b, block in enumerate(blocks):
                        propagator[:, block] = renormalise(propagator[:, block], log_scale[:, b])
    return pd.DataFrame({"lag": np.arange(steps), "log10_sensitivity": mean_log10(log_rows),
                         "log10_sensitivity_observed": mean_log10(log_rows if observed is None else observed_rows)})
