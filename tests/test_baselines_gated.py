"""Gated and reservoir baselines: lstm, gru, esn, indrnn (models/lstm.py, gru.py, esn.py, indrnn.py).

Each model's `forward` (torch.nn.LSTM/GRU, the fused engine, or a loop) must describe the same
map as its `step`, which the propagation probes differentiate; these tests check that in
float64, plus what each family promises (the LSTM's constant error carousel, the ESN's fixed
rescaled reservoir, the IndRNN's bounded recurrent weights).
"""
import math

import pytest
import torch

from gapbench import models

# (name, options): every model, and the ESN's non-default update paths
CASES = [
    ("lstm", {}),
    ("gru", {}),
    ("esn", {}),
    ("esn", {"leak_rate": 0.3}),
    ("esn", {"activation": "linear", "spectral_radius": 0.5, "density": 0.3}),
    ("indrnn", {}),
]
IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options in CASES]
INPUT, HIDDEN, BATCH, STEPS = 3, 6, 4, 9


def build64(name, options, seed=0, batch_first=True):
    torch.manual_seed(seed)
    model = models.build(name, INPUT, HIDDEN, **options)
    if not batch_first:  # not a pipeline option: build the same class directly, same seed
        torch.manual_seed(seed)
        model = type(model)(INPUT, HIDDEN, **options, batch_first=False)
    return model.double()


def random_state(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    state = torch.randn(BATCH, model.state_size, generator=generator, dtype=torch.float64)
    return state.abs() if model.registry_name == "indrnn" else state  # a relu state is >= 0


def as_h0(model, state):
    """The state in the form forward accepts: (h_0, c_0) for the LSTM, (1, batch, H) otherwise."""
    if model.registry_name == "lstm":
        h, c = state.split(model.hidden_size, dim=-1)
        return h.unsqueeze(0), c.unsqueeze(0)
    return state.unsqueeze(0)


def inputs(seed=2):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, STEPS, INPUT, generator=generator, dtype=torch.float64)


# ----------------------------------------------------------------------------- the contract

