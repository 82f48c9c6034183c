"""What a grid costs before it runs: jobs, core-hours or GPU-hours and memory, from measured per-step costs.

    python -m gapbench cost config/paper.yaml                # estimate (calibrates what it lacks)
    python -m gapbench cost config/paper.yaml --device cuda  # on a GPU (default: the config's train.device)
    python -m gapbench cost config/default.yaml --check results/benchmarks/train

The model of one training job (one (task, gap, model): every seed and clip arm, 1 thread):

    seconds = c · [startup + N · ((1 + A) · probes(T) + A · S · step(T) + A · (S / E + 1) · ⌈V / B⌉ · forward(T))]

N seeds, A clip arms, S steps, E eval_every, V validation (and test) sequences, B the evaluation
batch (gapbench.train.evaluation_batch: 512 sequences, on the CPU fewer where T > 256), T the
sequence length; forward(T) is one forward pass over B sequences, timed at B itself on either
device (a pass is not linear in its batch: on a 2-core VM at T = 1000 a pass of 131 sequences
took 1.3 to 1.6 times one of 64 per sequence; docs/clusters.md) and interpolated per sequence. A
model fitted by random guessing (random_guess) takes K validation passes per seed instead of
A · S steps: one search serves a seed's A arms (gapbench.train.train_runs). step(T) (one training
step of one run: forward, backward, clipping and optimiser update, timed per run while RUNS = 4
runs train together, as a job trains its seeds and clip arms), forward(T) and probes(T) (every
probe on the probe batch) are measured per model and hidden size at T = 50 and 200 and, for a
grid with longer sequences, at 1000 (5000, ...) below its longest and at its longest
(`calibration_lengths`), and taken as piecewise linear in T between the lengths measured,
continuing the line of the last two beyond them: a step's time grows faster than T on long
sequences (on a 2-core VM at H = 128, vanilla's took 1.2 times the line through 50 and 200 at
T = 1000 and 1.8 times at T = 2295, lru's 2.9 times; docs/clusters.md), so a line through short
lengths alone underestimates the longest jobs, which dominate a grid's cost;
startup is a whole job with negligible work, timed once (interpreter, imports, the dataset
check, writing the run folder), and c how much slower a job runs while every core runs one
(measured: the same steps alone and on every core at once, the median of three readings).
Every run is counted at its full S steps: a run that solves its task stops earlier
(train.stop_when_solved), so the estimate is an upper bound, reached where nothing solves. The
calibration is kept in results/bench/step_costs.csv with the machine it was measured on: an
estimate is only as good as the likeness of that machine to the one that runs.

On a GPU (`--device cuda`) the formula is the same, its terms measured on the GPU machine:
- c = 1, and a job's seconds are split into the GPU's part, A · S · step(T) and the
  evaluations (`device_seconds`), and the CPU's, start-up and probes. Jobs one after another on
  one GPU (`snakemake --cores N --resources gpu=1`; the train rule asks gpu=1 a job) take the
  sum of both; J jobs sharing the GPU (`--resources gpu=J`) overlap one's CPU work with the
  others' GPU work (`gpu_wall_hours`); k GPUs take that over k at best;
- a job's R = N · A runs train together and a GPU step is bound by kernel launches, not
  arithmetic: R runs cost far less than R times one. So step(T) is the per-run step measured
  with the config's own R runs together (the calibration's `runs` column; rows at another R
  are not used, a missing (model, hidden size) is calibrated at R), and with the config's
  train.cuda_graph (a captured step launches once). It is timed as the difference of two
  trainings, 20 and 10 steps long, so that a training's fixed costs (optimisers, a graph's
  eager warm-up steps and capture), large against ten GPU steps, stay out of it: paid once a
  job, they count only as far as startup, a whole one-step job trained on the GPU, holds them
  (it captures nothing);
- the probes run on the CPU in float64 in a GPU job too (gapbench.job.measure), the GPU idle
  meanwhile: probes(T) is timed on the GPU machine's CPU, one thread, once per (model, hidden
  size, T) (a calibration at another R reuses it);
- runs that stop early make it an upper bound here too.
That calibration is kept in results/bench/step_costs_cuda.csv with the GPU it was measured on;
a machine without CUDA estimates from it but cannot add to it.
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
from gapbench.files import read_benchmark, read_csv
from gapbench.job import flushed_subnormals  # the training setting a step is timed under

CALIBRATIONS = {"cpu": Path(results.CALIBRATION), "cuda": Path(results.CALIBRATION_CUDA)}  # one file a device
CALIBRATION = CALIBRATIONS["cpu"]
LENGTHS = (50, 200)  # sequence lengths every calibration measures the per-step costs at
LONG_LENGTHS = (1000, 5000, 25000)  # and these below a grid's longest sequence (and the longest itself)
RUNS = 4  # runs trained together when a CPU step is timed: the default grid's seeds × clip arms
TIMING_BATCH = 64  # sequences a timed training step draws (the paper's train.batch_size)
# the learning rate a step is timed at: Adam's whole update, on weights that barely move, so that no
# run diverges and stops stepping (at a job's 1e-3, irnn at H = 128, T = 2295 diverged at its second
# step and was timed at 78 ms a "step", against 163 ms at T = 1000); a step's arithmetic does not
# depend on the rate
TIMING_LR = 1e-12
UNITS = {"cpu": "core-hours", "cuda": "hours on one GPU"}


def _timed(function, repeats: int, warm_up: bool = True) -> float:
    """Seconds per call, the median of `repeats` timed calls (after one warm-up call)."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


