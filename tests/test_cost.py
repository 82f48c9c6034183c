"""`gapbench cost`: the grid's jobs, the estimate's formula, its check against recorded job times.

How close the estimate comes on a real machine depends on how busy that machine is, so it is
measured (`python -m gapbench cost CONFIG --check results/benchmarks/train`, reported in
docs/performance.md), never asserted here."""
import math
import re
import subprocess
import sys

import pandas as pd
import pytest

from conftest import SMOKE
from gapbench.config import load_config, model_label, task_models
from gapbench.reports import cost
from gapbench.results import TRAIN_BENCHMARK
from gapbench.train import EVAL_BATCH


def test_jobs_are_the_grid_of_the_config():
    config = load_config(SMOKE)
    grid = cost.jobs(config)
    # a job trains every seed of a (task, gap, model); an entry's `models` narrows its models
    assert len(grid) == sum(len(entry["gaps"]) * len(task_models(config, entry)) for entry in config["tasks"]) == 28
    assert (grid.seeds == len(config["seeds"])).all()
    assert (grid.seq_len > 0).all() and set(grid.model) == {model_label(m) for m in config["models"]}
    assert set(grid.model_name) == {m["name"] for m in config["models"]}
    paper = cost.jobs(load_config(SMOKE.parent / "paper.yaml"))
    assert len(paper) == 1442 and paper.seeds.sum() == 7210  # the numbers docs/clusters.md states


def _calibration(models, hidden_sizes) -> pd.DataFrame:
    """A made-up calibration: every cost linear in T with known coefficients."""
    rows = []
    for model, hidden in zip(models, hidden_sizes):
        for seq_len in cost.LENGTHS:
            rows.append({"model": model, "hidden_size": hidden, "seq_len": seq_len,
                         "step_seconds": 1e-3 + 2e-5 * seq_len, "forward_seconds": 3e-4 * seq_len,
                         "probe_seconds": 0.5 + 1e-2 * seq_len, "startup_seconds": 2.0, "contention": 1.25,
                         "machine": "test"})
    return pd.DataFrame(rows)


def test_the_estimate_is_the_documented_formula():
    """seconds = c · [startup + N · ((1 + A) · probes(T) + A · S · step(T) + A · (S/E + 1) · ⌈V/B⌉ · forward(T)
    + A · ⌈V_test/B⌉ · forward(T))], with forward timed at batch 64 and scaled to the evaluation batch B."""
    config = load_config(SMOKE)
    pairs = sorted({(m["name"], m.get("hidden_size", config["hidden_size"])) for m in config["models"]})
    estimated = cost.estimate(config, _calibration(*zip(*pairs)))
    train, sizes = config["train"], config["data"]["sizes"]
    arms, seeds = len(config["clip"]["arms"]), len(config["seeds"])
    evaluations = (train["steps"] // train["eval_every"] + 1) * math.ceil(sizes["validation"] / EVAL_BATCH) + \
        math.ceil(sizes["test"] / EVAL_BATCH)
    for row in estimated.itertuples():
        T = row.seq_len
        step, forward, probes = 1e-3 + 2e-5 * T, 3e-4 * T * EVAL_BATCH / 64, 0.5 + 1e-2 * T
        fitting = train["steps"] * step + evaluations * forward
        assert row.seconds == pytest.approx(1.25 * (2.0 + seeds * ((1 + arms) * probes + arms * fitting)), rel=1e-12)


def test_check_compares_the_estimate_with_recorded_job_times(tmp_path):
    """Each job's Snakemake benchmark record is found by the contract's path template and
    compared: here every job measured at exactly twice its estimate, so the error is −50%."""
    config = load_config(SMOKE)
    pairs = sorted({(m["name"], m.get("hidden_size", config["hidden_size"])) for m in config["models"]})
    estimated = cost.estimate(config, _calibration(*zip(*pairs)))
    for row in estimated.itertuples():
        path = tmp_path / TRAIN_BENCHMARK.format(task=row.task, gap=row.gap, model=row.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\tmax_rss\n{2 * row.seconds}\t{100 + row.gap}\n")
    report = cost.check(estimated, tmp_path / "results" / "benchmarks" / "train")
    assert report.startswith(f"{len(estimated)} jobs compared")
    assert "(-50% in total)" in report and "median |error| 50%" in report
    assert f"largest {100 + estimated.gap.max()} MB" in report


def test_calibration_measures_a_model(tmp_path):
    row = cost.measure_model("vanilla", 8, 10, batch=8, probe_batch=4, steps=2)
    assert row["model"] == "vanilla" and row["seq_len"] == 10
    assert all(row[k] > 0 for k in ("step_seconds", "forward_seconds", "probe_seconds"))


@pytest.mark.pipeline
def test_cost_command_checks_a_finished_grid(smoke_run, tmp_path):
    """The command as a user runs it on a finished grid, with a calibration file given."""
    calibration = tmp_path / "step_costs.csv"
    config = load_config(SMOKE)
    pairs = sorted({(m["name"], m.get("hidden_size", config["hidden_size"])) for m in config["models"]})
    _calibration(*zip(*pairs)).to_csv(calibration, index=False)
    result = subprocess.run(
        [sys.executable, "-m", "gapbench", "cost", str(SMOKE), "--calibration", str(calibration),
         "--check", str(smoke_run / "results" / "benchmarks" / "train")],
        capture_output=True, text=True, check=True, timeout=900)
    jobs = int(re.search(r"^(\d+) training jobs", result.stdout, re.M).group(1))
    assert jobs == len(cost.jobs(config))
    compared = re.search(r"(\d+) jobs compared: estimated ([\d.e+-]+) core-hours, measured ([\d.e+-]+)", result.stdout)
    assert int(compared.group(1)) == jobs and float(compared.group(3)) > 0, result.stdout
