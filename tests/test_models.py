"""Models: registry, torch.nn.RNN-like interface, and the structure each family promises."""
import math

import pytest
import torch

from gapbench import models


def test_registry_lists_the_models():
    lecture = {"vanilla", "linear", "orthogonal", "identity", "irnn"}
    baselines = {"lstm", "gru", "esn", "exprnn", "lru", "cornn", "indrnn", "antisymmetric"}
    assert lecture | baselines <= set(models.names())


def test_vanilla_equals_torch_rnn_with_the_same_weights():
    torch.manual_seed(0)
    ours = models.build("vanilla", 3, 5)
    reference = torch.nn.RNN(3, 5, batch_first=True)
    with torch.no_grad():
        reference.weight_ih_l0.copy_(ours.weight_ih)
        reference.weight_hh_l0.copy_(ours.weight_hh)
        reference.bias_ih_l0.copy_(ours.bias)
        reference.bias_hh_l0.zero_()
    x = torch.randn(2, 11, 3)
    for a, b in zip(ours(x), reference(x)):
        torch.testing.assert_close(a, b)


def test_identity_model_is_a_running_sum_and_its_recurrence_is_not_trained():
    model = models.build("identity", 2, 4)
    x = torch.randn(3, 6, 2)
    output, _ = model(x)
    projected = x @ model.weight_ih.t() + model.bias
    torch.testing.assert_close(output, projected.cumsum(1))
    assert all("weight_hh" not in name for name, _ in model.named_parameters())


