"""gradient_decay: ||∂L_t/∂s_k|| against the lag t − k, for the full state and the part the readout sees."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from gapbench.probes._linearisation import linearisation
from gapbench.probes._numerics import mean_log10, one_thread, renormalise
from gapbench.probes._registry import probe


@probe("gradient_decay", row_order=["stage", "lag"], order=1, resolution="lag")
def gradient_decay(model, readout, task, x, y, *, method: str = "auto") -> pd.DataFrame:
    """||∂L_t/∂s_k|| for the loss L_t at the task's probe step t and every k ≤ t.

        ∂L_t/∂s_k = ∂L_t/∂s_t · J_t J_{t-1} ⋯ J_{k+1},   J_l = ∂s_l/∂s_{l-1}
        elementwise RNNs: J_l = D_l W_h,  D_l = diag(φ'(a_l))   (Bengio et al. 1994;
                                                                 Pascanu et al. 2013, eq. 5)

    One backward sweep in float64 per probe sequence, renormalised at every step: the
    unit direction is propagated and the log-norm accumulated, so norms far below the
    float64 range (1e-308) are still exact in `log10_grad_norm`. The norm is taken per
    sequence and averaged over the probe batch (arithmetic mean, computed in log space).
    Generic path: g_{k-1} = g_k J_k by one batched vjp per step.

    The observed part: with O_k = ∂observe(s_k)/∂s_k (hidden × state), the part of g_k =
    ∂L_t/∂s_k the readout sees is its orthogonal projection P_k g_k onto the row space of
    O_k; `log10_grad_norm_observed` is log10 ||P_k g_k|| (same renormalisation and batch
    mean). For an observe that selects coordinates (the usual case: LSTM's h of [h, c],
    coRNN's y of [y, z]) it is the norm of g_k restricted to those coordinates; the
    rest of g_k (e.g. the cell state's) reaches L_t only through later steps. For an
    elementwise RNN the readout sees the whole state: the two columns are equal.
    Returns one row per lag = t − k: lag, log10_grad_norm, grad_norm (0 where it underflows,
    inf where it overflows), log10_grad_norm_observed, grad_norm_observed.
    """
    kind = linearisation(model, method)
    t = task.probe_step
    with kind.along(model, x) as run:
        # ∂L_t/∂s_t in the linearisation's thread setting (the generic one's single thread, the
        # analytic one's default), as each path always computed it
        s_t = run.states[:, t].clone().requires_grad_(True)
        readout64 = copy.deepcopy(readout).cpu().double()
        with torch.enable_grad():
            loss = task.probe_loss(readout64(run.observe(s_t)), y.cpu()).sum()  # sum: sequences stay independent
            (g,) = torch.autograd.grad(loss, s_t)
        g = g.detach()
        observed = run.observed

        log_norm = torch.zeros(g.shape[0], dtype=torch.float64)
        rows, observed_rows = np.empty((t + 1, g.shape[0])), np.empty((t + 1, g.shape[0]))
        with one_thread():
            for lag in range(t + 1):
                k = t - lag
                if observed is not None:
                    with torch.no_grad():
                        seen = observed.gradient_norm(g, run.states[:, k])
                        observed_rows[lag] = (log_norm + torch.log(seen)).numpy()
                g = renormalise(g, log_norm)  # log_norm −inf once a ReLU path has cut the gradient exactly
                rows[lag] = log_norm.numpy()
                if k > 0:  # g_{k-1} ∝ g_k J_k
                    (g,) = run.pullback(k, g)
    return _decay_table(rows, rows if observed is None else observed_rows)


def _decay_table(rows: np.ndarray, observed_rows: np.ndarray) -> pd.DataFrame:
    log10, observed = mean_log10(rows), mean_log10(observed_rows)
    # an exploding gradient's norm can pass float64's range (10^308: e.g. an IRNN over thousands of
    # steps); the log10 columns hold it, the linear ones read inf there (and 0 where it underflows)
    with np.errstate(over="ignore"):
        return pd.DataFrame({
            "lag": np.arange(len(rows)), "log10_grad_norm": log10, "grad_norm": np.power(10.0, log10),
            "log10_grad_norm_observed": observed, "grad_norm_observed": np.power(10.0, observed),
        })
