"""The propagation probes against autograd and against the analytic cases of the lecture."""
import math
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import gapbench.probes as probes_package
from gapbench import models
from gapbench import tasks
from gapbench.models import RecurrentModel
from gapbench.probes._numerics import LAG_LIMIT, kept_positions
from gapbench.probes import (
    GENERIC_SEQUENCES,
    PROBES,
    SUMMARY_COLUMNS,
    TABLES,
    fit_decay_rate,
    gradient_decay,
    jacobian_spectrum,
    lyapunov,
    memory_capacity,
    probe,
    probe_all,
    propagation_summary,
    sensitivity,
)


def _setup(model_name, gap=6, hidden=8, **options):
    torch.manual_seed(0)
    task = tasks.build("copy", gap)
    batch = task.sample(5, np.random.default_rng(0))
    model = models.build(model_name, task.input_size, hidden, **options)
    readout = torch.nn.Linear(hidden, task.output_size)
    return task, model, readout, torch.from_numpy(batch["x"]), torch.from_numpy(batch["y"])


def _with_recurrent_weight(model, weight):
    """The model in float64 with W_h set exactly (float32 would leave ~1e-7 errors)."""
    model = model.double()
    with torch.no_grad():
        model.weight_hh.copy_(weight)
    return model


def _random_orthogonal(hidden, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(hidden, hidden, generator=generator, dtype=torch.float64))[0]


def _scaled_orthogonal(a, hidden=8, inputs=3, name="linear", seed=0):
    """W_h = aQ, Q orthogonal: J_l = aQ for the linear φ, so every norm scales exactly as a^lag."""
    torch.manual_seed(seed)
    return _with_recurrent_weight(models.build(name, inputs, hidden), a * _random_orthogonal(hidden, seed))


def _inputs(batch, steps, inputs=3, seed=0):
    return torch.randn(batch, steps, inputs, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------ gradient decay

@pytest.mark.parametrize("name", ["vanilla", "linear", "irnn", "orthogonal"])
def test_matches_autograd_with_retained_gradients(name):
    task, model, readout, x, y = _setup(name)
    model, readout = model.double(), readout.double()
    u = torch.nn.functional.linear(x.double(), model.weight_ih, model.bias)
    weight = model.recurrent_weight().detach()
    phi = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda a: a}[model.activation]
    h, states = torch.zeros(5, 8, dtype=torch.float64), []
    for t in range(task.seq_len):
        h = phi(h @ weight.t() + u[:, t])
        h.retain_grad()
        states.append(h)
    task.probe_loss(readout(states[task.probe_step]), y).sum().backward()
    t = task.probe_step
    expected = [np.log10(states[t - lag].grad.norm(dim=1).mean().item()) for lag in range(t + 1)]
    table = gradient_decay(model, readout, task, x, y)
    assert list(table.lag) == list(range(t + 1))
    np.testing.assert_allclose(table.log10_grad_norm, expected, atol=1e-9)


def test_identity_model_gradient_is_exactly_flat():
    task, model, readout, x, y = _setup("identity", gap=200)
    table = gradient_decay(model, readout, task, x, y)
    assert np.ptp(table.log10_grad_norm) < 1e-12
    # the fitted ±1e-17 is rounding: reported as exactly flat, not as a half-life of 1e16 steps
    assert fit_decay_rate(table.lag, table.log10_grad_norm) == (0.0, math.inf)


def test_fit_decay_rate_reports_rounding_as_zero_and_keeps_real_slopes():
    lag = np.arange(200)
    jitter = np.random.default_rng(0).choice([-1.0, 0.0, 1.0], lag.size) * 2e-16  # last-bit noise
    assert fit_decay_rate(lag, -0.7 + jitter) == (0.0, math.inf)
    assert fit_decay_rate(lag, 300.0 + 300 * jitter) == (0.0, math.inf)  # relative to the curve's size
    slow = -0.7 - 1e-9 * lag / math.log(10.0)  # a real drift of 1e-9 per step (float32 orthogonality)
    rate, half_life = fit_decay_rate(lag, slow)
    assert rate == pytest.approx(1e-9, rel=1e-3) and half_life == pytest.approx(math.log(2.0) / 1e-9, rel=1e-3)
    assert fit_decay_rate(lag, -0.7 + 1e-9 * lag)[0] < 0  # growth stays growth


def test_orthogonal_linear_gradient_is_flat():
    """Q is orthogonal to float32 precision (the model's own dtype): rate below 1e-8 per step."""
    task, model, readout, x, y = _setup("orthogonal", gap=200)
    table = gradient_decay(model, readout, task, x, y)
    rate, _ = fit_decay_rate(table.lag, table.log10_grad_norm)
    assert abs(rate) < 1e-8
    assert np.ptp(table.log10_grad_norm) < 1e-5


def test_linear_with_orthogonal_init_has_zero_fitted_rate():
    task, model, readout, x, y = _setup("linear", gap=200, init="orthogonal")
    rate, half_life = fit_decay_rate(*gradient_decay(model, readout, task, x, y)[["lag", "log10_grad_norm"]].T.values)
    assert abs(rate) < 1e-6
    assert half_life > 1e5  # ln 2 / rate: effectively never halves


def test_scaled_orthogonal_decays_at_rate_log_a_far_below_float64():
    """W_h = aQ with linear φ: ||g_k|| = a^(t−k) ||g_t|| exactly, even at 1e-400 and beyond."""
    a = 0.5
    task, model, readout, x, y = _setup("linear", gap=2000, init="orthogonal", init_gain=a)
    table = gradient_decay(model, readout, task, x, y)
    slope = np.diff(table.log10_grad_norm.to_numpy())
    np.testing.assert_allclose(slope, math.log10(a), atol=1e-9)
    assert table.log10_grad_norm.iloc[-1] < -600  # exact where float64 itself would be 0
    assert table.grad_norm.iloc[-1] == 0.0
    # the underflowed tail is excluded by the default floor, kept with floor=-inf: same rate
    for floor in (None, -np.inf):
        options = {} if floor is None else {"floor": floor}
        rate, half_life = fit_decay_rate(table.lag, table.log10_grad_norm, **options)
        assert rate == pytest.approx(-math.log(a), abs=1e-7)  # the model's float32 aQ: ~1e-8 off
        assert half_life == pytest.approx(1.0, abs=1e-6)  # a = 1/2 halves every step


def test_gradient_norm_beyond_float64_is_inf_in_the_linear_column_without_a_warning():
    """W_h = 2Q with linear φ: ||g_k|| = 2^(t−k) ||g_t|| passes 10^308 after ~1,000 steps while the
    forward states stay 0 (zero inputs and bias), as an IRNN's gradient can over thousands of steps:
    the log10 column holds it (to the float32 weights' rounding), `grad_norm` reads inf, and nothing
    warns (a job's log stays quiet)."""
    task, model, readout, x, y = _setup("linear", gap=1100, init="orthogonal", init_gain=2.0)
    with torch.no_grad():
        model.bias.zero_()  # the default already; stated, since the test needs states that stay 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = gradient_decay(model, readout, task, torch.zeros_like(x), y)
    np.testing.assert_allclose(np.diff(table.log10_grad_norm.to_numpy()), math.log10(2.0), atol=1e-7)
    assert table.log10_grad_norm.iloc[-1] > 330
    beyond = table.log10_grad_norm > math.log10(np.finfo(np.float64).max)
    assert beyond.any() and np.isinf(table.grad_norm[beyond]).all()
    assert np.isfinite(table.grad_norm[~beyond]).all()
    np.testing.assert_array_equal(table.log10_grad_norm_observed, table.log10_grad_norm)  # elementwise: all seen
    assert np.isinf(table.grad_norm_observed[beyond]).all()


