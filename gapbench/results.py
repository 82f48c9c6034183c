"""The results contract, owned here and imported everywhere else: the run keys, the files of a
run folder, the tidy tables and their columns, the figures; plus writing a run folder and
collecting run folders into the tables.

A run is (task, gap, model, clip, seed). Its folder, results/runs/{task}/gap{gap}/{model}/
{clip}/seed{seed}/, holds RUN_FILES; every CSV in it already carries the run keys, so the
tables are plain concatenations, sorted, plus accuracy_vs_gap.csv built from each run's
metrics.json. metrics.json is written last: its presence marks a complete run. Every complete
run is also kept in the run cache (results/cache/runs/<key>/, keyed by the run's full
specification, clip arm, dataset checksums and source code), from which a job restores it
instead of training it again: an interruption or another run's failure never costs a
completed run.
The probe tables are whatever gapbench.probes registers, and the figures whatever
gapbench.figures registers: adding either touches no list here.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch

from gapbench.io import atomic_path, write_csv, write_json
from gapbench.probes import TABLES as PROBE_ROW_ORDER

KEYS = ["task", "model", "clip", "gap", "seed"]
STAGES = ("init", "trained")  # when the probes measure: the initial weights and the trained ones
PROBE_TABLES = tuple(PROBE_ROW_ORDER)
# the files of a run folder, named here only
COMPLETE_MARKER = "metrics.json"
HISTORY_FILE = "history.csv"  # one row per evaluation: validation loss and score
STEPS_FILE = "steps.csv"  # one row per optimiser step: STEP_COLUMNS
WEIGHTS_FILE = "model.pt"
SUMMARY_FILE = "propagation_summary.csv"
RUN_FILES = (COMPLETE_MARKER, HISTORY_FILE, STEPS_FILE, WEIGHTS_FILE, SUMMARY_FILE) + tuple(
    f"{name}.csv" for name in PROBE_TABLES
)
TABLES = ("accuracy_vs_gap", "propagation_summary") + PROBE_TABLES
REPORT_TABLES = ("accuracy_vs_gap", "propagation_summary")  # the per-lag tables are too large for the HTML report
STEP_COLUMNS = ["step", "train_loss", "grad_norm", "clipped"]  # grad_norm: pre-clip ||g||
ACCURACY_COLUMNS = KEYS + [
    "task_name", "model_name", "hidden_size", "metric", "test_loss", "test_score", "baseline", "chance_score", "success", "diverged",
    "clip_fraction", "clip_threshold", "train_steps", "steps_to_solve", "stopped_early", "wall_seconds",
    "code_version",
]
# the order in which each table's rows are sorted, after the run keys
ROW_ORDER = {"propagation_summary": ["stage"], **PROBE_ROW_ORDER}
FIGURE_FORMATS = ("pdf", "png")
PAPER_TABLE_FORMATS = ("tex", "md")


def figure_names() -> list[str]:
    """The figures gapbench.figures registers (imported on demand: it loads matplotlib)."""
    from gapbench import figures

    return list(figures.FIGURES)


def table_reader(tables_dir):
    """read(name) -> the tidy table name.csv in tables_dir, each read from disk once."""
    tables_dir, cache = Path(tables_dir), {}

    def read(name: str) -> pd.DataFrame:
        if name not in cache:
            cache[name] = pd.read_csv(tables_dir / f"{name}.csv")
        return cache[name]

    return read


def paper_table_names() -> list[str]:
    """The tables gapbench.paper_tables registers (written as .tex and .md)."""
    from gapbench import paper_tables

    return list(paper_tables.PAPER_TABLES)


def write_run(run_dir, keys: dict, metrics: dict, training, stability: dict, probes: list[dict], weights: dict) -> None:
    """Write one run folder (RUN_FILES); metrics.json last, so the folder is complete only once it is there.

    training: gapbench.train.Training; probes: one {table name: DataFrame, "summary": dict}
    per stage (init, trained); weights: the network's state_dict.
    """
    run_dir = Path(run_dir)
    write_csv(run_dir / HISTORY_FILE, pd.DataFrame(training.history).assign(**keys))
    write_csv(run_dir / STEPS_FILE, pd.DataFrame(training.steps, columns=STEP_COLUMNS).assign(**keys))
    for name in PROBE_TABLES:
        write_csv(run_dir / f"{name}.csv", pd.concat([p[name] for p in probes]).assign(**keys))
    summary = pd.DataFrame([p["summary"] for p in probes]).assign(
        **keys, diverged=metrics["diverged"], **{k: v for k, v in stability.items() if k != "steps"})
    write_csv(run_dir / SUMMARY_FILE, summary)
    # saved through memory: torch.save names the archive after the file it writes to, and the
    # temporary file's random name would make model.pt differ byte for byte between runs
    buffer = io.BytesIO()
    torch.save({name: value.cpu() for name, value in weights.items()}, buffer)
    with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
        tmp.write_bytes(buffer.getvalue())
    write_json(run_dir / COMPLETE_MARKER, metrics)


def is_complete(run_dir) -> bool:
    return (Path(run_dir) / COMPLETE_MARKER).exists()


def write_cached(cache_dir, write) -> None:
    """Write a run into the run cache, atomically: `write(folder)` fills a staging folder beside
    cache_dir, which is then renamed into place (an entry already there, written by an
    identical run, stays). A run is in the cache whole or not at all."""
    cache_dir = Path(cache_dir)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.", dir=cache_dir.parent))
    try:
        write(staging)
        if not is_complete(cache_dir):
            try:
                os.replace(staging, cache_dir)
            except OSError:  # an identical run renamed its copy into place first: keep that one
                if not is_complete(cache_dir):
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def restore_run(cache_dir, run_dir) -> None:
    """Put a cached run back into its run folder, byte for byte, metrics.json last.

    Each file is a hard link to the cached one where the file system allows it (one copy on
    disk, not two; a copy otherwise). That is safe because every file of a run is written by
    renaming a new file into place (`atomic_path`), never changed in place. The link gets the
    current time as its modification time, so Snakemake sees a freshly written output."""
    for name in sorted(RUN_FILES, key=lambda name: name == COMPLETE_MARKER):
        with atomic_path(Path(run_dir) / name) as tmp:
            tmp.unlink()
            try:
                os.link(Path(cache_dir) / name, tmp)
                os.utime(tmp)
            except OSError:  # another file system, or links not supported: copy
                shutil.copyfile(Path(cache_dir) / name, tmp)


def accuracy_row(run_dir) -> dict:
    metrics = json.loads((Path(run_dir) / COMPLETE_MARKER).read_text())
    metrics["code_version"] = metrics["provenance"]["code_version"]
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