@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_interface_shapes_like_torch_rnn(name, options):
    model = build64(name, options)
    x = inputs()
    output, h_n = model(x)
    assert model.input_size == INPUT and model.hidden_size == HIDDEN
    assert model.state_size == (2 * HIDDEN if name == "lstm" else HIDDEN)
    assert output.shape == (BATCH, STEPS, HIDDEN) and output.dtype == torch.float64
    if name == "lstm":  # like torch.nn.LSTM: (output, (h_n, c_n))
        h_n, c_n = h_n
        assert c_n.shape == (1, BATCH, HIDDEN)
        _, states = model.unroll(x)
        torch.testing.assert_close(c_n[0], states[:, -1, HIDDEN:], rtol=0, atol=1e-12)
    assert h_n.shape == (1, BATCH, HIDDEN)
    torch.testing.assert_close(h_n[0], output[:, -1], rtol=0, atol=0)
    # h0 is used, and time-major input gives the transposed output
    assert not torch.allclose(model(x, as_h0(model, random_state(model)))[0], output)
    time_major = build64(name, options, batch_first=False)
    torch.testing.assert_close(time_major(x.transpose(0, 1))[0], output.transpose(0, 1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_forward_equals_the_unrolled_step(name, options):
    model = build64(name, options)
    x = inputs()
    output, _ = model(x)
    reference, states = model.unroll(x)
    assert states.shape == (BATCH, STEPS, model.state_size)
    torch.testing.assert_close(output, reference, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.observe(states), reference, rtol=0, atol=0)
    # from a nonzero initial state too
    state = random_state(model)
    output, _ = model(x, as_h0(model, state))
    reference, _ = model.unroll(x, state)
    torch.testing.assert_close(output, reference, rtol=0, atol=1e-10)


def test_lstm_accepts_the_flat_state_as_h0():
    model = build64("lstm", {})
    x, state = inputs(), random_state(model)
    expected, _ = model(x, as_h0(model, state))
    torch.testing.assert_close(model(x, state)[0], expected, rtol=0, atol=0)
    torch.testing.assert_close(model(x, state.unsqueeze(0))[0], expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="last dimension 12"):
        model(x, torch.zeros(1, BATCH, HIDDEN, dtype=torch.float64))


@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_gradients_through_forward_equal_gradients_through_the_step_loop(name, options):
    model = build64(name, options)
    x = inputs().requires_grad_(True)
    state = random_state(model).requires_grad_(True)
    weights = torch.randn(BATCH, STEPS, HIDDEN, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    leaves = [x, state, *model.parameters()]

    output, _ = model(x, as_h0(model, state))
    through_forward = torch.autograd.grad((output * weights).sum() + output.pow(2).sum(), leaves)
    reference, _ = model.unroll(x, state)
    through_step = torch.autograd.grad((reference * weights).sum() + reference.pow(2).sum(), leaves)

    assert len(leaves) == 2 + len(list(model.parameters()))
    for forward_grad, step_grad in zip(through_forward, through_step):
        assert step_grad.abs().max() > 0  # every leaf reaches the loss
        torch.testing.assert_close(forward_grad, step_grad, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_step_works_under_torch_func(name, options):
    """The probes apply jacrev/vmap to step: it must be pure and agree with plain autograd."""
    model = build64(name, options)
    state, x_t = random_state(model), inputs()[:, 0]
    jacobian = torch.func.vmap(torch.func.jacrev(model.step, argnums=(0, 1)))(state, x_t)
    for b in range(BATCH):
        expected = torch.autograd.functional.jacobian(model.step, (state[b], x_t[b]))
        for got, want in zip(jacobian, expected):
            torch.testing.assert_close(got[b], want, rtol=0, atol=1e-12)
    assert jacobian[0].shape == (BATCH, model.state_size, model.state_size)
    assert jacobian[0].abs().max() > 0


@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_a_seed_fixes_the_model(name, options):
    first, second = build64(name, options, seed=5).state_dict(), build64(name, options, seed=5).state_dict()
    other = build64(name, options, seed=6).state_dict()
    assert first.keys() == second.keys() == other.keys() and len(first) > 0
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert any(not torch.equal(first[key], other[key]) for key in first)


def test_the_registry_lists_and_checks_the_options():
    assert {"lstm", "gru", "esn", "indrnn"} <= set(models.names())
    assert models.options("lstm") == ["forget_bias"]
    assert models.options("gru") == []
    assert models.options("esn") == [
        "activation", "bias_scaling", "density", "input_scaling", "leak_rate", "spectral_radius"
    ]
    assert models.options("indrnn") == ["gamma", "max_length"]
    with pytest.raises(ValueError, match="unknown option"):
        models.build("lstm", 2, 4, forget_gate_bias=1.0)


# ----------------------------------------------------------------------------- LSTM

def test_lstm_forget_bias_is_the_sum_of_torchs_two_biases():
    torch.manual_seed(0)
    model = models.build("lstm", 3, 5, forget_bias=2.5)
    forget = slice(5, 10)
    total = model.lstm.bias_ih_l0 + model.lstm.bias_hh_l0
    torch.testing.assert_close(total[forget].detach(), torch.full((5,), 2.5))
    assert torch.all(model.lstm.bias_hh_l0[forget] == 0)
    default = models.build("lstm", 3, 5)
    assert default.forget_bias == 1.0
    torch.testing.assert_close((default.lstm.bias_ih_l0 + default.lstm.bias_hh_l0)[forget].detach(), torch.ones(5))
    # the other gates keep torch's U(-1/√H, 1/√H) biases
    assert model.lstm.bias_ih_l0[:5].abs().max() <= 1 / math.sqrt(5)


def _cell_jacobian(model, lag):
    """∂c_t/∂c_{t-lag} (batch, H, H) through `lag` steps of `step`, from a random state."""
    x = inputs()[:, :lag]
    state = random_state(model)

    def run(s):
        for t in range(lag):
            s = model.step(s, x_t[t])
        return s

    x_t = x.unbind(1)
    full = torch.func.vmap(torch.func.jacrev(lambda s: run(s.unsqueeze(0))[0]))(state)
    hidden = model.hidden_size
    return full[:, hidden:, hidden:]


def test_lstm_with_the_forget_gate_open_and_the_input_gate_shut_carries_the_cell_gradient_unchanged():
    lag = 8
    model = build64("lstm", {"forget_bias": 30.0})
    with torch.no_grad():
        model.lstm.bias_ih_l0[:HIDDEN] = -30.0  # input gate ≈ σ(-30) ≈ 1e-13
    jacobian = _cell_jacobian(model, lag)
    identity = torch.eye(HIDDEN, dtype=torch.float64).expand_as(jacobian)
    torch.testing.assert_close(jacobian, identity, rtol=0, atol=1e-9)
    # the default forget gate (bias 1, f ≈ 0.73) forgets: the same Jacobian is far from I
    default = _cell_jacobian(build64("lstm", {}), lag)
    assert (default - identity).abs().max() > 0.5


# ----------------------------------------------------------------------------- ESN

@pytest.mark.parametrize("radius, density", [(0.9, 1.0), (0.5, 0.3), (1.2, 1.0), (0.99, 0.1)])
def test_esn_reservoir_has_the_requested_spectral_radius(radius, density):
    torch.manual_seed(0)
    model = models.build("esn", 2, 64, spectral_radius=radius, density=density)
    weight = model.weight_hh.double()
    assert abs(torch.linalg.eigvals(weight).abs().max().item() - radius) < 1e-6
    if density < 1.0:
        assert abs((weight != 0).double().mean().item() - density) < 0.05
    else:
        assert torch.all(weight != 0)


def test_esn_default_options_and_input_scaling():
    torch.manual_seed(0)
    model = models.build("esn", 3, 50, input_scaling=0.25, bias_scaling=0.0)
    assert (model.spectral_radius, model.density, model.leak_rate, model.activation) == (0.9, 1.0, 1.0, "tanh")
    assert model.weight_ih.abs().max() <= 0.25 and model.weight_ih.abs().max() > 0.2
    assert torch.all(model.bias == 0)
    default = models.build("esn", 3, 50)
    assert default.weight_ih.abs().max() <= 1.0 and default.bias.abs().max() <= 1.0 and default.bias.abs().max() > 0.5


def test_esn_reservoir_is_not_trained():
    torch.manual_seed(0)
    model = models.build("esn", 2, 16)
    assert list(model.parameters()) == []
    assert set(dict(model.named_buffers())) == {"weight_ih", "bias", "weight_hh"}
    assert set(model.state_dict()) == {"weight_ih", "bias", "weight_hh"}
    assert model.double().weight_hh.dtype == torch.float64  # buffers follow .double()/.to()
    net = models.Net(model.float(), 1)
    assert {name for name, _ in net.named_parameters()} == {"readout.weight", "readout.bias"}
    before = {key: value.clone() for key, value in net.state_dict().items()}
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    optimizer.zero_grad()
    net(torch.randn(4, 5, 2)).pow(2).mean().backward()
    optimizer.step()
    after = net.state_dict()
    for key in ("rnn.weight_ih", "rnn.bias", "rnn.weight_hh"):
        assert torch.equal(before[key], after[key])
    assert not torch.equal(before["readout.weight"], after["readout.weight"])


def test_esn_recurrent_weight_only_for_the_nonleaky_form():
    torch.manual_seed(0)
    plain = models.build("esn", 2, 8)
    assert plain.recurrent_weight() is plain.weight_hh
    assert models.build("esn", 2, 8, leak_rate=0.5).recurrent_weight() is None


def test_esn_leaky_update_is_the_convex_combination():
    model = build64("esn", {"leak_rate": 0.25})
    state, x_t = random_state(model), inputs()[:, 0]
    target = torch.tanh(state @ model.weight_hh.t() + x_t @ model.weight_ih.t() + model.bias)
    torch.testing.assert_close(model.step(state, x_t), 0.75 * state + 0.25 * target, rtol=0, atol=1e-14)


@pytest.mark.parametrize("seed", range(4))
def test_esn_leaky_linear_spectral_radius_is_at_most_the_convex_bound(seed):
    """ρ((1 − α)I + αW) = max_i |(1 − α) + α·λ_i| ≤ (1 − α) + α·ρ(W), with equality only when
    W's leading eigenvalue is real and positive (models/esn.py, docs/models.md)."""
    torch.manual_seed(seed)
    alpha = 0.3
    model = models.build("esn", 1, 16, activation="linear", leak_rate=alpha, spectral_radius=0.9).double()
    eigenvalues = torch.linalg.eigvals(model.weight_hh)
    step_jacobian = torch.func.jacrev(model.step)(torch.zeros(1, 16, dtype=torch.float64),
                                                  torch.zeros(1, 1, dtype=torch.float64))[0, :, 0, :]
    radius = torch.linalg.eigvals(step_jacobian).abs().max().item()
    assert radius == pytest.approx(((1 - alpha) + alpha * eigenvalues).abs().max().item(), abs=1e-12)
    assert radius <= (1 - alpha) + alpha * 0.9 + 1e-6  # W is rescaled to ρ = 0.9 in float64, stored in float32
    leading = eigenvalues[eigenvalues.abs().argmax()]
    if abs(leading.imag) > 1e-9 or leading.real < 0:
        assert radius < (1 - alpha) + alpha * 0.9 - 1e-6
    # a W whose leading eigenvalue is real and positive reaches the bound; a negative one does not
    for sign, reaches in ((1.0, True), (-1.0, False)):
        with torch.no_grad():
            model.weight_hh.copy_(torch.diag(torch.linspace(0.1, 0.9, 16, dtype=torch.float64).flip(0) * sign))
        jacobian = torch.func.jacrev(model.step)(torch.zeros(1, 16, dtype=torch.float64),
                                                 torch.zeros(1, 1, dtype=torch.float64))[0, :, 0, :]
        radius = torch.linalg.eigvals(jacobian).abs().max().item()
        assert (radius == pytest.approx((1 - alpha) + alpha * 0.9, abs=1e-12)) is reaches


def test_esn_linear_reservoir_builds_runs_and_is_linear():
    torch.manual_seed(0)
    model = models.build("esn", 1, 32, activation="linear", spectral_radius=0.8, bias_scaling=0.0).double()
    x = torch.randn(3, 200, 1, dtype=torch.float64)
    output, _ = model(x)
    assert torch.isfinite(output).all()
    torch.testing.assert_close(model(2.0 * x - 0.5 * x.flip(0))[0], 2.0 * output - 0.5 * output.flip(0))
    # fading memory: an impulse's echo decays (ρ = 0.8 < 1)
    impulse = torch.zeros(1, 200, 1, dtype=torch.float64)
    impulse[0, 0, 0] = 1.0
    echo = model(impulse)[0][0].norm(dim=-1)
    assert echo[-1] < 1e-6 * echo[0]


def test_esn_rejects_bad_options():
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        models.build("esn", 2, 8, activation="relu")
    with pytest.raises(ValueError, match="density"):
        models.build("esn", 2, 8, density=0.0)
    with pytest.raises(ValueError, match="leak_rate"):
        models.build("esn", 2, 8, leak_rate=1.5)


# ----------------------------------------------------------------------------- IndRNN

def test_indrnn_is_relu_with_a_diagonal_recurrent_weight_in_the_paper_bound():
    torch.manual_seed(0)
    model = models.build("indrnn", 2, 64, max_length=100)
    bound = 2.0 ** (1 / 100)
    assert model.activation == "relu" and model.bound == pytest.approx(bound)
    u = model.recurrent_vector().detach()
    torch.testing.assert_close(model.recurrent_weight().detach(), torch.diag(u))
    assert u.min() >= 0 and u.max() < bound and u.max() > 0.9 * bound  # U(0, bound)
    assert models.build("indrnn", 2, 4).bound == pytest.approx(2.0 ** (1 / 1000))
    assert models.build("indrnn", 2, 4, gamma=10.0, max_length=50).bound == pytest.approx(10.0 ** (1 / 50))


def test_indrnn_training_cannot_leave_the_bound():
    torch.manual_seed(0)
    model = models.build("indrnn", 2, 8, max_length=20)
    with torch.no_grad():
        model.bias.fill_(1.0)  # every unit active, so every u_n gets a gradient
    optimizer = torch.optim.SGD(model.parameters(), lr=100.0)
    for _ in range(5):  # a loss that rewards ever larger recurrent weights, with huge steps
        optimizer.zero_grad()
        (-model(torch.rand(4, 20, 2))[0][:, -1].sum()).backward()
        optimizer.step()
    u = model.recurrent_vector().detach()
    assert u.abs().max() <= model.bound
    assert u.min() > 0.99 * model.bound  # it was pushed there, and stays finite
    assert torch.isfinite(model(torch.rand(4, 20, 2))[0]).all()


# ----------------------------------------------------------------------------- CUDA

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_runs_unchanged_on_cuda(name, options):
    torch.manual_seed(0)
    model = models.build(name, INPUT, HIDDEN, **options)
    x = inputs().float()
    cpu_output, _ = model(x)
    model = model.cuda()
    output, _ = model(x.cuda())
    reference, _ = model.unroll(x.cuda())
    torch.testing.assert_close(output, reference, rtol=0, atol=1e-5)
    torch.testing.assert_close(output.cpu(), cpu_output, rtol=0, atol=1e-5)
    output.sum().backward()
