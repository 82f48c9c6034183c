"""The probes against theory on the registered baseline models themselves (not stand-ins)."""
import math

import numpy as np
import pytest
import torch

from gapbench import models, tasks
from gapbench.probes import fit_decay_rate, gradient_decay, lyapunov, memory_capacity


def _task_batch(gap=30, n=4):
    task = tasks.build("adding", gap)
    batch = task.sample(n, np.random.default_rng(0))
    return task, torch.from_numpy(batch["x"]), torch.from_numpy(batch["y"])


def test_lru_lyapunov_exponents_and_decay_are_its_eigenvalue_moduli():
    """x_t = diag(λ) x_{t-1} + γ ⊙ B u_t: the state Jacobian is diag(λ) (2×2 rotation-scaling
    blocks in real form; Orvieto et al. 2023). On a ring of one radius r (r_min = r_max) every
    Lyapunov exponent is ln r and gradients decay at −ln r per step, exactly; with distinct
    radii the exponents sum to 2 Σ_j ln|λ_j| (volumes shrink by |det J| = Π|λ_j|²)."""
    task, x, y = _task_batch()
    torch.manual_seed(0)
    ring = models.build("lru", 2, 8, r_min=0.7, r_max=0.7).double()
    radius = ring.eigenvalues().abs().detach()  # 0.7 up to the float32 parameters' rounding
    assert torch.allclose(radius, radius[0]) and radius[0].item() == pytest.approx(0.7, abs=1e-6)
    np.testing.assert_allclose(lyapunov(ring, x.double())["exponent"], math.log(radius[0]), atol=1e-10)
    decay = gradient_decay(ring, torch.nn.Linear(8, 1).double(), task, x.double(), y.double())
    rate, _ = fit_decay_rate(decay.lag, decay.log10_grad_norm)
    assert rate == pytest.approx(-math.log(radius[0]), abs=1e-10)

    torch.manual_seed(0)
    lru = models.build("lru", 2, 8, r_min=0.5, r_max=0.9).double()
    moduli = lru.eigenvalues().abs().detach().numpy()
    spectrum = lyapunov(lru, x.double())
    assert spectrum.cumulative_sum.iloc[-1] == pytest.approx(2 * np.log(moduli).sum(), abs=1e-10)
    assert spectrum.exponent.max() <= math.log(moduli.max()) + 0.05  # finite-time estimates


def test_linear_esn_reaches_memory_capacity_n_and_a_tanh_reservoir_less():
    """Jaeger 2001: a linear reservoir of spectral radius a < 1 has memory capacity near N;
    tanh saturation costs capacity."""
    torch.manual_seed(0)
    linear = models.build("esn", 1, 12, spectral_radius=0.8, activation="linear", input_scaling=0.1)
    torch.manual_seed(0)
    tanh = models.build("esn", 1, 12, spectral_radius=0.8, activation="tanh", input_scaling=1.0)
    mc_linear = memory_capacity(linear, max_delay=60)["mc"].sum()
    mc_tanh = memory_capacity(tanh, max_delay=60)["mc"].sum()
    assert mc_linear == pytest.approx(12, abs=0.5)
    assert mc_tanh < mc_linear - 1


def test_lstm_with_the_forget_gate_saturated_open_carries_its_cell_gradient_unchanged():
    """With f_t ≡ 1 and i_t ≡ 0, c_t = c_{t-1}: ∂c_t/∂c_k = I at every lag (the constant error
    carousel, Hochreiter & Schmidhuber 1997), while h's share decays through o_t ⊙ tanh'."""
    torch.manual_seed(0)
    lstm = models.build("lstm", 2, 6, forget_bias=40.0).double()
    with torch.no_grad():  # close the input gate (torch's gate order: i, f, g, o)
        lstm.lstm.bias_ih_l0[:6] = -40.0
        lstm.lstm.weight_ih_l0[:12] = 0.0
        lstm.lstm.weight_hh_l0[:12] = 0.0
    task, x, y = _task_batch(gap=25)
    readout = torch.nn.Linear(6, 1).double()
    decay = gradient_decay(lstm, readout, task, x.double(), y.double())
    full = decay.log10_grad_norm.to_numpy()
    # the cell state's share of the gradient is carried unchanged: the full-state norm
    # settles to a constant once h's own share has gone
    assert np.ptp(full[5:]) < 1e-8
    assert decay.log10_grad_norm_observed.iloc[-1] < decay.log10_grad_norm_observed.iloc[0] - 5


def _exact_linear_memory_capacity(weight, w, delays, digits=50):
    """Σ_k MC_k of h_t = W h_{t-1} + w u(t), u i.i.d.: MC_k = r_kᵀ C⁻¹ r_k / σ², r_k = σ² W^k w,
    C = σ² Σ_j W^j w wᵀ W^jᵀ, in `digits`-digit arithmetic (float64 cannot invert C here)."""
    import mpmath

    mpmath.mp.dps = digits
    W, v = mpmath.matrix(weight.tolist()), mpmath.matrix(w.tolist())
    powers, term = [], v
    for _ in range(400):  # a^400 is far below 10^-50 for the a used here
        powers.append(term)
        term = W * term
    C = sum((p * p.T for p in powers), mpmath.zeros(len(w)))
    inverse = C ** -1
    return [float((powers[k].T * inverse * powers[k])[0]) for k in delays]


@pytest.mark.parametrize("a, hidden", [(0.5, 20), (0.5, 32), (0.9, 16)])
def test_memory_capacity_of_a_linear_network_matches_the_exact_value(a, hidden):
    """W = aQ linear: the exact MC (50 digits) is N; the probe's least-squares readout must
    find it (a ridge of 1e-10 on standardised states read 18.8 for N = 20 and 21.1 for N = 32)."""
    torch.manual_seed(1)
    model = models.build("linear", 1, hidden, init="orthogonal", init_gain=a).double()
    weight, w = model.weight_hh.detach().numpy(), model.weight_ih.detach().numpy()[:, 0]
    delays = range(0, 2 * hidden + 1)
    exact = _exact_linear_memory_capacity(weight, w, delays)
    probe = memory_capacity(model, max_delay=2 * hidden, train_length=20_000)
    assert sum(exact) == pytest.approx(hidden, abs=1e-6 if a == 0.5 else 0.2)
    assert probe.mc.sum() == pytest.approx(sum(exact), abs=0.35)
    np.testing.assert_allclose(probe.mc.to_numpy(), exact, atol=0.03)
