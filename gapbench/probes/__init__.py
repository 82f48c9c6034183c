"""Measurements of how information propagates through a recurrent model, backward and forward.

Every probe takes a model of `models/` (a `RecurrentModel`: s_t = F(s_{t-1}, x_t) on a flat
real state, the readout seeing observe(s_t)), works on a float64 CPU copy of it, and returns
a tidy DataFrame (one row per observation). One module each:

    gradient_decay     ||∂L_t/∂s_k|| against the lag t − k         lag, log10_grad_norm, grad_norm,
                       (full state, and the part the readout sees)  log10_grad_norm_observed, grad_norm_observed
    jacobian_spectrum  spectra of W_h, D_l, J_l, ∂s_t/∂s_k          quantity, step, lag, statistic, index, value
    sensitivity        ||∂s_t/∂x_l||_F against the lag t − l        lag, log10_sensitivity, log10_sensitivity_observed
    lyapunov           the k largest Lyapunov exponents (QR method) index, exponent, cumulative_sum
    memory_capacity    Jaeger's MC_k per delay k                     delay, mc

The first four are written once against a linearisation of the model along the probe batch
(_linearisation.py): its float64 states and how one step's Jacobian J_l = ∂s_l/∂s_{l-1} is
applied. There are two, and they compute the same tables:
  analytic  elementwise RNNs h_t = φ(W_h h_{t-1} + W_in x_t + b) (models._elementwise.ElementwiseRNN
            whose step and forward are not overridden): J_l = D_l W_h with D_l = diag(φ'(a_l))
            read off the states, one matrix product per step. The tables of these models are
            exactly what they were before the generic path existed (new columns aside).
  generic   any other model, from `step` and `observe` alone: Jacobians by reverse-mode
            automatic differentiation (torch.func.vjp, vmapped over the cotangent rows: a
            whole S×S Jacobian product is one batched vjp per step).
Each of them takes `method` ("auto": analytic where it applies; "analytic"; "generic"). On an
elementwise RNN forced onto the generic path (method="generic") every table agrees with the
analytic one to 1e-10 (tests/test_probes.py), except where the analytic path alone has rows
(D) and the singular values of ∂s_t/∂s_{t-L} far below σ_1, which both paths only know to
their float64 rounding (~L·eps·σ_1/σ_i in log10). memory_capacity regresses on the states of
the model's own forward: one path for every model.

Cost. A generic step costs a vjp through the model's whole step for every one of S rows
per sequence, not one S×S product, so the generic path uses fewer sequences where the
analytic one uses many (GENERIC_SEQUENCES: sensitivity 8 instead of the whole probe batch,
lyapunov 2 instead of 8; jacobian_spectrum keeps 4 and forms J_l only at its 25 picked
steps; gradient_decay pulls back one row per sequence). Measured on one thread, probe batch
32, T = 1000, probe_all with the analytic path's counts → with these: a GRU cell (S = H)
5.6 → 2.7 s at H = 64 and 27 → 8.6 s at H = 128, an LSTM cell (S = 2H) 16 → 5.7 s and
91 → 26 s (600 training steps of batch 64 take 135/314 s with torch.nn.GRU, 74/176 s with
torch.nn.LSTM); the analytic path takes 1.5 s and 8.4 s for the tanh RNN. The sweeps over
all T steps (sensitivity, the ∂s_t/∂s_{t-L} product, Lyapunov's QR) are the cost, linear
in T and ~S³ per step. The first generic probe in a process also pays ~0.6 s of torch.func
start-up. All probes run their small batched linear algebra on one thread (_numerics.one_thread).
Quantities that only exist for some models are missing, not faked: the W_h rows of
jacobian_spectrum are NaN (and the summary's spectral_radius) where recurrent_weight() is
None, and the D (slopes φ') rows exist only on the analytic path.

`fit_decay_rate` and `propagation_summary` (_summary.py) reduce tables to numbers; `probe_all`
runs every registered probe (_registry.py: `PROBES`; `@probe` registers one; `TABLES` gives
their names and row orders, in the order `@probe(..., order=)` sets). Adding a probe is adding
a module here: every module whose name does not start with '_' is imported below, as
gapbench/registry.py does for models and tasks. Each built-in probe's function is re-exported
under its module's name, so gapbench.probes.lyapunov is the function; its module is
sys.modules["gapbench.probes.lyapunov"] (or `from gapbench.probes.lyapunov import ...`).
"""
from __future__ import annotations

import importlib
import pkgutil

from gapbench.probes._linearisation import GENERIC_SEQUENCES, METHODS
from gapbench.probes._registry import PROBES, TABLES, Probe, probe, probe_all
from gapbench.probes._summary import (
    FLOAT64_LOG10_FLOOR,
    RATE_ROUNDING,
    SUMMARY_COLUMNS,
    fit_decay_rate,
    propagation_summary,
)



def _discover():
    """Import every module of the package whose name does not start with '_': each registers
    its probe (`@probe`) when imported."""
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_discover()  # before anything reads TABLES (run storage, the collector, the workflow)

# after the discovery: these names are the functions, not their modules
from gapbench.probes.gradient_decay import gradient_decay  # noqa: E402
from gapbench.probes.jacobian_spectrum import jacobian_spectrum  # noqa: E402
from gapbench.probes.lyapunov import lyapunov  # noqa: E402
from gapbench.probes.memory_capacity import memory_capacity  # noqa: E402
from gapbench.probes.sensitivity import sensitivity  # noqa: E402

__all__ = [
    "FLOAT64_LOG10_FLOOR", "GENERIC_SEQUENCES", "METHODS", "PROBES", "RATE_ROUNDING", "SUMMARY_COLUMNS", "TABLES",
    "Probe", "fit_decay_rate", "gradient_decay", "jacobian_spectrum", "lyapunov", "memory_capacity", "probe",
    "probe_all", "propagation_summary", "sensitivity",
]
