"""Training: determinism, clipping arithmetic, divergence handling, atomic outputs."""
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from gapbench import data, models, tasks
from gapbench.files import append_csv, atomic_path, read_benchmark, read_csv, write_csv
from gapbench.models import Net
from gapbench.spec import RunSpec, TrainConfig
from gapbench.train import clip_gradients_, clipping_statistics

SPEC = RunSpec(
    task="adding", task_name="adding", task_params={}, gap=6, model="vanilla", model_name="vanilla", model_options={},
    hidden_size=8, seed=3, threads=1, clip_thresholds={"norm": 0.5, "value": 0.01},
    train=TrainConfig(steps=30, batch_size=8, optimizer="adam", lr=0.01, eval_every=10, probe_batch=4),
)


def _with(spec=SPEC, **train):
    """SPEC with some training settings replaced."""
    return dataclasses.replace(spec, train=dataclasses.replace(spec.train, **train))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    data.generate(tasks.build("adding", 6), 0, {"train": 64, "validation": 16, "test": 16}, folder)
    return folder


def _train(dataset, folder, spec=SPEC, steps_hint=None):
    runs = []
    for clip in ("none", "norm", "value"):
        runs += ["--run", f"{clip}={folder / clip}"]
    subprocess.run(
        [sys.executable, "-m", "gapbench", "train", "--spec", spec.to_json(), "--data", str(dataset), *runs],
        check=True, capture_output=True, text=True,
    )


@pytest.mark.pipeline
def test_same_seed_same_numbers(dataset, tmp_path):
    _train(dataset, tmp_path / "a")
    _train(dataset, tmp_path / "b")
    for clip in ("none", "norm", "value"):
        first = json.loads((tmp_path / "a" / clip / "metrics.json").read_text())
        second = json.loads((tmp_path / "b" / clip / "metrics.json").read_text())
        for key in ("test_loss", "test_score", "clip_fraction", "train_steps", "success", "diverged"):
            assert first[key] == second[key], (clip, key)
        for name in ("history.csv", "gradient_decay.csv"):
            pd.testing.assert_frame_equal(
                pd.read_csv(tmp_path / "a" / clip / name), pd.read_csv(tmp_path / "b" / clip / name)
            )
        weights_a = torch.load(tmp_path / "a" / clip / "model.pt", weights_only=True)
        weights_b = torch.load(tmp_path / "b" / clip / "model.pt", weights_only=True)
        assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    # the clip arms start from the same weights but train differently
    none = json.loads((tmp_path / "a" / "none" / "metrics.json").read_text())
    value = json.loads((tmp_path / "a" / "value" / "metrics.json").read_text())
    assert value["clip_fraction"] > 0 and none["clip_fraction"] == 0
    assert value["test_loss"] != none["test_loss"]
    decay = pd.read_csv(tmp_path / "a" / "none" / "gradient_decay.csv")
    decay_value = pd.read_csv(tmp_path / "a" / "value" / "gradient_decay.csv")
    pd.testing.assert_series_equal(
        decay[decay.stage == "init"].log10_grad_norm, decay_value[decay_value.stage == "init"].log10_grad_norm
    )


def test_norm_clipping_rescales_to_threshold():
    net = torch.nn.Linear(3, 2)
    for p in net.parameters():
        p.grad = torch.full_like(p, 2.0)
    params = list(net.parameters())
    norm, fired = clip_gradients_(params, "norm", 1.0)
    assert fired and norm == pytest.approx(2.0 * 8**0.5)
    total = torch.linalg.vector_norm(torch.cat([p.grad.ravel() for p in params]))
    assert total.item() == pytest.approx(1.0)
    assert clip_gradients_(params, "norm", 5.0) == (pytest.approx(1.0), False)
    exact = torch.zeros(2, requires_grad=True)  # ||g|| = θ0 exactly: at the threshold, not over it
    exact.grad = torch.tensor([3.0, 4.0])
    assert clip_gradients_([exact], "norm", 5.0) == (5.0, False) and exact.grad.tolist() == [3.0, 4.0]
    _, fired = clip_gradients_(params, "value", 0.1)
    assert fired and max(p.grad.abs().max().item() for p in params) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="allowed: \\['none', 'norm', 'value'\\]"):
        clip_gradients_(params, "gradual", 1.0)


