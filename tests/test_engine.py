"""The fused recurrence against a plain autograd loop: outputs and every gradient."""
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torch.func import jacfwd, jacrev
from torch.nn import functional as F

from conftest import benchmark_module
from gapbench.engine import project_input, recurrence, reference_recurrence

ACTIVATIONS = ["tanh", "relu", "linear"]


def _gradients(fn, u, weight, h0, loss_kind, activation):
    u, weight, h0 = (t.detach().clone().requires_grad_(True) for t in (u, weight, h0))
    output, h_n = fn(u, weight, h0, activation)
    if loss_kind == "every_step":
        loss = (output * torch.linspace(-1, 1, output.shape[-1], dtype=u.dtype)).sum() + h_n.sum()
    else:
        loss = (output[:, -1] ** 2).sum()
    loss.backward()
    return output.detach(), u.grad, weight.grad, h0.grad


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss_kind", ["every_step", "last_step"])
@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_engine_matches_autograd(activation, loss_kind, dtype, rtol):
    generator = torch.Generator().manual_seed(0)
    u = torch.randn(4, 30, 6, generator=generator, dtype=dtype)
    weight = 0.4 * torch.randn(6, 6, generator=generator, dtype=dtype)
    h0 = torch.randn(4, 6, generator=generator, dtype=dtype)
    fused = _gradients(recurrence, u, weight, h0, loss_kind, activation)
    plain = _gradients(reference_recurrence, u, weight, h0, loss_kind, activation)
    for name, a, b in zip(["output", "u", "W_h", "h0"], fused, plain):
        scale = b.abs().max().clamp_min(1e-30)
        assert ((a - b).abs().max() / scale) < rtol, name


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 5), steps=st.integers(1, 12), hidden=st.integers(1, 7),
    activation=st.sampled_from(ACTIVATIONS), seed=st.integers(0, 10_000),
)
def test_engine_gradcheck_over_shapes(batch, steps, hidden, activation, seed):
    generator = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, steps, hidden, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = (0.5 * torch.randn(hidden, hidden, generator=generator, dtype=torch.float64)).requires_grad_()
    h0 = torch.randn(batch, hidden, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: recurrence(*a, activation), (u, weight, h0))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's own jvp setup
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("inputs", [1, 2, 10])
def test_input_projection_is_f_linear_with_the_same_gradients(inputs, with_bias):
    """Forward values are F.linear's bits; every gradient matches F.linear's autograd to
    rounding (only the order of one sum differs), for a batch-first upstream gradient and for a
    time-major one seen batch-first (what the engine hands back); in float64, gradcheck passes
    and forward mode (jacfwd, the probes' tests use it) agrees with reverse mode."""
    generator = torch.Generator().manual_seed(inputs)
    x = torch.randn(5, 9, inputs, generator=generator, requires_grad=True)
    weight = torch.randn(6, inputs, generator=generator, requires_grad=True)
    bias = torch.randn(6, generator=generator, requires_grad=True) if with_bias else None
    leaves = [x, weight] + ([bias] if with_bias else [])
    assert torch.equal(project_input(x, weight, bias), F.linear(x, weight, bias))
    for upstream in (torch.randn(5, 9, 6, generator=generator),
                     torch.randn(9, 5, 6, generator=generator).transpose(0, 1)):
        got = torch.autograd.grad(project_input(x, weight, bias), leaves, upstream)
        expected = torch.autograd.grad(F.linear(x, weight, bias), leaves, upstream)
        for a, b in zip(got, expected):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    double = [leaf.detach().double().requires_grad_() for leaf in leaves]
    assert torch.autograd.gradcheck(lambda *a: project_input(*a), tuple(double))
    argnums = tuple(range(len(double)))
    reverse = jacrev(project_input, argnums=argnums)(*double)
    forward = jacfwd(project_input, argnums=argnums)(*double)
    for r, f in zip(reverse, forward):
        torch.testing.assert_close(r, f, rtol=0, atol=1e-12)


def test_interface_matches_torch_rnn():
    """Same weights ⇒ same (output, h_n) as torch.nn.RNN(batch_first=True), h0 optional."""
    torch.manual_seed(0)
    rnn = torch.nn.RNN(3, 5, batch_first=True)
    x = torch.randn(2, 7, 3)
    u = x @ rnn.weight_ih_l0.t() + rnn.bias_ih_l0 + rnn.bias_hh_l0
    for h0 in (None, torch.randn(1, 2, 5)):
        expected = rnn(x, h0)
        got = recurrence(u, rnn.weight_hh_l0, h0, "tanh")
        for a, b in zip(got, expected):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b)


