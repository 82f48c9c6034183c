"""expRNN, LRU, coRNN and AntisymmetricRNN: the model contract and the structure each promises.

Everything runs in float64: forward must equal `unroll` (the `step` loop the probes
differentiate) to 1e-10, and its gradients those of the loop to 1e-8.
"""
import math

import pytest
import torch
from torch.func import jacfwd, jacrev, vmap

from gapbench import models
from gapbench.models.exprnn import modrelu
from gapbench.models.lru import linear_scan

# (registry name, options): every model, and the LRU once more with its other scan
CASES = [
    ("exprnn", {}),
    ("exprnn", {"init": "cayley"}),
    ("lru", {}),
    ("lru", {"scan": "parallel", "r_min": 0.9, "r_max": 0.999}),
    ("cornn", {}),
    ("antisymmetric", {}),
]
IDS = [name + "".join(f"-{v}" for v in options.values()) for name, options in CASES]
INPUT, HIDDEN, BATCH, STEPS = 3, 6, 4, 23


def build(name, options, seed=0, batch_first=True):
    torch.manual_seed(seed)
    if batch_first:
        return models.build(name, INPUT, HIDDEN, **options).double()
    # batch_first is no option of a run (the registry refuses it): call the class itself
    cls = type(models.build(name, INPUT, HIDDEN, **options))
    torch.manual_seed(seed)
    return cls(INPUT, HIDDEN, **options, batch_first=False).double()


def data(model, seed=1, steps=STEPS):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, steps, INPUT, generator=generator, dtype=torch.float64)
    h0 = torch.randn(1, BATCH, model.state_size, generator=generator, dtype=torch.float64)
    return x, h0


def test_the_models_are_registered_with_their_options():
    assert {"exprnn", "lru", "cornn", "antisymmetric"} <= set(models.names())
    assert models.options("exprnn") == ["init"]
    assert models.options("lru") == ["max_phase", "r_max", "r_min", "scan"]
    assert models.options("cornn") == ["dt", "epsilon", "gamma"]
    assert models.options("antisymmetric") == ["epsilon", "gamma", "sigma_w"]


@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_rnn_interface_and_state_layout(name, options):
    model = build(name, options)
    x, h0 = data(model)
    output, h_n = model(x)
    assert output.shape == (BATCH, STEPS, HIDDEN)
    assert model.hidden_size == HIDDEN and model.input_size == INPUT
    assert h_n.shape == (1, BATCH, model.state_size)
    torch.testing.assert_close(model.observe(h_n[0]), output[:, -1], rtol=0, atol=0)
    assert model.recurrent_weight() is None
    assert model.weight_ih.shape[-1] == INPUT

    # h0 matters, and (1, B, S) and (B, S) mean the same initial state
    with_h0, _ = model(x, h0)
    assert not torch.allclose(with_h0, output)
    torch.testing.assert_close(model(x, h0[0])[0], with_h0, rtol=0, atol=0)

    # h_n is the full state: running the second half from it continues the first half exactly
    _, h_mid = model(x[:, :10], h0)
    torch.testing.assert_close(model(x[:, 10:], h_mid)[0], with_h0[:, 10:], rtol=0, atol=1e-12)

    # batch_first=False: time-major tensors, same numbers
    time_major = build(name, options, batch_first=False)
    out_tm, h_n_tm = time_major(x.transpose(0, 1), h0)
    torch.testing.assert_close(out_tm.transpose(0, 1), with_h0, rtol=0, atol=0)
    torch.testing.assert_close(h_n_tm, model(x, h0)[1], rtol=0, atol=0)


@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_forward_equals_the_unrolled_step(name, options):
    model = build(name, options)
    x, h0 = data(model)
    for initial in (None, h0):
        output, h_n = model(x, initial)
        unrolled, states = model.unroll(x, None if initial is None else initial[0])
        assert states.shape == (BATCH, STEPS, model.state_size)
        torch.testing.assert_close(output, unrolled, rtol=0, atol=1e-10)
        torch.testing.assert_close(h_n[0], states[:, -1], rtol=0, atol=1e-10)
        torch.testing.assert_close(model.observe(states), output, rtol=0, atol=1e-10)