@pytest.mark.pipeline
def test_divergence_is_recorded_not_raised(dataset, tmp_path):
    """An exploding linear RNN diverges without clipping: the run stops, is recorded as
    diverged, and keeps the last weights whose loss was finite; norm clipping keeps it alive."""
    spec = dataclasses.replace(_with(optimizer="sgd", lr=50.0), model="linear", model_name="linear",
                               model_options={"init": "identity", "init_gain": 1.5})
    _train(dataset, tmp_path, spec)
    none = json.loads((tmp_path / "none" / "metrics.json").read_text())
    assert none["diverged"] and none["train_steps"] < spec.train.steps
    weights = torch.load(tmp_path / "none" / "model.pt", weights_only=True)
    assert all(torch.isfinite(w).all() for w in weights.values())
    norm = json.loads((tmp_path / "norm" / "metrics.json").read_text())
    assert norm["clip_fraction"] > 0.5
    assert norm["train_steps"] > none["train_steps"]
    for clip in ("none", "norm", "value"):  # the two tables agree on diverged runs too
        metrics = json.loads((tmp_path / clip / "metrics.json").read_text())
        summary = pd.read_csv(tmp_path / clip / "propagation_summary.csv").set_index("stage").loc["trained"]
        assert summary.clipped_fraction == pytest.approx(metrics["clip_fraction"], abs=1e-12)
        assert bool(summary.diverged) == metrics["diverged"]
        steps = pd.read_csv(tmp_path / clip / "steps.csv")
        assert len(steps) >= metrics["train_steps"]


@pytest.mark.pipeline
def test_saved_weights_load_into_the_model(dataset, tmp_path):
    _train(dataset, tmp_path)
    from gapbench import models
    from gapbench.train import evaluate

    net = Net(models.build("vanilla", 2, 8), 1)
    net.load_state_dict(torch.load(tmp_path / "norm" / "model.pt", weights_only=True))
    # the saved weights are the network the run scored: its test loss again, to the bit
    metrics = json.loads((tmp_path / "norm" / "metrics.json").read_text())
    assert evaluate(net, tasks.build("adding", 6), dataset, "test", "cpu")[0] == metrics["test_loss"]


def test_atomic_path_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "table.csv"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_append_csv_keeps_the_rows_before_and_creates_the_folder(tmp_path):
    import pandas as pd

    target = tmp_path / "bench" / "times.csv"
    append_csv(target, pd.DataFrame({"model": ["vanilla"], "seconds": [1.5]}))
    append_csv(target, pd.DataFrame({"model": ["lru", "lstm"], "seconds": [2.0, 3.0], "runs": [4, 4]}))
    table = pd.read_csv(target)
    assert table.model.tolist() == ["vanilla", "lru", "lstm"] and table.seconds.tolist() == [1.5, 2.0, 3.0]
    assert table.runs.isna().tolist() == [True, False, False]  # a column added later: empty before
    assert [p.name for p in target.parent.iterdir()] == ["times.csv"]  # no temporary file left


