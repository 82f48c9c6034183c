"""Many runs as one computation: every run of a batched training (gapbench.train.train_runs) is
the run it would be alone, for every registered model and clip arm, a diverging run and an
early-stopped run inside the batch included. On the CPU "the same" is exact: the same bits."""
import dataclasses
import math

import pytest
import torch

from gapbench import data, models, tasks
from gapbench.models import Net
from gapbench.spec import TrainConfig
from gapbench.train import RunSetup, shares_computation, train, train_runs

CONFIG = TrainConfig(steps=4, batch_size=8, optimizer="adam", lr=0.01, eval_every=2, probe_batch=4)
ARMS = {"none": None, "norm": 0.05, "value": 0.001}  # thresholds small enough that both arms clip


def _net(model: str, seed: int) -> Net:
    task = tasks.build("adding", 4)
    torch.manual_seed(seed)
    hidden = 6
    return Net(models.build(model, task.input_size, hidden), task.output_size)


def _runs(model: str, datasets) -> list[RunSetup]:
    runs = []
    for seed in (0, 1):
        for clip, threshold in ARMS.items():
            net = _net(model, seed)  # random guessing draws from the generator as it is after this
            runs.append(RunSetup(net, clip, threshold, datasets[seed], f"seed {seed} {clip}", torch.get_rng_state()))
    return runs


def _alone(runs: list[RunSetup], task, config) -> list:
    """Each run trained by itself, the generator as it was after its network was built."""
    trained = []
    for run in runs:
        torch.set_rng_state(run.generator_state)
        trained.append(train(run.net, task, run.data_dir, run.clip, run.threshold, config, "cpu", log=lambda _: None))
    return trained


def _same(batched: list[RunSetup], alone: list[RunSetup], trained_batched, trained_alone):
    """Every step's loss, pre-clip norm and clip flag, every evaluation and the final weights:
    the same bits."""
    tolerance = {"rtol": 0, "atol": 0}
    for run, single, a, b in zip(batched, alone, trained_batched, trained_alone):
        assert [row["clipped"] for row in a.steps] == [row["clipped"] for row in b.steps], run.name
        for key in ("train_loss", "grad_norm"):
            torch.testing.assert_close(torch.tensor([row[key] for row in a.steps], dtype=torch.float64),
                                       torch.tensor([row[key] for row in b.steps], dtype=torch.float64),
                                       equal_nan=True, msg=f"{run.name} {key}", **tolerance)
        for key in ("val_loss", "val_score"):
            torch.testing.assert_close(torch.tensor([row[key] for row in a.history], dtype=torch.float64),
                                       torch.tensor([row[key] for row in b.history], dtype=torch.float64),
                                       equal_nan=True, msg=f"{run.name} {key}", **tolerance)
        assert (a.applied_steps, a.diverged, a.stopped_early, a.steps_to_solve) == \
            (b.applied_steps, b.diverged, b.stopped_early, b.steps_to_solve), run.name
        for (name, p), q in zip(run.net.state_dict().items(), single.net.state_dict().values()):
            torch.testing.assert_close(p, q, equal_nan=True, msg=f"{run.name} {name}", **tolerance)


def _batched_engine(model: str) -> bool:
    """Whether the model's runs train as one computation (the elementwise models' batched recurrence)."""
    return models.build(model, 1, 6).batches_runs([models.build(model, 1, 6) for _ in range(2)])


@pytest.mark.parametrize("model", models.names())
def test_every_run_of_a_batch_is_the_run_trained_alone(model, datasets):
    task = tasks.build("adding", 4)
    batched, alone = _runs(model, datasets), _runs(model, datasets)
    finished, logged = [], []
    trained_batched = train_runs(batched, task, CONFIG, "cpu", log=logged.append,
                                 finished=lambda index, training: finished.append(index))
    generator_batched = torch.get_rng_state()
    trained_alone = _alone(alone, task, CONFIG)
    generator_alone = torch.get_rng_state()
    assert sorted(finished) == list(range(len(batched)))  # each run reported once, when it stopped
    _same(batched, alone, trained_batched, trained_alone)
    if models.build(model, 1, 6).trained_by == "gradient":
        clipped = {run.clip: any(row["clipped"] for row in t.steps) for run, t in zip(batched, trained_batched)}
        assert clipped == {"none": False, "norm": True, "value": True}  # the arms really differ
        assert all(len(t.steps) == CONFIG.steps for t in trained_batched)
    else:  # one search a seed, given to its other arms, and the generator left where the searches leave it
        assert sum(line.startswith("guessed") for line in logged) == 2
        assert sum(line.endswith("not searched again") for line in logged) == 2 * (len(ARMS) - 1)
        assert torch.equal(generator_batched, generator_alone)


