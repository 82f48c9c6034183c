"""Reliability: every bad input stops before the first job with a message naming it; no config
string reaches a shell line unquoted; a completed run is never lost or trained again, whatever
is interrupted; every file the pipeline writes is reproducible."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import ROOT, SMOKE, snakemake
from gapbench.config import ConfigError, jobs_environment, load_config
from gapbench.reports.paper_tables import PAPER_TABLES
from gapbench.reports.tables import read_table
from gapbench.results import PAPER_DIR, PAPER_TABLE_FORMATS

BASE = yaml.safe_load(SMOKE.read_text())


def _with(**changes):
    config = yaml.safe_load(SMOKE.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    if "models" in changes:  # every task entry then trains these models
        for entry in config["tasks"]:
            entry.pop("models", None)
    return config


CASES = [
    ("unknown task", _with(tasks=[{"name": "kopy", "gaps": [3]}]), ["kopy", "allowed", "'adding'", "'copy'"]),
    ("unknown model", _with(models=[{"name": "transformer"}]), ["transformer", "allowed", "'lstm'", "'vanilla'"]),
    ("unknown clip arm", _with(**{"clip.arms": ["none", "adaptive"]}), ["adaptive", "'none'", "'norm'", "'value'"]),
    ("non-positive gap", _with(tasks=[{"name": "copy", "gaps": [0, 4]}]), ["gaps", "0", "minimum"]),
    ("gap too small for the task", _with(tasks=[{"name": "adding", "gaps": [1]}]), ["tasks[adding]", "gap must be an integer >= 2"]),
    ("missing key", _with(tasks=[{"name": "copy"}]), ["'gaps' is a required property"]),
    ("wrong type", _with(hidden_size="big"), ["hidden_size", "big", "integer"]),
    ("unknown key", _with(hiden_size=8), ["hiden_size"]),
    ("unknown model option", _with(models=[{"name": "vanilla", "options": {"nonlinearity": "relu"}}]),
     ["models[vanilla]", "nonlinearity", "allowed", "init_gain"]),
    ("repeated seed", _with(seeds=[0, 0]), ["seeds", "non-unique"]),
    ("batch_first option", _with(models=[{"name": "vanilla", "options": {"batch_first": False}}]),
     ["models[vanilla].options.batch_first"]),
    ("unknown optimiser", _with(**{"train.optimizer": "lbfgs"}), ["optimizer", "lbfgs", "adam"]),
    ("task listed twice without labels",
     _with(tasks=[{"name": "copy", "gaps": [2]}, {"name": "copy", "gaps": [4], "params": {"convention": "selective"}}]),
     ["['copy'] listed more than once", "distinct `label`s"]),
    ("unknown task option value", _with(tasks=[{"name": "adding", "gaps": [4], "params": {"sampling": "uniform"}}]),
     ["tasks[adding]", "sampling", "uniform", "poisson", "thinned"]),
    ("sampling probability out of range",
     _with(tasks=[{"name": "adding", "label": "adding_thinned", "gaps": [4], "params": {"sampling": "thinned", "keep": 1.5}}]),
     ["tasks[adding_thinned]", "keep", "1.5"]),
    # strings that become paths and shell words: refused whole, before anything is written
    *[(f"label {label!r}", _with(tasks=[{"name": "adding", "label": label, "gaps": [4]}]),
       ["tasks[0].label", repr(label), "not a safe name", "letters, digits"])
      for label in ["x\n", "a;b", "$(touch pwned)", "`touch pwned`", "a b", "a/b", "", "../up", "-x", "tab\there",
                    "adding\r", "ünïcode"]],
    ("task name with shell characters", _with(tasks=[{"name": "copy;touch pwned", "gaps": [4]}]),
     ["tasks[0].name", "not a safe name"]),
    ("model name with a newline", _with(models=[{"name": "vanilla\n"}]), ["models[0].name", "not a safe name"]),
    # numbers that must be finite
    ("NaN norm threshold", _with(**{"clip.thresholds": {"norm": float("nan"), "value": 0.1}}),
     ["clip.thresholds.norm", "finite", "nan"]),
    ("infinite value threshold", _with(**{"clip.thresholds": {"norm": 1.0, "value": float("inf")}}),
     ["clip.thresholds.value", "finite", "inf"]),
    ("NaN learning rate", _with(**{"train.lr": float("nan")}), ["train.lr", "finite", "nan"]),
    ("infinite learning rate", _with(**{"train.lr": float("inf")}), ["train.lr", "finite", "inf"]),
    ("NaN task option", _with(tasks=[{"name": "adding", "gaps": [4], "params": {"sampling": "poisson", "rate": float("nan")}}]),
     ["tasks[0].params.rate", "finite"]),
    ("NaN model option", _with(models=[{"name": "vanilla", "options": {"init_gain": float("nan")}}]),
     ["models[0].options.init_gain", "finite"]),
    ("negative learning rate", _with(**{"train.lr": -0.1}), ["train.lr", "-0.1", "minimum of 0"]),
    ("zero steps", _with(**{"train.steps": 0}), ["train.steps", "0", "minimum"]),
    ("zero eval_every", _with(**{"train.eval_every": 0}), ["train.eval_every", "minimum"]),
    ("zero hidden size", _with(hidden_size=0), ["hidden_size", "minimum"]),
    ("negative stop_when_solved", _with(**{"train.stop_when_solved": -1}), ["train.stop_when_solved", "minimum"]),
    ("zero hidden size of one model", _with(models=[{"name": "vanilla", "hidden_size": 0}]),
     ["models[0].hidden_size", "minimum"]),
    ("model label with a slash", _with(models=[{"name": "vanilla", "label": "a/b"}]),
     ["models[0].label", "not a safe name"]),
    ("one model twice without labels", _with(models=[{"name": "vanilla"}, {"name": "vanilla"}]),
     ["models", "['vanilla'] listed more than once", "distinct `label`s"]),
    ("a task's model not in the config", _with(tasks=[{"name": "adding", "gaps": [4], "models": ["lsmt"]}]),
     ["tasks[adding].models", "['lsmt'] not among the config's models", "allowed: ['vanilla', 'linear'"]),
    # settings that could not take effect
    ("seed beyond int64", _with(seeds=[2**64]), ["seeds[0]", "maximum"]),
    ("negative seed", _with(seeds=[-1]), ["seeds[0]", "minimum"]),
    ("no seeds", _with(seeds=[]), ["seeds", "non-empty"]),
    ("batch larger than the train split", _with(**{"train.batch_size": 65}), ["train.batch_size", "65", "train split"]),
    ("probe batch larger than the test split", _with(**{"train.probe_batch": 33}), ["train.probe_batch", "33", "test split"]),
    ("more threads per job than cores", _with(threads_per_job=64), ["threads_per_job", "64", "--cores 2"]),
    ("a CUDA graph on the CPU", _with(**{"train.cuda_graph": True}), ["train.cuda_graph", "train.device: cuda", "'cpu'"]),
    # options of the wrong kind, named with the allowed values
    ("string init_gain", _with(models=[{"name": "vanilla", "options": {"init_gain": "big"}}]),
     ["models[vanilla]", "init_gain must be a finite number", "'big'"]),
    ("string spectral radius", _with(models=[{"name": "esn", "options": {"spectral_radius": "big"}}]),
     ["models[esn]", "spectral_radius must be a finite number"]),
    ("odd hidden size for the LRU", _with(models=[{"name": "lru"}], hidden_size=7), ["models[lru]", "even"]),
    ("options not a mapping", _with(models=[{"name": "vanilla", "options": [1, 2]}]), ["models[0].options", "object"]),
    ("unknown top-level key lists the allowed ones", _with(hiden_size=8),
     ["unknown key(s) ['hiden_size']", "allowed: [", "'hidden_size'", "'seeds'"]),
    ("unknown train key", _with(**{"train.step": 10}), ["config key train", "['step']", "'steps'"]),
    ("empty gap list", _with(tasks=[{"name": "copy", "gaps": []}]), ["tasks[0].gaps", "non-empty"]),
    ("gap as a string", _with(tasks=[{"name": "copy", "gaps": ["four"]}]), ["tasks[0].gaps[0]", "integer"]),
    ("repeated gap", _with(tasks=[{"name": "copy", "gaps": [4, 4]}]), ["tasks[0].gaps", "non-unique"]),
    ("empty clip arms", _with(**{"clip.arms": []}), ["clip.arms", "non-empty"]),
    ("empty test split", _with(**{"data.sizes.test": 0}), ["data.sizes.test", "minimum"]),
    ("decay gap of a task not in the grid", _with(figures={"decay_gap": {"parity": 4}}),
     ["figures.decay_gap.parity", "'parity' is not a task label of this config", "its tasks: ['copy', 'adding'"]),
    ("hidden size given as a model option", _with(models=[{"name": "gru", "options": {"hidden_size": 16}}]),
     ["models[gru].options", "hidden_size is not an option of model 'gru'", "a key of the model entry"]),
    ("input size given as a model option", _with(models=[{"name": "gru", "options": {"input_size": 3}}]),
     ["models[gru].options", "input_size is not an option", "each task sets"]),
    ("gap given as a task parameter", _with(tasks=[{"name": "adding", "gaps": [4], "params": {"gap": 8}}]),
     ["tasks[adding] (gap 4)", "gap is not an option of task 'adding'", "gaps list sets it"]),
    ("decay gap not among the task's gaps", _with(figures={"decay_gap": {"adding": 5}}), ["figures.decay_gap.adding", "5"]),
    # bounds whose other side would run without a word: a norm arm clipping every gradient to 0,
    # a model trained twice as one task's, torch's set_num_threads(0)
    ("zero norm threshold", _with(**{"clip.thresholds": {"norm": 0, "value": 0.1}}),
     ["clip.thresholds.norm", "0 is less than or equal to the minimum of 0"]),
    ("zero value threshold", _with(**{"clip.thresholds": {"norm": 1.0, "value": 0}}),
     ["clip.thresholds.value", "0 is less than or equal to the minimum of 0"]),
    ("a task's model listed twice", _with(tasks=[{"name": "adding", "gaps": [4], "models": ["vanilla", "vanilla"]}]),
     ["tasks[0].models", "non-unique"]),
    ("zero threads per job", _with(threads_per_job=0), ["threads_per_job", "0 is less than the minimum of 1"]),
]


@pytest.mark.parametrize("label, config, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_config_is_refused_with_a_message_naming_it(tmp_path, label, config, expected):
    """The checks the workflow runs before any job (gapbench.config.prepare, on the config
    merged over config/default.yaml as Snakemake merges it), called in-process."""
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as refused:
        load_config(configfile, cores=2, cuda_available=lambda: False)
    for fragment in expected:
        assert fragment in str(refused.value), f"{label}: {fragment!r} not in\n{refused.value}"


def test_every_optimiser_of_the_training_loop_is_accepted(tmp_path):
    """The schema's optimizer enum is the training loop's optimisers, no fewer and no more."""
    from gapbench.optim import OPTIMIZERS

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert sorted(schema["properties"]["train"]["properties"]["optimizer"]["enum"]) == sorted(OPTIMIZERS)
    for name in OPTIMIZERS:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(_with(**{"train.optimizer": name})))
        assert load_config(path, cores=2, cuda_available=lambda: False)["train"]["optimizer"] == name


def test_a_task_entry_trains_only_the_models_it_names():
    """config/smoke.yaml's entries, written out by hand (the pipeline tests derive their
    expectations from task_models itself, so they cannot catch it ignoring an entry's models:)."""
    from gapbench.config import task_label, task_models

    config = load_config(SMOKE)
    entries = {task_label(entry): entry for entry in config["tasks"]}
    assert task_models(config, entries["copy"]) == ["vanilla", "lstm", "identity"]
    assert task_models(config, entries["latch"]) == ["orthogonal", "linear", "lstm"]
    assert task_models(config, entries["adding"]) == ["vanilla", "linear", "orthogonal", "identity", "irnn", "lstm",
                                                      "gru", "vanilla_h4"]  # no models: every model