def test_time_major_layout():
    u = torch.randn(7, 2, 4)
    weight = torch.randn(4, 4) * 0.3
    output, h_n = recurrence(u, weight, batch_first=False)
    ref_output, ref_h_n = reference_recurrence(u, weight, batch_first=False)
    torch.testing.assert_close(output, ref_output)
    torch.testing.assert_close(h_n, ref_h_n)


def test_unknown_activation_names_the_allowed_ones():
    with pytest.raises(ValueError, match="allowed: \\['linear', 'relu', 'tanh'\\]"):
        recurrence(torch.zeros(1, 2, 3), torch.eye(3), activation_name="sigmoidish")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_reports_the_gradient_norm_at_every_step(activation):
    """grad_norms[k] = ||∂L/∂h_k||, the total derivative, as autograd's retained grads give it."""
    generator = torch.Generator().manual_seed(1)
    u = torch.randn(3, 25, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    weight = 0.6 * torch.randn(5, 5, generator=generator, dtype=torch.float64)
    target = torch.randn(3, 25, 5, generator=generator, dtype=torch.float64)
    norms = torch.zeros(25, dtype=torch.float64)
    output, _ = recurrence(u, weight, None, activation, grad_norms=norms)
    (output * target).sum().backward()

    phi = {"tanh": torch.tanh, "relu": torch.relu, "linear": lambda a: a}[activation]
    h, states = torch.zeros(3, 5, dtype=torch.float64), []
    for t in range(25):
        h = phi(h @ weight.t() + u[:, t])
        h.retain_grad()
        states.append(h)
    (torch.stack(states, 1) * target).sum().backward()
    expected = torch.stack([state.grad.norm() for state in states])
    torch.testing.assert_close(norms, expected, rtol=1e-12, atol=0)


@pytest.mark.pipeline
def test_benchmark_script_runs_and_appends_rows(tmp_path):
    """The benchmark is a script, not a timed test: this only keeps it from rotting."""
    import subprocess
    import sys

    import pandas as pd

    out = tmp_path / "engine.csv"
    for _ in range(2):  # as users run it; a process of its own, since it sets torch's global flags
        subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "benchmarks" / "engine.py"), "--batch", "2", "--hidden", "4", "--lengths", "3",
                        "6", "--repeats", "1", "--activations", "tanh", "linear", "--out", str(out)],
                       check=True, capture_output=True)
    rows = pd.read_csv(out)
    assert len(rows) == 2 * (2 * 6 + 2 * 4)  # two calls; per T: tanh 6 implementations, linear 4 (no nn.RNN, no φ)
    assert set(rows.implementation) == {"engine", "autograd", "autograd-u", "nn.RNN", "floor", "floor+φ"}
    assert (rows.seconds > 0).all()


@pytest.mark.pipeline
def test_input_projection_benchmark_compares_the_two_projections(tmp_path):
    """benchmarks/input_projection.py: its F.linear arm really runs F.linear (the weight's
    gradient node is F.linear's, not project_input's), and the script appends one row per case."""
    import subprocess
    import sys

    import pandas as pd

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "input_projection.py"
    benchmark = benchmark_module("input_projection")
    x, weight = torch.randn(3, 4, 2), torch.randn(5, 2, requires_grad=True)
    with benchmark.projection("F.linear"):
        assert "_InputProjection" not in type(project_input(x, weight).grad_fn).__name__
    assert "_InputProjection" in type(project_input(x, weight).grad_fn).__name__  # restored

    out = tmp_path / "input_projection.csv"
    for _ in range(2):
        subprocess.run([sys.executable, str(script), "--models", "vanilla", "lru", "--lengths", "4", "--inputs", "2",
                        "--repeats", "1", "--out", str(out)], check=True, capture_output=True)
    rows = pd.read_csv(out)
    assert len(rows) == 2 * 2 and set(rows.model) == {"vanilla", "lru"}
    assert (rows.us_per_time_step_project_input > 0).all() and (rows.us_per_time_step_f_linear > 0).all()