def test_a_csv_table_reads_back_to_the_bit(tmp_path):
    """Every float `write_csv` writes, `read_csv` returns bit for bit (pandas before 3.1, by
    default, misses the last bit of about 3 in 10 random doubles)."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.standard_normal(2000) * 10.0 ** rng.integers(-30, 30, 2000),
                             rng.random(2000), [0.1 + 0.2, 5e-324, 1.7976931348623157e308, -0.0]])
    write_csv(tmp_path / "t.csv", pd.DataFrame({"value": values}))
    read = read_csv(tmp_path / "t.csv").value.to_numpy()
    assert read.view(np.int64).tolist() == values.view(np.int64).tolist()


@pytest.mark.parametrize("version, asked", [("2.3.3", "round_trip"), ("3.0.6", "round_trip"),
                                            ("3.1.1", None), ("3.2.0rc1", None), ("4.0.0", None)])
def test_read_csv_asks_pandas_before_3_1_for_the_exact_float_parser(monkeypatch, version, asked):
    """The pinned pandas (3.1) parses exactly whatever it is asked, so the test above cannot see
    the older releases' default: here the reader's request is checked against each version."""
    seen = []
    monkeypatch.setattr(pd, "__version__", version)
    monkeypatch.setattr(pd, "read_csv", lambda path, **options: seen.append(options))
    read_csv("t.csv", sep="\t")
    read_csv("t.csv", engine="python")  # a parser that takes no float_precision: asked for none
    assert seen == [{"sep": "\t"} | ({"float_precision": asked} if asked else {}), {"engine": "python"}]


def test_a_benchmark_file_s_record_is_its_last_repeat(tmp_path):
    """Read from a file Snakemake's own writer makes, as `benchmark: repeat(path, 2)` leaves it."""
    from snakemake.benchmark import BenchmarkRecord, write_benchmark_records

    records = [BenchmarkRecord(running_time=t, max_rss=m, cpu_time=c)
               for t, m, c in ((12.5, 300.0, 20.25), (10.25, 310.5, 18.75))]
    for record in records:
        record.data_collected = True  # as after Snakemake's first sample of the job
    write_benchmark_records(records, str(tmp_path / "job.tsv"), False)
    record = read_benchmark(tmp_path / "job.tsv")
    assert (record.s, record.max_rss, record.cpu_time) == (10.25, 310.5, 18.75)


@pytest.mark.pipeline
def test_results_are_written_with_the_umask_s_mode_not_private(tmp_path):
    """A group sharing a results folder can read every file and cache entry: under umask 022,
    rw-r--r-- and rwxr-xr-x, not tempfile's private rw------- and rwx------."""
    code = ("import sys; from pathlib import Path; from gapbench.files import write_json; "
            "from gapbench.runstore import write_cached; out = Path(sys.argv[1]); "
            "write_json(out / 'a.json', {'x': 1}); "
            "write_cached(out / 'cache' / 'key', lambda folder: write_json(folder / 'metrics.json', {'x': 1}))")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, preexec_fn=lambda: os.umask(0o022))
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "cache" / "key").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "cache" / "key" / "metrics.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.pipeline
def test_killed_training_leaves_no_complete_looking_run(dataset, tmp_path):
    """metrics.json marks a complete run: retraining a folder withdraws it first, so a run
    killed with SIGKILL half-way never looks complete, and other runs stay untouched."""
    _train(dataset, tmp_path)  # complete runs in none/, norm/, value/
    spec = _with(steps=10**6, eval_every=50)
    process = subprocess.Popen(
        [sys.executable, "-m", "gapbench", "train", "--spec", spec.to_json(), "--data", str(dataset),
         "--run", f"norm={tmp_path / 'norm'}"],
        stderr=subprocess.PIPE, text=True,
    )
    for line in process.stderr:
        if "[norm] step 100/" in line:
            break
    else:
        pytest.fail("training ended before it could be interrupted")
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert not (tmp_path / "norm" / "metrics.json").exists()
    assert (tmp_path / "none" / "metrics.json").exists() and (tmp_path / "value" / "metrics.json").exists()


def test_arms_that_start_from_different_weights_are_refused(dataset, tmp_path, monkeypatch):
    """The initial probes are measured once per job; that is only right if every arm starts
    from the same weights, which the job checks (here a model build that drifts between calls)."""
    from gapbench import job

    built = []
    honest = job.build_net

    def drifting(spec, task):
        net = honest(spec, task)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(len(built))
        built.append(net)
        return net

    monkeypatch.setattr(job, "build_net", drifting)
    with pytest.raises(RuntimeError, match="does not start from the weights"):
        job.run(_with(steps=2), dataset, {"none": tmp_path / "none"}, log=lambda _: None)
    assert not (tmp_path / "none" / "metrics.json").exists()