def test_fit_decay_rate_uses_only_finite_points_above_the_floor():
    lag = np.arange(6)
    value = np.array([0.0, -1.0, -2.0, -np.inf, -400.0, np.nan])  # 1 decade per step, then junk
    rate, half_life = fit_decay_rate(lag, value)
    assert rate == pytest.approx(math.log(10.0))
    assert half_life == pytest.approx(math.log(2.0) / math.log(10.0))
    assert fit_decay_rate(lag, value, floor=-1.5)[0] == pytest.approx(math.log(10.0))  # 2 points
    assert all(math.isnan(v) for v in fit_decay_rate(lag, value, floor=-0.5))  # 1 point left
    assert fit_decay_rate(lag[:3], [0.0, 1.0, 2.0]) == (pytest.approx(-math.log(10.0)), math.inf)


def test_tanh_decays_at_least_as_fast_as_the_norm_bound():
    """||∂L_t/∂h_k|| ≤ ||∂L_t/∂h_t|| ∏ ||D_l|| ||W_h|| ≤ ||∂L_t/∂h_t|| ||W_h||₂^(t−k) (||D|| ≤ 1 for tanh)."""
    task, model, readout, x, y = _setup("vanilla", gap=80, hidden=16)
    table = gradient_decay(model, readout, task, x, y)
    sigma = torch.linalg.matrix_norm(model.weight_hh.detach().double(), ord=2).item()
    bound = table.log10_grad_norm.iloc[0] + table.lag * math.log10(sigma)
    assert (table.log10_grad_norm <= bound + 1e-9).all()
    assert table.log10_grad_norm.iloc[-1] < table.log10_grad_norm.iloc[0] - 10


def test_tanh_per_step_ratio_is_below_the_step_jacobian_bound():
    """Per step: ||g_{k-1}|| / ||g_k|| ≤ ||J_k||₂ ≤ ||D_k|| ||W_h||, with both norms from jacobian_spectrum."""
    task, model, readout, x, y = _setup("vanilla", gap=40, hidden=16, init="normal", init_gain=1.5)
    x, y = x[:1], y[:1]  # one sequence: the batch mean of the norm is that sequence's norm
    t = task.probe_step
    decay = gradient_decay(model, readout, task, x, y).log10_grad_norm.to_numpy()
    spectrum = jacobian_spectrum(model, x, jacobian_steps=10_000)
    pick = lambda q, s: spectrum[(spectrum.quantity == q) & (spectrum.statistic == s)].set_index("step").value
    w_norm = pick("W_h", "sigma_max").iloc[0]
    d_norm, j_norm = pick("D", "sigma_max"), pick("J", "sigma_max")
    assert (d_norm <= 1.0).all() and len(j_norm) == x.shape[1]
    steps = t - np.arange(t)  # the step k whose Jacobian takes g_k to g_(k-1)
    ratio = np.diff(decay)
    j_bound, d_bound = np.log10(j_norm.loc[steps].to_numpy()), np.log10(d_norm.loc[steps].to_numpy() * w_norm)
    assert (ratio <= j_bound + 1e-9).all() and (j_bound <= d_bound + 1e-12).all()
    assert ratio.max() > np.log10(d_norm.max() * w_norm) - 1.0  # a bound that is tight-ish, not vacuous


def test_the_slopes_rows_are_the_largest_and_smallest_phi_prime_of_each_step():
    """D = diag(φ'(a_l)) with tanh' = 1 − h²: its σ_max and σ_min rows are each step's largest
    and smallest slope over the units, averaged over the sequences (a saturating vanilla net,
    whose slopes differ from unit to unit)."""
    torch.manual_seed(0)
    model = models.build("vanilla", 2, 6).double()
    x = torch.randn(4, 10, 2, dtype=torch.float64)
    with torch.no_grad():
        h, _ = model(x)
    slopes = 1 - h * h
    table = jacobian_spectrum(model, x)
    for statistic, reduce in (("sigma_max", torch.amax), ("sigma_min", torch.amin)):
        rows = table[(table.quantity == "D") & (table.statistic == statistic)].sort_values("step")
        np.testing.assert_allclose(rows.value, reduce(slopes, -1).mean(0), rtol=1e-10)


# ------------------------------------------------------------------------- Jacobian spectra

def test_jacobian_spectrum_of_scaled_orthogonal_is_flat_at_a_to_the_lag():
    a, hidden = 0.7, 8
    model = _scaled_orthogonal(a, hidden)
    table = jacobian_spectrum(model, _inputs(3, 40), lags=(1, 5, 40, 41))
    for quantity in ("W_h", "J"):
        values = table[table.quantity == quantity].value
        np.testing.assert_allclose(values, a, atol=1e-12)  # ρ = σ_max = σ_min = a
    np.testing.assert_allclose(table[table.quantity == "D"].value, 1.0)
    product = table[table.quantity == "product"]
    assert sorted(product.lag.unique()) == [1, 5, 40]  # 41 > T is dropped
    assert list(product[product.lag == 5]["index"]) == list(range(1, hidden + 1))
    np.testing.assert_allclose(product.value, product.lag * math.log10(a), atol=1e-10)


def test_jacobian_product_matches_autograd_jacobian():
    """∂h_T/∂h_{T-L} of a tanh net: singular values against torch.autograd.functional.jacobian."""
    torch.manual_seed(3)
    model = models.build("vanilla", 3, 5, init="normal", init_gain=1.3).double()
    x = _inputs(1, 12)
    lag = 7
    states, _ = model(x)
    weight, u = model.weight_hh.detach(), torch.nn.functional.linear(x, model.weight_ih, model.bias)[0]

    def run(h):  # h_{T-L} → h_T
        for step in range(12 - lag, 12):
            h = torch.tanh(weight @ h + u[step])
        return h

    expected = torch.linalg.svdvals(torch.autograd.functional.jacobian(run, states[0, 11 - lag].detach()))
    table = jacobian_spectrum(model, x, lags=(lag,))
    got = table[table.quantity == "product"].value.to_numpy()
    np.testing.assert_allclose(got, torch.log10(expected).numpy(), atol=1e-9)


# ----------------------------------------------------------------------- forward sensitivity

@pytest.mark.parametrize("name", ["vanilla", "irnn", "linear", "orthogonal"])
def test_sensitivity_matches_autograd_jacobian(name):
    torch.manual_seed(1)
    model = models.build(name, 3, 4).double()
    with torch.no_grad():  # move the IRNN/biases off the trivial point so some ReLUs are off
        model.bias.normal_(0.0, 0.5)
    x = _inputs(2, 6)
    full = torch.autograd.functional.jacobian(lambda inp: model(inp)[0][:, -1], x)  # (B, H, B, T, I)
    per_sequence = torch.stack([full[b, :, b] for b in range(2)])  # (B, H, T, I)
    norms = torch.linalg.vector_norm(per_sequence, dim=(1, 3))  # (B, T): ||∂h_T/∂x_l||_F
    expected = torch.log10(norms.mean(0)).flip(0).numpy()  # lag = T − 1 − l
    table = sensitivity(model, x)
    assert list(table.lag) == list(range(6))
    np.testing.assert_allclose(table.log10_sensitivity, expected, atol=1e-9)