class TimedTraining:
    """What every timing of a training step sets up, in one place (measure_model, and
    benchmarks/step_profile.py, which profiles the step that measure_model times): the adding
    task of length seq_len on disk (batch · steps training sequences, at least forward_batch;
    batch validation ones, scored once at the end of a training; probe_batch test ones), a job's
    nets built as a job builds them (seed n for the n-th, on the CPU, then moved to `device`),
    and `train`, a job's training of them (gapbench.graphed.train_job, lr TIMING_LR, clip arm
    norm) timed. The forward pass's batch, `forward_batch`, is the one gapbench.train.evaluate
    uses on `device` at seq_len (`evaluation_batch`). `task`, a task of length seq_len, replaces
    the adding task (benchmarks/cpu_allocator.py passes one that stamps the time of each
    training loss). Use it as a context manager: the dataset lives in a temporary folder until
    it exits."""

    def __init__(self, model: str, hidden: int, seq_len: int, batch: int = TIMING_BATCH, steps: int = 10,
                 probe_batch: int = 32, options: dict | None = None, device: str = "cpu",
                 cuda_graph: bool = False, task=None):
        import torch

        from gapbench import tasks
        from gapbench.train import evaluation_batch

        self.model, self.hidden, self.seq_len, self.batch, self.steps = model, hidden, seq_len, batch, steps
        self.probe_batch, self.options, self.cuda_graph = probe_batch, options or {}, cuda_graph
        self.device = torch.device(device)
        self.on_gpu = self.device.type == "cuda"
        self.forward_batch = evaluation_batch(seq_len, self.device)
        self.task = task if task is not None else tasks.build("adding", seq_len)
        if self.task.seq_len != seq_len:
            raise ValueError(f"the task given is of length {self.task.seq_len}, the timing's seq_len is {seq_len}")
        # CUDA works asynchronously: the clock is read once the GPU has done the work, not when handed it
        self.synchronize = torch.cuda.synchronize if self.on_gpu else (lambda: None)

    def __enter__(self) -> "TimedTraining":
        import tempfile

        from gapbench import data
        from gapbench.job import exact_float32

        exact_float32()  # as a training job computes
        self._folder = tempfile.TemporaryDirectory()
        self.folder = self._folder.name
        data.generate(self.task, 0, {"train": max(self.batch * self.steps, self.forward_batch),
                                     "validation": self.batch, "test": self.probe_batch}, self.folder)
        return self

    def __exit__(self, *exc) -> None:
        self._folder.cleanup()

    def nets(self, runs: int) -> list:
        import torch

        from gapbench import models

        built = []
        for seed in range(runs):  # built on the CPU and moved, as a job builds its nets
            torch.manual_seed(seed)
            built.append(models.Net(models.build(self.model, self.task.input_size, self.hidden, **self.options),
                                    self.task.output_size).to(self.device))
        return built

    def train(self, length: int, runs: int) -> tuple[list, float]:
        """`runs` fresh nets trained `length` steps together, and the seconds the training took
        (the nets' building outside them). A run that diverges even at TIMING_LR stopped stepping,
        so the time is not `length` steps': a ValueError naming the model and T."""
        from gapbench.graphed import train_job
        from gapbench.spec import TrainConfig
        from gapbench.train import RunSetup

        config = TrainConfig(steps=length, batch_size=self.batch, optimizer="adam", lr=TIMING_LR, eval_every=length,
                             probe_batch=self.probe_batch, device=self.device.type, cuda_graph=self.cuda_graph)
        trained = self.nets(runs)
        self.synchronize()
        started = time.perf_counter()
        results = train_job([RunSetup(net, "norm", 1.0, self.folder) for net in trained], self.task, config,
                            self.device, lambda message: None)
        self.synchronize()
        seconds = time.perf_counter() - started
        if any(result.diverged for result in results):
            raise ValueError(f"{self.model} (H = {self.hidden}) cannot be timed at T = {self.seq_len}: its loss "
                             "is not finite at its initial weights")
        return trained, seconds

    def first_batch(self, split: str, size: int, device=None):
        """(x, y), the first `size` sequences of `split`, on `device` (default: the runs')."""
        from gapbench.train import batches

        return next(batches(self.folder, split, size, device or self.device))


