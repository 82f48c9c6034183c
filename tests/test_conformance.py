"""Common checks run over every registered task and model (like scikit-learn's estimator checks):
a new task or model file is checked here without editing any list."""
import numpy as np
import pytest
import torch
from torch.func import jacrev

from gapbench import models, tasks

GAP = 24  # valid for every task's default options
BATCH, STEPS, INPUTS, HIDDEN = 3, 7, 3, 6


@pytest.fixture(params=tasks.names())
def task(request):
    return tasks.build(request.param, GAP)


@pytest.mark.parametrize("name", tasks.names())
def test_task_options_are_its_keyword_arguments(name):
    """Every declared option is a keyword argument the task takes, with the default it declares:
    passing each one explicitly at that default builds the same task as passing none."""
    defaults = tasks.defaults(name)
    assert "gap" not in defaults and tasks.options(name) == sorted(defaults)
    assert tasks.build(name, GAP, **defaults).describe() == tasks.build(name, GAP).describe()


def test_task_samples_have_the_declared_shapes(task):
    batch = task.sample(5, np.random.default_rng(0))
    assert batch["x"].dtype == np.float32 and batch["x"].shape == (5, task.seq_len, task.input_size)
    assert len(batch["y"]) == 5 and np.isfinite(batch["x"]).all()
    again = task.sample(5, np.random.default_rng(0))
    differ = [key for key in batch if not np.array_equal(batch[key], again[key])]
    assert not differ, (f"sample(5, rng) drew other {differ} from the same seed: draw every random number from "
                        "the rng it is given (rng.integers, rng.standard_normal), never numpy.random's global stream")


def test_task_scores_any_prediction_and_states_its_baseline(task):
    batch = task.sample(4, np.random.default_rng(1))
    pred = torch.randn(4, task.seq_len, task.output_size, dtype=torch.float64)
    y = torch.from_numpy(batch["y"])
    assert torch.isfinite(task.loss(pred, y)) and torch.isfinite(task.score(pred, y))
    assert task.probe_loss(pred[:, task.probe_step], y).shape == (4,)
    assert np.isfinite(task.baseline) and task.baseline > 0 and np.isfinite(task.chance_score)
    assert task.metric in ("accuracy", "mse") and 0 <= task.probe_step < task.seq_len


def test_task_rebuilds_from_its_recorded_params(task):
    rebuilt = tasks.build(task.registry_name, task.gap, **task.params())
    assert rebuilt.describe() == task.describe()


@pytest.fixture(params=models.names())
def model(request):
    torch.manual_seed(0)
    return models.build(request.param, INPUTS, HIDDEN).double()


def test_model_meets_the_recurrent_model_contract(model):
    assert isinstance(model, models.RecurrentModel)
    assert (model.input_size, model.hidden_size) == (INPUTS, HIDDEN) and model.state_size >= HIDDEN
    assert model.batch_first is True


def test_model_rebuilds_from_its_options(model):
    """options() reads back every declared option (what repr shows), and building with them
    after the same seed gives the same model."""
    options = model.options()
    assert sorted(options) == models.options(model.registry_name)
    torch.manual_seed(0)
    again = models.build(model.registry_name, INPUTS, HIDDEN, **options).double()
    assert repr(again) == repr(model)
    assert all(f"{name}={value!r}" in repr(model) for name, value in options.items())
    first, second = model.state_dict(), again.state_dict()
    assert first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_model_takes_time_major_tensors_with_batch_first_false(model):
    """batch_first is the base class's argument (no option of a run): every model hands it on."""
    torch.manual_seed(0)
    time_major = type(model)(INPUTS, HIDDEN, batch_first=False).double()
    assert time_major.batch_first is False
    x = torch.randn(BATCH, STEPS, INPUTS, dtype=torch.float64)
    state = 0.3 * torch.randn(1, BATCH, model.state_size, dtype=torch.float64)
    output = model(x, state)[0]
    torch.testing.assert_close(time_major(x.transpose(0, 1), state)[0].transpose(0, 1), output, rtol=0, atol=1e-12)


def test_model_forward_is_its_step_unrolled(model):
    x = torch.randn(BATCH, STEPS, INPUTS, dtype=torch.float64)
    output, _ = model(x)
    assert output.shape == (BATCH, STEPS, HIDDEN)
    observed, states = model.unroll(x)
    assert states.shape == (BATCH, STEPS, model.state_size)
    torch.testing.assert_close(output, observed, rtol=0, atol=1e-10)


def test_model_continues_from_a_given_state(model):
    """h0 may be the full state, (1, batch, state_size) like torch.nn.RNN's h_0."""
    x = torch.randn(BATCH, STEPS, INPUTS, dtype=torch.float64)
    state = 0.3 * torch.randn(BATCH, model.state_size, dtype=torch.float64)
    output, _ = model(x, state.unsqueeze(0))
    observed, _ = model.unroll(x, state)
    torch.testing.assert_close(output, observed, rtol=0, atol=1e-10)
    assert not torch.allclose(output, model(x)[0])


def test_model_step_has_a_state_jacobian(model):
    state = model.initial_state(1, torch.zeros(1, dtype=torch.float64)) + 0.1
    x_t = torch.randn(1, INPUTS, dtype=torch.float64)
    jacobian = jacrev(lambda s: model.step(s, x_t))(state)  # what the probes differentiate
    assert jacobian.shape == (1, model.state_size, 1, model.state_size)
    assert torch.isfinite(jacobian).all()


def test_model_is_deterministic_under_a_seed(model):
    torch.manual_seed(0)
    again = models.build(model.registry_name, INPUTS, HIDDEN).double()
    first, second = model.state_dict(), again.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_model_trains_through_the_common_readout(model):
    net = models.Net(model, 2).double()
    x = torch.randn(BATCH, STEPS, INPUTS, dtype=torch.float64)
    pred = net(x)
    assert pred.shape == (BATCH, STEPS, 2)
    pred.square().mean().backward()
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