@pytest.mark.parametrize("a", [1.0, 0.5, 0.01])
def test_sensitivity_of_scaled_orthogonal_is_a_to_the_lag(a):
    """||∂h_t/∂x_l||_F = ||a^(t−l) Q^(t−l) W_in||_F = a^(t−l) ||W_in||_F, exactly, even below 1e-308."""
    model = _scaled_orthogonal(a)
    table = sensitivity(model, _inputs(4, 200))
    w_in = torch.linalg.matrix_norm(model.weight_ih.detach()).item()
    np.testing.assert_allclose(table.log10_sensitivity, math.log10(w_in) + table.lag * math.log10(a), atol=1e-9)


def test_identity_model_sensitivity_is_constant():
    _, model, _, x, _ = _setup("identity", gap=100)
    assert np.ptp(sensitivity(model, x).log10_sensitivity) < 1e-12


# ------------------------------------------------------------------------ Lyapunov exponents

@pytest.mark.parametrize("a", [1.0, 0.6])
def test_lyapunov_exponents_of_scaled_orthogonal_are_all_log_a(a):
    table = lyapunov(_scaled_orthogonal(a), _inputs(3, 50))
    assert list(table["index"]) == list(range(1, 9))
    np.testing.assert_allclose(table.exponent, math.log(a), atol=1e-12)
    assert table.cumulative_sum.iloc[-1] == pytest.approx(8 * math.log(a), abs=1e-10)


def test_identity_model_lyapunov_exponents_are_zero():
    _, model, _, x, _ = _setup("identity", gap=30)
    np.testing.assert_allclose(lyapunov(model, x).exponent, 0.0, atol=1e-12)


@pytest.mark.parametrize("method", ["analytic", "generic"])
def test_lyapunov_exponents_of_units_switched_off_are_minus_infinity(method):
    """A ReLU net with W_h = I, no input and three negative biases: those units are off at every
    step (J_l = D, a 0/1 diagonal), the others carry their state on unchanged. Exactly five
    exponents 0 and three −inf; a QR leaves an annihilated direction at rounding level (~1e-16),
    which the probe must count as 0, not average in as a finite exponent (ln 1e-16 / steps)."""
    torch.manual_seed(0)
    model = models.build("irnn", 3, 8).double()
    with torch.no_grad():
        model.weight_ih.zero_()
        model.bias.copy_(torch.tensor([1.0, 1, 1, -1, 1, -1, 1, -1]))
    table = lyapunov(model, _inputs(2, 60), method=method)
    np.testing.assert_allclose(table.exponent[:5], 0.0, atol=1e-12)
    assert (table.exponent[5:] == -math.inf).all()
    assert table.cumulative_sum.iloc[-1] == -math.inf


@pytest.mark.parametrize("seed", [31, 47, 66])
def test_an_annihilated_direction_whose_rounding_exceeds_matrix_ranks_rule_counts_as_zero(seed):
    """J = D Q with units off (D a 0/1 diagonal, Q orthonormal, S = 12): on the Intel VM these
    draws' QR left an annihilated direction 1.1 to 1.3 times matrix_rank's rule max(S, k)·ε·‖J‖_F
    (another LAPACK may round otherwise), which read it as a finite stretch; with the margin every
    annihilated direction is 0 and no true one is. Rounding measured up to 188 times the rule
    (docs/measurements/qr_singular_noise.py) is 0, a stretch 1e8 times above it is kept."""
    from gapbench.probes.lyapunov import _resolved

    generator = torch.Generator().manual_seed(seed)
    on = (torch.rand(12, generator=generator) > 0.3).double()
    on[0] = 0.0
    grown = on[:, None] * torch.linalg.qr(torch.randn(12, 12, generator=generator, dtype=torch.float64))[0]
    stretches = torch.linalg.qr(grown)[1].diagonal().abs()
    kept = _resolved(stretches, grown)
    assert int((kept == 0).sum()) == int(12 - on.sum()) and torch.equal(kept[kept != 0], stretches[kept != 0])
    rule = 12 * torch.finfo(torch.float64).eps * torch.linalg.matrix_norm(grown)
    assert _resolved(rule * torch.tensor([188.0, 1e8], dtype=torch.float64), grown).tolist() == [0.0, 1e8 * rule]


@pytest.mark.parametrize("method", ["analytic", "generic"])
def test_lyapunov_exponents_are_the_mean_of_each_sequences_sorted_exponents(method):
    """λ_i of a batch is the mean over its sequences of each one's i-th largest exponent. At
    finite T a sequence's QR columns need not be in decreasing order, and at the IRNN's
    initialisation (W_h = I, J_l a 0/1 diagonal) a column a step annihilates is −inf in that
    sequence alone: averaged column by column first, every λ_i here read −inf, though every
    sequence keeps directions of exponent 0 (units on throughout). At T = 20 the estimate carries
    a finite-T transient whose size follows the machine's rounding (λ1 −7.3e-6 on the AMD EPYC VM,
    one sequence at −5.8e-5; 0 on the Intel VM): λ1 is asked to be finite and near 0."""
    task = tasks.build("copy", 14, length=3)
    torch.manual_seed(2)
    model = models.build("irnn", task.input_size, 12)
    x = torch.from_numpy(task.sample(8, np.random.default_rng(2))["x"])
    each = [lyapunov(model, x[i:i + 1], method=method).exponent.to_numpy() for i in range(8)]
    table = lyapunov(model, x, sequences=8, method=method)
    np.testing.assert_allclose(table.exponent, np.mean(each, axis=0), atol=1e-15)
    assert table.exponent[0] == pytest.approx(0.0, abs=1e-4)  # finite: not −inf, as column by column
    torch.manual_seed(1)  # a finite spectrum whose columns come out of order in some sequences
    model = models.build("vanilla", 3, 12, init="normal", init_gain=2.0)
    x = _inputs(8, 20)
    each = [lyapunov(model, x[i:i + 1], method=method).exponent.to_numpy() for i in range(8)]
    np.testing.assert_allclose(lyapunov(model, x, sequences=8, method=method).exponent, np.mean(each, axis=0),
                               rtol=1e-12, atol=1e-15)


def test_lyapunov_exponents_of_diagonalisable_linear_map_are_log_abs_eigenvalues():
    eigenvalues = torch.tensor([0.95, -0.8, 0.6, 0.45, -0.3, 0.15], dtype=torch.float64)
    basis = torch.eye(6, dtype=torch.float64) + 0.4 * torch.randn(6, 6, generator=torch.Generator().manual_seed(2),
                                                                   dtype=torch.float64)
    weight = basis @ torch.diag(eigenvalues[torch.randperm(6)]) @ torch.linalg.inv(basis)  # not normal
    torch.manual_seed(0)
    model = _with_recurrent_weight(models.build("linear", 3, 6), weight)
    table = lyapunov(model, _inputs(2, 400), warmup=100)
    expected = np.sort(np.log(eigenvalues.abs().numpy()))[::-1]
    np.testing.assert_allclose(table.exponent, expected, atol=1e-3)
    top3 = lyapunov(model, _inputs(2, 400), k=3, warmup=100)
    np.testing.assert_allclose(top3.exponent, expected[:3], atol=1e-3)