@flushed_subnormals()
def measure_model(model: str, hidden: int, seq_len: int, batch: int = TIMING_BATCH, probe_batch: int = 32,
                  options: dict | None = None, steps: int = 10, runs: int = RUNS, device: str = "cpu",
                  cuda_graph: bool = False, probe_seconds: float | None = None) -> dict:
    """Seconds of a training step per run (gapbench.graphed.train_job, `runs` runs trained
    together on `device` as a job trains its seeds and clip arms, batches read from a dataset on
    disk: TimedTraining), of a forward pass and of every probe, for `model` on the adding task of
    length seq_len, one thread.

    The runs train at TIMING_LR, so that none diverges and stops stepping (a model whose loss is
    not finite even at its initial weights is a ValueError naming it and T). On the CPU the step
    is a whole training's time over its steps. On cuda (a captured step where cuda_graph) the
    step is the difference of a training 2·steps long and one `steps` long, so that a training's
    fixed costs (large against a few GPU steps) stay out of it. A model fitted by guessing
    (random_guess) takes no step: its step_seconds is NaN (the estimate counts its search as
    forward passes) and its pass and probes are timed on a net at its initial weights. The forward pass is timed on
    `device` at the batch gapbench.train.evaluate gives it there (`evaluation_batch`, recorded as
    `forward_batch`): a pass is not linear in its batch on either device. The probes run on
    the CPU in float64 on either device, as in a job; `probe_seconds`, measured before, is taken
    as it is. Float32 subnormals are flushed to zero while it measures, as in a job (the probes
    turn that off for themselves, as in a job)."""
    import torch

    from gapbench.job import measure

    torch.set_num_threads(1)
    with TimedTraining(model, hidden, seq_len, batch, steps, probe_batch, options, device, cuda_graph) as timing:
        net = timing.nets(1)[0]
        if net.rnn.trained_by == "guessing":
            # fitted by validation passes, which the estimate counts as forward passes: a timed
            # "step" would be whole searches (runs × K passes, three times on a GPU) never read
            step_seconds = math.nan
        else:
            timing.train(steps, runs)  # warm-up
            trained, seconds = timing.train(steps, runs)
            if timing.on_gpu:
                seconds = timing.train(2 * steps, runs)[1] - seconds
            net, step_seconds = trained[0], seconds / (steps * runs)
        x, _ = timing.first_batch("train", timing.forward_batch)

        def forward():
            with torch.no_grad():
                net(x)
            timing.synchronize()

        probe_x, probe_y = timing.first_batch("test", probe_batch, "cpu")  # on the CPU, as a job draws it
        return {"model": model, "hidden_size": hidden, "seq_len": seq_len, "runs": runs, "device": timing.device.type,
                "cuda_graph": cuda_graph, "step_seconds": step_seconds,
                "forward_seconds": _timed(forward, steps), "forward_batch": timing.forward_batch,
                # the trained net wherever it is: measure takes its float64 CPU copy, as a GPU job's probes do
                # timed once, with no warm-up call: a job's probes pay their first call's costs too, and
                # the float64 probes are a GPU calibration's longest part (twice that, with a warm-up)
                "probe_seconds": probe_seconds if probe_seconds is not None else
                _timed(lambda: measure(net, timing.task, probe_x, probe_y, "init"), 1, warm_up=False)}


