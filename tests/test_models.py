"""Models: registry, torch.nn.RNN-like interface, and the structure each family promises."""
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


def test_bad_options_name_the_allowed_values():
    with pytest.raises(ValueError, match="allowed: \\['activation', 'init', 'init_gain'\\]"):
        models.build("vanilla", 2, 4, nonlinearity="tanh")
    with pytest.raises(ValueError, match="unknown init 'he'"):
        models.build("linear", 2, 4, init="he")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        models.build("vanilla", 2, 4, activation="gelu")
    with pytest.raises(ValueError, match="unknown model 'transformer'; allowed: \\['antisymmetric'"):
        models.build("transformer", 2, 4)


def test_the_base_class_checks_sizes_and_older_model_files_still_work():
    """RecurrentModel.__init__(input_size, hidden_size, state_size) checks and sets the sizes
    (one check for every model); a model written the older way, `super().__init__()` and its
    own size attributes, still builds and runs."""
    from gapbench.models import RecurrentModel

    class Older(RecurrentModel):
        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.input_size, self.hidden_size, self.state_size = input_size, hidden_size, hidden_size
            self.cell = torch.nn.RNNCell(input_size, hidden_size)

        def step(self, state, x_t):
            return self.cell(x_t, state)

        def forward(self, x, h0=None):
            return self.loop(self.step, x, h0)

    older = Older(3, 5)
    output, h_n = older(torch.randn(2, 4, 3))
    assert output.shape == (2, 4, 5) and h_n.shape == (1, 2, 5)
    for name in models.names():
        with pytest.raises(ValueError, match="input_size and hidden_size must be >= 1"):
            models.build(name, 0, 4)
    lstm = models.build("lstm", 3, 4)
    assert (lstm.input_size, lstm.hidden_size, lstm.state_size) == (3, 4, 8)