def test_lyapunov_sum_is_the_mean_log_determinant_for_tanh():
    """Σ_i λ_i = mean_l ln|det(D_l W_h)| = ln|det W_h| + mean_l Σ_i ln φ'(a_l,i) (volume contraction)."""
    torch.manual_seed(0)
    model = models.build("vanilla", 3, 6, init="normal", init_gain=1.5).double()
    x = _inputs(2, 80)
    table = lyapunov(model, x, warmup=20, sequences=2)
    states, _ = model(x)
    log_slopes = torch.log(1 - states[:, 20:].detach() ** 2).sum(-1).mean()
    expected = torch.linalg.slogdet(model.weight_hh.detach())[1] + log_slopes
    assert table.cumulative_sum.iloc[-1] == pytest.approx(expected.item(), abs=1e-10)
    assert (np.diff(table.exponent) <= 0).all()


# --------------------------------------------------------------------------- memory capacity

def _analytic_memory(model, max_delay, seed=0):
    """MC_k = c_kᵀ C⁻¹ c_k / var u for the linear net: c_k = W^k w, C = W C Wᵀ + w wᵀ (infinite data)."""
    weight = model.weight_hh.detach().numpy()
    hidden = weight.shape[0]
    direction = np.random.default_rng(seed).standard_normal(model.input_size)  # memory_capacity's own v
    w = model.weight_ih.detach().numpy() @ (direction / np.linalg.norm(direction))
    covariance = np.linalg.solve(np.eye(hidden**2) - np.kron(weight, weight), np.outer(w, w).ravel())
    covariance = covariance.reshape(hidden, hidden)
    columns = [np.linalg.matrix_power(weight, k) @ w for k in range(max_delay + 1)]
    return np.array([c @ np.linalg.solve(covariance, c) for c in columns])


@pytest.mark.parametrize("a, hidden, tolerance", [(0.5, 8, 0.1), (0.9, 16, 0.3)])
def test_linear_network_memory_capacity_reaches_n(a, hidden, tolerance):
    """Jaeger 2001: i.i.d. input, linear W_h = aQ, generic w: MC = N over all delays; K = 2N holds
    all but ~0.05 of it (exact formula) and finite data adds ±0.2 for a = 0.9 (slow, long memory)."""
    model = _scaled_orthogonal(a, hidden)
    table = memory_capacity(model, max_delay=2 * hidden)
    assert list(table.delay) == list(range(2 * hidden + 1))
    expected = _analytic_memory(model, 2 * hidden)
    assert expected.sum() == pytest.approx(hidden, abs=0.05)
    assert table.mc.sum() == pytest.approx(hidden, abs=tolerance)
    np.testing.assert_allclose(table.mc, expected, atol=0.03)  # the memory curve, delay by delay (±1/√5000 noise)


def test_memory_curve_matches_the_infinite_data_formula():
    """N = 8, a = 0.9: with this Q ~0.3 of the capacity lies beyond K = 2N, so compare delay by delay."""
    model = _scaled_orthogonal(0.9, 8, seed=1)
    table = memory_capacity(model, max_delay=40)
    expected = _analytic_memory(model, 40)
    np.testing.assert_allclose(table.mc, expected, atol=0.02)
    assert expected[:17].sum() < 7.5 and expected.sum() == pytest.approx(8, abs=0.01)
    assert table.mc.sum() == pytest.approx(8, abs=0.25)


def test_memory_capacity_collapses_without_forgetting():
    """a = 1: the state sums all inputs forever (not stationary); one input is lost in the pile-up."""
    assert memory_capacity(_scaled_orthogonal(1.0, 8)).mc.sum() < 0.5
    _, identity, *_ = _setup("identity")
    assert memory_capacity(identity).mc.sum() < 0.5


def test_saturating_tanh_network_stays_well_below_n():
    model = _scaled_orthogonal(0.9, 16, name="vanilla")
    small = memory_capacity(model, input_scale=0.1).mc.sum()
    large = memory_capacity(model, input_scale=20.0).mc.sum()
    assert small == pytest.approx(16, abs=0.5)  # near-linear regime: like the linear net
    assert large < 0.5 * 16


@pytest.mark.parametrize("name, options", [("vanilla", {}), ("vanilla", {"init": "normal", "init_gain": 1.5}),
                                           ("irnn", {}), ("linear", {"init": "normal", "init_gain": 0.9})])
def test_memory_capacity_never_exceeds_n(name, options):
    torch.manual_seed(0)
    table = memory_capacity(models.build(name, 3, 12, **options))
    assert (table.mc >= 0).all() and (table.mc <= 1 + 1e-12).all()
    assert table.mc.sum() <= 12 + 0.1


def test_memory_capacity_is_scored_on_held_out_steps():
    """A net that forgets at once (linear, W_h = 0.1Q: u(t − k) is in h_t only as 0.1^k) holds
    nothing of delays beyond about 16 in float64: on held-out steps those MC_k are near 0 (about
    1/5000 each, the noise of 5000 steps); scored on the 100 steps its readouts were fitted on,
    they read well above 0.01 (in-sample fitting of noise)."""
    model = _scaled_orthogonal(0.1, 32, inputs=1)
    table = memory_capacity(model, max_delay=40, train_length=100, test_length=5000)
    assert (table.mc[table.delay >= 20] < 0.01).all()


def test_unstable_linear_network_memory_is_nan():
    assert memory_capacity(_scaled_orthogonal(1.5, 8)).mc.isna().all()


# ------------------------------------------------------------------------------ summaries

def test_every_probe_rejects_a_model_that_is_not_a_recurrent_model():
    rnn, x = torch.nn.RNN(3, 4, batch_first=True), torch.zeros(1, 5, 3)
    for function in (jacobian_spectrum, sensitivity, lyapunov):
        with pytest.raises(TypeError, match="not a gapbench RecurrentModel"):
            function(rnn, x)
    with pytest.raises(TypeError, match="not a gapbench RecurrentModel"):
        memory_capacity(rnn)
    with pytest.raises(TypeError, match="only method='generic'"):
        sensitivity(GRUCellModel(3, 4), x, method="analytic")
    with pytest.raises(ValueError, match="unknown method"):
        sensitivity(models.build("vanilla", 3, 4), x, method="autograd")


def test_propagation_summary_of_scaled_orthogonal():
    a = 0.5
    task, model, readout, x, y = _setup("linear", gap=30, init="orthogonal", init_gain=a)
    tables = probe_all(model, readout, task, x, y)
    summary = tables["summary"]
    assert list(summary) == SUMMARY_COLUMNS and "memory_capacity_from_1" in summary
    assert summary["memory_capacity"] - summary["memory_capacity_from_1"] == pytest.approx(1.0, abs=0.02)  # MC_0
    assert summary["decay_log10_per_step"] == pytest.approx(math.log10(a), abs=1e-6)  # log10 per step
    assert summary["half_life_steps"] == pytest.approx(1.0, abs=1e-5)
    assert summary["lyapunov_max"] == pytest.approx(math.log(a), abs=1e-6)
    assert summary["lyapunov_sum"] == pytest.approx(8 * math.log(a), abs=1e-5)
    assert summary["spectral_radius"] == pytest.approx(a, abs=1e-6)
    assert summary["memory_capacity"] == pytest.approx(8, abs=0.2)
    assert all(isinstance(tables[name], pd.DataFrame) for name in tables if name != "summary")
    empty = propagation_summary()
    assert all(math.isnan(v) for v in empty.values())


