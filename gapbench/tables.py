"""Tidy tables collected from run folders: one row per observation, written atomically.

A run folder (results/runs/{task}/gap{gap}/{model}/{clip}/seed{seed}/) holds `RUN_FILES`;
every CSV in it already carries the run keys, so the tables are plain concatenations,
sorted, plus accuracy_vs_gap.csv built from each run's metrics.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from gapbench.io import write_csv

KEYS = ["task", "model", "clip", "gap", "seed"]
PROBE_TABLES = ("gradient_decay", "jacobian_spectrum", "sensitivity", "lyapunov", "memory_capacity")
RUN_FILES = ("metrics.json", "history.csv", "steps.csv", "model.pt", "propagation_summary.csv") + tuple(
    f"{name}.csv" for name in PROBE_TABLES
)
TABLES = ("accuracy_vs_gap", "propagation_summary") + PROBE_TABLES
ACCURACY_COLUMNS = KEYS + [
    "task_name", "metric", "test_loss", "test_score", "baseline", "chance_score", "success", "diverged",
    "clip_fraction", "clip_threshold", "train_steps", "wall_seconds", "code_version",
]
# the order in which each table's rows are sorted, after the run keys
ROW_ORDER = {
    "propagation_summary": ["stage"],
    "gradient_decay": ["stage", "lag"],
    "jacobian_spectrum": ["stage", "quantity", "lag", "step", "statistic", "index"],
    "sensitivity": ["stage", "lag"],
    "lyapunov": ["stage", "index"],
    "memory_capacity": ["stage", "delay"],
}


def accuracy_row(run_dir) -> dict:
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    metrics["code_version"] = metrics["provenance"]["code_version"]
    metrics.setdefault("task_name", metrics["task"])
    return {column: metrics[column] for column in ACCURACY_COLUMNS}


def _sorted(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    by = KEYS + [column for column in order if column in table.columns]
    return table.sort_values(by, kind="stable").reset_index(drop=True)


def collect(run_dirs, out_dir) -> dict[str, pd.DataFrame]:
    """Write `{name}.csv` in out_dir for every name in TABLES; return the tables.

    accuracy_vs_gap: one row per run. propagation_summary: one row per (run, stage) with the
    fitted gradient decay rate, half-life, λ1, Σλ, ρ(W_h), memory capacity and the training's
    clipping statistics; it joins accuracy_vs_gap on the run keys. gradient_decay also gets
    each (run, stage)'s fitted decay_rate and half_life next to its per-lag norms.
    """
    run_dirs = list(run_dirs)
    tables = {"accuracy_vs_gap": _sorted(pd.DataFrame([accuracy_row(d) for d in run_dirs],
                                                      columns=ACCURACY_COLUMNS), [])}
    for name in ("propagation_summary",) + PROBE_TABLES:
        parts = [pd.read_csv(Path(d) / f"{name}.csv") for d in run_dirs]
        tables[name] = _sorted(pd.concat(parts, ignore_index=True), ROW_ORDER[name])
    rates = tables["propagation_summary"][KEYS + ["stage", "decay_rate", "half_life"]]
    tables["gradient_decay"] = tables["gradient_decay"].merge(rates, on=KEYS + ["stage"], how="left")
    for name, table in tables.items():
        write_csv(Path(out_dir) / f"{name}.csv", table)
    return tables
