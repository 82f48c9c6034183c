"""Measurements of how information propagates through a recurrent model, backward and forward.

Every probe takes a model of `models/` (a `RecurrentModel`: s_t = F(s_{t-1}, x_t) on a flat
real state, the readout seeing observe(s_t)), works on a float64 CPU copy of it, and returns
a tidy DataFrame (one row per observation):

    gradient_decay     ||∂L_t/∂s_k|| against the lag t − k         lag, log10_grad_norm, grad_norm,
                       (full state, and the part the readout sees)  log10_grad_norm_observed, grad_norm_observed
    jacobian_spectrum  spectra of W_h, D_l, J_l, ∂s_t/∂s_k          quantity, step, lag, statistic, index, value
    sensitivity        ||∂s_t/∂x_l||_F against the lag t − l        lag, log10_sensitivity, log10_sensitivity_observed
    lyapunov           the k largest Lyapunov exponents (QR method) index, exponent, cumulative_sum
    memory_capacity    Jaeger's MC_k per delay k                     delay, mc

Two paths compute the same tables:
  analytic  elementwise RNNs h_t = φ(W_h h_{t-1} + W_in x_t + b) (models._elementwise.ElementwiseRNN
            whose step and forward are not overridden): J_l = D_l W_h with D_l = diag(φ'(a_l))
            read off the states, one matrix product per step. The tables of these models are
            exactly what they were before the generic path existed (new columns aside).
  generic   any other model, from `step` and `observe` alone: Jacobians by reverse-mode
            automatic differentiation (torch.func.vjp, vmapped over the cotangent rows: a
            whole S×S Jacobian product is one batched vjp per step). Reverse mode only, no
            jvp: every trained model has backward formulas, not all have forward-mode ones,
            and a full Jacobian from one batched vjp followed by J Q was measured cheaper than
            the k = S columns J Q by batched jvp up to S = 128 (GRU cell, 8 sequences, per
            step: 1.1 against 1.5 ms at S = 64, 7.6 against 8.9 ms at S = 128; at S = 256 it
            is 10% dearer, 47 against 43 ms).
On an elementwise RNN forced onto the generic path (method="generic") every table agrees
with the analytic one to 1e-10 (tests/test_probes.py), except where the analytic path alone
has rows (D) and the singular values of ∂s_t/∂s_{t-L} far below σ_1, which both paths only
know to their float64 rounding (~L·eps·σ_1/σ_i in log10).

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
start-up.
Quantities that only exist for some models are missing, not faked: the W_h rows of
jacobian_spectrum are NaN (and the summary's spectral_radius) where recurrent_weight() is
None, and the D (slopes φ') rows exist only on the analytic path.

`fit_decay_rate` and `propagation_summary` reduce tables to numbers; `probe_all` runs every
registered probe (`PROBES`; `@probe` registers one; `TABLES` gives their names and row
orders). Index conventions: states[:, l] is s_{l+1} (the model's state after 0-based step
l); J_l = ∂s_l/∂s_{l-1}, evaluated at step l's input; on the analytic path D_l = diag(φ'(a_l))
uses that step's output and J_l = D_l W_h (the lecture writes D_{l+1} W_hᵀ for the
row-vector form).

All probes run their small batched linear algebra on one thread: 64×64 QR/SVD do not gain
from two threads, and with OpenMP on a loaded 2-core machine they were measured 100–400×
slower (spinning threads fighting the other jobs).
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.nn.utils import parametrize

from gapbench.engine import activation as get_activation
from gapbench.models._elementwise import ElementwiseRNN

# log10 of the smallest normal float64 (2.2e-308): below it a plainly computed norm has
# underflowed (to a subnormal or 0), so such points carry no information about the slope.
FLOAT64_LOG10_FLOOR = math.log10(np.finfo(np.float64).tiny)

# How many of the probe batch's sequences the generic path uses where its default differs
# from the analytic path's (all for sensitivity, 8 for lyapunov): there a step costs a
# batched vjp of S rows per sequence through the whole step, not one S×S product.
GENERIC_SEQUENCES = {"sensitivity": 8, "lyapunov": 2}

# A fitted decay rate whose total change over the curve, |r|·(lag span), is below this
# fraction of the curve's own magnitude max(1, max |ln ||g|| |) is rounding, reported as 0.
RATE_ROUNDING = 1e-12


# ------------------------------------------------------------------------------ the registry

@dataclass(frozen=True)
class Probe:
    """One registered probe table: `function` returns it, `row_order` says how rows sort."""

    name: str
    function: Callable[..., pd.DataFrame]
    row_order: list[str]
    arguments: tuple[str, ...]  # which of probe_all's arguments the function takes


PROBE_ARGUMENTS = ("model", "readout", "task", "x", "y")  # what probe_all can pass, by name
PROBES: dict[str, Probe] = {}
# table name -> the columns its rows are sorted by after the run keys (in the order the
# tables are produced); "stage" is the column job.measure adds (init / trained)
TABLES: dict[str, list[str]] = {}


def probe(name: str, row_order: list[str]):
    """Register a probe table: `@probe("name", row_order=["stage", ...])` over a function
    whose parameters without defaults are among `PROBE_ARGUMENTS` (passed by name; a
    `method` parameter also receives probe_all's). probe_all then runs it with its defaults."""
    def register(function):
        parameters = inspect.signature(function).parameters
        required = [p.name for p in parameters.values()
                    if p.default is inspect.Parameter.empty and p.kind != p.VAR_KEYWORD]
        unknown = [p for p in required if p not in PROBE_ARGUMENTS]
        if unknown:
            raise TypeError(f"probe {name!r}: probe_all cannot pass {unknown}; allowed: {list(PROBE_ARGUMENTS)}")
        if name in PROBES or name == "summary":
            raise ValueError(f"probe table name {name!r} is taken")
        arguments = tuple(p for p in parameters if p in PROBE_ARGUMENTS + ("method",))
        PROBES[name] = Probe(name, function, list(row_order), arguments)
        TABLES[name] = list(row_order)
        return function
    return register


@contextlib.contextmanager
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# --------------------------------------------------------------------------- the two paths

METHODS = ("auto", "analytic", "generic")


def _is_elementwise(model) -> bool:
    """Whether the analytic path describes the model: an ElementwiseRNN whose state update
    is the shared h_t = φ(W_h h_{t-1} + W_in x_t + b) (a subclass that overrides step or
    forward, e.g. a leaky variant, is not)."""
    return (isinstance(model, ElementwiseRNN) and type(model).step is ElementwiseRNN.step
            and type(model).forward is ElementwiseRNN.forward)


def _require_model(model):
    missing = [name for name in ("step", "observe", "initial_state", "unroll")
               if not callable(getattr(model, name, None))]
    if missing or not hasattr(model, "state_size"):
        raise TypeError(
            f"{type(model).__name__} is not a gapbench RecurrentModel (it lacks "
            f"{', '.join(missing) or 'state_size'}): the probes differentiate step(state, x_t) and "
            "read observe(state); elementwise RNNs (recurrent_weight() = W_h) take the analytic path"
        )


def _path(model, method: str) -> str:
    """'analytic' or 'generic' for `method` in METHODS ('auto': analytic where it applies)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {list(METHODS)}")
    if method == "analytic" and not _is_elementwise(model):
        raise TypeError(f"{type(model).__name__} is not an elementwise RNN: only method='generic' applies")
    if method == "auto":
        method = "analytic" if _is_elementwise(model) else "generic"
    if method == "generic":
        _require_model(model)
    return method


def _require_elementwise(model):
    if getattr(model, "recurrent_weight", None) is None or getattr(model, "weight_ih", None) is None:
        raise TypeError(
            f"{type(model).__name__} has no recurrent_weight()/weight_ih: the probes need an "
            "elementwise RNN h_t = φ(W_h h_(t-1) + W_in x_t + b) from models/"
        )


def _float64_copy(model):
    """A float64 CPU copy in eval mode (no dropout in the map being measured); complex
    parameters (a diagonal complex recurrence) become complex128 (Module.double() leaves
    them as they are)."""
    model64 = copy.deepcopy(model).cpu().double().eval()
    return model64._apply(lambda t: t.to(torch.complex128) if t.is_complex() else t)


@torch.no_grad()
def _float64_states(model, x):
    model64 = _float64_copy(model)
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


@dataclass
class _Unrolled:
    """A float64 copy of a model and its trajectory under x, from `step` alone:
    states[:, l] = s_{l+1}, previous[:, l] = s_l (previous[:, 0] = the initial state)."""

    model: torch.nn.Module
    x: torch.Tensor  # (B, T, I)
    states: torch.Tensor  # (B, T, S)
    previous: torch.Tensor  # (B, T, S)

    def pullback(self, l: int, cotangent: torch.Tensor, inputs: bool = False):
        """Cotangent rows c through step l: (c ∂s_l/∂s_{l-1},) or, with inputs, also c ∂s_l/∂x_l.

        cotangent: (B, S), one row per sequence, or (B, R, S), R rows per sequence (one
        vjp, vmapped over the rows). Sequences are independent rows of `step`, so the
        batched vjp is the per-sequence one.
        """
        x_l = self.x[:, l]
        if inputs:
            _, vjp = torch.func.vjp(self.model.step, self.previous[:, l], x_l)
        else:
            _, vjp = torch.func.vjp(lambda state: self.model.step(state, x_l), self.previous[:, l])
        if cotangent.dim() == 2:
            return vjp(cotangent)
        return torch.func.vmap(vjp, in_dims=1, out_dims=1)(cotangent)

    def jacobian(self, l: int) -> torch.Tensor:
        """J_l = ∂s_l/∂s_{l-1} per sequence, (B, S, S): the pullback of the identity rows."""
        batch, size = self.previous.shape[0], self.previous.shape[-1]
        identity = torch.eye(size, dtype=torch.float64).expand(batch, size, size)
        return self.pullback(l, identity)[0]


@contextlib.contextmanager
def _unrolled(model, x):
    """The generic path's setting: one thread, parametrizations (e.g. an orthogonal or
    matrix-exponential W_h) computed once instead of at every step and vjp, and the
    float64 trajectory under x."""
    _require_model(model)
    model64 = _float64_copy(model).requires_grad_(False)  # derivatives in the state only
    x = x.detach().cpu().double()
    with _one_thread(), parametrize.cached():
        with torch.no_grad():
            initial = model64.initial_state(x.shape[0], x)
            _, states = model64.unroll(x, initial)
        previous = torch.cat([initial.unsqueeze(1), states[:, :-1]], 1)
        yield _Unrolled(model64, x, states, previous)


class _Observed:
    """What the readout sees of the state: O(s) = ∂observe(s)/∂s, (hidden, state).

    When observe selects coordinates (O is a fixed 0/1 selection matrix: h of an LSTM's
    [h, c], y of coRNN's [y, z], an elementwise RNN's whole state), `index` holds them;
    otherwise (a general, e.g. linear C s, observe) O is evaluated at each state.
    """

    def __init__(self, model64, states: torch.Tensor):
        def observe_one(state):
            return model64.observe(state.unsqueeze(0)).squeeze(0)

        self._jacobian = torch.func.vmap(torch.func.jacrev(observe_one))
        size = states.shape[-1]
        somewhere = torch.randn(size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        samples = self._jacobian(torch.stack([states[0, 0], states[0, -1], somewhere]))
        first = samples[0]
        selection = (bool((samples == first).all()) and bool(((first == 0) | (first == 1)).all())
                     and bool((first.sum(1) == 1).all()) and bool((first.sum(0) <= 1).all()))
        self.index = first.argmax(1) if selection else None

    def rows(self, states: torch.Tensor) -> torch.Tensor:
        """O at each state of a (B, S) batch: (B, hidden, S)."""
        return self._jacobian(states)

    def gradient_norm(self, g: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """||P g|| per row of g (B, S): P the orthogonal projector onto O's row space."""
        if self.index is not None:
            return g[:, self.index].norm(dim=1)
        _, singular, right = torch.linalg.svd(self.rows(states), full_matrices=False)
        keep = singular > singular[:, :1] * g.shape[-1] * torch.finfo(torch.float64).eps
        return ((right @ g.unsqueeze(-1)).squeeze(-1) * keep).norm(dim=1)


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