def test_the_summary_s_spectral_radius_is_the_largest_eigenvalue_modulus():
    """ρ(W_h) = max |λ_i|, not σ_max (equal for the scaled orthogonal W_h above, not for a random one)."""
    torch.manual_seed(0)
    model = models.build("vanilla", 2, 6)
    weight = model.recurrent_weight().detach().double()
    radius = torch.linalg.eigvals(weight).abs().max().item()
    assert radius < torch.linalg.matrix_norm(weight, 2).item() - 1e-3  # the two differ here
    summary = propagation_summary(spectrum=jacobian_spectrum(model, torch.randn(2, 5, 2)))
    assert summary["spectral_radius"] == pytest.approx(radius, rel=1e-9)


def test_long_sequences_keep_every_lag_up_to_the_limit_and_log_spaced_lags_beyond():
    """Past LAG_LIMIT the per-lag tables keep log-spaced lags only; the fitted rates still come
    from every lag (they equal the fit of the uncut table)."""
    task, model, readout, x, y = _setup("vanilla", gap=300, hidden=6)
    x, y = x[:2], y[:2]
    tables = probe_all(model, readout, task, x, y)
    full = gradient_decay(model, readout, task, x, y)
    t = task.probe_step
    assert t > LAG_LIMIT
    kept = kept_positions(t)
    assert list(kept[: LAG_LIMIT + 1]) == list(range(LAG_LIMIT + 1)) and kept[-1] == t
    assert LAG_LIMIT + 1 < len(kept) < t + 1  # thinned, but more than the limit
    assert list(tables["gradient_decay"].lag) == list(kept) and list(tables["sensitivity"].lag) == list(kept)
    rows = full.set_index("lag").loc[kept].reset_index()
    pd.testing.assert_frame_equal(tables["gradient_decay"], rows, check_exact=True)
    for column in ("decay_log10_per_step", "half_life_steps"):
        assert tables["summary"][column] == propagation_summary(full)[column]
    d_steps = tables["jacobian_spectrum"].query("quantity == 'D'").step.unique()
    assert list(d_steps) == list(kept_positions(task.seq_len - 1))
    # the resolution docs/outputs.md states: 64 lags a decade, evenly spaced in log(lag)
    assert len(kept_positions(1000)) == 295 and len(kept_positions(2295)) == 318
    decade = kept_positions(10 * LAG_LIMIT)
    beyond = decade[decade >= LAG_LIMIT]
    assert len(beyond) == 65 and beyond[-1] == 10 * LAG_LIMIT
    np.testing.assert_allclose(np.diff(np.log10(beyond)), 1 / 64, atol=0.003)  # lags rounded to integers


# ------------------------------------------------------------------------------ the registry

BUILT_IN = ["gradient_decay", "jacobian_spectrum", "sensitivity", "lyapunov", "memory_capacity"]


def _built_in(names) -> list[str]:
    """`names` less any probe a researcher added to gapbench/probes/ (the tests hold for those too)."""
    return [name for name in names if name in BUILT_IN]


def test_the_registry_lists_every_table_with_its_row_order():
    assert {name: TABLES[name] for name in BUILT_IN} == {
        "gradient_decay": ["stage", "lag"],
        "jacobian_spectrum": ["stage", "quantity", "lag", "step", "statistic", "index"],
        "sensitivity": ["stage", "lag"],
        "lyapunov": ["stage", "index"],
        "memory_capacity": ["stage", "delay"],
    }
    assert list(TABLES) == list(PROBES) and _built_in(TABLES) == BUILT_IN  # the order they are produced in
    assert SUMMARY_COLUMNS == ["decay_log10_per_step", "half_life_steps", "lyapunov_max", "lyapunov_sum", "spectral_radius",
                               "memory_capacity", "memory_capacity_from_1"]
    assert list(propagation_summary()) == SUMMARY_COLUMNS


def test_a_decorated_function_is_all_a_new_probe_needs():
    @probe("registry_test_state_norm", row_order=["stage", "step"])  # not a name a researcher's probe takes
    def state_norm(model, x):
        output, _ = model(x)
        return pd.DataFrame({"step": np.arange(x.shape[1]), "norm": output.detach().norm(dim=-1).mean(0).numpy()})

    try:
        assert TABLES["registry_test_state_norm"] == ["stage", "step"]
        task, model, readout, x, y = _setup("vanilla")
        tables = probe_all(model, readout, task, x, y)
        assert list(tables) == list(TABLES) + ["summary"]
        assert list(tables["registry_test_state_norm"].step) == list(range(x.shape[1]))
        assert list(tables["summary"]) == SUMMARY_COLUMNS
    finally:
        PROBES.pop("registry_test_state_norm"), TABLES.pop("registry_test_state_norm")
    with pytest.raises(TypeError, match="cannot pass"):
        probe("bad", row_order=[])(lambda model, history: None)
    with pytest.raises(ValueError, match="taken") as taken:
        probe("lyapunov", row_order=[])(lambda model: None)
    # both files: whichever module is discovered second is refused, not necessarily the mistaken one
    assert str(taken.value).startswith("probe table name 'lyapunov' is taken: gapbench/probes/lyapunov.py and "
                                       "tests/test_probes.py both register it"), taken.value


@pytest.mark.parametrize("returned, message", [
    (lambda x: None, "returned NoneType, not a pandas DataFrame"),
    (lambda x: pd.DataFrame({"t": np.arange(x.shape[1])}), "returned no column ['step'] of its row_order ['stage', 'step']; it returned ['t']"),
])
def test_a_probe_s_table_is_checked_where_it_is_made(returned, message):
    """A probe that forgets its return, or names a column other than its row_order's: refused in
    probe_all, naming the probe and its file (at the first probing, before any training step),
    not an AttributeError in the job or a figure failing after the whole grid."""
    probe("registry_test_checked", row_order=["stage", "step"])(lambda model, x: returned(x))
    try:
        task, model, readout, x, y = _setup("vanilla")
        with pytest.raises(TypeError) as refused:
            probe_all(model, readout, task, x, y)
        assert str(refused.value) == f"probe 'registry_test_checked' (tests/test_probes.py) {message}"
    finally:
        PROBES.pop("registry_test_checked"), TABLES.pop("registry_test_checked")



def test_order_places_a_table_whatever_the_registration_order():
    """TABLES' order is the order of `order=` (ties, and probes without one, by registration), not
    the order the modules happen to be imported in."""
    for name, order in (("late", None), ("early", 2.5), ("first", 0)):
        options = {} if order is None else {"order": order}
        probe(name, row_order=["stage"], **options)(lambda model: pd.DataFrame())
    try:
        expected = ["first", "gradient_decay", "jacobian_spectrum", "early", "sensitivity", "lyapunov",
                    "memory_capacity", "late"]
        assert list(TABLES) == list(PROBES)
        assert [name for name in TABLES if name in expected] == expected
        assert [PROBES[name].row_order for name in expected] == [TABLES[name] for name in expected]
    finally:
        for name in ("late", "early", "first"):
            PROBES.pop(name), TABLES.pop(name)
    assert _built_in(TABLES) == BUILT_IN and not {"late", "early", "first"} & set(TABLES)


