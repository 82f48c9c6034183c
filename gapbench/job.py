"""One training job: a (task, gap, model) of the grid, every seed and clip arm of it.

Set up (threads, dataset checks, the task); per seed, probe the initial weights once and
build every clip arm's network from the seed (so every arm starts from the same weights: a
paired comparison); train all of the job's runs together (gapbench.graphed.train_job); as each
run stops, test it, probe its trained weights and write it into the run cache and its folder
(gapbench.runstore). A run already in the run cache is restored instead of trained. Nothing
here trains or measures by itself.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gapbench import data, models, tasks
from gapbench.probes import probe_all
from gapbench.provenance import provenance, train_code_digest
from gapbench.results import COMPLETE_MARKER, RunMetrics
from gapbench.files import write_json
from gapbench.runstore import is_complete, restorable, restore_run, write_cached, write_run
from gapbench.spec import RunSpec
from gapbench.graphed import train_job
from gapbench.train import RunSetup, batches, clipping_statistics, evaluate


def flushing_subnormals() -> bool:
    """Whether the CPU currently flushes subnormals to zero (torch has no getter for it)."""
    return (torch.tensor([2.2e-308], dtype=torch.float64) / 4).item() == 0.0


@contextlib.contextmanager
def exact_subnormals():
    """Training flushes float32 subnormals to zero for speed; the flag also covers float64,
    so the probes run with it off and measure exactly what they would anywhere else.
    The previous setting is restored on exit."""
    flushing = flushing_subnormals()
    torch.set_flush_denormal(False)
    try:
        yield
    finally:
        torch.set_flush_denormal(flushing)


@contextlib.contextmanager
def flushed_subnormals():
    """Subnormals flushed to zero, as a training job trains (`_set_up_process`): what timing a
    training step must reproduce (with subnormals a step can take several times as long). The
    previous setting is restored on exit."""
    flushing = flushing_subnormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(flushing)


def exact_float32() -> None:
    """Float32 work on a GPU computed in float32, not TensorFloat-32: torch lets cuDNN's RNNs (the
    LSTM's and GRU's forward on a GPU) use TF32 tensor cores by default on Ampere and newer GPUs
    (`torch.backends.cudnn.rnn.fp32_precision` is "tf32"), which keeps 10 bits of a float32's 23
    and would make a GPU run of those models another computation than its CPU run. Matrix
    products (torch.backends.cuda.matmul) are float32 by default; set here as well, explicitly.
    The legacy flags (allow_tf32) are set first and the per-operator ones after, where torch has
    them (torch 2.13 does): set alone, the per-operator flags leave the legacy cuDNN flag
    unreadable (torch raises on reading it, and `torch.backends.cudnn.flags()` with it). A CPU
    computes no TF32: nothing changes there."""
    backends = torch.backends
    backends.cudnn.allow_tf32 = False
    backends.cuda.matmul.allow_tf32 = False
    if hasattr(backends.cudnn, "rnn") and hasattr(backends.cudnn.rnn, "fp32_precision"):
        backends.cudnn.rnn.fp32_precision = "ieee"
        backends.cudnn.conv.fp32_precision = "ieee"
        backends.cuda.matmul.fp32_precision = "ieee"


def measure(net, task, x, y, stage: str) -> dict:
    """Every probe of gapbench.probes on the probe batch, each table tagged with the stage."""
    with exact_subnormals():
        tables = probe_all(net.rnn, net.readout, task, x, y)
    summary = tables.pop("summary")
    return {**{name: table.assign(stage=stage) for name, table in tables.items()},
            "summary": {"stage": stage, **summary}}


def build_net(spec: RunSpec, task) -> models.Net:
    """The seed's initial network (built on the CPU: the same weights on any device)."""
    torch.manual_seed(spec.seed)
    return models.Net(models.build(spec.model_name, task.input_size, spec.hidden_size, **spec.model_options),
                      task.output_size)


def run_key(spec: RunSpec, clip: str, meta: dict, source: str) -> str:
    """What determines a run's results: its specification, clip arm, dataset, code and the
    versions of the numerical libraries."""
    record = {"spec": spec.to_dict(), "clip": clip, "data": meta["sha256"], "source": source,
              "torch": torch.__version__, "numpy": np.__version__}  # what else changes the numbers
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def run(spec: RunSpec, data_dir, run_dirs: dict[str, str], cache=None,
        log=lambda message: print(message, file=sys.stderr, flush=True)) -> list[RunMetrics]:
    """Train every clip arm in `run_dirs` ({clip: folder}) of one seed: `run_all` of one group."""
    return run_all([(spec, data_dir, run_dirs)], cache, log)


