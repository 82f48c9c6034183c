"""The gradient-decay probe against autograd and against the analytic cases of the lecture."""
import math

import numpy as np
import pytest
import torch

import models
import tasks
from gapbench.probes import gradient_decay


def _setup(model_name, gap=6, hidden=8, **options):
    torch.manual_seed(0)
    task = tasks.build("copy", gap)
    batch = task.sample(5, np.random.default_rng(0))
    model = models.build(model_name, task.input_size, hidden, **options)
    readout = torch.nn.Linear(hidden, task.output_size)
    return task, model, readout, torch.from_numpy(batch["x"]), torch.from_numpy(batch["y"])


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


def test_orthogonal_linear_gradient_is_flat():
    """Q is orthogonal to float32 precision (the model's own dtype): rate below 1e-8 per step."""
    task, model, readout, x, y = _setup("orthogonal", gap=200)
    table = gradient_decay(model, readout, task, x, y)
    rate = np.polyfit(table.lag, table.log10_grad_norm * math.log(10), 1)[0]
    assert abs(rate) < 1e-8
    assert np.ptp(table.log10_grad_norm) < 1e-5


def test_scaled_orthogonal_decays_at_rate_log_a_far_below_float64():
    """W_h = aQ with linear φ: ||g_k|| = a^(t−k) ||g_t|| exactly, even at 1e-400 and beyond."""
    a = 0.5
    task, model, readout, x, y = _setup("linear", gap=2000, init="orthogonal", init_gain=a)
    table = gradient_decay(model, readout, task, x, y)
    slope = np.diff(table.log10_grad_norm.to_numpy())
    np.testing.assert_allclose(slope, math.log10(a), atol=1e-9)
    assert table.log10_grad_norm.iloc[-1] < -600  # exact where float64 itself would be 0
    assert table.grad_norm.iloc[-1] == 0.0


def test_tanh_decays_at_least_as_fast_as_the_norm_bound():
    """||∂L_t/∂h_k|| ≤ ||∂L_t/∂h_t|| ∏ ||D_l|| ||W_h|| ≤ ||∂L_t/∂h_t|| ||W_h||₂^(t−k) (||D|| ≤ 1 for tanh)."""
    task, model, readout, x, y = _setup("vanilla", gap=80, hidden=16)
    table = gradient_decay(model, readout, task, x, y)
    sigma = torch.linalg.matrix_norm(model.weight_hh.detach().double(), ord=2).item()
    bound = table.log10_grad_norm.iloc[0] + table.lag * math.log10(sigma)
    assert (table.log10_grad_norm <= bound + 1e-9).all()
    assert table.log10_grad_norm.iloc[-1] < table.log10_grad_norm.iloc[0] - 10