@probe("gradient_decay", row_order=["stage", "lag"])
def gradient_decay(model, readout, task, x, y, *, method: str = "auto") -> pd.DataFrame:
    """||∂L_t/∂s_k|| for the loss L_t at the task's probe step t and every k ≤ t.

        ∂L_t/∂s_k = ∂L_t/∂s_t · ∏_{l=k+1..t} J_l,   J_l = ∂s_l/∂s_{l-1}
        elementwise RNNs: J_l = D_l W_h,  D_l = diag(φ'(a_l))   (Bengio et al. 1994;
                                                                 Pascanu et al. 2013, eq. 5)

    One backward sweep in float64 per probe sequence, renormalised at every step: the
    unit direction is propagated and the log-norm accumulated, so norms far below the
    float64 range (1e-308) are still exact in `log10_grad_norm`. The norm is taken per
    sequence and averaged over the probe batch (arithmetic mean, computed in log space).

    The observed part: with O_k = ∂observe(s_k)/∂s_k (hidden × state), the part of g_k =
    ∂L_t/∂s_k the readout sees is its orthogonal projection P_k g_k onto the row space of
    O_k; `log10_grad_norm_observed` is log10 ||P_k g_k|| (same renormalisation and batch
    mean). For an observe that selects coordinates (the usual case: LSTM's h of [h, c],
    coRNN's y of [y, z]) it is the norm of g_k restricted to those coordinates; the
    rest of g_k (e.g. the cell state's) reaches L_t only through later steps. For an
    elementwise RNN the readout sees the whole state: the two columns are equal.
    Returns one row per lag = t − k: lag, log10_grad_norm, grad_norm (0 where it underflows),
    log10_grad_norm_observed, grad_norm_observed.
    """
    if _path(model, method) == "generic":
        return _gradient_decay_generic(model, readout, task, x, y)
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

    return _decay_table(rows, rows)  # the readout sees the whole state