def test_every_training_step_sees_a_whole_batch_and_an_epoch_repeats_in_order(tmp_path):
    """20 sequences in batches of 8: the partial batch of 4 is skipped, and the third batch is the
    first again; a split smaller than a batch is used whole."""
    from gapbench.train import batches

    data.generate(tasks.build("adding", 6), 0, {"train": 20, "validation": 4, "test": 4}, tmp_path)
    stream = batches(tmp_path, "train", 8, "cpu", repeat=True)
    read = [next(stream)[0] for _ in range(3)]
    assert [len(x) for x in read] == [8, 8, 8] and torch.equal(read[2], read[0]) and not torch.equal(read[1], read[0])
    small = batches(tmp_path, "validation", 8, "cpu", repeat=True)
    assert [len(next(small)[0]) for _ in range(2)] == [4, 4]


def test_clipping_statistics_count_applied_steps_only():
    # five steps computed a gradient; the last one (non-finite norm) was not applied
    stats = clipping_statistics([0.5, 2.0, 4.0, 1.0, np.inf], [False, True, True, False, True], applied_steps=4)
    assert stats["steps"] == 5 and stats["nonfinite_norms"] == 1
    assert stats["clipped_fraction"] == pytest.approx(0.5)
    assert stats["norm_median"] == pytest.approx(1.5) and stats["norm_max"] == 4.0
    assert clipping_statistics([], [], applied_steps=0)["clipped_fraction"] == 0.0
    with pytest.raises(ValueError, match="2 norms but 1 clipped flags"):
        clipping_statistics([1.0, 2.0], [True], applied_steps=2)


def test_subnormal_setting_is_restored_after_the_probes():
    from gapbench.job import exact_subnormals, flushing_subnormals

    for flushing in (True, False):
        torch.set_flush_denormal(flushing)
        with exact_subnormals():
            assert not flushing_subnormals()
        assert flushing_subnormals() == flushing
    torch.set_flush_denormal(False)


def test_random_guessing_keeps_the_best_draw_and_takes_no_gradient_step(dataset, tmp_path):
    """random_guess (Schmidhuber & Hochreiter 1996) draws K weight sets and keeps the one with
    the lowest validation loss: no optimiser step, the same draws under the same seed."""
    from gapbench import job

    spec = dataclasses.replace(SPEC, model="random_guess", model_name="random_guess", model_options={"guesses": 5, "weight_range": 0.5})
    (metrics,) = job.run(spec, dataset, {"none": tmp_path / "a"}, log=lambda _: None)
    history = pd.read_csv(tmp_path / "a" / "history.csv")
    assert list(history.step) == [1, 2, 3, 4, 5] and metrics.train_steps == 0
    assert len(pd.read_csv(tmp_path / "a" / "steps.csv")) == 0
    weights = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    assert all(w.abs().max() <= 0.5 for w in weights.values())  # every weight is a draw from U(-r, r)
    (again,) = job.run(spec, dataset, {"none": tmp_path / "b"}, log=lambda _: None)
    assert again.test_loss == metrics.test_loss
    # the kept draw is the best on validation, and the test loss is that network's
    best = history.val_loss.idxmin()
    from gapbench.train import evaluate
    net = job.build_net(spec, job.data.task_of(job.data.read_meta(dataset)))
    net.load_state_dict(weights)
    val_loss, _ = evaluate(net, job.data.task_of(job.data.read_meta(dataset)), dataset, "validation", "cpu")
    assert val_loss == pytest.approx(history.val_loss[best], rel=1e-6)
    # the test loss is that network's on the test split (not the validation split it was chosen on)
    assert metrics.test_loss == evaluate(net, job.data.task_of(job.data.read_meta(dataset)), dataset, "test",
                                         "cpu")[0] != val_loss