def training_numerics(threads: int) -> None:
    """The numerics a training job computes under, for this process (a job, and a benchmark that
    times what a job computes): `threads` intra-op threads and one inter-op thread, float32
    subnormals flushed to zero, float32 not TF32 (`exact_float32`)."""
    torch.set_num_threads(threads)  # the config's threads_per_job: part of what a run is
    if torch.get_num_interop_threads() != 1:  # settable once per process, before parallel work
        torch.set_num_interop_threads(1)
    # Vanishing gradients pass through float32 subnormals, which are 3-5x slower on CPUs;
    # flushing them to zero changes nothing above 1e-38. The probes turn it off while they
    # run (`exact_subnormals`), so they measure exactly what they would anywhere else.
    torch.set_flush_denormal(True)
    # CPU kernels are deterministic for a fixed thread count, which the spec's config fixes;
    # torch.use_deterministic_algorithms would cost 1.7 s of imports per job for nothing here.
    exact_float32()


def _set_up_process(spec: RunSpec) -> torch.device:
    training_numerics(spec.threads)
    device = torch.device(spec.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("train.device is 'cuda' but torch sees no CUDA device here; use 'cpu'")
    return device


def _dataset(spec: RunSpec, data_dir):
    """The task of a checked dataset folder, refused unless it is the one the spec names."""
    data.verify(data_dir, discard=True)  # every split against meta.json, once, before any training
    meta = data.read_meta(data_dir)
    task = data.task_of(meta)
    expected = tasks.build(spec.task_name, spec.gap, **spec.task_params)
    if task.describe() != expected.describe():
        raise ValueError(f"the dataset in {data_dir} is {task.registry_name} gap {task.gap} with {task.params()}, "
                         f"but the run specification asks for {spec.task_name} gap {spec.gap} with "
                         f"{expected.params()}")
    return task, meta


@dataclass
class _Pending:
    """A run this job trains: where it goes, its network and what is measured once per seed."""

    spec: RunSpec
    clip: str
    folder: str
    cached: Path | None
    data_dir: object
    net: torch.nn.Module
    init_probes: dict
    probe_batch: tuple
    number: int  # its group's place in the job's arguments
    generator_state: torch.Tensor


def run_all(groups, cache=None, log=lambda message: print(message, file=sys.stderr, flush=True)) -> list[RunMetrics]:
    """One training job: every (spec, data_dir, {clip: folder}) group (a seed of one (task,
    gap, model)), every clip arm of each, trained together in one batched training
    (gapbench.graphed.train_job). Returns each run's metrics, in the order of the groups and arms.

    With a `cache` folder, a run completed before (by this job killed half-way, or by a job
    whose other run failed) is restored from it instead of trained again, and every run is
    stored there the moment it is complete (when it stops early or diverges, before the rest
    of the batch ends), so a killed job loses no completed run."""
    groups = list(groups)
    first = groups[0][0]
    shared = {key: json.dumps(value, sort_keys=True) for key, value in first.to_dict().items() if key != "seed"}
    for spec, _, _ in groups[1:]:  # one task, gap, model and training: the batch shares them
        own = spec.to_dict()  # compared as their JSON, the form the job received: exact (NaN, True vs 1)
        differing = [key for key, value in shared.items() if json.dumps(own[key], sort_keys=True) != value]
        if differing:
            raise ValueError(f"one training job trains the seeds of one (task, gap, model) with one training "
                             f"config; seed {spec.seed}'s spec differs from seed {first.seed}'s in {differing}")
    device = _set_up_process(first)
    results: dict[tuple[int, str], RunMetrics] = {}
    pending: list[_Pending] = []
    task = None
    for number, (spec, data_dir, run_dirs) in enumerate(groups):
        task, meta = _dataset(spec, data_dir)
        log(f"training {spec.model} ({spec.model_name}, H={spec.hidden_size}) on {spec.task} ({task.registry_name}) "
            f"gap={task.gap} seed={spec.seed} arms={list(run_dirs)}")
        probe_batch = next(batches(data_dir, "test", spec.train.probe_batch, "cpu"))
        initial_weights = init_probes = None
        # the code a run depends on is what Snakemake reruns the job for (its code params)
        source = train_code_digest(task.registry_name, spec.model_name) if cache is not None else None
        for clip, folder in run_dirs.items():
            cached = None if cache is None else Path(cache) / run_key(spec, clip, meta, source)
            if cached is not None and restorable(cached, log):
                restore_run(cached, folder)
                log(f"[{_name(spec, clip, groups)}] restored from the run cache ({cached}): completed earlier, "
                    "not trained again")
                results[number, clip] = RunMetrics.from_dict(json.loads((Path(folder) / COMPLETE_MARKER).read_text()))
                continue
            (Path(folder) / COMPLETE_MARKER).unlink(missing_ok=True)  # incomplete until rewritten
            if init_probes is None:  # once per seed, shared by every arm trained here
                initial_net = build_net(spec, task)
                initial_weights = {name: value.clone() for name, value in initial_net.state_dict().items()}
                init_probes = measure(initial_net, task, *probe_batch, "init")
            net = build_net(spec, task)
            generator_state = torch.get_rng_state()  # what random guessing draws from, as when trained alone
            if not all(torch.equal(value, initial_weights[name]) for name, value in net.state_dict().items()):
                raise RuntimeError(f"clip arm {clip!r} does not start from the weights the other arms started from; "
                                   "the paired comparison (and the shared initial probes) would be wrong")
            pending.append(_Pending(spec, clip, folder, cached, data_dir, net.to(device), init_probes, probe_batch,
                                    number, generator_state))

    stamp = provenance()  # one process sees one state of the source: once a job, not once a run
    started = time.perf_counter()

    def finish(index: int, training) -> None:
        """Test, probe and write one run the moment its training has stopped."""
        run = pending[index]
        spec, clip, net = run.spec, run.clip, run.net
        test_loss, test_score = evaluate(net, task, run.data_dir, "test", device)
        diverged = training.diverged or not math.isfinite(test_loss)  # finite weights, exploding states
        probes = [run.init_probes, measure(net, task, *run.probe_batch, "trained")]
        stability = clipping_statistics([row["grad_norm"] for row in training.steps],
                                        [row["clipped"] for row in training.steps], training.applied_steps)
        metrics = RunMetrics(
            task=spec.task, model=spec.model, clip=clip, gap=task.gap, seed=spec.seed,
            task_name=task.registry_name,
            model_name=spec.model_name,
            hidden_size=spec.hidden_size,
            task_params=task.params(),
            metric=task.metric,
            score_label=task.score_label,
            test_loss=test_loss,
            test_score=test_score,
            baseline=task.baseline,
            chance_score=task.chance_score,
            # a run whose training diverged failed, whatever its last finite weights score (as
            # steps_to_solve, which a divergence leaves empty)
            success=task.success(test_loss, test_score) and not diverged,
            diverged=diverged,
            clip_fraction=stability["clipped_fraction"],
            train_steps=training.applied_steps,
            steps_to_solve=training.steps_to_solve,
            stopped_early=training.stopped_early,
            # the batched training's time from its start to this run's completion (shared
            # with the runs trained beside it)
            wall_seconds=time.perf_counter() - started,
            clip_threshold=spec.threshold(clip),
            stability=stability,
            threads=torch.get_num_threads(),
            spec=spec.to_dict(),
            provenance={**stamp, "train_code_digest": train_code_digest(task.registry_name, spec.model_name)},
        )

        def write(target):
            write_run(target, metrics, training, probes, net.state_dict())

        if run.cached is None:
            write(run.folder)
        else:  # into the cache first, so that a run is never complete without its cached copy
            write_cached(run.cached, write)
            restore_run(run.cached, run.folder)
        log(f"[{_name(spec, clip, groups)}] done: test_loss {test_loss:.4g} (baseline {task.baseline:.4g}) "
            f"test_{task.metric} {test_score:.4g} diverged={diverged} in {metrics.wall_seconds:.1f} s")
        results[run.number, clip] = metrics

    if pending:
        runs = [RunSetup(p.net, p.clip, p.spec.threshold(p.clip), p.data_dir, _name(p.spec, p.clip, groups),
                         p.generator_state) for p in pending]
        train_job(runs, task, pending[0].spec.train, device, log, finished=finish)
    return [results[number, clip] for number, (_, _, run_dirs) in enumerate(groups) for clip in run_dirs]


def _name(spec: RunSpec, clip: str, groups) -> str:
    """A run's name in the log: its clip arm, and its seed where the job trains several."""
    return clip if len(groups) == 1 else f"seed {spec.seed} {clip}"


def write_record(path, run_dirs) -> None:
    """The job's record (results.JOB_RECORD): the run folders it completed, each checked to hold
    its completion record. Written last, atomically: what Snakemake tracks of a job, so the
    scheduler's work per job does not grow with the runs in it."""
    missing = [str(folder) for folder in run_dirs if not is_complete(folder)]
    if missing:
        raise RuntimeError(f"a job record was asked for with incomplete runs: {', '.join(missing)}")
    write_json(path, {"runs": sorted(str(folder) for folder in run_dirs)})