def measure_startup(device: str = "cpu", cuda_graph: bool = False) -> float:
    """Seconds of a whole training job whose work is negligible (one step of an 8-unit RNN on
    a 3-step task) on `device`: the interpreter, imports, the first optimiser, the dataset
    check, the probes' fixed costs and the writing of a run folder; on cuda also the CUDA
    context, the first kernels' loading and, with cuda_graph, what the graph's set-up costs."""
    import json
    import tempfile

    from gapbench import data, tasks
    from gapbench.spec import RunSpec, TrainConfig

    with tempfile.TemporaryDirectory() as folder:
        data.generate(tasks.build("adding", 3), 0, {"train": 8, "validation": 8, "test": 8}, f"{folder}/data")
        spec = RunSpec(task="adding", task_name="adding", task_params={}, gap=3, model="vanilla", model_name="vanilla", model_options={},
                       hidden_size=8, seed=0, threads=1, clip_thresholds={"norm": 1.0, "value": 0.1},
                       train=TrainConfig(steps=1, batch_size=8, optimizer="adam", lr=1e-3, eval_every=1,
                                         probe_batch=8, device=device, cuda_graph=cuda_graph))
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gapbench", "train", "--spec", json.dumps(spec.to_dict()),
                        "--data", f"{folder}/data", "--run", f"none={folder}/run"], check=True, capture_output=True)
        return time.perf_counter() - started


_PROBE_STEP = ("from gapbench.reports.cost import measure_model; "
               "print(measure_model('vanilla', 64, 200, steps=40)['step_seconds'])")


# one reading of the contention varies by several percent on a quiet 2-core VM (five in a row:
# 0.98 to 1.07; single readings in two paper calibrations, 0.963 and 1.10, moved their headline by
# 14%): a calibration takes the median of this many (about 15 s each there)
CONTENTION_REPEATS = 3


def measure_contention(repeats: int = CONTENTION_REPEATS) -> float:
    """How much slower a job runs while every core runs one (as under `snakemake --cores N`
    with N the cores): the same training step timed alone and in N processes at once, the
    median of `repeats` such ratios. On virtual machines whose cores are hyperthreads of fewer
    physical ones this is well above 1."""
    return float(np.median([_contention_once() for _ in range(repeats)]))


def _contention_once() -> float:
    alone = float(subprocess.run([sys.executable, "-c", _PROBE_STEP], capture_output=True, text=True,
                                 check=True).stdout)
    processes = [subprocess.Popen([sys.executable, "-c", _PROBE_STEP], stdout=subprocess.PIPE, text=True)
                 for _ in range(_cores())]
    together = [float(process.communicate()[0]) for process in processes]
    return float(np.median(together)) / alone


def calibrate(missing: dict[tuple[str, int], tuple[int, ...]], path: Path = CALIBRATION, log=print,
              device: str = "cpu", runs: int = RUNS, cuda_graph: bool = False) -> pd.DataFrame:
    """Measure every (model, hidden size) of `missing` at its lengths (`missing_lengths`) on
    `device` (`runs` runs trained together, a captured step where cuda_graph) and append them to
    `path`, a row at a time."""
    earlier = read_csv(path) if path.exists() else pd.DataFrame(columns=["model", "hidden_size", "seq_len"])
    # the probes run on the CPU whatever the runs and the step: measured once per (model, hidden size, T)
    probes = {(row.model, row.hidden_size, row.seq_len): row.probe_seconds
              for row in earlier.itertuples() if getattr(row, "machine", None) == _machine(device)}
    rows = []
    machine_wide = {"startup_seconds": measure_startup(device, cuda_graph)}
    if device == "cpu":
        machine_wide["contention"] = measure_contention()
        log(f"start-up {machine_wide['startup_seconds']:.2f} s a job; every core busy makes a job "
            f"{machine_wide['contention']:.2f}x slower")
    else:  # the jobs take the GPU one at a time: nothing contends
        log(f"start-up {machine_wide['startup_seconds']:.2f} s a job on the GPU")
    for (model, hidden), lengths in missing.items():
        for seq_len in lengths:
            row = measure_model(model, hidden, seq_len, runs=runs, device=device, cuda_graph=cuda_graph,
                                probe_seconds=probes.get((model, hidden, seq_len)))
            rows.append({**row, **machine_wide, "machine": _machine(device)})
            step = ("no gradient step (fitted by guessing)" if math.isnan(row["step_seconds"]) else
                    f"step {row['step_seconds'] * 1e3:.1f} ms a run ({runs} together)")
            log(f"calibrated {model} H={hidden} T={seq_len}: {step}, probes {row['probe_seconds']:.2f} s")
            table = pd.concat([earlier, pd.DataFrame(rows)], ignore_index=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(path, index=False)  # after every row: a calibration cut short keeps what it measured
    return pd.concat([earlier, pd.DataFrame(rows)], ignore_index=True)


def _machine(device: str) -> str:
    import torch

    machine = f"{platform.processor() or platform.machine()}; {_cores()} cores; torch {torch.__version__}"
    if device == "cuda":  # the probes' CPU counts on a GPU machine too
        return f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda}); {machine}"
    return machine


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def calibration_setting(config: dict, device: str) -> tuple[int, bool]:
    """(runs trained together, cuda_graph) of the calibration an estimate of `config` on
    `device` reads: on the CPU (RUNS, False), a per-run step there serving any number of runs
    (a core's work grows with them); on a GPU the config's runs per job (seeds × clip arms)
    and its train.cuda_graph, as a GPU step is not linear in the runs."""
    if device == "cpu":
        return RUNS, False
    return len(config["seeds"]) * len(config["clip"]["arms"]), bool(config["train"]["cuda_graph"])