def _gradients(model, x, h0, run):
    model.zero_grad()
    x, h0 = x.clone().requires_grad_(True), h0.clone().requires_grad_(True)
    output, final = run(x, h0)
    weights = torch.linspace(-1.0, 1.0, output.numel(), dtype=torch.float64).reshape(output.shape)
    loss = (output * weights).sum() + final.square().sum()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    grads.update(x=x.grad, h0=h0.grad)
    return grads


@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_gradients_through_forward_equal_those_through_the_step_loop(name, options):
    model = build(name, options)
    x, h0 = data(model)

    def through_forward(x, h0):
        output, h_n = model(x, h0)
        return output, h_n[0]

    def through_unroll(x, h0):
        output, states = model.unroll(x, h0[0])
        return output, states[:, -1]

    fast, loop = _gradients(model, x, h0, through_forward), _gradients(model, x, h0, through_unroll)
    assert fast.keys() == loop.keys() and len(fast) >= 5
    for key in fast:
        assert fast[key].abs().sum() > 0, key  # every parameter, x and h0 receive a gradient
        torch.testing.assert_close(fast[key], loop[key], rtol=0, atol=1e-8, msg=key)


@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_deterministic_under_the_seed(name, options):
    a, b, other = build(name, options, seed=5), build(name, options, seed=5), build(name, options, seed=6)
    x, _ = data(a)
    for (key, p), q, r in zip(a.state_dict().items(), b.state_dict().values(), other.state_dict().values()):
        assert torch.equal(p, q), key
    assert any(not torch.equal(p, r) for p, r in zip(a.state_dict().values(), other.state_dict().values()))
    assert torch.equal(a(x)[0], b(x)[0])


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # torch's own jvp setup
@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_step_is_a_pure_function_the_probes_can_transform(name, options):
    """jacrev (reverse) and jacfwd (forward mode) of step agree, vmap over sequences works,
    and step leaves its arguments untouched."""
    model = build(name, options)
    x, h0 = data(model)
    state, x_t = h0[0].clone(), x[:, 0].clone()
    before = (state.clone(), x_t.clone())
    per_sequence = lambda s, u: model.step(s.unsqueeze(0), u.unsqueeze(0)).squeeze(0)  # noqa: E731
    reverse = vmap(jacrev(per_sequence, argnums=(0, 1)))(state, x_t)
    forward = vmap(jacfwd(per_sequence, argnums=(0, 1)))(state, x_t)
    assert reverse[0].shape == (BATCH, model.state_size, model.state_size)
    assert reverse[1].shape == (BATCH, model.state_size, INPUT)
    for r, f in zip(reverse, forward):
        torch.testing.assert_close(r, f, rtol=0, atol=1e-12)
    torch.testing.assert_close(vmap(per_sequence)(state, x_t), model.step(state, x_t), rtol=0, atol=0)
    assert torch.equal(state, before[0]) and torch.equal(x_t, before[1])