def test_a_new_module_in_the_package_is_a_new_probe(tmp_path, monkeypatch):
    """Discovery imports every module of gapbench/probes/ whose name does not start with '_'."""
    (tmp_path / "zz_extra.py").write_text(
        "from gapbench.probes import probe\n\n\n"
        "@probe('zz_extra', row_order=['stage'])\ndef zz_extra(model):\n    return None\n")
    (tmp_path / "_zz_helper.py").write_text("raise AssertionError('a module starting with _ is no probe')\n")
    monkeypatch.setattr(probes_package, "__path__", [*probes_package.__path__, str(tmp_path)])
    try:
        probes_package._discover()
        assert [name for name in TABLES if name in BUILT_IN + ["zz_extra"]] == BUILT_IN + ["zz_extra"]
        assert PROBES["zz_extra"].function.__module__ == "gapbench.probes.zz_extra"
    finally:
        PROBES.pop("zz_extra", None), TABLES.pop("zz_extra", None)
        sys.modules.pop("gapbench.probes.zz_extra", None)
    # the built-in probes come from the package's own modules, one each
    assert [PROBES[name].function.__module__ for name in BUILT_IN] == [f"gapbench.probes.{name}" for name in BUILT_IN]


@pytest.mark.parametrize("changed", ["step", "drive"])
def test_a_subclass_that_changes_the_update_takes_the_generic_path(changed):
    """An ElementwiseRNN subclass with its own step (leaky: and so its own forward) or its own input
    drive is no longer h_t = φ(W_h h_(t-1) + W_in x_t + b): "auto" differentiates its step (and
    matches autograd, which J = D W_h, ∂h/∂x = D W_in would not), "analytic" refuses it."""
    vanilla = type(models.build("vanilla", 3, 4))

    class Leaky(vanilla):
        def step(self, state, x_t):
            return 0.5 * state + 0.5 * super().step(state, x_t)

        def forward(self, x, h0=None):
            return self.loop(self.step, x, h0)

    class Doubled(vanilla):
        def drive(self, x):
            return 2.0 * super().drive(x)

    torch.manual_seed(1)
    model = {"step": Leaky, "drive": Doubled}[changed](3, 4).double()
    x = _inputs(2, 6)
    full = torch.autograd.functional.jacobian(lambda inp: model.unroll(inp)[1][:, -1], x)  # (B, S, B, T, I)
    per_sequence = torch.stack([full[b, :, b] for b in range(2)])
    expected = torch.log10(torch.linalg.vector_norm(per_sequence, dim=(1, 3)).mean(0)).flip(0).numpy()
    np.testing.assert_allclose(sensitivity(model, x).log10_sensitivity, expected, atol=1e-9)
    with pytest.raises(TypeError, match="only method='generic'"):
        sensitivity(model, x, method="analytic")


# ------------------------------------------- the generic path: any model, from step and observe

class _StepModel(RecurrentModel):
    """forward from `step` (what the probes' generic path sees of any model)."""

    def forward(self, x, h0=None):
        output, _ = self.unroll(x, None if h0 is None else h0[0])
        return output, output[:, -1].unsqueeze(0)