def test_settings_at_their_limits_are_accepted(tmp_path):
    """What the checks refuse starts just past each limit: threads_per_job equal to --cores, a
    training batch of the whole train split and a probe batch of the whole test split load."""
    sizes = BASE["data"]["sizes"]
    configfile = tmp_path / "limits.yaml"
    configfile.write_text(yaml.safe_dump(_with(threads_per_job=2, **{"train.batch_size": sizes["train"],
                                                                     "train.probe_batch": sizes["test"]})))
    config = load_config(configfile, cores=2, cuda_available=lambda: False)
    assert (config["threads_per_job"], config["train"]["batch_size"], config["train"]["probe_batch"]) == \
        (2, sizes["train"], sizes["test"])


# through the real Snakemake command line: the same checks stop it before anything is written
CLI_CASES = ["unknown task", "label '$(touch pwned)'", "more threads per job than cores", "wrong type"]


@pytest.mark.pipeline
@pytest.mark.parametrize("label", CLI_CASES)
def test_bad_config_stops_snakemake_before_any_job(tmp_path, label):
    _, config, expected = next(case for case in CASES if case[0] == label)
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, configfile=configfile, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in expected:
        assert fragment in output, f"{label}: {fragment!r} not in\n{output}"
    assert not (workdir / "results").exists()  # nothing ran, nothing was written
    assert not (workdir / "pwned").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.pipeline
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_stops_before_any_job(tmp_path):
    configfile = tmp_path / "cuda.yaml"
    configfile.write_text(yaml.safe_dump(_with(**{"train.device": "cuda"})))
    (tmp_path / "work").mkdir()
    result = snakemake(tmp_path / "work", configfile=configfile, check=False)
    assert result.returncode != 0 and "train.device" in result.stderr and "no CUDA device" in result.stderr
    assert not (tmp_path / "work" / "results").exists()