def usable(calibration: pd.DataFrame, config: dict, device: str) -> pd.DataFrame:
    """The rows of `calibration` (of `device`'s file) an estimate of `config` on `device` reads:
    on the CPU every one, on a GPU those at the config's `calibration_setting`."""
    if device == "cpu":
        return calibration
    runs, cuda_graph = calibration_setting(config, device)
    return calibration[(calibration.runs == runs) & (calibration.cuda_graph == cuda_graph)]


def calibrated(calibration: pd.DataFrame, model: str, hidden: int) -> pd.DataFrame:
    """The rows of `calibration` for (model, hidden size): the latest measurement of each length,
    shortest first."""
    rows = calibration[(calibration.model == model) & (calibration.hidden_size == hidden)]
    return rows.drop_duplicates("seq_len", keep="last").sort_values("seq_len")


def interpolated(calibration: pd.DataFrame, model: str, hidden: int, column: str, seq_len) -> np.ndarray:
    """column(T), piecewise linear through the lengths `calibrated`: between two of them on
    their line, below the first and beyond the last on the line of the first two and of the last
    two. With two lengths, the line a + b T through them."""
    rows = calibrated(calibration, model, hidden)
    lengths, costs = rows.seq_len.to_numpy(dtype=float), rows[column].to_numpy(dtype=float)
    T = np.asarray(seq_len, dtype=float)
    segment = np.clip(np.searchsorted(lengths, T, side="right") - 1, 0, len(lengths) - 2)
    t0, c0 = lengths[segment], costs[segment]
    slope = (costs[segment + 1] - c0) / (lengths[segment + 1] - t0)
    return c0 + slope * (T - t0)


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


def sequence_forward_seconds(calibration: pd.DataFrame, device: str) -> pd.Series:
    """A forward pass's seconds per sequence, each row's pass over the batch it was timed at
    (`forward_batch`; calibrations without it timed the CPU's at TIMING_BATCH, a GPU's at
    gapbench.train.EVAL_BATCH)."""
    from gapbench.train import EVAL_BATCH

    timed_at = calibration.get("forward_batch", pd.Series(np.nan, index=calibration.index))
    return calibration.forward_seconds / timed_at.fillna(TIMING_BATCH if device == "cpu" else EVAL_BATCH)