class _Verdicts:
    """A real task whose success verdicts at successive evaluations are given: the stopping
    rule is what is under test here, not whether a network learns."""

    def __init__(self, task, verdicts):
        self.task, self.verdicts = task, iter(verdicts)

    def __getattr__(self, name):
        return getattr(self.task, name)

    def success(self, loss, score=None):
        return next(self.verdicts)


def _fit(dataset, verdicts, task_type=None, **train_settings):
    """A run of SPEC (with `train_settings`) trained on the adding task whose success verdicts are
    `verdicts` (`task_type`, a _Verdicts subclass, where more of the task is made up)."""
    from gapbench import job, train

    spec = _with(**train_settings)
    task = (task_type or _Verdicts)(tasks.build("adding", 6), verdicts)
    net = job.build_net(spec, task.task)
    run = train.train(net, task, dataset, "none", None, spec.train, torch.device("cpu"), log=lambda _: None)
    return run, net


def test_a_run_stops_once_solved_at_enough_evaluations_in_a_row(dataset):
    run, _ = _fit(dataset, [False, True, False, True, True, True], steps=60, eval_every=10, stop_when_solved=2)
    assert run.stopped_early and run.applied_steps == 50  # solved at 40 and 50: two in a row
    assert run.steps_to_solve == 40 and [h["step"] for h in run.history] == [10, 20, 30, 40, 50]


def test_without_stopping_steps_to_solve_is_where_the_last_solved_streak_began(dataset):
    run, _ = _fit(dataset, [True, False, True, True, True, True], steps=60, eval_every=10, stop_when_solved=0)
    assert not run.stopped_early and run.applied_steps == 60 and run.steps_to_solve == 30
    unsolved, _ = _fit(dataset, [True, True, True, True, True, False], steps=60, eval_every=10, stop_when_solved=0)
    assert unsolved.steps_to_solve is None  # solved, then lost by the end: not solved


def test_the_last_step_is_evaluated_where_eval_every_does_not_divide_the_steps(dataset):
    run, _ = _fit(dataset, [False, True], steps=15, eval_every=10, stop_when_solved=0)
    assert [h["step"] for h in run.history] == [10, 15] and run.steps_to_solve == 15


def test_a_solved_run_that_diverges_is_not_solved(dataset):
    """A run whose loss turns non-finite after it was solved keeps the last finite weights but
    not the verdict: steps_to_solve means solved to the end of training."""
    class Breaks(_Verdicts):
        steps = 0

        def loss(self, prediction, target):
            value = self.task.loss(prediction, target)
            if torch.is_grad_enabled():  # a training step's loss, not an evaluation's
                Breaks.steps += 1
                value = value * math.nan if Breaks.steps > 4 else value
            return value

    run, _ = _fit(dataset, [True] * 10, Breaks, steps=8, eval_every=2, stop_when_solved=0)
    assert run.diverged and [h["step"] for h in run.history] == [2, 4] and run.steps_to_solve is None