# ----------------------------------------------------------------- nothing complete is lost

# one (task, gap), two models (two training jobs: a job finished before an interruption is not
# run again), two seeds (the smoke grid has one: a seed left out anywhere shows here), three clip
# arms: long enough (200 steps) to interrupt
TINY = _with(tasks=[{"name": "adding", "gaps": [6]}], models=[{"name": "vanilla"}, {"name": "irnn"}], seeds=[0, 1],
             **{"train.steps": 200, "train.eval_every": 50})
RUNS_A_JOB = len(TINY["seeds"]) * len(TINY["clip"]["arms"])  # 6: 2 seeds × 3 arms
RUNS = len(TINY["models"]) * RUNS_A_JOB  # 12
IGNORED = {"wall_seconds", "code_version"}  # timing, and the code version of a dirty checkout


def _config(tmp_path, config=TINY):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _tables(workdir) -> dict[str, pd.DataFrame]:
    tables = {}
    for path in sorted((workdir / "results" / "tables").glob("*.*")):
        table = read_table(path)
        tables[path.name] = table.drop(columns=[c for c in IGNORED if c in table.columns])
    return tables


def _assert_same_tables(first, second):
    a, b = _tables(first), _tables(second)
    assert a.keys() == b.keys() and a
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def _train_logs(workdir) -> dict[str, str]:
    return {str(p): p.read_text() for p in (workdir / "results" / "logs" / "train").rglob("*.log")}


