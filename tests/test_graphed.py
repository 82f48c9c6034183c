"""The training step on the device (gapbench/graphed.py): the same training as the host loop of
gapbench.train.train_runs, to rounding, for every registered model and clip arm, diverging and
early-stopped runs included; no read on the host inside the step (what a CUDA graph needs);
and, where there is a GPU, the captured step against the uncaptured one."""
import dataclasses
import math

import pytest
import torch

from gapbench import data, models, tasks
from gapbench.graphed import (NONFINITE_GRADIENT, NONFINITE_LOSS, NONFINITE_WEIGHTS, DeviceStep,
                              train_job, train_on_device)
from gapbench.models import Net
from gapbench.optim import OPTIMIZERS
from gapbench.spec import TrainConfig
from gapbench.train import RunSetup, clip_on_device_, train_runs

CONFIG = TrainConfig(steps=6, batch_size=8, optimizer="adam", lr=0.01, eval_every=2, probe_batch=4)
ARMS = {"none": None, "norm": 0.05, "value": 0.001}  # thresholds small enough that both arms clip
HIDDEN = 6
quiet = lambda message: None  # noqa: E731
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _runs(model: str, datasets, device="cpu") -> list[RunSetup]:
    """A job's runs: two seeds × three clip arms, each arm from its seed's weights."""
    task, runs = tasks.build("adding", 4), []
    for seed in (0, 1):
        for clip, threshold in ARMS.items():
            torch.manual_seed(seed)
            net = Net(models.build(model, task.input_size, HIDDEN), task.output_size).to(device)
            runs.append(RunSetup(net, clip, threshold, datasets[seed], f"seed {seed} {clip}", torch.get_rng_state()))
    return runs


def _same(runs_a, runs_b, trained_a, trained_b, rtol=1e-4, atol=1e-6):
    """The same flags, stops and evaluations; every step's loss and pre-clip norm, every
    validation score and the final weights to rounding."""
    tolerance = {"rtol": rtol, "atol": atol, "equal_nan": True}
    for run, other, a, b in zip(runs_a, runs_b, trained_a, trained_b):
        assert (a.applied_steps, a.diverged, a.stopped_early, a.steps_to_solve) == \
            (b.applied_steps, b.diverged, b.stopped_early, b.steps_to_solve), run.name
        assert [(row["step"], row["clipped"]) for row in a.steps] == [(row["step"], row["clipped"]) for row in b.steps]
        assert [row["step"] for row in a.history] == [row["step"] for row in b.history], run.name
        for key in ("train_loss", "grad_norm"):
            torch.testing.assert_close(torch.tensor([row[key] for row in a.steps], dtype=torch.float64),
                                       torch.tensor([row[key] for row in b.steps], dtype=torch.float64),
                                       msg=f"{run.name} {key}", **tolerance)
        for key in ("val_loss", "val_score", "clip_fraction"):
            torch.testing.assert_close(torch.tensor([row[key] for row in a.history], dtype=torch.float64),
                                       torch.tensor([row[key] for row in b.history], dtype=torch.float64),
                                       msg=f"{run.name} {key}", **tolerance)
        for (name, p), q in zip(run.net.state_dict().items(), other.net.state_dict().values()):
            torch.testing.assert_close(p.cpu(), q.cpu(), msg=f"{run.name} {name}", **tolerance)


@pytest.mark.parametrize("model", models.names())
def test_the_step_on_the_device_trains_as_the_host_loop(model, datasets):
    task = tasks.build("adding", 4)
    host, device = _runs(model, datasets), _runs(model, datasets)
    finished = []
    trained_host = train_runs(host, task, CONFIG, "cpu", log=quiet)
    trained_device = train_on_device(device, task, CONFIG, "cpu", quiet, lambda index, t: finished.append(index),
                                     capture=False)
    assert sorted(finished) == list(range(len(device)))  # each run reported once
    _same(host, device, trained_host, trained_device)
    if models.build(model, 1, HIDDEN).trained_by == "gradient":
        clipped = {run.clip: any(row["clipped"] for row in t.steps) for run, t in zip(device, trained_device)}
        assert clipped == {"none": False, "norm": True, "value": True}  # the arms really differ
        assert all(t.applied_steps == CONFIG.steps for t in trained_device)


def _statuses(runs, task, config) -> set[int]:
    """Every status the device step records over a training of `runs` (uncaptured, on the CPU)."""
    optimizers = [OPTIMIZERS[config.optimizer](list(run.net.parameters()), lr=config.lr) for run in runs]
    x = torch.from_numpy(next(data.iter_batches(runs[0].data_dir, "train", config.batch_size, verify=False))["x"])
    y = torch.from_numpy(next(data.iter_batches(runs[0].data_dir, "train", config.batch_size, verify=False))["y"])
    step = DeviceStep(runs, optimizers, task, [(x.float(), y) for _ in runs])
    seen = set()
    for _ in range(config.steps):
        step()
        seen |= {int(status) for status in step.record[:, 3]}
    return seen


