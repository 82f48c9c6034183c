"""What a grid costs before it runs: jobs, core-hours and memory, from measured per-step costs.

    python -m gapbench cost config/paper.yaml                # estimate (calibrates what it lacks)
    python -m gapbench cost config/default.yaml --check results/benchmarks/train

The model of one training job (one (task, gap, model): every seed and clip arm, 1 thread):

    seconds = c · [startup + N · ((1 + A) · probes(T) + A · S · step(T) + A · (S / E + 1) · ⌈V / B⌉ · forward(T))]

N seeds, A clip arms, S steps, E eval_every, V validation (and test) sequences, B the batch size, T the
sequence length. step(T) (one training step of one run: forward, backward, clipping and optimiser
update, timed per run while RUNS = 4 runs train together, as a job trains its seeds and clip arms),
forward(T) and probes(T) (every probe on the probe batch) are measured per model and hidden size
at two lengths and taken as linear in T (a recurrence costs the same per step at any length);
startup is a whole job with negligible work, timed once (interpreter, imports, the dataset
check, writing the run folder), and c how much slower a job runs while every core runs one
(measured: the same steps alone and on every core at once). Every run is counted at its full
S steps: a run that solves its task stops earlier (train.stop_when_solved), so the estimate is
an upper bound, reached where nothing solves. The calibration is kept in
results/bench/step_costs.csv with the machine it was measured on: an estimate is only as good
as the likeness of that machine to the one that runs.
`--check` compares the estimate with the seconds Snakemake's benchmark files recorded for each
training job of a finished grid and prints the error.
"""
from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gapbench import results
from gapbench.config import load_config

CALIBRATION = Path(results.CALIBRATION)
LENGTHS = (50, 200)  # sequence lengths the per-step costs are measured at
RUNS = 4  # runs trained together when a step is timed: the default grid's seeds × clip arms


def _timed(function, repeats: int) -> float:
    """Seconds per call, the median of `repeats` timed calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def measure_model(model: str, hidden: int, seq_len: int, batch: int = 64, probe_batch: int = 32,
                  options: dict | None = None, steps: int = 10, runs: int = RUNS) -> dict:
    """Seconds of a training step per run (gapbench.train.train_runs itself, `runs` runs trained
    together as a job trains its seeds and clip arms, batches read from a dataset on disk), of a
    forward pass and of every probe, for `model` on the adding task of length seq_len, one thread."""
    import tempfile

    import torch

    from gapbench import data, models, tasks
    from gapbench.job import measure
    from gapbench.spec import TrainConfig
    from gapbench.train import RunSetup, batches, train_runs

    torch.set_num_threads(1)
    task = tasks.build("adding", seq_len)
    with tempfile.TemporaryDirectory() as folder:
        data.generate(task, 0, {"train": batch * steps, "validation": batch, "test": probe_batch}, folder)

        def nets():
            built = []
            for seed in range(runs):
                torch.manual_seed(seed)
                built.append(models.Net(models.build(model, task.input_size, hidden, **(options or {})),
                                        task.output_size))
            return built

        config = TrainConfig(steps=steps, batch_size=batch, optimizer="adam", lr=1e-3, eval_every=steps,
                             probe_batch=probe_batch)
        quiet = lambda message: None  # noqa: E731
        train_runs([RunSetup(n, "norm", 1.0, folder) for n in nets()], task, config, "cpu", quiet)  # warm-up
        trained = nets()
        started = time.perf_counter()
        train_runs([RunSetup(n, "norm", 1.0, folder) for n in trained], task, config, "cpu", quiet)
        step_seconds = (time.perf_counter() - started) / (steps * runs)
        net = trained[0]
        x, y = next(batches(folder, "train", batch, "cpu"))

        def forward():
            with torch.no_grad():
                net(x)

        probe_x, probe_y = x[:probe_batch], y[:probe_batch]
        return {"model": model, "hidden_size": hidden, "seq_len": seq_len, "runs": runs, "step_seconds": step_seconds,
                "forward_seconds": _timed(forward, steps),
                "probe_seconds": _timed(lambda: measure(net, task, probe_x, probe_y, "init"), 1)}


def measure_startup() -> float:
    """Seconds of a whole training job whose work is negligible (one step of an 8-unit RNN on
    a 3-step task): the interpreter, imports, the first optimiser, the dataset check, the
    probes' fixed costs and the writing of a run folder."""
    import json
    import tempfile

    from gapbench import data, tasks
    from gapbench.spec import RunSpec, TrainConfig

    with tempfile.TemporaryDirectory() as folder:
        data.generate(tasks.build("adding", 3), 0, {"train": 8, "validation": 8, "test": 8}, f"{folder}/data")
        spec = RunSpec(task="adding", task_name="adding", task_params={}, gap=3, model="vanilla", model_name="vanilla", model_options={},
                       hidden_size=8, seed=0, threads=1, clip_thresholds={"norm": 1.0, "value": 0.1},
                       train=TrainConfig(steps=1, batch_size=8, optimizer="adam", lr=1e-3, eval_every=1,
                                         probe_batch=8))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gapbench", "train", "--spec", json.dumps(spec.to_dict()),
                        "--data", f"{folder}/data", "--run", f"none={folder}/run"], check=True, capture_output=True)
        return time.perf_counter() - started