def _trained_and_restored(workdir, before: dict | None = None) -> tuple[int, int]:
    """Arms trained and arms restored from the run cache, as the train jobs' logs say (only
    the logs written since `before`, a snapshot of _train_logs, when given)."""
    before = before or {}
    text = "".join(t for path, t in _train_logs(workdir).items() if before.get(path) != t)
    return len(re.findall(r"\] done: ", text)), len(re.findall(r"\] restored from the run cache", text))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The tiny grid, run once without interruption."""
    tmp = tmp_path_factory.mktemp("reference")
    (tmp / "work").mkdir()
    snakemake(tmp / "work", *UP_TO_PAPER_TABLES, configfile=_config(tmp))
    return tmp / "work"


def test_the_tables_hold_every_seed_and_arm(reference):
    for name, table in _tables(reference).items():
        if "seed" in table.columns:
            runs = set(zip(table["model"], table["clip"], table["seed"]))
            assert runs == {(model["name"], arm, seed) for model in TINY["models"] for arm in TINY["clip"]["arms"]
                            for seed in TINY["seeds"]}, name


# The recovery tests compare tables, so they stop there; the reference and the reproducibility
# runs stop before the figures, which are drawn from the tables alone (test_figures_layout
# checks that figures drawn again from the same tables are the same bytes).
TABLES_ONLY = "results/tables/accuracy_vs_gap.csv"
UP_TO_PAPER_TABLES = tuple(f"{PAPER_DIR}/{name}.{ext}" for name in PAPER_TABLES for ext in PAPER_TABLE_FORMATS)


def _start(workdir, configfile):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
               str(workdir), "--workflow-profile", "none", "--cores", "1", TABLES_ONLY, "--configfile",
               str(configfile)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=jobs_environment(),
                            start_new_session=True)


def _wait_for(condition, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition to interrupt at never came")
        time.sleep(0.02)


def _training_jobs(workdir) -> list[int]:
    """The `python -m gapbench train` processes working in `workdir` (and no other)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and os.readlink(proc / "cwd") == str(workdir)
                    and b"gapbench\x00train" in (proc / "cmdline").read_bytes()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _complete_runs(workdir) -> int:
    return len(list((workdir / "results" / "runs").rglob("metrics.json")))


def test_a_job_killed_after_two_arms_loses_neither(reference, tmp_path):
    """Kill one training job after two of its three clip arms are complete: the job wrote no
    record (Snakemake's only output of it), so the rerun runs it again, restores both arms from
    the run cache and trains only the third."""
    workdir, configfile = tmp_path / "work", _config(tmp_path)
    workdir.mkdir()
    process = _start(workdir, configfile)
    _wait_for(lambda: _complete_runs(workdir) >= 2)
    for pid in _training_jobs(workdir):
        os.kill(pid, signal.SIGKILL)
    assert process.wait(timeout=300) != 0  # the job failed, so the run stopped
    assert not list((workdir / "results" / "runs").rglob("job.json"))  # no job finished: no record
    before = _train_logs(workdir)
    snakemake(workdir, TABLES_ONLY, configfile=configfile)
    trained, restored = _trained_and_restored(workdir, before)
    assert restored == 2 and trained == RUNS - 2  # the 2 complete arms are not trained again
    _assert_same_tables(reference, workdir)


def test_snakemake_killed_mid_grid_resumes_with_unlock_and_rerun_incomplete(reference, tmp_path):
    """The whole run dies (SIGKILL to Snakemake and its jobs) in its second training job: the
    recovery the docs give — `snakemake --unlock`, then `snakemake --rerun-incomplete` — trains
    no completed run again, and does not run the finished first job again at all."""
    workdir, configfile = tmp_path / "work", _config(tmp_path)
    workdir.mkdir()
    process = _start(workdir, configfile)
    _wait_for(lambda: _complete_runs(workdir) >= RUNS_A_JOB + 1)  # one job done, the second under way
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    completed = len(list((workdir / "results" / "cache" / "runs").glob("*/metrics.json")))
    assert RUNS_A_JOB < completed < RUNS and len(list((workdir / "results" / "runs").rglob("job.json"))) == 1
    before = _train_logs(workdir)
    snakemake(workdir, "--unlock", configfile=configfile)
    snakemake(workdir, "--rerun-incomplete", TABLES_ONLY, configfile=configfile)
    trained, restored = _trained_and_restored(workdir, before)
    # every run completed before the kill is restored, not trained; the finished job's not even that
    assert trained == RUNS - completed and restored == completed - RUNS_A_JOB
    _assert_same_tables(reference, workdir)