class _NaNGradient(type(tasks.build("adding", 4))):
    """The adding task with a term whose value is 0 and whose gradient is NaN (√x at 0, times 0)."""

    def loss(self, pred, y):
        return super().loss(pred, y) + torch.sqrt(pred[..., 0] * 0).sum()


@pytest.mark.parametrize("case, config, task, status", [
    ("loss overflows after some steps (SGD, lr 1e12)", dataclasses.replace(CONFIG, optimizer="sgd", lr=1e12),
     tasks.build("adding", 4), NONFINITE_LOSS),
    ("the first update overflows the weights (RMSprop, lr 1e38: a step of 10·lr)",
     dataclasses.replace(CONFIG, optimizer="rmsprop", lr=1e38),
     tasks.build("adding", 4), NONFINITE_WEIGHTS),
    # read at the very step: no later step's non-finite loss rolls the weights back in its stead
    ("the first update overflows the weights, read at once (eval_every 1)",
     dataclasses.replace(CONFIG, optimizer="rmsprop", lr=1e38, eval_every=1),
     tasks.build("adding", 4), NONFINITE_WEIGHTS),
    ("a finite loss with a NaN gradient", CONFIG, _NaNGradient(4), NONFINITE_GRADIENT),
])
def test_every_way_of_diverging_stops_a_run_as_in_the_host_loop(case, config, task, status, datasets):
    """Each way the host loop stops a run as diverged, met on the device: the same step, the
    same rollback (the last weights that gave a finite loss), the same applied steps."""
    assert status in _statuses(_runs("vanilla", datasets), task, config), case
    host, device = _runs("vanilla", datasets), _runs("vanilla", datasets)
    trained_device = train_on_device(device, task, config, "cpu", quiet, lambda index, t: None, capture=False)
    _same(host, device, train_runs(host, task, config, "cpu", log=quiet), trained_device)
    assert any(t.diverged for t in trained_device)


def test_diverging_and_early_stopped_runs_stop_alone_while_the_others_go_on(datasets):
    """One run's weights are non-finite from the start; one run solves a task whose bar only it
    passes and stops early, frozen, while the rest train on."""
    base = tasks.build("adding", 4)
    losses = [t.history[0]["val_loss"] for t in train_runs(_runs("gru", datasets), base,
                                                           dataclasses.replace(CONFIG, steps=2), "cpu", log=quiet)]
    bar = sorted(losses)[0] + 0.5 * (sorted(losses)[1] - sorted(losses)[0])  # only the best run passes

    class Solvable(type(base)):
        def success(self, loss, score):
            return loss < bar

    config = dataclasses.replace(CONFIG, stop_when_solved=1)
    host, device = _runs("gru", datasets), _runs("gru", datasets)
    for runs in (host, device):
        with torch.no_grad():
            runs[-1].net.readout.weight.fill_(math.nan)  # the last run diverges at once
    finished = []
    trained_device = train_on_device(device, Solvable(4), config, "cpu", quiet,
                                     lambda index, t: finished.append(index), capture=False)
    _same(host, device, train_runs(host, Solvable(4), config, "cpu", log=quiet), trained_device)
    best = losses.index(min(losses))
    assert trained_device[best].stopped_early and trained_device[best].applied_steps == config.eval_every
    assert trained_device[-1].diverged and trained_device[-1].applied_steps == 0
    assert finished[:2] == [len(device) - 1, best]  # each reported at the read that saw it stop


@pytest.mark.parametrize("model", [name for name in models.names()
                                   if models.build(name, 1, HIDDEN).trained_by == "gradient"])
def test_the_step_reads_nothing_on_the_host(model):
    """The step runs on the meta device, where tensors hold no values: any read of one on the
    host (.item(), bool(), float(), a data-dependent shape) raises there. A CUDA graph can
    hold only such a step. The host loop's clipping, which reads the norm, fails the same check.
    What it cannot see is a read inside a torch function's own CUDA code (matrix_exp copies a
    norm to the host there): a model with one says so (`graph_capturable = False`, exprnn and
    orthogonal), and the GPU test captures the others."""
    task = tasks.build("adding", 4)
    runs = [RunSetup(Net(models.build(model, task.input_size, HIDDEN), task.output_size).to("meta"), clip, threshold,
                     None, clip) for clip, threshold in ARMS.items()]
    optimizers = [OPTIMIZERS["adam"](list(run.net.parameters()), lr=1e-3) for run in runs]
    inputs = [(torch.empty(8, task.seq_len, task.input_size, device="meta"), torch.empty(8, device="meta"))
              for _ in runs]
    step = DeviceStep(runs, optimizers, task, inputs)
    step()
    assert step.record.device.type == "meta" and step.record.shape == (len(runs), 4)
    from gapbench.train import clip_gradients_

    with pytest.raises(RuntimeError, match="meta"):
        clip_gradients_(list(runs[1].net.parameters()), "norm", 1.0)