def test_a_run_that_diverges_after_learning_is_no_success(tmp_path, monkeypatch):
    """The latch learnt, then the training loss turns NaN at step 75: the job tests the last
    finite weights, which solve it (test loss far below 0.1 × baseline), and records the run
    as diverged and not a success."""
    from gapbench import job

    folder = tmp_path / "data"
    data.generate(tasks.build("latch", 3, classes=2, noise=0.2), 0, {"train": 256, "validation": 64, "test": 64}, folder)
    spec = dataclasses.replace(SPEC, task="latch", task_name="latch", task_params={"classes": 2, "noise": 0.2}, gap=3,
                               seed=0, train=TrainConfig(steps=80, batch_size=16, optimizer="adam", lr=0.03,
                                                         eval_every=10, probe_batch=4, stop_when_solved=0))
    task_of = data.task_of

    class Breaks:
        def __init__(self, task):
            self.task, self.steps = task, 0

        def __getattr__(self, name):
            return getattr(self.task, name)

        def loss(self, prediction, target):
            value = self.task.loss(prediction, target)
            if torch.is_grad_enabled():  # a training step's loss, not an evaluation's
                self.steps += 1
                value = value * math.nan if self.steps >= 75 else value
            return value

    monkeypatch.setattr(job.data, "task_of", lambda meta: Breaks(task_of(meta)))
    (run,) = job.run(spec, folder, {"none": str(tmp_path / "none")}, log=lambda message: None)
    assert run.diverged and run.train_steps == 74 and run.steps_to_solve is None
    assert run.test_loss < 0.01 * run.baseline and not run.success
    assert json.loads((tmp_path / "none" / "metrics.json").read_text())["success"] is False


def test_stopping_changes_nothing_before_the_stop(dataset):
    """Up to the stop the arithmetic is the same: the same history and steps as the full run."""
    stopped, _ = _fit(dataset, [False, True, True], steps=30, eval_every=10, stop_when_solved=2)
    full, _ = _fit(dataset, [False, True, True], steps=30, eval_every=10, stop_when_solved=0)
    assert stopped.applied_steps == 30 and not stopped.stopped_early  # the last step is never "early"
    assert stopped.history == full.history and stopped.steps == full.steps
    early, early_net = _fit(dataset, [True, True, True], steps=30, eval_every=10, stop_when_solved=2)
    late, late_net = _fit(dataset, [True, True, True], steps=30, eval_every=10, stop_when_solved=0)
    assert early.stopped_early and early.steps == late.steps[:20] and early.history == late.history[:2]


@pytest.mark.pipeline
def test_one_process_trains_several_seeds_and_names_a_missing_group_part(dataset, tmp_path):
    second = dataclasses.replace(SPEC, seed=4)
    words = []
    for spec in (SPEC, second):
        words += ["--spec", spec.to_json(), "--data", str(dataset), "--run", f"none={tmp_path / f'seed{spec.seed}'}"]
    subprocess.run([sys.executable, "-m", "gapbench", "train", *words], check=True, capture_output=True, text=True)
    first = json.loads((tmp_path / "seed3" / "metrics.json").read_text())
    other = json.loads((tmp_path / "seed4" / "metrics.json").read_text())
    assert (first["seed"], other["seed"]) == (3, 4) and first["test_loss"] != other["test_loss"]
    alone = tmp_path / "alone"
    subprocess.run([sys.executable, "-m", "gapbench", "train", "--spec", SPEC.to_json(), "--data", str(dataset),
                    "--run", f"none={alone}"], check=True, capture_output=True, text=True)
    assert json.loads((alone / "metrics.json").read_text())["test_loss"] == first["test_loss"]  # same numbers alone
    missing = subprocess.run([sys.executable, "-m", "gapbench", "train", "--spec", SPEC.to_json(), "--data", str(dataset),
                              "--run", f"none={tmp_path / 'x'}", "--spec", second.to_json(), "--run",
                              f"none={tmp_path / 'y'}"], capture_output=True, text=True)
    assert missing.returncode == 2 and "needs one --data" in missing.stderr and "seed 4" in missing.stderr
    assert not (tmp_path / "x").exists()  # checked before anything trains
    shorter = dataclasses.replace(second, train=dataclasses.replace(SPEC.train, steps=SPEC.train.steps // 2))
    mixed = subprocess.run([sys.executable, "-m", "gapbench", "train", "--spec", SPEC.to_json(), "--data", str(dataset),
                            "--run", f"none={tmp_path / 'x'}", "--spec", shorter.to_json(), "--data", str(dataset),
                            "--run", f"none={tmp_path / 'y'}"], capture_output=True, text=True)
    assert mixed.returncode == 2 and "seed 4's spec differs from seed 3's in ['train']" in mixed.stderr, mixed.stderr
    assert not (tmp_path / "x").exists()  # one batch shares the first seed's training: never trained with it


def test_a_run_spec_is_the_same_after_its_json_and_an_unknown_key_is_refused():
    """What a training job receives (`--spec`): every field, defaults or not, back as it was."""
    spec = dataclasses.replace(SPEC, task_params={"a": 1}, model_options={"b": 2}, threads=2,
                               train=dataclasses.replace(SPEC.train, optimizer="rmsprop", device="cuda",
                                                         cuda_graph=True, stop_when_solved=3))
    assert RunSpec.from_json(spec.to_json()) == spec and RunSpec.from_json(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="unknown run-spec key"):
        RunSpec.from_json({**spec.to_dict(), "sede": 1})


@pytest.mark.parametrize("text", ["none=", "=folder", "none"])
def test_a_run_argument_needs_a_clip_arm_and_a_folder(text):
    import argparse

    from gapbench.cli import _clip_dir

    with pytest.raises(argparse.ArgumentTypeError, match="expected CLIP=FOLDER"):
        _clip_dir(text)


def test_a_spec_with_two_datasets_or_no_run_is_refused_before_anything_trains(tmp_path, capsys):
    from gapbench import cli

    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", "--spec", SPEC.to_json(), "--data", str(tmp_path / "a"), "--data", str(tmp_path / "b"),
                  "--run", f"none={tmp_path / 'x'}"])
    assert stopped.value.code == 2 and "two --data for one --spec" in capsys.readouterr().err
    second = dataclasses.replace(SPEC, seed=9)
    code = cli.main(["train", "--spec", SPEC.to_json(), "--data", str(tmp_path / "d"), "--run",
                     f"none={tmp_path / 'x'}", "--spec", second.to_json(), "--data", str(tmp_path / "d")])
    said = capsys.readouterr().err
    assert code == 2 and "needs one --data and at least one --run" in said and "seed 9" in said
    assert not (tmp_path / "x").exists()