def estimate(config: dict, calibration: pd.DataFrame, device: str | None = None) -> pd.DataFrame:
    """`jobs(config)` with each job's estimated seconds on `device` (default: the config's
    train.device) from `device`'s calibration (the model in the module docstring)."""
    from gapbench import models
    from gapbench.config import model_entry
    from gapbench.train import evaluation_batch

    device = device or config["train"]["device"]
    calibration = usable(calibration, config, device)
    grid = jobs(config)
    train, sizes = config["train"], config["data"]["sizes"]
    arms = len(config["clip"]["arms"])
    validations = train["steps"] // train["eval_every"] + 1
    eval_batch = np.array([evaluation_batch(T, device) for T in grid.seq_len])  # gapbench.train.evaluate's
    evaluations = validations * np.ceil(sizes["validation"] / eval_batch) + np.ceil(sizes["test"] / eval_batch)
    startup = float(calibration.startup_seconds.median())  # machine-wide: over every calibration read
    # a pass per sequence, interpolated in T: each length's pass was timed at its own evaluation batch
    calibration = calibration.assign(sequence_forward_seconds=sequence_forward_seconds(calibration, device))
    seconds, on_device, calibrated_to = np.empty(len(grid)), np.empty(len(grid)), np.empty(len(grid), dtype=int)
    for (label, model, hidden), rows in grid.groupby(["model", "model_name", "hidden_size"]):
        T = rows.seq_len.to_numpy()
        passes = evaluations[rows.index]  # forward passes over the validation and test splits
        step = interpolated(calibration, model, hidden, "step_seconds", T)
        forward = interpolated(calibration, model, hidden, "sequence_forward_seconds", T) * eval_batch[rows.index]
        probes = interpolated(calibration, model, hidden, "probe_seconds", T)
        built = models.build(model, 2, hidden, **model_entry(config, label)["options"])
        if built.trained_by == "guessing":  # K validation passes instead of gradient steps, one search a seed
            fitting, fitted = built.guesses * passes / validations * forward, 1  # (gapbench.train.train_runs)
        else:
            fitting, fitted = train["steps"] * step + passes * forward, arms
        seconds[rows.index] = startup + rows.seeds.to_numpy() * ((1 + arms) * probes + fitted * fitting)
        calibrated_to[rows.index] = calibrated(calibration, model, hidden).seq_len.max()
        on_device[rows.index] = rows.seeds.to_numpy() * fitted * fitting
    # CPU jobs share the machine, every core running one at a time; GPU jobs take the GPU one after another
    contention = float(calibration.contention.median()) if device == "cpu" else 1.0
    # device_seconds: a job's training and evaluation, the part a GPU does (the rest, start-up and
    # probes, is CPU work in a GPU job)
    # calibrated_to: the longest length the job's (model, hidden size) was calibrated at; beyond, extrapolated
    return grid.assign(seconds=seconds * contention, device_seconds=on_device * contention,
                       calibrated_to=calibrated_to)


def gpu_wall_hours(estimated: pd.DataFrame, jobs_per_gpu: int, cores: int) -> float:
    """Hours a GPU grid takes on one GPU with `jobs_per_gpu` jobs sharing it (snakemake --cores
    `cores` --resources gpu=`jobs_per_gpu`):

        wall ≈ max(G, C / min(J, cores))   for J > 1;   G + C   for J = 1 (one job after another)

    G the jobs' GPU seconds (training, evaluation), C their CPU seconds (start-up, the float64
    probes), J jobs_per_gpu. It assumes the jobs' GPU work does not overlap (each job's was
    timed with the GPU to itself) while one job's CPU work overlaps the others' GPU work; how
    close that comes is measured by benchmarks/gpu_session.sh (docs/clusters.md)."""
    gpu = estimated.device_seconds.sum()
    cpu = estimated.seconds.sum() - gpu
    if jobs_per_gpu <= 1:
        return (gpu + cpu) / 3600
    return max(gpu, cpu / min(jobs_per_gpu, cores)) / 3600