class GRUCellModel(_StepModel):
    """torch.nn.GRUCell as a RecurrentModel: state h, no W_h of the elementwise form."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.cell = nn.GRUCell(input_size, hidden_size)

    def step(self, state, x_t):
        return self.cell(x_t, state)


class DiagonalComplex(_StepModel):
    """LRU-like: z_t = λ ⊙ z_{t-1} + B x_t with fixed complex λ, real state [Re z, Im z]. The
    readout sees Re z, or C [Re z; Im z] with `observe_map` C (not a selection of coordinates)."""

    def __init__(self, eigenvalues, input_size=3, observe_map=None, seed=0):
        eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.complex128)
        n = len(eigenvalues)
        super().__init__(input_size, n if observe_map is None else observe_map.shape[0], 2 * n)
        self.register_buffer("lam_re", eigenvalues.real.clone())
        self.register_buffer("lam_im", eigenvalues.imag.clone())
        self.register_buffer("observe_map", observe_map)
        generator = torch.Generator().manual_seed(seed)
        self.input_re = nn.Parameter(torch.randn(n, input_size, generator=generator, dtype=torch.float64))
        self.input_im = nn.Parameter(torch.randn(n, input_size, generator=generator, dtype=torch.float64))

    def step(self, state, x_t):
        n = len(self.lam_re)
        re, im = state[..., :n], state[..., n:]
        return torch.cat([self.lam_re * re - self.lam_im * im + F.linear(x_t, self.input_re),
                          self.lam_re * im + self.lam_im * re + F.linear(x_t, self.input_im)], -1)

    def observe(self, state):
        return super().observe(state) if self.observe_map is None else F.linear(state, self.observe_map)


class LinearReservoir(_StepModel):
    """ESN-like: s_t = W s_{t-1} + W_in x_t with W = aQ fixed and no nonlinearity (W_h = W)."""

    def __init__(self, a, hidden=8, input_size=3, seed=0):
        super().__init__(input_size, hidden)
        self.register_buffer("weight_hh", a * _random_orthogonal(hidden, seed))
        generator = torch.Generator().manual_seed(seed + 1)
        self.weight_ih = nn.Parameter(torch.rand(hidden, input_size, generator=generator, dtype=torch.float64) - 0.5)

    def step(self, state, x_t):
        return F.linear(state, self.weight_hh) + F.linear(x_t, self.weight_ih)

    def recurrent_weight(self):
        return self.weight_hh


class OpenForgetLSTM(_StepModel):
    """LSTM-like, state [h, c]: c_t = f ⊙ c_{t-1} + i_t ⊙ g_t, h_t = o_t ⊙ tanh(c_t), with the forget
    gate saturated open (f = σ(50), exactly 1 in float64), i and g driven by the input alone and
    o_t = σ(W_o x_t + U_o h_{t-1}): ∂c_t/∂c_{t-1} = I and ∂c_t/∂h_{t-1} = 0 (the constant error carousel)."""

    def __init__(self, input_size, hidden=6, seed=0):
        super().__init__(input_size, hidden, 2 * hidden)
        generator = torch.Generator().manual_seed(seed)
        draw = lambda *shape: nn.Parameter(torch.randn(*shape, generator=generator, dtype=torch.float64))  # noqa: E731
        self.w_i, self.w_g, self.w_o = draw(hidden, input_size), draw(hidden, input_size), draw(hidden, input_size)
        self.u_o = draw(hidden, hidden)

    def step(self, state, x_t):
        h, c = state[..., : self.hidden_size], state[..., self.hidden_size:]
        forget = torch.sigmoid(torch.full_like(c, 50.0))
        c = forget * c + torch.sigmoid(F.linear(x_t, self.w_i)) * torch.tanh(F.linear(x_t, self.w_g))
        out = torch.sigmoid(F.linear(x_t, self.w_o) + F.linear(h, self.u_o) / math.sqrt(self.hidden_size))
        return torch.cat([out * torch.tanh(c), c], -1)


def _task_batch(gap, batch=5, seed=0):
    task = tasks.build("copy", gap)
    data = task.sample(batch, np.random.default_rng(seed))
    return task, torch.from_numpy(data["x"]).double(), torch.from_numpy(data["y"])


def _retained_state_gradients(model, readout, task, x, y):
    """∂L_t/∂s_k for every k ≤ t by plain autograd through `step` (float64, retained gradients)."""
    state, states = model.initial_state(x.shape[0], x), []
    for step in range(task.probe_step + 1):
        state = model.step(state, x[:, step])
        state.retain_grad()
        states.append(state)
    task.probe_loss(readout(model.observe(states[-1])), y).sum().backward()
    return [s.grad for s in states]


ELEMENTWISE = [("vanilla", {}), ("vanilla", {"init": "normal", "init_gain": 1.5}), ("linear", {}), ("irnn", {}),
               ("orthogonal", {}), ("orthogonal", {"activation": "tanh"}), ("identity", {})]


@pytest.mark.parametrize("name, options", ELEMENTWISE)
def test_generic_path_reproduces_the_analytic_path(name, options):
    """Every probe table of every elementwise model, from step/observe by autodiff, against the
    analytic J_l = D_l W_h, to 1e-10. The exceptions are stated, not hidden: D rows exist only on
    the analytic path, and singular values of ∂h_t/∂h_(t-L) below 1e-5 σ_1 agree only to
    their float64 rounding, ~L·eps·σ_1/σ_i in log10 (the docstring's caveat)."""
    task, model, readout, x, y = _setup(name, gap=10, **options)
    with torch.no_grad():
        model.bias.normal_(0.0, 0.3)  # some ReLUs off, tanh away from 0
    x, y = x[:2], y[:2]  # 2 sequences: every probe's default uses them all on both paths
    analytic = probe_all(model, readout, task, x, y, method="analytic")
    generic = probe_all(model, readout, task, x, y, method="generic")
    for table in TABLES:
        expected, got = analytic[table], generic[table]
        if table == "jacobian_spectrum":
            assert (expected.quantity == "D").sum() == 3 * x.shape[1] and (got.quantity != "D").all()
            expected = expected[expected.quantity != "D"].reset_index(drop=True)
        assert list(got.columns) == list(expected.columns) and len(got) == len(expected), table
        values = [c for c in expected.columns if c != "value"]
        pd.testing.assert_frame_equal(got[values], expected[values], check_exact=False, rtol=0, atol=1e-10)
        if table == "jacobian_spectrum":
            product = expected.quantity == "product"
            top = expected.value.where(product & (expected["index"] == 1)).ffill()
            below = (top - expected.value).where(product, 0.0)  # log10 σ_1 − log10 σ_i
            tolerance = np.maximum(1e-10, expected.lag * np.finfo(float).eps * 10.0 ** below).where(below > 5, 1e-10)
            difference = np.abs(got.value - expected.value).where(got.value != expected.value, 0.0)  # -inf == -inf
            assert (difference.fillna(np.inf) <= tolerance).all() and (below <= 5).sum() > len(expected) / 2
    # the half-life is compared as the rate it stands for (a rate near 0 makes it huge)
    numbers = lambda summary: [math.log(2.0) / v if k == "half_life_steps" else v  # noqa: E731
                               for k, v in summary.items()]
    np.testing.assert_allclose(numbers(generic["summary"]), numbers(analytic["summary"]), rtol=0, atol=1e-10)
    # the readout sees an elementwise RNN's whole state: the observed columns repeat the full ones
    decay = generic["gradient_decay"]
    np.testing.assert_allclose(decay.log10_grad_norm_observed, decay.log10_grad_norm, rtol=0, atol=1e-12)


def test_generic_path_uses_fewer_sequences_where_its_steps_cost_more():
    task, model, readout, x, y = _setup("vanilla", gap=4)
    x = torch.cat([x, x.flip(0), x], 0)  # 15 sequences
    pd.testing.assert_frame_equal(sensitivity(model, x, method="generic"),
                                  sensitivity(model, x[:GENERIC_SEQUENCES["sensitivity"]], method="analytic"),
                                  check_exact=False, rtol=0, atol=1e-10)
    pd.testing.assert_frame_equal(lyapunov(model, x, method="generic"),
                                  lyapunov(model, x[:GENERIC_SEQUENCES["lyapunov"]], method="analytic"),
                                  check_exact=False, rtol=0, atol=1e-10)
    assert not sensitivity(model, x).equals(sensitivity(model, x[:8]))  # the analytic path: all of them


def test_generic_gradient_decay_matches_autograd_on_a_two_part_state():
    """Full state [h, c] and the part the readout sees (h) against retained gradients of `step`."""
    task, x, y = _task_batch(gap=8)
    model = OpenForgetLSTM(task.input_size)
    readout = nn.Linear(model.hidden_size, task.output_size).double()
    grads = _retained_state_gradients(model, readout, task, x, y)[::-1]  # by lag
    table = gradient_decay(model, readout, task, x, y)
    expected = [np.log10(g.norm(dim=1).mean().item()) for g in grads]
    expected_h = [np.log10(g[:, : model.hidden_size].norm(dim=1).mean().item()) for g in grads]
    np.testing.assert_allclose(table.log10_grad_norm, expected, atol=1e-10)
    np.testing.assert_allclose(table.log10_grad_norm_observed, expected_h, atol=1e-10)


def test_observed_part_of_a_general_observe_is_the_projection_onto_its_row_space():
    """observe(s) = C s with C not a coordinate selection: ||P g_k||, P = C⁺C, and ||C ∂s_t/∂x_l||_F."""
    observe_map = torch.randn(2, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    task, x, y = _task_batch(gap=6)
    model = DiagonalComplex([0.9 * np.exp(0.5j), 0.6 * np.exp(2j), 0.3], task.input_size, observe_map)
    readout = nn.Linear(2, task.output_size).double()
    grads = _retained_state_gradients(model, readout, task, x, y)[::-1]
    projector = torch.linalg.pinv(observe_map) @ observe_map
    expected = [np.log10((g @ projector).norm(dim=1).mean().item()) for g in grads]
    np.testing.assert_allclose(gradient_decay(model, readout, task, x, y).log10_grad_norm_observed, expected,
                               atol=1e-10)

    full = torch.autograd.functional.jacobian(lambda inp: model.unroll(inp)[1][:, -1], x)  # (B, S, B, T, I)
    per_sequence = torch.stack([full[b, :, b] for b in range(x.shape[0])])  # (B, S, T, I)
    seen = torch.einsum("hs,bsti->bhti", observe_map, per_sequence)
    table = sensitivity(model, x)
    for column, jacobian in (("log10_sensitivity", per_sequence), ("log10_sensitivity_observed", seen)):
        norms = torch.linalg.vector_norm(jacobian, dim=(1, 3))  # (B, T)
        np.testing.assert_allclose(table[column], torch.log10(norms.mean(0)).flip(0).numpy(), atol=1e-10)


EIGENVALUES = [0.95 * np.exp(0.3j), 0.7 * np.exp(2.0j), 0.4 * np.exp(-1.1j)]


def test_diagonal_complex_model_exponents_are_log_abs_eigenvalues_each_twice():
    model = DiagonalComplex(EIGENVALUES)
    table = lyapunov(model, _inputs(2, 300), warmup=100)
    expected = np.repeat(np.log(np.abs(EIGENVALUES)), 2)
    np.testing.assert_allclose(table.exponent, expected, atol=1e-10)
    spectrum = jacobian_spectrum(model, _inputs(2, 40), lags=(30,))
    step_jacobian = spectrum[spectrum.quantity == "J"].pivot(index="step", columns="statistic", values="value")
    np.testing.assert_allclose(step_jacobian.spectral_radius, 0.95, atol=1e-12)  # |λ| of each 2×2 block
    np.testing.assert_allclose(step_jacobian.sigma_min, 0.4, atol=1e-12)
    product = spectrum[spectrum.quantity == "product"].value
    np.testing.assert_allclose(product, 30 * expected / math.log(10.0), atol=1e-9)  # log10 |λ_j|^30


def test_diagonal_complex_model_gradient_decays_at_log_of_the_largest_modulus():
    task, x, y = _task_batch(gap=200)
    model = DiagonalComplex(EIGENVALUES, task.input_size)
    readout = nn.Linear(3, task.output_size).double()
    table = gradient_decay(model, readout, task, x, y)
    # ||g_k||² = Σ_j |λ_j|^(2 lag) ||g_t^(j)||²: the rotation keeps each block's norm, so beyond the
    # transient ((0.7/0.95)^120 ≈ 1e-16) the slope is exactly ln 0.95
    tail = table[table.lag >= 60]
    np.testing.assert_allclose(np.diff(tail.log10_grad_norm), math.log10(0.95), atol=1e-10)
    rate, _ = fit_decay_rate(tail.lag, tail.log10_grad_norm)
    assert rate == pytest.approx(-math.log(0.95), abs=1e-10)
    assert (table.log10_grad_norm_observed <= table.log10_grad_norm + 1e-12).all()  # Re z is part of it

    sensitivities = sensitivity(model, x)  # ||∂s_t/∂x_l||_F² = Σ_j |λ_j|^(2 lag) ||B_j||_F², exactly
    moduli = torch.tensor(np.abs(EIGENVALUES))
    inputs = model.input_re.detach().pow(2).sum(1) + model.input_im.detach().pow(2).sum(1)
    lags = torch.arange(x.shape[1], dtype=torch.float64)
    expected = 0.5 * torch.log10((moduli[None] ** (2 * lags[:, None]) * inputs[None]).sum(1))
    np.testing.assert_allclose(sensitivities.log10_sensitivity, expected.numpy(), atol=1e-10)


def test_linear_reservoir_memory_capacity_reaches_n_and_reports_its_w_h():
    """ESN-like generic model, W = aQ linear: MC ≈ N (Jaeger 2001), the same curve as the exact formula."""
    model = LinearReservoir(0.5, hidden=8)
    table = memory_capacity(model, max_delay=16)
    assert table.mc.sum() == pytest.approx(8, abs=0.1)
    np.testing.assert_allclose(table.mc, _analytic_memory(model, 16), atol=0.03)
    spectrum = jacobian_spectrum(model, _inputs(2, 20))
    assert set(spectrum.quantity) == {"W_h", "J", "product"}  # no D rows: not an elementwise RNN
    np.testing.assert_allclose(spectrum[spectrum.quantity.isin(["W_h", "J"])].value, 0.5, atol=1e-12)
    np.testing.assert_allclose(lyapunov(model, _inputs(2, 50)).exponent, math.log(0.5), atol=1e-12)


def test_lstm_with_the_forget_gate_open_carries_the_cell_gradient_unchanged():
    task, x, y = _task_batch(gap=80)
    model = OpenForgetLSTM(task.input_size)
    readout = nn.Linear(model.hidden_size, task.output_size).double()
    table = gradient_decay(model, readout, task, x, y)
    full, seen = table.log10_grad_norm.to_numpy(), table.log10_grad_norm_observed.to_numpy()
    # the h part decays through the output gate; the c part takes over and then does not decay at all
    assert seen[40] < seen[0] - 10
    assert np.ptp(full[40:]) < 1e-12
    cell = 0.5 * np.log10(10 ** (2 * full[20:]) - 10 ** (2 * seen[20:]))  # ||g_c|| = √(||g||² − ||g_h||²)
    assert np.ptp(cell) < 1e-9
    rate, half_life = fit_decay_rate(table.lag[40:], full[40:])
    assert (rate, half_life) == (0.0, math.inf)
    # the carousel in the exponents: c never forgets (H exponents 0), h contracts
    exponents = lyapunov(model, x, warmup=20).exponent.to_numpy()
    np.testing.assert_allclose(exponents[: model.hidden_size], 0.0, atol=1e-3)
    assert (exponents[model.hidden_size:] < -0.5).all()


def test_gru_cell_probe_tables_are_finite_and_its_w_h_is_missing():
    task, x, y = _task_batch(gap=10)
    torch.manual_seed(0)
    model = GRUCellModel(task.input_size, 8)
    readout = nn.Linear(8, task.output_size)
    tables = probe_all(model, readout, task, x.float(), y)
    assert list(tables) == list(TABLES) + ["summary"]
    for name in TABLES:
        numbers = tables[name].select_dtypes("number")
        if name == "jacobian_spectrum":
            spectrum = tables[name]
            assert spectrum[spectrum.quantity == "W_h"].value.isna().all()  # missing, not faked
            assert "D" not in set(spectrum.quantity)
            numbers = spectrum[spectrum.quantity != "W_h"].select_dtypes("number")
            numbers = numbers.drop(columns=[c for c in ("step", "lag", "index") if numbers[c].isna().any()])
        assert np.isfinite(numbers.to_numpy(dtype=float)).all(), name
    summary = tables["summary"]
    assert math.isnan(summary["spectral_radius"])
    assert all(math.isfinite(summary[k]) for k in SUMMARY_COLUMNS if k not in ("spectral_radius", "half_life_steps"))
    assert summary["decay_log10_per_step"] < 0 and summary["lyapunov_max"] < 0  # a GRU at init forgets
    assert 0 < summary["memory_capacity"] <= 8.1

    # J_l against torch.autograd's Jacobian of the cell, at one of the picked steps
    cell64 = GRUCellModel(task.input_size, 8)
    cell64.load_state_dict(model.state_dict())
    cell64 = cell64.double()
    states = cell64.unroll(x[:1])[1][0].detach()
    spectrum = jacobian_spectrum(model, x[:1].float(), jacobian_steps=x.shape[1])
    step = 7
    jacobian = torch.autograd.functional.jacobian(lambda s: cell64.step(s[None], x[:1, step])[0], states[step - 1])
    got = spectrum[(spectrum.quantity == "J") & (spectrum.step == step)].set_index("statistic").value
    singular = torch.linalg.svdvals(jacobian)
    assert got["sigma_max"] == pytest.approx(singular[0].item(), abs=1e-12)
    assert got["sigma_min"] == pytest.approx(singular[-1].item(), abs=1e-12)
    assert got["spectral_radius"] == pytest.approx(torch.linalg.eigvals(jacobian).abs().max().item(), abs=1e-12)