def _recorded_run(folder, verdicts, *, train_steps=60, success=True):
    """A run folder as a grid without stopping writes it: metrics.json and history.csv, with
    validation losses that solve the real adding task (0.0) or not (its baseline)."""
    task = tasks.build("adding", 6)
    folder.mkdir(parents=True)
    metrics = {"task": "adding", "task_name": "adding", "task_params": {}, "gap": 6, "model": "vanilla",
               "clip": "none", "seed": 0, "train_steps": train_steps, "stopped_early": False, "success": success}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    rows = ["step,val_loss,val_score"] + [f"{10 * (i + 1)},{0.0 if ok else task.baseline},0.0"
                                          for i, ok in enumerate(verdicts)]
    (folder / "history.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.pipeline
def test_the_replay_applies_the_training_rule_to_recorded_histories(tmp_path):
    """`python -m gapbench.reports.stopping` on recorded histories: the stop step per patience K is where
    `train` would have stopped, and a stop whose run lost the task by the end is counted wrong."""
    from gapbench.reports import stopping

    _recorded_run(tmp_path / "kept", [False, True, True, True, True, True])
    _recorded_run(tmp_path / "lost", [True, True, False, False, False, False], success=False)
    replayed = stopping.replay(tmp_path, [1, 2, 3])
    stops = {(row.solved_at_end, row.patience): row.stop_step for row in replayed.itertuples()}
    assert stops[(True, 1)] == 20 and stops[(True, 2)] == 30 and stops[(True, 3)] == 40
    assert stops[(False, 1)] == 10 and stops[(False, 2)] == 20 and math.isnan(stops[(False, 3)])
    summary = stopping.summarise(replayed).set_index("patience")
    assert summary.stopped.tolist() == [2, 2, 1]
    assert summary.stopped_but_unsolved_at_end.tolist() == [1, 1, 0]
    assert summary.stopped_but_test_failure_at_end.tolist() == [1, 1, 0]
    out = subprocess.run([sys.executable, "-m", "gapbench.reports.stopping", str(tmp_path), "--patience", "3"],
                         check=True, capture_output=True, text=True).stdout
    assert out.split("\n")[1].split()[:3] == ["3", "2", "1"]  # patience, runs, stopped


def test_evaluation_batches_bound_the_sequence_steps_of_a_cpu_pass(tmp_path):
    """A split is scored at 512 sequences a pass, on the CPU at most 512 · 256 sequence-steps a
    pass (a forward pass keeps every step's state: memory would grow with T), and the weighted
    mean over the passes is the mean over the split."""
    from gapbench.train import evaluate, evaluation_batch

    assert [evaluation_batch(T, "cpu") for T in (1, 91, 256, 257, 1000, 2295, 10**6)] == \
        [512, 512, 512, 510, 131, 57, 1]
    assert evaluation_batch(2295, torch.device("cuda")) == 512  # a GPU's memory is not the job's
    task = tasks.build("adding", 1000)  # T = 1000: 131 sequences a CPU pass, 300 in 3 passes
    assert task.seq_len == 1000
    data.generate(task, 0, {"train": 1, "validation": 300, "test": 1}, tmp_path)
    torch.manual_seed(0)
    net = Net(models.build("vanilla", task.input_size, 4), task.output_size)
    passes = []
    net.register_forward_hook(lambda module, inputs, output: passes.append(len(inputs[0])))
    loss, score = evaluate(net, task, tmp_path, "validation", "cpu")
    assert passes == [131, 131, 38]
    whole = data.load(tmp_path, "validation")
    with torch.no_grad():
        prediction = net(torch.from_numpy(whole["x"]).float())
        target = torch.from_numpy(whole["y"])
    assert loss == pytest.approx(task.loss(prediction, target).item(), rel=1e-5)
    assert score == pytest.approx(task.score(prediction, target).item(), rel=1e-5, abs=1e-7)


@pytest.mark.pipeline  # a gapbench process of its own
def test_a_training_process_computes_float32_not_tf32():
    """A job's process set-up turns off the TensorFloat-32 that torch allows cuDNN's RNNs by
    default ("tf32"): on an Ampere-or-newer GPU the LSTM and GRU would otherwise compute with 10
    of float32's 23 mantissa bits. Checked in a fresh process, where torch's default holds; the
    legacy flags read False after it (reading them must not raise)."""
    if not hasattr(getattr(torch.backends.cudnn, "rnn", None), "fp32_precision"):
        pytest.skip("this torch has no per-operator float32 precision (exact_float32 sets the legacy flags)")
    check = ("import torch; from gapbench.job import _set_up_process; from gapbench.spec import RunSpec, TrainConfig; "
             "b = torch.backends; before = b.cudnn.rnn.fp32_precision; "
             "_set_up_process(RunSpec(task='adding', task_name='adding', task_params={}, gap=8, model='lstm', "
             "model_name='lstm', model_options={}, hidden_size=4, seed=0, threads=1, clip_thresholds={}, "
             "train=TrainConfig(steps=1, batch_size=8, optimizer='adam', lr=0.01, eval_every=1, probe_batch=8))); "
             "print(before, b.cudnn.rnn.fp32_precision, b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision, "
             "b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["tf32", "ieee", "ieee", "ieee", "False", "False"]


def test_a_copy_without_git_names_its_commit_from_the_environment(monkeypatch):
    """Outside git (a device machine gets a copy without .git) the code version is the package's,
    and names the commit GAPBENCH_COMMIT gives, marked as a copy."""
    from gapbench import __version__, provenance

    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    monkeypatch.delenv("GAPBENCH_COMMIT", raising=False)
    assert provenance.code_version() == __version__
    monkeypatch.setenv("GAPBENCH_COMMIT", "41f80fb")
    assert provenance.code_version() == f"{__version__}+g41f80fb-copy"
