"""Tidy tables collected from run folders: one row per observation, written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from gapbench.io import write_csv

KEYS = ["task", "model", "clip", "gap", "seed"]
ACCURACY_COLUMNS = KEYS + [
    "metric", "test_loss", "test_score", "baseline", "chance_score", "success", "diverged",
    "clip_fraction", "clip_threshold", "train_steps", "wall_seconds", "code_version",
]
DECAY_COLUMNS = KEYS + ["stage", "lag", "grad_norm", "log10_grad_norm"]


def accuracy_row(run_dir) -> dict:
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    metrics["code_version"] = metrics["provenance"]["code_version"]
    return {column: metrics[column] for column in ACCURACY_COLUMNS}


def collect(run_dirs, accuracy_path, decay_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """accuracy_vs_gap.csv: one row per run; gradient_decay.csv: one row per (run, stage, lag)."""
    accuracy = pd.DataFrame([accuracy_row(d) for d in run_dirs], columns=ACCURACY_COLUMNS)
    decay = pd.concat(
        [pd.read_csv(Path(d) / "gradient_decay.csv") for d in run_dirs], ignore_index=True
    )[DECAY_COLUMNS]
    accuracy = accuracy.sort_values(KEYS, kind="stable").reset_index(drop=True)
    decay = decay.sort_values(KEYS + ["stage", "lag"], kind="stable").reset_index(drop=True)
    write_csv(accuracy_path, accuracy)
    write_csv(decay_path, decay)
    return accuracy, decay
