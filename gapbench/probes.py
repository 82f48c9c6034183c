"""Measurements of how gradients propagate back through time."""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch

from gapbench.engine import activation as get_activation


@torch.no_grad()
def _float64_states(model, x):
    model64 = copy.deepcopy(model).cpu().double()
    output, _ = model64(x.cpu().double())
    return model64, output


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
    weight_fn = getattr(model, "recurrent_weight", None)
    if weight_fn is None:
        raise TypeError(f"{type(model).__name__} has no recurrent_weight(): the probe needs an elementwise RNN")
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

    with np.errstate(divide="ignore"):
        mean_log = _logmeanexp(rows)
    log10 = mean_log / math.log(10.0)
    return pd.DataFrame(
        {"lag": np.arange(t + 1), "log10_grad_norm": log10, "grad_norm": np.power(10.0, log10)}
    )


def _logmeanexp(rows: np.ndarray) -> np.ndarray:
    """log(mean_i exp(rows[:, i])) per row, exact for any range of exponents."""
    top = rows.max(axis=1, keepdims=True)
    finite_top = np.where(np.isfinite(top), top, 0.0)
    return (finite_top + np.log(np.exp(rows - finite_top).mean(axis=1, keepdims=True)))[:, 0]