@pytest.mark.parametrize("name, options", CASES, ids=IDS)
def test_runs_unchanged_on_cuda(name, options):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = build(name, options)
    x, h0 = data(model)
    expected = model(x, h0)
    model.cuda()
    got = model(x.cuda(), h0.cuda())
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=1e-10)
    torch.testing.assert_close(model.unroll(x.cuda(), h0[0].cuda())[0].cpu(), expected[0], rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- expRNN

def _orthogonality_error(weight):
    return (weight.mT @ weight - torch.eye(weight.shape[0], dtype=weight.dtype)).abs().max().item()


@pytest.mark.parametrize("init", ["henaff", "cayley"])
def test_exprnn_stays_orthogonal_at_init_and_after_optimiser_steps(init):
    torch.manual_seed(0)
    model = models.build("exprnn", 2, 16, init=init).double()
    weight = model.recurrent_matrix().detach()
    assert _orthogonality_error(weight) < 1e-10
    assert torch.linalg.det(weight).item() == pytest.approx(1.0, abs=1e-10)  # exp of skew: SO(n)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(5):
        optimizer.zero_grad()
        model(torch.randn(4, 7, 2, dtype=torch.float64))[0].square().sum().backward()
        optimizer.step()
    moved = model.recurrent_matrix().detach()
    assert (moved - weight).abs().max() > 1e-2  # training did change W
    assert _orthogonality_error(moved) < 1e-10


def test_exprnn_initialisations_are_the_published_rotation_angles():
    """W starts block-diagonal with 2×2 rotations: henaff angles ~ U(−π, π), cayley angles
    −tan(u/2) with u ~ U(0, π/2), i.e. in (−1, 0] (expRNN's initialization.py)."""
    torch.manual_seed(0)
    henaff = models.build("exprnn", 1, 400, init="henaff").double()
    cayley = models.build("exprnn", 1, 400, init="cayley").double()
    for model in (henaff, cayley):
        weight = model.recurrent_matrix().detach()
        blocks = weight.reshape(200, 2, 200, 2).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # (200, 2, 2)
        off_block = weight.clone()
        for k in range(200):
            off_block[2 * k: 2 * k + 2, 2 * k: 2 * k + 2] = 0
        assert off_block.abs().max() < 1e-12
        torch.testing.assert_close(blocks[:, 0, 0], blocks[:, 1, 1])
        torch.testing.assert_close(blocks[:, 0, 1], -blocks[:, 1, 0])
    # blocks [[cos θ, sin θ], [−sin θ, cos θ]]: θ from (sin, cos)
    theta = torch.atan2(henaff.recurrent_matrix().detach()[0::2, 1::2].diagonal(),
                        henaff.recurrent_matrix().detach()[0::2, 0::2].diagonal())
    torch.testing.assert_close(theta, henaff.log_recurrent.detach()[0::2, 1::2].diagonal())  # the angles of A
    assert theta.abs().max() < math.pi and theta.min() < -2.5 and theta.max() > 2.5
    assert abs(theta.mean().item()) < 0.4  # U(−π, π): mean 0, sd π/√3/√200 ≈ 0.13
    phi = torch.atan2(cayley.recurrent_matrix().detach()[0::2, 1::2].diagonal(),
                      cayley.recurrent_matrix().detach()[0::2, 0::2].diagonal())
    # expRNN's angles are −tan(u/2) ∈ (−1, 0]; W = exp(A − Aᵀ) rotates by them
    torch.testing.assert_close(phi, cayley.log_recurrent.detach()[0::2, 1::2].diagonal())
    assert phi.max() <= 1e-12 and phi.min() > -1.0 and phi.min() < -0.8
    # modReLU bias and He-normal input weights
    assert henaff.bias.abs().max() <= 0.01 and henaff.bias.abs().max() > 0.009
    wide = models.build("exprnn", 50, 400)
    assert wide.weight_ih.std().item() == pytest.approx(math.sqrt(2 / 50), rel=0.05)
    with pytest.raises(ValueError, match="unknown init 'orthogonal'"):
        models.build("exprnn", 2, 4, init="orthogonal")


def test_modrelu_by_hand_and_the_exprnn_jacobian():
    z = torch.tensor([-2.0, 0.5, -0.1, 0.0, 3.0], dtype=torch.float64)
    b = torch.tensor([-1.0, -1.0, 0.05, 0.3, 0.0], dtype=torch.float64)
    torch.testing.assert_close(modrelu(z, b), torch.tensor([-1.0, 0.0, -0.15, 0.0, 3.0], dtype=torch.float64))
    # ∂h_t/∂h_{t-1} = diag(1[h_t ≠ 0]) W
    torch.manual_seed(0)
    model = models.build("exprnn", 3, 8).double()
    with torch.no_grad():
        model.bias.fill_(-1.5)  # some units cut
    state, x_t = torch.randn(1, 8, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64)
    h = model.step(state, x_t)
    assert 0 < (h == 0).sum() < 8
    jacobian = jacrev(model.step)(state, x_t)[0, :, 0, :]
    expected = (h[0] != 0).double().unsqueeze(1) * model.recurrent_matrix().detach()
    torch.testing.assert_close(jacobian, expected, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- LRU

def test_lru_drive_scales_each_mode_by_its_own_gamma():
    """drive = [Re, Im](γ ⊙ B x): mode j's real and imaginary parts both by γ_j (three modes, three γ)."""
    torch.manual_seed(0)
    model = models.build("lru", 2, 6).double()
    gamma = torch.tensor([0.1, 0.5, 2.0], dtype=torch.float64)
    with torch.no_grad():
        model.gamma_log.copy_(torch.log(gamma))
    x = torch.randn(4, 2, dtype=torch.float64)
    projected = x @ model.weight_ih.detach().T  # [Re B x, Im B x]
    expected = torch.cat([projected[:, :3] * gamma, projected[:, 3:] * gamma], dim=-1)
    torch.testing.assert_close(model.drive(x).detach(), expected, rtol=1e-12, atol=0)


def test_lru_ring_initialisation():
    torch.manual_seed(0)
    r_min, r_max, max_phase = 0.9, 0.999, 0.314
    model = models.build("lru", 5, 8000, r_min=r_min, r_max=r_max, max_phase=max_phase).double()
    lam = model.eigenvalues().detach()
    assert lam.shape == (4000,) and lam.dtype == torch.complex128
    modulus = lam.abs()
    assert modulus.min() >= r_min - 1e-6 and modulus.max() <= r_max + 1e-6
    # uniform on the ring: |λ|² ~ U(r_min², r_max²); its mean and quartiles
    squared = modulus.square()
    lo, hi = r_min**2, r_max**2
    assert squared.mean().item() == pytest.approx((lo + hi) / 2, abs=0.01 * (hi - lo))
    for q in (0.25, 0.5, 0.75):
        assert squared.quantile(q).item() == pytest.approx(lo + q * (hi - lo), abs=0.03 * (hi - lo))
    phase = torch.exp(model.theta_log.detach())
    assert phase.min() >= 0 and phase.max() <= max_phase + 1e-6 and phase.max() > 0.95 * max_phase
    torch.testing.assert_close(torch.exp(model.gamma_log.detach()), torch.sqrt(1 - squared), rtol=1e-5, atol=0)
    assert model.weight_ih.shape == (8000, 5)
    assert model.weight_ih.std().item() == pytest.approx(1 / math.sqrt(2 * 5), rel=0.02)
    # the paper's defaults: the whole unit disc, phases up to 6.28
    default = models.build("lru", 1, 2000)
    assert (default.r_min, default.r_max, default.max_phase, default.scan) == (0.0, 1.0, 6.28, "sequential")
    assert default.eigenvalues().abs().max() <= 1.0 and default.eigenvalues().abs().min() < 0.2
    for bad in ({"r_min": 0.5, "r_max": 0.4}, {"r_max": 1.5}, {"scan": "blelloch"}):
        with pytest.raises(ValueError):
            models.build("lru", 1, 4, **bad)
    with pytest.raises(ValueError, match="even"):
        models.build("lru", 1, 5)


@pytest.mark.parametrize("steps", [1, 2, 3, 7, 64, 100])
def test_lru_parallel_scan_equals_the_sequential_loop(steps):
    torch.manual_seed(0)
    sequential = models.build("lru", 2, 16, r_min=0.5, r_max=0.999).double()
    parallel = models.build("lru", 2, 16, scan="parallel").double()
    parallel.load_state_dict(sequential.state_dict())
    x, h0 = data(sequential, steps=steps)
    x = x[..., :2]
    for initial in (None, h0):
        for out_s, out_p in zip(sequential(x, initial), parallel(x, initial)):
            torch.testing.assert_close(out_s, out_p, rtol=0, atol=1e-10)
    a = _gradients(sequential, x, h0, lambda x, h: (lambda o, h_n: (o, h_n[0]))(*sequential(x, h)))
    b = _gradients(parallel, x, h0, lambda x, h: (lambda o, h_n: (o, h_n[0]))(*parallel(x, h)))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-8, msg=key)


def test_linear_scan_is_the_recurrence():
    generator = torch.Generator().manual_seed(0)
    decay = torch.polar(torch.rand(5, generator=generator, dtype=torch.float64),
                        torch.rand(5, generator=generator, dtype=torch.float64) * 6.28)
    drive = torch.randn(3, 37, 5, generator=generator, dtype=torch.complex128)
    state, expected = torch.zeros(3, 5, dtype=torch.complex128), []
    for t in range(37):
        state = decay * state + drive[:, t]
        expected.append(state)
    torch.testing.assert_close(linear_scan(decay, drive), torch.stack(expected, 1), rtol=0, atol=1e-12)


def test_lru_state_jacobian_is_diag_lambda_in_real_form():
    torch.manual_seed(0)
    model = models.build("lru", 3, 10, r_min=0.3, r_max=0.95).double()
    lam = model.eigenvalues().detach()
    x, h0 = data(model)
    jacobians = [jacrev(model.step)(h0[0][i:i + 1], x[i:i + 1, t])[0, :, 0, :] for i, t in ((0, 0), (2, 5))]
    torch.testing.assert_close(jacobians[0], jacobians[1], rtol=0, atol=0)  # linear: the same everywhere
    jacobian = jacobians[0]
    moduli = torch.linalg.eigvals(jacobian).abs().sort().values
    torch.testing.assert_close(moduli, lam.abs().repeat(2).sort().values, rtol=0, atol=1e-12)
    # the 2×2 rotation-scaling blocks [[Re λ, −Im λ], [Im λ, Re λ]] on (Re x_j, Im x_j)
    n = 5
    expected = torch.zeros(10, 10, dtype=torch.float64)
    idx = torch.arange(n)
    expected[idx, idx] = expected[idx + n, idx + n] = lam.real
    expected[idx, idx + n], expected[idx + n, idx] = -lam.imag, lam.imag
    torch.testing.assert_close(jacobian, expected, rtol=0, atol=1e-14)
    # the readout sees the whole state
    state = torch.randn(2, 10, dtype=torch.float64)
    assert torch.equal(model.observe(state), state)


# ----------------------------------------------------------------------------- AntisymmetricRNN

def test_antisymmetric_eigenvalues_are_imaginary_and_the_jacobian_is_euler():
    torch.manual_seed(0)
    model = models.build("antisymmetric", 3, 32, gamma=0.05, epsilon=0.1, sigma_w=4.0).double()
    weight = model.weight_hh.detach()
    skew = torch.linalg.eigvals(weight - weight.mT)
    assert skew.real.abs().max() < 1e-12 and skew.imag.abs().max() > 1.0
    shifted = torch.linalg.eigvals(model.recurrent_matrix().detach())
    torch.testing.assert_close(shifted.real, torch.full((32,), -0.05, dtype=torch.float64), rtol=0, atol=1e-12)
    # ∂h_t/∂h_{t-1} = I + ε diag(1 − tanh²(a)) (W − Wᵀ − γI)
    state, x_t = torch.randn(1, 32, dtype=torch.float64), torch.randn(1, 3, dtype=torch.float64)
    a = state @ model.recurrent_matrix().mT + x_t @ model.weight_ih.mT + model.bias
    slopes = (1 - torch.tanh(a[0]) ** 2).unsqueeze(1)
    expected = torch.eye(32, dtype=torch.float64) + 0.1 * slopes * model.recurrent_matrix()
    torch.testing.assert_close(jacrev(model.step)(state, x_t)[0, :, 0, :], expected.detach(), rtol=0, atol=1e-14)
    # App. C initialisation: V ~ N(0, 1/m), W ~ N(0, σ_w²/n), b = 0
    wide = models.build("antisymmetric", 100, 300, sigma_w=2.0)
    assert wide.weight_ih.std().item() == pytest.approx(0.1, rel=0.05)
    assert wide.weight_hh.std().item() == pytest.approx(2.0 / math.sqrt(300), rel=0.05)
    assert torch.equal(wide.bias, torch.zeros(300))
    defaults = models.build("antisymmetric", 1, 4)
    assert (defaults.epsilon, defaults.gamma, defaults.sigma_w) == (0.01, 0.01, 1.0)


# ----------------------------------------------------------------------------- coRNN

def test_cornn_step_matches_a_hand_computed_update():
    """One unit, one input, the adding-task defaults dt = 0.06, γ = 66, ε = 15."""
    model = models.build("cornn", 1, 1).double()
    assert (model.dt, model.gamma, model.epsilon) == (0.06, 66.0, 15.0)
    W, W_z, V, b = 0.5, -0.25, 2.0, 0.1
    with torch.no_grad():
        model.weight_hy.fill_(W)
        model.weight_hz.fill_(W_z)
        model.weight_ih.fill_(V)
        model.bias.fill_(b)
    y, z, u = 0.3, -0.2, 0.7
    z_new = z + 0.06 * (math.tanh(W * y + W_z * z + V * u + b) - 66.0 * y - 15.0 * z)
    y_new = y + 0.06 * z_new  # y from the new z (IMEX)
    got = model.step(torch.tensor([[y, z]], dtype=torch.float64), torch.tensor([[u]], dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor([[y_new, z_new]], dtype=torch.float64), rtol=0, atol=1e-15)
    assert model.observe(got).item() == pytest.approx(y_new, abs=1e-15)  # the readout sees y


def test_cornn_options_and_initialisation():
    torch.manual_seed(0)
    model = models.build("cornn", 7, 40, dt=0.042, gamma=2.7, epsilon=4.7)
    assert (model.dt, model.gamma, model.epsilon, model.state_size) == (0.042, 2.7, 4.7, 80)
    bound = 1 / math.sqrt(7 + 80)
    for p in (model.weight_ih, model.weight_hy, model.weight_hz, model.bias):
        assert p.abs().max() <= bound and p.abs().max() > 0.9 * bound
    # damped oscillators: with no input and W = 𝒲 = 0, b = 0, the state decays
    with torch.no_grad():
        for p in (model.weight_hy, model.weight_hz, model.bias):
            p.zero_()
    _, h_n = model(torch.zeros(1, 500, 7), torch.ones(1, 1, 80))
    assert h_n.abs().max() < 1e-2


# ------------------------------------------------------------------------------- LRU scans

def test_lru_scans_compute_the_same_outputs_and_sequential_is_the_default():
    """Both scans are one map (the timing that chose the default: benchmarks/lru_scan.py)."""
    assert models.defaults("lru")["scan"] == "sequential"
    x = torch.randn(4, 50, 2, generator=torch.Generator().manual_seed(0))
    outputs = {}
    for scan in ("sequential", "parallel"):
        torch.manual_seed(0)
        model = models.build("lru", 2, 16, scan=scan, r_min=0.9, r_max=0.999)
        outputs[scan] = model(x)[0].detach()
    torch.testing.assert_close(outputs["parallel"], outputs["sequential"], rtol=1e-4, atol=1e-4)
    assert not torch.equal(outputs["parallel"], torch.zeros_like(outputs["parallel"]))