def summary(estimated: pd.DataFrame, config: dict, device: str | None = None) -> str:
    device = device or config["train"]["device"]
    unit, hours = UNITS[device], estimated.seconds.sum() / 3600
    by_model = estimated.groupby("model").seconds.sum().sort_values(ascending=False) / 3600
    jobs_and_runs = f"{len(estimated)} training jobs ({estimated.seeds.sum() * len(config['clip']['arms'])} runs)"
    if device == "cpu":
        headline = (f"{jobs_and_runs}, one thread each: {hours:,.1f} core-hours "
                    f"(with --cores 2: {hours / 2:,.1f} h; 100 cores: {hours / 100:,.2f} h)")
    else:
        gpu = estimated.device_seconds.sum() / 3600
        shared = min(os.cpu_count() or 1, 16)
        headline = (f"{jobs_and_runs}: the GPU trains and evaluates for {gpu:,.1f} h; start-up and probes (float64, "
                    f"on the CPU) take {hours - gpu:,.1f} core-hours.\n"
                    f"One GPU, one job after another (snakemake --cores N --resources gpu=1): {hours:,.1f} h; "
                    f"{shared} jobs sharing it on {shared} cores (--cores {shared} --resources gpu={shared}): about "
                    f"{gpu_wall_hours(estimated, shared, shared):,.1f} h; k GPUs: that over k at best")
    lines = [
        headline,
        "memory: the train rule asks 4000 MB a job (the measured peak of a finished run: --check)",
        f"{unit} by model: " + ", ".join(f"{m} {h:,.1f}" for m, h in by_model.items()),
        f"longest job: {estimated.seconds.max() / 60:,.1f} min "
        f"({estimated.loc[estimated.seconds.idxmax(), ['task', 'gap', 'model']].to_dict()})",
    ]
    beyond = estimated[estimated.seq_len > estimated.calibrated_to]
    if len(beyond):
        lines.append(f"extrapolated: {len(beyond)} jobs ({beyond.seconds.sum() / estimated.seconds.sum():.0%} of the "
                     f"estimate) have longer sequences (up to T = {beyond.seq_len.max()}) than their model was "
                     f"calibrated at (from T = {beyond.calibrated_to.min()}); their costs continue the line of the last "
                     "two lengths measured, which a step's time outgrows on long sequences: an estimate without "
                     "--extrapolate measures them")
    return "\n".join(lines)


def check(estimated: pd.DataFrame, benchmarks: Path, device: str = "cpu") -> str:
    """The estimate (on `device`) against the seconds Snakemake recorded for each training job."""
    measured = []
    for path in benchmarks.glob("*/gap*/*.tsv"):
        keys = results.fields_of(results.TRAIN_BENCHMARK, path.as_posix())
        task, gap, model = keys["task"], int(keys["gap"]), keys["model"]
        record = read_benchmark(path)
        measured.append({"task": task, "gap": gap, "model": model, "measured": record.s, "max_rss": record.max_rss})
    both = estimated.merge(pd.DataFrame(measured), on=["task", "gap", "model"])
    error = (both.seconds - both.measured) / both.measured
    per_model = both.groupby("model").apply(lambda g: (g.seconds.sum() - g.measured.sum()) / g.measured.sum(),
                                            include_groups=False)
    return (f"{len(both)} jobs compared: estimated {both.seconds.sum() / 3600:.3g} {UNITS[device]}, measured "
            f"{both.measured.sum() / 3600:.3g} ({(both.seconds.sum() / both.measured.sum() - 1) * 100:+.0f}% in "
            f"total); per job: median |error| {error.abs().median() * 100:.0f}%, 90th percentile "
            f"{error.abs().quantile(0.9) * 100:.0f}%\nby model (total): "
            + ", ".join(f"{m} {e * 100:+.0f}%" for m, e in per_model.items())
            + f"\npeak memory (max_rss) per job: median {both.max_rss.median():.0f} MB, largest {both.max_rss.max():.0f} MB")


def pairs_of(config: dict) -> list[tuple[str, int]]:
    """The (model, hidden size) pairs a calibration must hold to estimate `config`."""
    from gapbench.config import model_hidden_size

    return sorted({(m["name"], model_hidden_size(config, m)) for m in config["models"]})


def calibration_lengths(longest: int) -> tuple[int, ...]:
    """The sequence lengths a (model, hidden size) is calibrated at for a grid whose longest
    sequence for it is `longest`: LENGTHS, then each of LONG_LENGTHS below `longest`, then
    `longest` itself where it is beyond LENGTHS (config/paper.yaml: 50, 200, 1000, 2295)."""
    beyond = [length for length in LONG_LENGTHS if length < longest] + [longest] * (longest > LENGTHS[-1])
    return LENGTHS + tuple(beyond)


def missing_lengths(config: dict, calibration: pd.DataFrame, device: str,
                    extrapolate: bool = False) -> dict[tuple[str, int], tuple[int, ...]]:
    """The lengths at which each pair of `config` still has to be calibrated (of `device`'s file;
    pairs with none missing left out): those of `calibration_lengths` not measured yet, the
    grid's longest counting as measured where a longer length is (a calibration cut short keeps
    what it measured). With `extrapolate`, LENGTHS only: longer sequences continue the line of
    the last two lengths measured."""
    rows = usable(calibration, config, device)
    measured = rows.groupby(["model", "hidden_size"]).seq_len.agg(set).to_dict()
    longest = jobs(config).groupby(["model_name", "hidden_size"]).seq_len.max()
    missing = {}
    for pair in pairs_of(config):
        have = measured.get(pair, set())
        lengths = LENGTHS if extrapolate else calibration_lengths(int(longest[pair]))
        lacking = tuple(length for length in lengths if length not in have and not (
            length == lengths[-1] and length > LENGTHS[-1] and max(have, default=0) >= length))
        if lacking:
            missing[pair] = lacking
    return missing


