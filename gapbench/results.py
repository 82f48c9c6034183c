"""The results contract: where every result lives and what it holds. Owned here, imported by
the workflow, the job, run storage and every reader; it imports nothing of gapbench, torch or
pandas, so any of them can depend on it and it on none of them.

A run is (task, gap, model, clip, seed). Its folder, RUN_DIR, holds `run_files(probe tables)`;
every CSV in it already carries the run keys, so the tidy tables are plain concatenations,
sorted (Parquet for the per-lag probe tables: `table_file`), plus accuracy_vs_gap.csv built
from each run's metrics.json (a `RunMetrics`).
metrics.json is written last: its presence marks a complete run; checksums.json, written just
before it, records the SHA-256 of every other file, so that a file changed since (edited, cut
short) is found before it is restored or collected. Writing, caching and
restoring run folders: gapbench.runstore; collecting them into tables: gapbench.reports.tables.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

KEYS = ["task", "model", "clip", "gap", "seed"]
STAGES = ("init", "trained")  # when the probes measure: the initial weights and the trained ones

# ---------------------------------------------------------------------------- where results live
# Paths relative to the working directory; {task} and {model} are config labels.
RESULTS = "results"
DATA_DIR = f"{RESULTS}/data/{{task}}/gap{{gap}}/seed{{seed}}"
DATA_SPLITS = ("train", "validation", "test")  # {split}.npz in DATA_DIR, beside meta.json
RUN_DIR = f"{RESULTS}/runs/{{task}}/gap{{gap}}/{{model}}/{{clip}}/seed{{seed}}"
# what Snakemake tracks of a training job (task, gap, model): one record, written after every
# run of the job is complete (each run's own completion record is its metrics.json)
JOB_RECORD = f"{RESULTS}/runs/{{task}}/gap{{gap}}/{{model}}/job.json"
RUN_CACHE = f"{RESULTS}/cache/runs"  # one folder per run key (gapbench.job.run_key)
TABLES_DIR = f"{RESULTS}/tables"
FIGURES_DIR = f"{RESULTS}/figures"
PAPER_DIR = f"{RESULTS}/paper"
LOGS_DIR = f"{RESULTS}/logs"
TRAIN_BENCHMARK = f"{RESULTS}/benchmarks/train/{{task}}/gap{{gap}}/{{model}}.tsv"  # Snakemake's record of a job
DATA_BENCHMARK = f"{RESULTS}/benchmarks/generate_data/{{task}}/gap{{gap}}/seed{{seed}}.tsv"
CALIBRATION = f"{RESULTS}/bench/step_costs.csv"  # the cost command's per-step costs on the CPU
CALIBRATION_CUDA = f"{RESULTS}/bench/step_costs_cuda.csv"  # ... and on a GPU

# -------------------------------------------------------------------------- the files of a run
COMPLETE_MARKER = "metrics.json"  # a RunMetrics, written last
# {file: SHA-256} of every other file of the run, metrics.json's included, written just before
# it: what the run wrote, checked before a run is restored from the run cache or collected
CHECKSUMS_FILE = "checksums.json"
HISTORY_FILE = "history.csv"  # one row per evaluation: validation loss and score
STEPS_FILE = "steps.csv"  # one row per optimiser step: STEP_COLUMNS
WEIGHTS_FILE = "model.pt"
SUMMARY_FILE = "propagation_summary.csv"
STEP_COLUMNS = ["step", "train_loss", "grad_norm", "clipped"]  # grad_norm: pre-clip ||g||


def run_files(probe_tables) -> tuple[str, ...]:
    """The files of a complete run folder, given the probe tables (gapbench.probes.TABLES)."""
    return (COMPLETE_MARKER, CHECKSUMS_FILE, HISTORY_FILE, STEPS_FILE, WEIGHTS_FILE, SUMMARY_FILE) + tuple(
        f"{name}.csv" for name in probe_tables)


# ------------------------------------------------------------------------- tables and reports
ACCURACY_TABLE, SUMMARY_TABLE = "accuracy_vs_gap", "propagation_summary"
REPORT_TABLES = (ACCURACY_TABLE, SUMMARY_TABLE)  # the per-lag tables are too large for the HTML report
FIGURE_FORMATS = ("pdf", "png")
PAPER_TABLE_FORMATS = ("tex", "md")


def table_names(probe_tables) -> tuple[str, ...]:
    """Every tidy table of results/tables, given the probe tables."""
    return REPORT_TABLES + tuple(probe_tables)


def table_file(name: str) -> str:
    """A tidy table's file in TABLES_DIR: CSV for the small tables a person opens
    (REPORT_TABLES), Parquet for the per-lag probe tables (millions of rows at paper size)."""
    return f"{name}.csv" if name in REPORT_TABLES else f"{name}.parquet"


def fields_of(template: str, path: str) -> dict[str, str]:
    """The placeholders of a path template read back from a path that matches it, e.g.
    fields_of(TRAIN_BENCHMARK, 'results/benchmarks/train/copy/gap5/lstm.tsv')['gap'] == '5'."""
    pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
    pattern = re.sub(r"{(\w+)}", r"(?P<\1>[^/]+)", pattern)
    match = re.search(pattern + "$", str(path))
    if match is None:
        raise ValueError(f"{path} does not match {template}")
    return match.groupdict()


# ------------------------------------------------------------------------------ a run's record

@dataclass
class RunMetrics:
    """What metrics.json holds: the run keys, its test result and verdict, how it trained,
    and what made it. The job fills one per run; accuracy_vs_gap has a row of each."""

    task: str  # the run keys (KEYS); task and model are config labels
    model: str
    clip: str
    gap: int
    seed: int
    task_name: str  # the registered task and model
    model_name: str
    hidden_size: int
    task_params: dict
    metric: str  # accuracy | mse: what test_score is
    score_label: str  # test_score in words (the task's score_label): the figures' axis label
    test_loss: float
    test_score: float
    baseline: float  # the loss of the best input-blind predictor
    chance_score: float
    success: bool  # the task's criterion on the test split
    diverged: bool
    clip_fraction: float  # the fraction of applied steps whose gradient was clipped
    train_steps: int  # optimiser steps applied
    steps_to_solve: int | None  # validation solved from this step to the end (None: never)
    stopped_early: bool
    wall_seconds: float
    clip_threshold: float | None  # θ0 of the clip arm (None: no clipping)
    stability: dict  # gapbench.train.clipping_statistics
    threads: int
    spec: dict  # gapbench.spec.RunSpec.to_dict()
    provenance: dict  # gapbench.provenance.provenance()

    @property
    def code_version(self) -> str:
        return self.provenance["code_version"]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunMetrics:
        return cls(**{f.name: values[f.name] for f in fields(cls)})

    def accuracy_row(self) -> dict:
        """This run's row of accuracy_vs_gap (ACCURACY_COLUMNS)."""
        return {column: getattr(self, column) for column in ACCURACY_COLUMNS}


# accuracy_vs_gap's columns, in order: RunMetrics fields (and its code_version)
ACCURACY_COLUMNS = KEYS + [
    "task_name", "model_name", "hidden_size", "metric", "score_label", "test_loss", "test_score", "baseline", "chance_score",
    "success", "diverged", "clip_fraction", "clip_threshold", "train_steps", "steps_to_solve", "stopped_early",
    "wall_seconds", "code_version",
]