def test_orthogonal_model_stays_orthogonal_while_training():
    torch.manual_seed(0)
    model = models.build("orthogonal", 2, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(20):
        optimizer.zero_grad()
        model(torch.randn(4, 5, 2))[0].pow(2).sum().backward()
        optimizer.step()
    weight = model.recurrent_weight()
    torch.testing.assert_close(weight @ weight.t(), torch.eye(8), atol=1e-5, rtol=0)
    assert model.activation == "linear"
    assert models.build("orthogonal", 2, 8, activation="tanh").activation == "tanh"


def test_irnn_starts_at_the_identity_with_relu():
    model = models.build("irnn", 2, 5)
    torch.testing.assert_close(model.weight_hh.detach(), torch.eye(5))
    assert model.activation == "relu"


@pytest.mark.parametrize("init", ["uniform", "normal", "orthogonal", "identity"])
def test_init_options(init):
    model = models.build("vanilla", 2, 16, init=init, init_gain=0.5)
    radius = torch.linalg.eigvals(model.weight_hh.detach()).abs().max().item()
    assert 0.0 < radius < 1.0


def test_the_initial_scales_are_torch_s_and_the_circular_law_s():
    """W_h: `uniform` U(−1/√H, 1/√H) as torch.nn.RNN (standard deviation 1/√(3H)), `normal`
    N(0, 1/H) (ρ ≈ 1, the circular law); W_in: U(−1/√H, 1/√H) with H the hidden size, not the
    input size (here 50 inputs, 16 units)."""
    torch.manual_seed(0)
    uniform = models.build("vanilla", 2, 64).weight_hh.detach()
    bound = 1 / math.sqrt(64)
    assert 0.95 * bound < uniform.abs().max() <= bound
    assert uniform.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    normal = models.build("vanilla", 2, 400, init="normal").weight_hh.detach()
    assert normal.std().item() == pytest.approx(1 / math.sqrt(400), rel=0.05)
    assert torch.linalg.eigvals(normal.double()).abs().max().item() == pytest.approx(1.0, abs=0.1)
    inputs = models.build("vanilla", 50, 16).weight_ih.detach()
    assert 0.95 / math.sqrt(16) < inputs.abs().max() <= 1 / math.sqrt(16)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_float_option_that_is_not_finite_is_refused_by_the_registry(value):
    with pytest.raises(ValueError, match=r"option init_gain must be a finite number \(default 1.0\)"):
        models.build("vanilla", 2, 4, init_gain=value)


def test_bad_options_name_the_allowed_values():
    with pytest.raises(ValueError, match="allowed: \\['activation', 'init', 'init_gain', 'input_std'\\]"):
        models.build("vanilla", 2, 4, nonlinearity="tanh")
    with pytest.raises(ValueError, match="unknown init 'he'"):
        models.build("linear", 2, 4, init="he")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        models.build("vanilla", 2, 4, activation="gelu")
    with pytest.raises(ValueError, match="unknown model 'transformer'; allowed: \\['antisymmetric'"):
        models.build("transformer", 2, 4)


def test_build_takes_numpy_integer_sizes_and_refuses_other_numbers():
    """pandas hands out group keys as numpy integers (gapbench cost builds every model from
    them), which torch's own modules refuse as sizes: models.build takes them as integers."""
    import numpy as np

    for name in models.names():
        model = models.build(name, np.int64(3), np.int64(4))
        assert (type(model.input_size), type(model.hidden_size)) == (int, int)
    with pytest.raises(TypeError, match="model 'lstm': input_size and hidden_size must be integers"):
        models.build("lstm", 3, 4.0)


def test_the_base_class_requires_and_checks_the_sizes():
    """RecurrentModel.__init__(input_size, hidden_size, state_size=None, *, batch_first=True)
    checks and sets the sizes, one check for every model; a model cannot leave them out."""
    from gapbench.models import RecurrentModel

    for name in models.names():
        with pytest.raises(ValueError, match="input_size and hidden_size must be >= 1"):
            models.build(name, 0, 4)
    lstm = models.build("lstm", 3, 4)
    assert (lstm.input_size, lstm.hidden_size, lstm.state_size, lstm.batch_first) == (3, 4, 8, True)

    class Sizeless(RecurrentModel):
        def __init__(self):
            super().__init__()

    with pytest.raises(TypeError, match="input_size"):
        Sizeless()


class StepOnly(models.RecurrentModel):
    """A model that states its options, its weights and `step`, and nothing else."""

    def __init__(self, input_size, hidden_size, *, scale=0.5, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        self.scale = scale
        self.cell = torch.nn.RNNCell(input_size, hidden_size)

    def step(self, state, x_t):
        return self.scale * self.cell(x_t, state)


class DriveUpdate(StepOnly):
    """The same map stated as an input drive, per-sequence constants and an update."""

    def drive(self, x):
        return torch.nn.functional.linear(x, self.cell.weight_ih, self.cell.bias_ih)

    def constants(self):
        return (self.cell.weight_hh, self.cell.bias_hh)

    def update(self, state, drive_t, weight_hh, bias_hh):
        return self.scale * torch.tanh(drive_t + torch.nn.functional.linear(state, weight_hh, bias_hh))


@pytest.mark.parametrize("cls", [StepOnly, DriveUpdate])
def test_the_base_class_supplies_forward_repr_and_batch_first(cls):
    torch.manual_seed(0)
    model = cls(3, 5, scale=0.9).double()
    x, h0 = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(1, 2, 5, dtype=torch.float64)
    output, h_n = model(x, h0)
    observed, states = model.unroll(x, h0[0])
    assert output.shape == (2, 4, 5) and h_n.shape == (1, 2, 5)
    torch.testing.assert_close(output, observed, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_n[0], states[:, -1], rtol=0, atol=1e-12)
    assert model.options() == {"scale": 0.9}
    assert repr(model).startswith(f"{cls.__name__}(\n  3, 5, scale=0.9\n")
    torch.manual_seed(0)
    time_major = cls(3, 5, scale=0.9, batch_first=False).double()
    assert "3, 5, scale=0.9, batch_first=False" in repr(time_major)
    torch.testing.assert_close(time_major(x.transpose(0, 1), h0)[0].transpose(0, 1), output, rtol=0, atol=0)


def test_drive_and_update_give_the_step_and_the_same_map_as_the_cell():
    torch.manual_seed(0)
    step_only, drive_update = StepOnly(3, 5), DriveUpdate(3, 5)
    drive_update.load_state_dict(step_only.state_dict())
    x = torch.randn(2, 4, 3)
    torch.testing.assert_close(drive_update(x)[0], step_only(x)[0])
    state = torch.randn(2, 5)
    torch.testing.assert_close(drive_update.step(state, x[:, 0]), step_only.step(state, x[:, 0]))


def test_a_model_without_step_or_update_says_so():
    class Nothing(models.RecurrentModel):
        pass

    with pytest.raises(NotImplementedError, match="Nothing defines neither step nor update"):
        Nothing(2, 3)(torch.zeros(1, 2, 2))


def test_input_std_draws_the_input_weights_from_a_normal_and_leaves_the_default_draws_alone():
    """input_std = σ: W_in ~ N(0, σ²) (Le et al. 2015's IRNN: σ = 0.001); unset, W_in and W_h are
    the draws they were before the option existed (torch.nn.RNN's U(−1/√H, 1/√H) first)."""
    torch.manual_seed(0)
    default = models.build("irnn", 50, 64)
    torch.manual_seed(0)
    bound = 1 / 64 ** 0.5
    expected = torch.empty(64, 50).uniform_(-bound, bound)
    assert torch.equal(default.weight_ih, expected) and torch.equal(default.weight_hh, torch.eye(64))
    torch.manual_seed(0)
    vanilla, scaled = models.build("vanilla", 50, 64), None
    torch.manual_seed(0)
    scaled = models.build("vanilla", 50, 64, input_std=0.5)
    assert torch.equal(scaled.weight_hh, vanilla.weight_hh)  # the option moves W_in's draw only
    le = models.build("irnn", 50, 64, input_std=0.001)
    assert abs(le.weight_ih.std().item() - 0.001) < 0.0001 and abs(le.weight_ih.mean().item()) < 0.0001
    assert le.options()["input_std"] == 0.001 and models.build("irnn", 50, 64, **le.options()).input_std == 0.001


@pytest.mark.parametrize("bad", [0, -0.1, float("inf"), float("nan"), "0.001", True])
def test_a_positive_number_option_refuses_zero_infinity_nan_text_and_true(bad):
    with pytest.raises(ValueError, match="input_std must be a positive number"):
        models.build("vanilla", 3, 6, input_std=bad)
    with pytest.raises(ValueError, match="weight_range must be a finite number"):
        models.build("random_guess", 3, 6, weight_range=bad)


def test_repr_shows_the_sizes_and_every_option():
    assert repr(models.build("vanilla", 3, 6)) == ("VanillaRNN(3, 6, activation='tanh', init='uniform', init_gain=1.0, "
                                                   "input_std=None)")
    assert repr(models.build("cornn", 3, 6, dt=0.1)) == "CoRNN(3, 6, state_size=12, dt=0.1, gamma=66.0, epsilon=15.0)"
    assert repr(models.build("gru", 2, 4)).startswith("GRU(\n  2, 4\n")


def test_one_module_per_model_named_after_it():
    for name in models.names():
        assert type(models.build(name, 2, 4)).__module__ == f"gapbench.models.{name}"