def _decay_table(rows: np.ndarray, observed_rows: np.ndarray) -> pd.DataFrame:
    log10, observed = _mean_log10(rows), _mean_log10(observed_rows)
    return pd.DataFrame({
        "lag": np.arange(len(rows)), "log10_grad_norm": log10, "grad_norm": np.power(10.0, log10),
        "log10_grad_norm_observed": observed, "grad_norm_observed": np.power(10.0, observed),
    })


def _gradient_decay_generic(model, readout, task, x, y) -> pd.DataFrame:
    """gradient_decay from step/observe: g_{k-1} = g_k J_k by one batched vjp per step."""
    t = task.probe_step
    with _unrolled(model, x) as run:
        s_t = run.states[:, t].clone().requires_grad_(True)
        readout64 = copy.deepcopy(readout).cpu().double()
        with torch.enable_grad():
            loss = task.probe_loss(readout64(run.model.observe(s_t)), y.cpu()).sum()
            (g,) = torch.autograd.grad(loss, s_t)
        g = g.detach()
        observed = _Observed(run.model, run.states)

        log_norm = torch.zeros(g.shape[0], dtype=torch.float64)
        rows, observed_rows = np.empty((t + 1, g.shape[0])), np.empty((t + 1, g.shape[0]))
        for lag in range(t + 1):
            k = t - lag
            norm = g.norm(dim=1)
            with torch.no_grad():
                observed_rows[lag] = (log_norm + torch.log(observed.gradient_norm(g, run.states[:, k]))).numpy()
            log_norm += torch.log(norm)  # -inf once a ReLU path has cut the gradient exactly
            rows[lag] = log_norm.numpy()
            g = g / torch.where(norm > 0, norm, torch.ones_like(norm)).unsqueeze(1)
            if k > 0:  # g_{k-1} ∝ g_k ∂s_k/∂s_{k-1}
                (g,) = run.pullback(k, g)
    return _decay_table(rows, observed_rows)


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

    A flat curve (the identity RNN's) fits a rate of ±1e-17 from rounding alone, whose
    ln 2 / r would be a half-life of ~1e16 steps; so a rate whose total change over the
    fitted lags, |r|·(max lag − min lag), is at most RATE_ROUNDING = 1e-12 of the curve's
    magnitude max(1, max |ln ||g|| |) is reported as exactly 0.0, half_life inf. Rounding
    in the accumulated log-norms is ~1e-16 of that magnitude per step (the identity RNN's
    flat curves measured 5e-17 to 6e-16), and real slopes are far above it (the orthogonal
    RNN, whose W_h is orthogonal to float32 precision only, drifts by ~1e-9 per step:
    1.5e-8 to 4e-7 on the same scale).
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


@probe("jacobian_spectrum", row_order=["stage", "quantity", "lag", "step", "statistic", "index"])
def jacobian_spectrum(model, x, lags=None, sequences: int = 4, jacobian_steps: int = 25, *,
                      method: str = "auto") -> pd.DataFrame:
    """Spectra of the step Jacobians along the trajectories driven by x, and of their products.

        J_l = ∂s_l/∂s_{l-1}   (elementwise RNNs: D_l W_h, D_l = diag(φ'(a_l)), ||J_l|| ≤ ||D_l|| ||W_h||)
        ∂s_t/∂s_{t-L} = J_t J_{t-1} ⋯ J_{t-L+1}                    (Pascanu et al. 2013)

    Rows (`quantity`, `statistic`):
      W_h      spectral_radius ρ, sigma_max, sigma_min                       (step, lag, index NaN)
               NaN values where the model has no W_h (recurrent_weight() is None)
      D        spectral_radius, sigma_max, sigma_min at every step l (0-based; lag 1);
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
    if _path(model, method) == "generic":
        return _jacobian_spectrum_generic(model, x[:sequences], lags, jacobian_steps)
    _, states, weight, slopes = _trajectory(model, x[:sequences])
    n, steps, hidden = states.shape
    lags, picked = _spectrum_steps(steps, lags, jacobian_steps)
    nan, names = math.nan, _SPECTRUM_STATISTICS
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
        rows += _product_rows(n, hidden, steps, lags,
                              lambda product, lag: (product * slopes[:, steps - lag].unsqueeze(1)) @ weight)
    return pd.DataFrame(rows, columns=_SPECTRUM_COLUMNS)


def _product_rows(n: int, size: int, steps: int, lags, grow) -> list[tuple]:
    """The `product` rows of jacobian_spectrum: log10 singular values of ∂s_t/∂s_{t-L} for each
    L in lags, t the last step. grow(M, L) multiplies the next factor J_{t-L+1} onto M from the
    right; M is renormalised every step, its log-norm accumulated, so the scale stays exact."""
    rows = []
    product = torch.eye(size, dtype=torch.float64).expand(n, size, size).clone()
    log_scale = torch.zeros(n, dtype=torch.float64)
    for lag in range(1, (max(lags) if lags else 0) + 1):
        product = grow(product, lag)
        norm = torch.linalg.matrix_norm(product)
        log_scale += torch.log(norm)
        product /= torch.where(norm > 0, norm, torch.ones_like(norm))[:, None, None]
        if lag in lags:
            singular = _where_finite(torch.linalg.svdvals, product)
            log10_singular = torch.log10(singular) + (log_scale / math.log(10))[:, None]
            rows += [("product", steps - 1, lag, "log10_singular_value", i + 1, v)
                     for i, v in enumerate(log10_singular.mean(0).tolist())]
    return rows


_SPECTRUM_COLUMNS = ["quantity", "step", "lag", "statistic", "index", "value"]
_SPECTRUM_STATISTICS = ("spectral_radius", "sigma_max", "sigma_min")


def _spectrum_steps(steps: int, lags, jacobian_steps: int):
    """(sorted lags within 1..T, the picked steps for the J rows)."""
    lags = sorted({max(1, round(steps * f)) for f in (0, 0.25, 0.5, 1.0)} if lags is None else
                  {int(lag) for lag in lags if 1 <= int(lag) <= steps})
    picked = np.unique(np.linspace(0, steps - 1, min(jacobian_steps, steps)).round().astype(int))
    return lags, picked


def _jacobian_spectrum_generic(model, x, lags, jacobian_steps) -> pd.DataFrame:
    nan, names = math.nan, _SPECTRUM_STATISTICS
    with _unrolled(model, x) as run:
        n, steps, size = run.states.shape
        lags, picked = _spectrum_steps(steps, lags, jacobian_steps)
        with torch.no_grad():
            weight = run.model.recurrent_weight()
            w_stats = [nan] * 3 if weight is None else [v.item() for v in _spectrum_rows(weight.detach())]
        rows = [("W_h", nan, nan, s, nan, v) for s, v in zip(names, w_stats)]
        jacobians = torch.stack([run.jacobian(l) for l in picked.tolist()], 1)  # (n, picked, S, S)
        for statistic, values in zip(names, _spectrum_rows(jacobians)):
            rows += [("J", l, 1, statistic, nan, v) for l, v in zip(picked.tolist(), values.mean(0).tolist())]

        # ∂s_t/∂s_{t-L} grown one factor at a time from the right: M ← M J_l (rows of M pulled back)
        rows += _product_rows(n, size, steps, lags, lambda product, lag: run.pullback(steps - lag, product)[0])
    return pd.DataFrame(rows, columns=_SPECTRUM_COLUMNS)


# ----------------------------------------------------------------------- forward sensitivity

@probe("sensitivity", row_order=["stage", "lag"])
def sensitivity(model, x, sequences: int | None = None, *, method: str = "auto") -> pd.DataFrame:
    """||∂s_t/∂x_l||_F for the last step t and every l ≤ t (the lecture's memory sensitivity).

        ∂s_t/∂x_l = (∏_{i=l+1..t} J_i) ∂s_l/∂x_l   (elementwise RNNs: J_i = D_i W_h, ∂h_l/∂x_l = D_l W_in)

    One reverse sweep per sequence carries the full S×S propagator M_L = ∂s_t/∂s_{t-L} (all S
    output directions at once, so every lag costs one S×S product instead of a new sweep):
    M_{L+1} = M_L J_{t-L}. M is renormalised every step with its log-norm accumulated,
    so norms far below 1e-308 stay exact; 0 (log −inf) only where a ReLU cut every path.
    Norms are per sequence, averaged over the batch in log space (arithmetic mean, like
    gradient_decay). `log10_sensitivity_observed` is the same for what the readout sees,
    ||∂o_t/∂x_l||_F with o_t = observe(s_t) (equal to log10_sensitivity for elementwise
    RNNs). Generic path: one batched vjp of M's rows per step gives both M J_l and
    M ∂s_l/∂x_l. Returns one row per lag = t − l: lag, log10_sensitivity,
    log10_sensitivity_observed.
    Only the first `sequences` sequences of x are used; the default is all of them on the
    analytic path and GENERIC_SEQUENCES["sensitivity"] = 8 on the generic one, where a step
    pulls back S rows per sequence through the model's whole step (an LSTM cell at H = 128,
    S = 256, T = 1000: 50 s for 32 sequences, the cost that dominated probe_all).
    """
    path = _path(model, method)
    if sequences is None and path == "generic":
        sequences = GENERIC_SEQUENCES["sensitivity"]
    x = x if sequences is None else x[:sequences]
    if path == "generic":
        return _sensitivity_generic(model, x)
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
    return _sensitivity_table(log_rows, log_rows)  # the readout sees the whole state


def _sensitivity_table(log_rows: np.ndarray, observed_rows: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"lag": np.arange(len(log_rows)), "log10_sensitivity": _mean_log10(log_rows),
                         "log10_sensitivity_observed": _mean_log10(observed_rows)})


def _sensitivity_generic(model, x) -> pd.DataFrame:
    """Rows of the propagator: the S of ∂s_t/∂s_{t-L}, and when observe is not a selection of
    coordinates H more, O_t ∂s_t/∂s_{t-L}; each block renormalised on its own."""
    with _unrolled(model, x) as run:
        batch, steps, size = run.states.shape
        observed = _Observed(run.model, run.states)
        blocks = [slice(0, size)]
        propagator = torch.eye(size, dtype=torch.float64).expand(batch, size, size)
        if observed.index is None:
            with torch.no_grad():
                readable = observed.rows(run.states[:, -1])
            blocks.append(slice(size, size + readable.shape[1]))
            propagator = torch.cat([propagator, readable], 1)
        propagator = propagator.clone()
        log_scale = torch.zeros(batch, len(blocks), dtype=torch.float64)
        log_rows, observed_rows = np.empty((steps, batch)), np.empty((steps, batch))
        for lag in range(steps):
            propagator, through_input = run.pullback(steps - 1 - lag, propagator, inputs=True)
            with torch.no_grad():
                full = through_input[:, blocks[0]]
                if observed.index is None:
                    seen, seen_scale = through_input[:, blocks[1]], log_scale[:, 1]
                else:
                    seen, seen_scale = full[:, observed.index], log_scale[:, 0]
                log_rows[lag] = (log_scale[:, 0] + torch.log(torch.linalg.matrix_norm(full))).numpy()
                observed_rows[lag] = (seen_scale + torch.log(torch.linalg.matrix_norm(seen))).numpy()
                for b, block in enumerate(blocks):
                    norm = torch.linalg.matrix_norm(propagator[:, block])
                    log_scale[:, b] += torch.log(norm)
                    propagator[:, block] /= torch.where(norm > 0, norm, torch.ones_like(norm))[:, None, None]
    return _sensitivity_table(log_rows, observed_rows)


# ------------------------------------------------------------------------ Lyapunov exponents

@probe("lyapunov", row_order=["stage", "index"])
def lyapunov(model, x, k: int | None = None, warmup: int | None = None, sequences: int | None = None,
             seed: int = 0, *, method: str = "auto") -> pd.DataFrame:
    """The k largest Lyapunov exponents of the input-driven map s_l = F(s_{l-1}, x_l).

        Q_0 random orthonormal (S×k);   J_l Q_{l-1} = Q_l R_l (QR);
        λ_i = 1/(T − warmup) Σ_{l ≥ warmup} ln |R_l[i, i]|    (Benettin et al. 1980;
                                                                Eckmann & Ruelle 1985)

    Natural log per step, along each of the first `sequences` sequences of x from the initial
    state (a QR per step and sequence is the cost; exponents are time averages already), averaged,
    sorted in decreasing order. The first `warmup` steps (default T/4) only align Q with the
    dominant directions and let the state forget s_0. Σ_{i≤k} λ_i is the mean log growth
    of k-volumes; with k = S (the default: the state size) it is the mean ln|det J_l| =
    dissipation (negative: volumes contract). λ_1 < 0 means perturbations of the state (and
    therefore memories of the input) fade, λ_1 > 0 chaos. Exact values: W_h = aQ, linear →
    all λ_i = ln a; linear W_h → ln|eigenvalues|; a diagonal complex recurrence (state
    [Re, Im]) → ln|λ_j|, each twice. A ReLU unit that is off makes J_l singular: −inf.
    `sequences` defaults to 8 on the analytic path and GENERIC_SEQUENCES["lyapunov"] = 2 on
    the generic one. Generic path: J_l from one batched vjp of the identity rows, then J_l Q
    (cheaper than k = S batched jvps up to S = 128, see the module docstring); with the QR
    that is ~3 (S×S) products per step and sequence (an LSTM cell at H = 128, S = 256,
    T = 1000: 33 s for 8 sequences).
    Columns: index (1..k), exponent, cumulative_sum (the last row's is Σλ).
    """
    if _path(model, method) == "generic":
        sequences = GENERIC_SEQUENCES["lyapunov"] if sequences is None else sequences
        return _lyapunov_generic(model, x[:sequences], k, warmup, seed)
    sequences = 8 if sequences is None else sequences
    _, states, weight, slopes = _trajectory(model, x[:sequences])
    batch, steps, hidden = states.shape
    k, warmup, start = _lyapunov_start(hidden, steps, k, warmup, seed)
    with _one_thread(), torch.no_grad():
        basis = torch.linalg.qr(start)[0].expand(batch, hidden, k)
        log_growth = torch.zeros(batch, k, dtype=torch.float64)
        for l in range(steps):
            basis, triangular = torch.linalg.qr(slopes[:, l].unsqueeze(-1) * (weight @ basis))
            if l >= warmup:
                log_growth += torch.log(torch.diagonal(triangular, dim1=-2, dim2=-1).abs())
    return _lyapunov_table(log_growth, steps - warmup)


def _lyapunov_start(size: int, steps: int, k, warmup, seed: int):
    """(k, warmup, a random S×k start for Q_0) with the defaults filled in and checked."""
    k = size if k is None else int(k)
    warmup = steps // 4 if warmup is None else int(warmup)
    if not 1 <= k <= size or not 0 <= warmup < steps:
        raise ValueError(f"need 1 <= k <= {size} and 0 <= warmup < {steps}, got k={k}, warmup={warmup}")
    # a random start: a basis vector could be orthogonal to the leading direction forever
    return k, warmup, torch.randn(size, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _lyapunov_table(log_growth: torch.Tensor, averaged_steps: int) -> pd.DataFrame:
    exponents = np.sort((log_growth.mean(0) / averaged_steps).numpy())[::-1]
    k = len(exponents)
    return pd.DataFrame(
        {"index": np.arange(1, k + 1), "exponent": exponents, "cumulative_sum": np.cumsum(exponents)}
    )


def _lyapunov_generic(model, x, k, warmup, seed) -> pd.DataFrame:
    with _unrolled(model, x) as run:
        batch, steps, size = run.states.shape
        k, warmup, start = _lyapunov_start(size, steps, k, warmup, seed)
        basis = torch.linalg.qr(start)[0].expand(batch, size, k)
        log_growth = torch.zeros(batch, k, dtype=torch.float64)
        for l in range(steps):
            jacobian = run.jacobian(l)
            with torch.no_grad():
                basis, triangular = torch.linalg.qr(jacobian @ basis)
                if l >= warmup:
                    log_growth += torch.log(torch.diagonal(triangular, dim1=-2, dim2=-1).abs())
    return _lyapunov_table(log_growth, steps - warmup)


# --------------------------------------------------------------------------- memory capacity

@probe("memory_capacity", row_order=["stage", "delay"])
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
    h_t already contains u(t) here; with that indexing MC ≤ H for any network, and a linear
    network reaches rank[w, W_h w, …, W_h^(H−1) w] = H for generic w = W_in v (Jaeger 2001;
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
    if not _is_elementwise(model):
        _require_model(model)
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


# ------------------------------------------------------------------------------ summaries

# the keys of propagation_summary's dict, in its order (the summary table's columns after
# the run keys and stage)
SUMMARY_COLUMNS = ["decay_rate", "half_life", "lyapunov_max", "lyapunov_sum", "spectral_radius", "memory_capacity",
                   "memory_capacity_from_1"]


def propagation_summary(decay=None, spectrum=None, lyapunov_table=None, memory=None,
                        floor: float = FLOAT64_LOG10_FLOOR) -> dict:
    """One dict per run (and stage) from the probe tables; NaN for a table not given.

        decay_rate, half_life   fit_decay_rate on gradient_decay's (lag, log10_grad_norm)
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
        rate,
        half_life,
        math.nan if lyapunov_table is None else float(lyapunov_table.exponent.iloc[0]),
        math.nan if lyapunov_table is None else float(lyapunov_table.cumulative_sum.iloc[-1]),
        radius,
        math.nan if memory is None else float(memory.mc.sum(skipna=False)),
        math.nan if memory is None else float(memory.mc[memory.delay >= 1].sum(skipna=False)),
    )
    return dict(zip(SUMMARY_COLUMNS, values))


def probe_all(model, readout, task, x, y, *, method: str = "auto") -> dict:
    """Every registered probe (PROBES, in TABLES order) with its defaults on one probe batch:
    {name: DataFrame} plus "summary" (propagation_summary's dict, keys SUMMARY_COLUMNS).

    method: "auto" (the analytic path for elementwise RNNs, the generic one otherwise),
    "analytic" or "generic", passed to every probe that takes it.
    """
    available = {"model": model, "readout": readout, "task": task, "x": x, "y": y, "method": method}
    tables = {name: entry.function(**{a: available[a] for a in entry.arguments})
              for name, entry in PROBES.items()}
    tables["summary"] = propagation_summary(
        tables.get("gradient_decay"), tables.get("jacobian_spectrum"), tables.get("lyapunov"),
        tables.get("memory_capacity"))
    return tables