def test_a_corrupt_dataset_is_named_discarded_and_regenerated(reference, tmp_path):
    """A dataset file corrupted after a complete run: the next run stops with one line naming
    the file and removes the dataset; the run after regenerates it (the same bytes) and
    restores every run from the cache: nothing is trained again."""
    import shutil

    workdir, configfile = tmp_path / "work", _config(tmp_path)
    shutil.copytree(reference, workdir)  # a complete run (modification times kept: up to date)
    data = workdir / "results" / "data" / "adding" / "gap6" / "seed0"
    original = (data / "train.npz").read_bytes()
    (data / "train.npz").write_bytes(original[: len(original) // 2])  # truncated
    before = _train_logs(workdir)
    failed = snakemake(workdir, "--verbose", configfile=configfile, check=False)
    assert failed.returncode != 0
    assert re.search(r"cancelled \d+ pending scheduler wake-up", failed.stdout + failed.stderr)  # onerror
    log = "".join(p.read_text() for p in (workdir / "results" / "logs" / "train").rglob("*.log"))
    assert f"{data.relative_to(workdir) / 'train.npz'} cannot be read" in log
    assert "run the pipeline again and it generates the dataset anew" in log and "Traceback" not in log
    assert not (data / "meta.json").exists()
    snakemake(workdir, configfile=configfile)  # `all`: it names every run, so deleted ones are restored
    assert (data / "train.npz").read_bytes() == original
    trained, restored = _trained_and_restored(workdir, before)
    assert trained == 0 and restored == RUNS
    _assert_same_tables(reference, workdir)


def test_a_run_file_edited_in_place_is_named_and_its_run_trained_again(reference, tmp_path):
    """A run folder's files are hard links to its run-cache entry's, so an edit in place (not a
    rename, as gapbench writes) changes both: here a probe table cut short at a line end in both,
    which reads as a table with fewer rows. The tables job checks each file against the run's
    checksums.json and stops with one line naming the file and the job record to delete; after
    that, the job finds its cached copy changed, says so, removes it and trains that run again,
    restoring the others: the tables are the reference's."""
    import shutil

    workdir, configfile = tmp_path / "work", _config(tmp_path)
    shutil.copytree(reference, workdir)  # copies, not links: the edit below is made to both
    run = workdir / "results" / "runs" / "adding" / "gap6" / "vanilla" / "none" / "seed0"
    entries = [entry for entry in (workdir / "results" / "cache" / "runs").iterdir()
               if (entry / "metrics.json").read_bytes() == (run / "metrics.json").read_bytes()]
    assert len(entries) == 1
    lines = (run / "gradient_decay.csv").read_text().splitlines(keepends=True)
    for folder in (run, entries[0]):
        with open(folder / "gradient_decay.csv", "r+") as file:
            file.truncate(len("".join(lines[:-3])))
    assert len(pd.read_csv(run / "gradient_decay.csv")) == len(lines) - 4  # reads, three rows short
    failed = snakemake(workdir, "--forcerun", "tables", TABLES_ONLY, configfile=configfile, check=False)
    assert failed.returncode != 0
    log = (workdir / "results" / "logs" / "tables.log").read_text()
    assert (f"1 of {RUNS} run folders hold files that are not what their run wrote, the first {run.relative_to(workdir)}: "
            "gradient_decay.csv changed since the run wrote them; delete its training job's record "
            f"({run.parent.parent.relative_to(workdir) / 'job.json'})") in log, log
    assert "Traceback" not in log
    (run.parent.parent / "job.json").unlink()
    before = _train_logs(workdir)
    snakemake(workdir, TABLES_ONLY, configfile=configfile)
    trained, restored = _trained_and_restored(workdir, before)
    assert trained == 1 and restored == RUNS_A_JOB - 1  # the job's other runs; the other job is not run
    assert f"run cache entry {entries[0].relative_to(workdir)}: gradient_decay.csv changed since it was stored" in "".join(
        _train_logs(workdir).values())
    _assert_same_tables(reference, workdir)


def test_a_run_folder_without_its_checksums_is_collected_and_said_so(reference, tmp_path, monkeypatch):
    """A run folder written before runs recorded their checksums has none to check: the tables
    are collected from it as before (the same tables), and the log says how many went unchecked;
    a checksums.json that cannot be read is refused by name."""
    import shutil

    from gapbench.reports.tables import IncompleteRuns, collect

    runs = tmp_path / "results" / "runs"
    shutil.copytree(reference / "results" / "runs", runs)
    folders = sorted(str(p.parent.relative_to(tmp_path)) for p in runs.rglob("metrics.json"))
    (tmp_path / folders[0] / "checksums.json").unlink()
    monkeypatch.chdir(tmp_path)  # run folders are named relative to the working directory, as in a job
    said = []
    collect(folders, tmp_path / "results" / "tables", log=said.append)
    assert said[0] == (f"tables: 1 of {len(folders)} run folders have no checksums.json (written before runs recorded "
                       f"their files' checksums, the first {folders[0]}): collected without that check")
    _assert_same_tables(reference, tmp_path)
    (tmp_path / folders[1] / "checksums.json").write_text("{")
    with pytest.raises(IncompleteRuns) as refused:
        collect(folders, tmp_path / "again", log=said.append)
    assert f"the first {folders[1]}: its checksums.json cannot be read; delete its training job's record" in str(
        refused.value)
    assert not (tmp_path / "again").exists()


def test_every_run_file_the_tables_read_is_checked(reference, tmp_path, monkeypatch):
    """Each file a run recorded, cut short by its last line in turn (a CSV then reads as a
    table a row short): the tables job refuses it by name, or, for a file the tables do not
    read (the weights, the training's history), writes the reference's tables."""
    import shutil

    from gapbench.reports.tables import COLLECTED_FILES, IncompleteRuns, collect
    from gapbench.runstore import CHECKSUMS_FILE

    folders = sorted(str(p.parent.relative_to(reference)) for p in (reference / "results" / "runs").rglob("metrics.json"))
    names = sorted(json.loads((reference / folders[0] / CHECKSUMS_FILE).read_text()))
    refused = set()
    for index, name in enumerate(names):
        workdir = tmp_path / str(index)
        shutil.copytree(reference / "results" / "runs", workdir / "results" / "runs")
        path = workdir / folders[0] / name
        content = path.read_bytes()
        path.write_bytes(content[:content.rstrip(b"\n").rfind(b"\n") + 1])  # its last line gone
        monkeypatch.chdir(workdir)  # run folders are named relative to the working directory, as in a job
        try:
            collect(folders, workdir / "results" / "tables", log=lambda message: None)
        except IncompleteRuns as error:
            assert f"the first {folders[0]}: {name} changed since the run wrote them" in str(error)
            refused.add(name)
        else:
            _assert_same_tables(reference, workdir)
    assert refused == set(COLLECTED_FILES) and set(names) - refused  # some files are not read


def test_restoring_a_run_into_the_folder_that_holds_it_leaves_no_temporary_file(tmp_path):
    """restore_run links each cached file to a temporary name and renames it into place; where the
    folder already holds links to the same files, POSIX rename does nothing and would leave the
    temporary link behind (gapbench.files.atomic_path removes it)."""
    from gapbench.runstore import RUN_FILES, restore_run

    cache, run = tmp_path / "cache", tmp_path / "run"
    cache.mkdir()
    for name in RUN_FILES:
        (cache / name).write_text(name)
    restore_run(cache, run)
    restore_run(cache, run)
    assert sorted(p.name for p in run.iterdir()) == sorted(RUN_FILES)
    assert all((run / name).samefile(cache / name) for name in RUN_FILES)


def test_a_restore_that_fails_leaves_no_complete_looking_run(tmp_path):
    """restore_run puts metrics.json back last: a restore that stops on a missing (or unreadable)
    file leaves a folder the job sees as incomplete, and trains again, not a run that looks done."""
    from gapbench.results import COMPLETE_MARKER, HISTORY_FILE
    from gapbench.runstore import RUN_FILES, is_complete, restore_run

    cache, run = tmp_path / "cache", tmp_path / "run"
    cache.mkdir()
    for name in RUN_FILES:
        if name != HISTORY_FILE:
            (cache / name).write_text(name)
    with pytest.raises(OSError):
        restore_run(cache, run)
    assert not is_complete(run) and not (run / COMPLETE_MARKER).exists()


def test_a_cache_entry_is_checked_before_a_restore_and_replaced_whole(tmp_path):
    """A run's checksums.json records each file's SHA-256; restorable() restores an entry only
    while they hold, and otherwise names the changed file and removes the entry (renamed aside
    first); a later write_cached then stores the run anew, also over what a cut-short removal left."""
    import hashlib

    from gapbench.results import CHECKSUMS_FILE
    from gapbench.runstore import RUN_FILES, restorable, write_cached

    def write(folder):  # what write_run writes, checksums.json included
        for name in RUN_FILES:
            (folder / name).write_text(f"{name} contents")
        (folder / CHECKSUMS_FILE).write_text(json.dumps({
            name: hashlib.sha256(f"{name} contents".encode()).hexdigest() for name in RUN_FILES if name != CHECKSUMS_FILE}))

    entry, said = tmp_path / "runs" / "key", []
    write_cached(entry, write)
    assert restorable(entry, said.append) and not said
    (entry / "steps.csv").write_text("edited in place")
    assert not restorable(entry, said.append) and not entry.exists()
    assert said == [f"run cache entry {entry}: steps.csv changed since it was stored (a run folder's files are "
                    "links to it: edited in place?); removed, the run is trained again"]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == []  # nothing set aside is left
    entry.mkdir()
    (entry / "history.csv").write_text("a removal cut short")
    write_cached(entry, write)
    assert restorable(entry, said.append) and (entry / "history.csv").read_text() == "history.csv contents"
    (entry / CHECKSUMS_FILE).write_text("[]")
    assert not restorable(entry, said.append) and said[-1].startswith(
        f"run cache entry {entry}: its {CHECKSUMS_FILE} cannot be read")


def test_every_file_is_reproducible(reference, tmp_path):
    """A second clean run writes the same bytes in every file up to the paper tables (model.pt
    included; the figures: test_figures_layout), apart from what records time: logs, benchmarks,
    Snakemake's own records, the wall_seconds fields, and so the cache's checksum of metrics.json."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    snakemake(workdir, *UP_TO_PAPER_TABLES, configfile=_config(tmp_path))
    skipped = ("results/logs/", "results/benchmarks/", ".snakemake/")
    files = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file())
    files = [f for f in files if not f.startswith(skipped)]
    assert files == sorted(f for f in (p.relative_to(workdir).as_posix() for p in workdir.rglob("*") if p.is_file())
                           if not f.startswith(skipped))
    for name in files:
        if name.endswith("metrics.json"):  # every field but the run's wall time
            first, second = (json.loads((root / name).read_text()) for root in (reference, workdir))
            assert first.pop("wall_seconds") > 0 and second.pop("wall_seconds") > 0
            assert first == second, name
        elif name.endswith("checksums.json"):  # metrics.json's checksum differs by its wall time
            first, second = (json.loads((root / name).read_text()) for root in (reference, workdir))
            assert first.pop("metrics.json") != second.pop("metrics.json") and first == second, name
        elif name.endswith("accuracy_vs_gap.csv"):
            continue  # its wall_seconds column; the rest is compared below
        else:
            assert (reference / name).read_bytes() == (workdir / name).read_bytes(), name
    _assert_same_tables(reference, workdir)


@pytest.mark.pipeline
def test_use_conda_is_refused_with_what_to_do_instead(tmp_path):
    result = snakemake(tmp_path, "--use-conda", check=False)
    assert result.returncode != 0 and "--use-conda is not supported" in result.stderr
    assert "pip install -e ." in result.stderr and not (tmp_path / "results").exists()


@pytest.mark.pipeline
def test_a_dataset_that_is_not_the_specified_one_is_refused(tmp_path):
    """The job checks that the dataset it is given is the task, gap and options its run
    specification names, instead of training the wrong task under the spec's name."""
    from gapbench import data, tasks
    from gapbench.spec import RunSpec, TrainConfig

    data.generate(tasks.build("adding", 6), 0, {"train": 8, "validation": 8, "test": 8}, tmp_path / "data")
    spec = RunSpec(task="adding", task_name="adding", task_params={}, gap=8, model="vanilla", model_name="vanilla", model_options={},
                   hidden_size=4, seed=0, threads=1, clip_thresholds={"norm": 1.0},
                   train=TrainConfig(steps=1, batch_size=8, optimizer="adam", lr=0.01, eval_every=1, probe_batch=8))
    result = subprocess.run([sys.executable, "-m", "gapbench", "train", "--spec", spec.to_json(), "--data",
                             str(tmp_path / "data"), "--run", f"none={tmp_path / 'run'}"], capture_output=True, text=True)
    assert result.returncode == 2 and "is adding gap 6" in result.stderr and "asks for adding gap 8" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "metrics.json").exists()


def _keyed_run():
    """A run's specification and its dataset's checksums, as run_key takes them."""
    from gapbench.spec import RunSpec, TrainConfig

    spec = RunSpec(task="adding", task_name="adding", task_params={}, gap=8, model="vanilla", model_name="vanilla",
                   model_options={}, hidden_size=4, seed=0, threads=1, clip_thresholds={"norm": 1.0},
                   train=TrainConfig(steps=1, batch_size=8, optimizer="adam", lr=0.01, eval_every=1, probe_batch=8))
    return spec, {"sha256": {"train": "a", "validation": "b", "test": "c"}}


def test_the_run_cache_key_changes_with_everything_that_changes_a_result():
    from gapbench.job import run_key

    spec, meta = _keyed_run()
    key = run_key(spec, "none", meta, "source")
    assert key == run_key(spec, "none", meta, "source")
    import dataclasses
    assert key != run_key(dataclasses.replace(spec, seed=1), "none", meta, "source")
    assert key != run_key(spec, "norm", meta, "source")
    assert key != run_key(spec, "none", {"sha256": {**meta["sha256"], "test": "d"}}, "source")
    assert key != run_key(spec, "none", meta, "changed source")


@pytest.mark.parametrize("library", [torch, np], ids=["torch", "numpy"])
def test_the_run_cache_key_changes_with_the_numerical_libraries(monkeypatch, library):
    """Another torch or numpy computes other bits: a run cached under one is not restored under the other."""
    from gapbench.job import run_key

    spec, meta = _keyed_run()
    key = run_key(spec, "none", meta, "source")
    monkeypatch.setattr(library, "__version__", library.__version__ + ".another")
    assert run_key(spec, "none", meta, "source") != key


@pytest.mark.pipeline
def test_modules_left_out_of_the_run_cache_key_cannot_change_a_run(tmp_path):
    """The run cache keys on the digest of the code a training job runs (train_code_digest, the
    train rule's code params too); gapbench/reports/ is left out, so no module of it may be
    imported by a training job, and editing a file there must leave the digest as it is while
    editing any other module of gapbench changes it."""
    from gapbench.provenance import READS_RESULTS

    assert READS_RESULTS.is_dir() and any(READS_RESULTS.glob("*.py"))
    # what `python -m gapbench train` imports, its argument parsing included
    modules = subprocess.run(
        [sys.executable, "-c", "import sys, gapbench.job, gapbench.train, gapbench.probes\n"
                               "from gapbench import cli\n"
                               "try: cli.main(['train', '--help'])\n"
                               "except SystemExit: pass\n"
                               "print(' '.join(sorted(m for m in sys.modules if m.startswith('gapbench.'))))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert "gapbench.job" in modules and "gapbench.cli" in modules
    assert not [m for m in modules if m.startswith("gapbench.reports")], modules

    # a copy of the package: an edit under reports/ keeps the digest, an edit elsewhere changes it
    import shutil

    copy = tmp_path / "src"
    shutil.copytree(ROOT / "gapbench", copy / "gapbench", ignore=shutil.ignore_patterns("__pycache__"))
    digest = ("import sys; sys.path.insert(0, sys.argv[1]); import gapbench.provenance as p; "
              "assert p.PACKAGE_ROOT.parent.as_posix() == sys.argv[1], p.PACKAGE_ROOT; "
              "print(p.train_code_digest('adding', 'vanilla'))")

    def job_digest():
        return subprocess.run([sys.executable, "-c", digest, str(copy)], capture_output=True, text=True,
                              check=True).stdout.strip()

    before = job_digest()
    (copy / "gapbench" / "reports" / "figures.py").write_text("# edited\n", encoding="utf-8")
    assert job_digest() == before
    (copy / "gapbench" / "train.py").write_text((ROOT / "gapbench" / "train.py").read_text() + "# edited\n")
    assert job_digest() != before


def test_each_job_digest_covers_the_files_that_determine_it():
    """A job's `code` params (gapbench.provenance): a model's own file, its base classes' and the
    package's shared '_' files; a task's likewise; no other model or task (editing one reruns its
    jobs only). tests/test_extension.py shows Snakemake acting on them."""
    from gapbench import models, tasks
    from gapbench.provenance import _defining_files, _label, data_code_digest, train_code_digest

    def files(package, name):
        return sorted(_label(owner, path) for owner, path in _defining_files(package, name))

    assert files(models, "irnn") == ["gapbench.models/__init__.py", "gapbench.models/_base.py",
                                     "gapbench.models/_elementwise.py", "gapbench.models/irnn.py"]
    assert files(tasks, "adding") == ["gapbench.tasks/__init__.py", "gapbench.tasks/_base.py",
                                      "gapbench.tasks/_sampling.py", "gapbench.tasks/adding.py"]
    assert len({train_code_digest(task, model) for task in ("adding", "copy") for model in ("gru", "lstm")}) == 4
    assert data_code_digest("adding") != data_code_digest("copy") != train_code_digest("copy", "gru")


def test_a_job_digest_follows_a_models_imports_inside_its_package(tmp_path, monkeypatch):
    """A model may keep its code in more than one file: a package (its cell in a submodule) or a
    helper in a sibling module. Those files determine its runs too, so they are in its digest (the
    run cache's key: an edited helper must not let a stale run be restored); a sibling model it
    does not import is not."""
    import importlib

    from gapbench.provenance import _defining_files

    package = tmp_path / "usermodels"
    (package / "gated").mkdir(parents=True)
    files = {
        "__init__.py": "from gapbench.registry import Registry\n_registry = Registry(__name__, 'model')\n"
                       "register = _registry.register\n",
        "_base.py": "class Base:\n    pass\n",
        "helpers.py": "def squash(x):\n    return x\n",
        "plain.py": "from usermodels import register\nfrom usermodels._base import Base\n"
                    "from usermodels.helpers import squash\n\n\n@register('plain')\nclass Plain(Base):\n    pass\n",
        "other.py": "from usermodels import register\n\n\n@register('other')\nclass Other:\n    pass\n",
        "gated/__init__.py": "from usermodels import register\nfrom .cell import Cell\nfrom . import gates\n\n\n"
                             "@register('gated')\nclass Gated(Cell):\n    pass\n",
        "gated/cell.py": "class Cell:\n    pass\n",
        "gated/gates.py": "GATES = 2\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        usermodels = importlib.import_module("usermodels")
        usermodels._registry.names()  # imports every model, as a config's pre-flight does

        def defining(name):
            return sorted(path.relative_to(package).as_posix() for _, path in _defining_files(usermodels, name))

        assert defining("plain") == ["__init__.py", "_base.py", "helpers.py", "plain.py"]
        assert defining("gated") == ["__init__.py", "_base.py", "gated/__init__.py", "gated/cell.py",
                                     "gated/gates.py"]
    finally:
        for module in [m for m in sys.modules if m == "usermodels" or m.startswith("usermodels.")]:
            del sys.modules[module]
