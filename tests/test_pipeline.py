"""The real Snakemake pipeline on config/smoke.yaml: outputs, schemas, contract, idempotence."""
import json
import math

import pandas as pd
import pytest
import torch
import yaml

import models
import tasks
from conftest import SMOKE, snakemake
from gapbench.tables import ACCURACY_COLUMNS, DECAY_COLUMNS
from gapbench.train import Net

CONFIG = yaml.safe_load(SMOKE.read_text())
GRID = [
    (task["name"], gap, model["name"], clip, seed)
    for task in CONFIG["tasks"] for gap in task["gaps"] for model in CONFIG["models"]
    for clip in CONFIG["clip"]["arms"] for seed in CONFIG["seeds"]
]


@pytest.fixture(scope="module")
def accuracy(smoke_run):
    return pd.read_csv(smoke_run / "results/tables/accuracy_vs_gap.csv")


@pytest.fixture(scope="module")
def decay(smoke_run):
    return pd.read_csv(smoke_run / "results/tables/gradient_decay.csv")


def test_smoke_covers_every_task_model_and_clip_arm_of_the_default():
    default = yaml.safe_load((SMOKE.parent / "default.yaml").read_text())
    assert {t["name"] for t in default["tasks"]} <= {t["name"] for t in CONFIG["tasks"]}
    assert {m["name"] for m in default["models"]} <= {m["name"] for m in CONFIG["models"]}
    assert set(default["clip"]["arms"]) <= set(CONFIG["clip"]["arms"])


def test_accuracy_table_has_one_row_per_run(accuracy):
    assert list(accuracy.columns) == ACCURACY_COLUMNS
    keys = set(accuracy[["task", "gap", "model", "clip", "seed"]].itertuples(index=False, name=None))
    assert keys == set(GRID) and len(accuracy) == len(GRID)
    assert accuracy.metric.isin(["accuracy", "mse"]).all()
    assert (accuracy.train_steps == CONFIG["train"]["steps"])[~accuracy.diverged].all()
    assert accuracy.clip_fraction.between(0, 1).all()
    assert (accuracy[accuracy["clip"] == "none"].clip_fraction == 0).all()
    assert (accuracy[accuracy["clip"] == "value"].clip_fraction > 0).any()


def test_baselines_and_success_follow_their_formulas(accuracy):
    copy = accuracy[accuracy.task == "copy"]
    assert ((copy.baseline - 10 * math.log(8) / (copy.gap + 20)).abs() < 1e-12).all()
    assert (copy.chance_score == 1 / 8).all() and (copy.metric == "accuracy").all()
    assert copy.test_score.between(0, 1).all()
    adding = accuracy[accuracy.task == "adding"]
    assert ((adding.baseline - 1 / 6).abs() < 1e-12).all() and (adding.metric == "mse").all()
    assert ((adding.test_score - adding.test_loss).abs() < 1e-12).all()
    assert (accuracy.success == (accuracy.test_loss < 0.1 * accuracy.baseline)).all()


def test_gradient_decay_table_covers_every_lag(decay):
    assert list(decay.columns) == DECAY_COLUMNS
    assert set(decay.stage) == {"init", "trained"}
    for (task, gap, *_), rows in decay.groupby(["task", "gap", "model", "clip", "seed", "stage"]):
        seq_len = tasks.build(task, gap).seq_len
        assert sorted(rows.lag) == list(range(seq_len))
    identity = decay[(decay.model == "identity")]
    spread = identity.groupby(["task", "gap", "clip", "seed", "stage"]).log10_grad_norm.agg(lambda s: s.max() - s.min())
    assert (spread < 1e-9).all()  # J = I: the gradient norm is the same at every lag


def test_run_folders_hold_metrics_history_decay_and_weights(smoke_run):
    task, gap, model, clip, seed = GRID[0]
    folder = smoke_run / f"results/runs/{task}/gap{gap}/{model}/{clip}/seed{seed}"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["spec"]["seed"] == seed
    assert metrics["spec"]["train"] == {**CONFIG["train"], "device": "cpu"}  # schema default filled in
    for key in ("code_version", "torch", "numpy", "python"):
        assert metrics["provenance"][key]
    history = pd.read_csv(folder / "history.csv")
    assert list(history.step) == list(range(10, CONFIG["train"]["steps"] + 1, 10))
    built = tasks.build(task, gap)
    net = Net(models.build(model, built.input_size, CONFIG["hidden_size"]), built.output_size)
    net.load_state_dict(torch.load(folder / "model.pt", weights_only=True))
    meta = json.loads((smoke_run / f"results/data/{task}/gap{gap}/seed{seed}/meta.json").read_text())
    assert meta["baseline"] == built.baseline and set(meta["sha256"]) == {"train", "validation", "test"}


def test_figures_are_drawn(smoke_run):
    for name in ("accuracy_vs_gap", "gradient_decay"):
        png = (smoke_run / f"results/figures/{name}.png").read_bytes()
        pdf = (smoke_run / f"results/figures/{name}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        assert pdf.startswith(b"%PDF")


def test_second_run_has_nothing_to_do(smoke_run):
    result = snakemake(smoke_run, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changed_training_config_reruns_training(smoke_run, tmp_path):
    changed = {**CONFIG, "train": {**CONFIG["train"], "steps": CONFIG["train"]["steps"] + 1}}
    configfile = tmp_path / "changed.yaml"
    configfile.write_text(yaml.safe_dump(changed))
    result = snakemake(smoke_run, "--dry-run", configfile=configfile)
    output = result.stdout + result.stderr
    assert "rule train:" in output and "rule generate_data:" not in output


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
