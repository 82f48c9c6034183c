"""`gapbench cost`: the grid's jobs, and an estimate checked against a real run's job times."""
import re
import subprocess
import sys

import pandas as pd
import yaml

from conftest import SMOKE
from gapbench import cost
from gapbench.config import model_label


def test_jobs_are_the_grid_of_the_config():
    config = cost.load_config(SMOKE)
    grid = cost.jobs(config)
    pairs = sum(len(entry["gaps"]) for entry in config["tasks"])
    assert len(grid) == pairs * len(config["models"])  # a job trains every seed of a (task, gap, model)
    assert (grid.seeds == len(config["seeds"])).all()
    assert (grid.seq_len > 0).all() and set(grid.model) == {model_label(m) for m in config["models"]}
    assert set(grid.model_name) == {m["name"] for m in config["models"]}
    paper = cost.jobs(cost.load_config(SMOKE.parent / "paper.yaml"))
    assert len(paper) == 1442 and paper.seeds.sum() == 7210  # the numbers docs/clusters.md states


def test_estimate_against_the_smoke_run(smoke_run, tmp_path):
    calibration = tmp_path / "step_costs.csv"
    result = subprocess.run(
        [sys.executable, "-m", "gapbench", "cost", str(SMOKE), "--calibration", str(calibration),
         "--check", str(smoke_run / "results" / "benchmarks" / "train")],
        capture_output=True, text=True, check=True, timeout=900)
    table = pd.read_csv(calibration)
    config = yaml.safe_load(SMOKE.read_text())
    assert set(table.model) == {m["name"] for m in config["models"]} and (table.step_seconds > 0).all()
    assert table.machine.str.contains("cores").all()  # the calibration says where it was measured
    jobs = int(re.search(r"^(\d+) training jobs", result.stdout, re.M).group(1))
    assert jobs == len(cost.jobs(cost.load_config(SMOKE)))
    compared = re.search(r"(\d+) jobs compared: estimated ([\d.e+-]+) core-hours, measured ([\d.e+-]+)", result.stdout)
    assert int(compared.group(1)) == jobs
    estimated, measured = float(compared.group(2)), float(compared.group(3))
    assert 0.5 < estimated / measured < 2.0, result.stdout  # tiny jobs: start-up dominates both