def test_a_diverging_and_an_early_stopped_run_stop_alone_while_the_others_go_on(datasets):
    """One run's weights are non-finite from the start (it diverges at step 1, nothing to roll
    back to); the
    task counts a validation loss below a bar as solved, a bar one run passes at its first
    evaluation and the others do not: that run stops there, frozen, and the rest train on."""
    base = tasks.build("adding", 4)
    probe = _runs("gru", datasets)
    losses = [t.history[0]["val_loss"] for t in train_runs(probe, base, dataclasses.replace(CONFIG, steps=2), "cpu",
                                                           log=lambda _: None)]
    bar = sorted(losses)[0] + 0.5 * (sorted(losses)[1] - sorted(losses)[0])  # only the best run passes
    assert sorted(losses)[1] > sorted(losses)[0]

    class Solvable(type(base)):
        def success(self, loss, score):
            return loss < bar

    task = Solvable(4)
    config = dataclasses.replace(CONFIG, steps=6, stop_when_solved=1)
    batched, alone = _runs("gru", datasets), _runs("gru", datasets)
    for runs in (batched, alone):
        with torch.no_grad():
            runs[-1].net.readout.weight.fill_(math.nan)  # the last run diverges at once
    finished = []
    trained_batched = train_runs(batched, task, config, "cpu", log=lambda _: None,
                                 finished=lambda index, training: finished.append(index))
    trained_alone = _alone(alone, task, config)
    _same(batched, alone, trained_batched, trained_alone)
    best = losses.index(min(losses))
    assert trained_batched[best].stopped_early and trained_batched[best].applied_steps == config.eval_every
    assert trained_batched[-1].diverged and trained_batched[-1].applied_steps == 0
    assert any(t.applied_steps == config.steps for t in trained_batched)  # others went on to the end
    assert finished[:2] == [len(batched) - 1, best]  # each reported when it stopped


def test_runs_share_one_computation_off_the_cpu_only():
    """The elementwise models' runs go through one batched recurrence on a GPU; on the CPU every
    model trains run by run (batched, it measured slower there: gapbench.train.shares_computation)."""
    nets = {name: [_net(name, seed) for seed in (0, 1)] for name in ("vanilla", "lstm")}
    assert not shares_computation(nets["vanilla"], "cpu") and not shares_computation(nets["lstm"], "cpu")
    assert shares_computation(nets["vanilla"], "cuda") and not shares_computation(nets["lstm"], "cuda")


@pytest.mark.parametrize("model", [name for name in models.names() if _batched_engine(name)])
def test_the_first_step_of_a_batch_gives_each_run_its_own_loss_and_gradient(model, datasets):
    """The batched recurrence against each run's own forward and backward: first-step loss and
    every gradient to 1e-5 relative (float32), whatever the sizes."""
    task = tasks.build("adding", 4)
    runs = _runs(model, datasets)
    xs = [next(iter(data.iter_batches(run.data_dir, "train", 8, verify=False))) for run in runs]
    xs = [(torch.from_numpy(b["x"]).float(), torch.from_numpy(b["y"])) for b in xs]
    predictions = Net.forward_runs([run.net for run in runs], [x for x, _ in xs])
    losses = [task.loss(p, y) for p, (_, y) in zip(predictions, xs)]
    sum(losses).backward()
    batched = [[p.grad.clone() for p in run.net.parameters()] for run in runs]
    for run, (x, y), loss, grads in zip(runs, xs, losses, batched):
        run.net.zero_grad(set_to_none=True)
        alone = task.loss(run.net(x), y)
        alone.backward()
        torch.testing.assert_close(loss, alone, rtol=1e-5, atol=0)
        for g, p in zip(grads, run.net.parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)