# a cluster job asks this times its estimate: small jobs measured up to 1.91x it, four 5000-step
# jobs timed whole at T = 31 to 300 0.79x to 1.00x, two random_guess jobs at T = 1000 0.92x and
# 1.02x, two gradient-trained ones at T = 1000 (one seed) 0.74x and 0.82x (docs/clusters.md, SLURM, "Time")
RUNTIME_MARGIN = 3.0


def job_minutes(config: dict, path: Path | None = None) -> dict[tuple[str, int, str], int] | None:
    """Minutes each training job (task label, gap, model label) asks a cluster, its `runtime`:
    RUNTIME_MARGIN × its estimate on the config's train.device, rounded up, at least 10, from
    that device's calibration (`path`, default results/bench/step_costs*.csv, which
    `python -m gapbench cost CONFIG` writes). None where there is no such file or it lacks one of
    the config's (model, hidden size) pairs or one of their `calibration_lengths`: the workflow
    then asks 60 minutes a seed."""
    device = config["train"]["device"]
    path = Path(path or CALIBRATIONS[device])
    if not path.exists():
        return None
    try:
        calibration = read_csv(path)
        if missing_lengths(config, calibration, device):
            return None
        estimated = estimate(config, calibration, device)
    except (ValueError, KeyError, AttributeError) as error:  # not a calibration this code wrote
        raise ValueError(f"{path} is not a calibration gapbench cost can read ({type(error).__name__}: {error}); "
                         "delete it and run `python -m gapbench cost CONFIG` to measure it again") from None
    minutes = np.maximum(10, np.ceil(RUNTIME_MARGIN * estimated.seconds.to_numpy() / 60)).astype(int)
    return {(row.task, int(row.gap), row.model): int(m) for row, m in zip(estimated.itertuples(), minutes)}


def run(args) -> int:
    import torch

    from gapbench.config import ConfigError

    try:  # the grid may train on another machine than this one: any device is allowed here
        config = load_config(args.config, cuda_available=lambda: True)  # the files merged in order
    except ConfigError as error:
        print(f"gapbench cost: {' '.join(args.config)}: {error}", file=sys.stderr)
        return 2
    device = args.device or config["train"]["device"]
    path = args.calibration or CALIBRATIONS[device]
    runs, cuda_graph = calibration_setting(config, device)
    calibration = read_csv(path) if path.exists() else pd.DataFrame(
        columns=["model", "hidden_size", "seq_len", "runs", "cuda_graph"])
    # --recalibrate: every length measured again, as against an empty calibration
    missing = missing_lengths(config, calibration.iloc[:0] if args.recalibrate else calibration, device,
                              args.extrapolate)
    measurements = sum(map(len, missing.values()))
    if missing and device == "cuda" and not torch.cuda.is_available():
        print(f"gapbench cost: {path} needs a CUDA calibration of {len(missing)} (model, hidden size) pairs "
              f"({measurements} lengths) at "
              f"{runs} runs per job (train.cuda_graph: {str(cuda_graph).lower()}) and torch sees no CUDA device "
              f"here to measure it: run this command on a GPU machine, which writes {path}, and bring that file here",
              file=sys.stderr)
        return 2
    if missing:
        longest = max(max(lengths) for lengths in missing.values())
        print(f"calibrating {len(missing)} (model, hidden size) pairs on this machine ({device}), {measurements} "
              f"lengths up to T = {longest} ...", file=sys.stderr)
        try:
            calibration = calibrate(missing, path, lambda m: print(m, file=sys.stderr), device=device, runs=runs,
                                    cuda_graph=cuda_graph)
        except ValueError as error:  # a model that cannot be timed: the rows measured before it are in `path`
            print(f"gapbench cost: {error} (the lengths measured so far are kept in {path})", file=sys.stderr)
            return 2
    estimated = estimate(config, calibration, device)
    print(summary(estimated, config, device))
    if args.check:
        print(check(estimated, args.check, device))
    return 0