def test_clipping_on_the_device_is_the_host_clipping_to_the_bit():
    """The host loop reads clip_on_device_'s tensors: the same norm and flags, and the clipped
    gradients the bits of g·(θ0/||g||) with the factor a Python float, as before."""
    torch.manual_seed(0)
    for arm, threshold in (("norm", 0.5), ("value", 0.01), ("none", None)):
        grads = [torch.randn(5, 4), torch.randn(7)]
        params = [torch.zeros_like(g, requires_grad=True) for g in grads]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        norm, fired = clip_on_device_(params, arm, threshold)
        expected = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
        assert norm.item() == pytest.approx(expected, rel=1e-12) and bool(fired) == (arm != "none")
        for p, g in zip(params, grads):
            want = g * (threshold / norm.item()) if arm == "norm" else g.clamp(-0.01, 0.01) if arm == "value" else g
            assert torch.equal(p.grad, want), arm


def test_a_job_trains_with_the_step_its_config_names(datasets):
    """train_job is the host loop to the bit without train.cuda_graph, and the device step with
    it (on the CPU uncaptured: a CUDA graph needs a GPU)."""
    task = tasks.build("adding", 4)
    a, b = _runs("vanilla", datasets), _runs("vanilla", datasets)
    _same(a, b, train_job(a, task, CONFIG, "cpu", quiet), train_runs(b, task, CONFIG, "cpu", log=quiet), rtol=0, atol=0)
    graphed = dataclasses.replace(CONFIG, cuda_graph=True)
    a, b = _runs("vanilla", datasets), _runs("vanilla", datasets)
    _same(a, b, train_job(a, task, graphed, "cpu", quiet),
          train_on_device(b, task, graphed, "cpu", quiet, lambda index, t: None, capture=False), rtol=0, atol=0)


@cuda
@pytest.mark.parametrize("model, optimizer, lr", [("vanilla", "adam", 0.01), ("lstm", "adam", 0.01),
                                                 ("cornn", "adam", 0.01),
                                                 ("vanilla", "sgd", 1e6)])  # two runs diverge after the capture
def test_the_captured_step_equals_the_uncaptured_step_on_the_gpu(model, optimizer, lr, datasets, monkeypatch):
    """On a GPU: the step captured as a CUDA graph and replayed, against the same step run
    eagerly (the same kernels: to rounding, at most) and against the host loop on the GPU;
    with SGD at lr 1e6 two runs diverge at their fourth step (on the CPU), after a capture made
    at the second, so the masks and rollbacks run in the replayed graph."""
    import gapbench.graphed

    monkeypatch.setattr(gapbench.graphed, "WARM_UP_STEPS", 1)
    task = tasks.build("adding", 4)
    config = dataclasses.replace(CONFIG, device="cuda", steps=12, eval_every=4, optimizer=optimizer, lr=lr)
    captured, eager, host = (_runs(model, datasets, "cuda") for _ in range(3))
    messages = []
    trained_captured = train_on_device(captured, task, config, "cuda", messages.append, lambda index, t: None,
                                       capture=True)
    assert not [m for m in messages if m.startswith("[graph]")], messages  # captured, not fallen back
    trained_eager = train_on_device(eager, task, config, "cuda", quiet, lambda index, t: None, capture=False)
    _same(captured, eager, trained_captured, trained_eager, rtol=1e-6, atol=1e-7)
    _same(captured, host, trained_captured, train_runs(host, task, config, "cuda", log=quiet))
    if lr > 1:
        assert any(t.diverged and t.applied_steps > gapbench.graphed.WARM_UP_STEPS for t in trained_captured)


@cuda
def test_a_job_with_cuda_graph_writes_its_runs(datasets, tmp_path):
    """A whole job (gapbench.job.run) with train.device cuda and train.cuda_graph: complete runs."""
    from gapbench import job
    from gapbench.results import COMPLETE_MARKER
    from gapbench.spec import RunSpec

    spec = RunSpec(task="adding", task_name="adding", task_params={}, gap=4, model="vanilla", model_name="vanilla",
                   model_options={}, hidden_size=HIDDEN, seed=0, threads=1, clip_thresholds={"norm": 1.0, "value": 0.1},
                   train=dataclasses.replace(CONFIG, device="cuda", cuda_graph=True, steps=8))
    metrics = job.run(spec, datasets[0], {clip: str(tmp_path / clip) for clip in ARMS})
    assert [m.train_steps for m in metrics] == [8, 8, 8]
    assert all((tmp_path / clip / COMPLETE_MARKER).exists() for clip in ARMS)