_PROBE_STEP = ("from gapbench.reports.cost import measure_model; "
               "print(measure_model('vanilla', 64, 200, steps=40)['step_seconds'])")


def measure_contention() -> float:
    """How much slower a job runs while every core runs one (as under `snakemake --cores N`
    with N the cores): the same training step timed alone and in N processes at once. On
    virtual machines whose cores are hyperthreads of fewer physical ones this is well above 1."""
    alone = float(subprocess.run([sys.executable, "-c", _PROBE_STEP], capture_output=True, text=True,
                                 check=True).stdout)
    processes = [subprocess.Popen([sys.executable, "-c", _PROBE_STEP], stdout=subprocess.PIPE, text=True)
                 for _ in range(_cores())]
    together = [float(process.communicate()[0]) for process in processes]
    return float(np.median(together)) / alone


def calibrate(pairs, path: Path = CALIBRATION, log=print) -> pd.DataFrame:
    """Measure every (model, hidden size) in `pairs` at LENGTHS and append them to `path`."""
    rows = []
    startup, contention = measure_startup(), measure_contention()
    log(f"start-up {startup:.2f} s a job; every core busy makes a job {contention:.2f}x slower")
    for model, hidden in pairs:
        for seq_len in LENGTHS:
            row = measure_model(model, hidden, seq_len)
            rows.append({**row, "startup_seconds": startup, "contention": contention, "machine": _machine()})
            log(f"calibrated {model} H={hidden} T={seq_len}: step {row['step_seconds'] * 1e3:.1f} ms, "
                f"probes {row['probe_seconds']:.2f} s")
    table = pd.DataFrame(rows)
    if path.exists():
        table = pd.concat([pd.read_csv(path), table], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return table


def _machine() -> str:
    import torch

    return f"{platform.processor() or platform.machine()}; {_cores()} cores; torch {torch.__version__}"


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _linear(calibration: pd.DataFrame, model: str, hidden: int, column: str, seq_len) -> np.ndarray:
    """column(T) = a + b T through the two calibrated lengths (the latest measurement of each)."""
    rows = calibration[(calibration.model == model) & (calibration.hidden_size == hidden)]
    rows = rows.groupby("seq_len", as_index=False).last().sort_values("seq_len")
    (t0, t1), (c0, c1) = rows.seq_len.to_numpy()[:2], rows[column].to_numpy()[:2]
    slope = (c1 - c0) / (t1 - t0)
    return c0 + slope * (np.asarray(seq_len, dtype=float) - t0)


def jobs(config: dict) -> pd.DataFrame:
    """One row per training job of the grid: task label, gap, model, the sequence length and the
    number of seeds (the job trains each, every clip arm)."""
    from gapbench import tasks
    from gapbench.config import model_entry, model_hidden_size, task_label, task_models

    rows = []
    for entry in config["tasks"]:
        for gap in entry["gaps"]:
            seq_len = tasks.build(entry["name"], gap, **entry.get("params", {})).seq_len
            for label in task_models(config, entry):
                model = model_entry(config, label)
                rows.append({"task": task_label(entry), "gap": gap, "model": label,
                             "model_name": model["name"], "hidden_size": model_hidden_size(config, model),
                             "seq_len": seq_len, "seeds": len(config["seeds"])})
    return pd.DataFrame(rows)


def estimate(config: dict, calibration: pd.DataFrame) -> pd.DataFrame:
    """`jobs(config)` with each job's estimated seconds (the model in the module docstring)."""
    from gapbench import models
    from gapbench.config import model_entry
    from gapbench.train import EVAL_BATCH

    grid = jobs(config)
    train, sizes = config["train"], config["data"]["sizes"]
    arms = len(config["clip"]["arms"])
    validations = train["steps"] // train["eval_every"] + 1
    evaluations = validations * math.ceil(sizes["validation"] / EVAL_BATCH) + \
        math.ceil(sizes["test"] / EVAL_BATCH)  # evaluation batches of gapbench.train.evaluate
    startup = float(calibration.startup_seconds.median())  # machine-wide: over every calibration
    seconds = np.empty(len(grid))
    for (label, model, hidden), rows in grid.groupby(["model", "model_name", "hidden_size"]):
        T = rows.seq_len.to_numpy()
        step = _linear(calibration, model, hidden, "step_seconds", T)
        forward = _linear(calibration, model, hidden, "forward_seconds", T) * EVAL_BATCH / 64
        probes = _linear(calibration, model, hidden, "probe_seconds", T)
        built = models.build(model, 2, hidden, **model_entry(config, label)["options"])
        if built.trained_by == "guessing":  # K validation passes instead of gradient steps
            fitting = built.guesses * evaluations / validations * forward
        else:
            fitting = train["steps"] * step + evaluations * forward
        seconds[rows.index] = startup + rows.seeds.to_numpy() * ((1 + arms) * probes + arms * fitting)
    # jobs share the machine: every core runs one at a time
    return grid.assign(seconds=seconds * float(calibration.contention.median()))


def summary(estimated: pd.DataFrame, config: dict) -> str:
    hours = estimated.seconds.sum() / 3600
    by_model = estimated.groupby("model").seconds.sum().sort_values(ascending=False) / 3600
    lines = [
        f"{len(estimated)} training jobs ({estimated.seeds.sum() * len(config['clip']['arms'])} runs), "
        f"one thread each: {hours:,.1f} core-hours (with --cores 2: {hours / 2:,.1f} h; 100 cores: {hours / 100:,.2f} h)",
        "memory: the train rule asks 3000 MB a job (the measured peak of a finished run: --check)",
        "core-hours by model: " + ", ".join(f"{m} {h:,.1f}" for m, h in by_model.items()),
        f"longest job: {estimated.seconds.max() / 60:,.1f} min "
        f"({estimated.loc[estimated.seconds.idxmax(), ['task', 'gap', 'model']].to_dict()})",
    ]
    return "\n".join(lines)


def check(estimated: pd.DataFrame, benchmarks: Path) -> str:
    """The estimate against the seconds Snakemake recorded for each training job."""
    measured = []
    for path in benchmarks.glob("*/gap*/*.tsv"):
        keys = results.fields_of(results.TRAIN_BENCHMARK, path.as_posix())
        task, gap, model = keys["task"], int(keys["gap"]), keys["model"]
        record = pd.read_csv(path, sep="\t").iloc[-1]
        measured.append({"task": task, "gap": gap, "model": model, "measured": record.s, "max_rss": record.max_rss})
    both = estimated.merge(pd.DataFrame(measured), on=["task", "gap", "model"])
    error = (both.seconds - both.measured) / both.measured
    per_model = both.groupby("model").apply(lambda g: (g.seconds.sum() - g.measured.sum()) / g.measured.sum(),
                                            include_groups=False)
    return (f"{len(both)} jobs compared: estimated {both.seconds.sum() / 3600:.3g} core-hours, measured "
            f"{both.measured.sum() / 3600:.3g} ({(both.seconds.sum() / both.measured.sum() - 1) * 100:+.0f}% in "
            f"total); per job: median |error| {error.abs().median() * 100:.0f}%, 90th percentile "
            f"{error.abs().quantile(0.9) * 100:.0f}%\nby model (total): "
            + ", ".join(f"{m} {e * 100:+.0f}%" for m, e in per_model.items())
            + f"\npeak memory (max_rss) per job: median {both.max_rss.median():.0f} MB, largest {both.max_rss.max():.0f} MB")


def run(args) -> int:
    from gapbench.config import ConfigError, model_hidden_size

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"gapbench cost: {args.config}: {error}", file=sys.stderr)
        return 2
    pairs = sorted({(m["name"], model_hidden_size(config, m)) for m in config["models"]})
    calibration = pd.read_csv(args.calibration) if args.calibration.exists() else pd.DataFrame(
        columns=["model", "hidden_size"])
    known = set(zip(calibration.model, calibration.hidden_size))
    missing = pairs if args.recalibrate else [p for p in pairs if p not in known]
    if missing:
        print(f"calibrating {len(missing)} (model, hidden size) pairs on this machine ...", file=sys.stderr)
        calibration = calibrate(missing, args.calibration, log=lambda m: print(m, file=sys.stderr))
    estimated = estimate(config, calibration)
    print(summary(estimated, config))
    if args.check:
        print(check(estimated, args.check))
    return 0
