# Config checks, the run grid and the file layout (gapbench.results) shared by every rule.
# Jobs run `python -m gapbench` and import the installed package (`pip install -e .`).
import functools
import json
import os
import re
import shlex

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from gapbench.config import ConfigError, model_entry, model_label, prepare, task_entry, task_label, task_models
from gapbench.provenance import data_code_digest, train_code_digest
from gapbench.reports.cost import job_minutes
from gapbench.reports.figures import figure_stems, shape_of_config
from gapbench.reports.paper_tables import PAPER_TABLES as PAPER_TABLE_REGISTRY
from gapbench.reports.tables import TABLES
from gapbench.results import (
    DATA_BENCHMARK,
    DATA_DIR,
    DATA_SPLITS,
    FIGURE_FORMATS,
    FIGURES_DIR,
    JOB_RECORD,
    LOGS_DIR,
    PAPER_DIR,
    PAPER_TABLE_FORMATS,
    REPORT_TABLES,
    RUN_CACHE,
    RUN_DIR,
    TABLES_DIR,
    TRAIN_BENCHMARK,
    table_file,
)
from gapbench.spec import RunSpec


def snakemake_cores():
    """--cores as a number, or None where Snakemake was given none (e.g. --lint, a cluster)."""
    try:
        return workflow.cores
    except WorkflowError:
        return None


if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    # the rules name no conda environment, since one built from environment.yml would lack gapbench
    raise WorkflowError("--use-conda is not supported: the jobs import the installed gapbench. Create one "
                        "environment (conda env create -f environment.yml; pip install -e .), activate it, and run "
                        "snakemake without --use-conda (docs/clusters.md)")
# Snakemake's job rate limiter (--max-jobs-per-timespan, default 100/1s) re-arms a wake-up
# timer of one timespan on every pass of its scheduling loop, and every finished job starts one
# more chain of such wake-ups; each pass re-reads every ready job's input sizes. The passes per
# second thus grow with the jobs finished: on the default grid they made Snakemake's own CPU
# 13% of the jobs' (docs/performance.md). The same average rate over a 30 times longer span
# makes 30 times fewer passes. Snakemake builds its scheduler after reading this file, so the
# limiter is replaced when the run starts (onstart), and only Snakemake's default one: a limit
# given on the command line or in a profile stands. The wake-ups left pending at the end are
# cancelled (onsuccess, onerror), or Snakemake would wait out the last one before exiting.
SNAKEMAKE_DEFAULT_RATE, WORKFLOW_RATE = (100, 1), (3000, "30s")


def relax_job_rate_limiter():
    """Replace Snakemake's default job rate limiter by one of WORKFLOW_RATE (same jobs per second)."""
    from snakemake.settings.types import MaxJobsPerTimespan

    scheduler = getattr(workflow, "scheduler", None)
    limiter = getattr(scheduler, "job_rate_limiter", None)
    if limiter is not None and (limiter.max_jobs, limiter.timespan) == SNAKEMAKE_DEFAULT_RATE:
        scheduler.job_rate_limiter = type(limiter)(MaxJobsPerTimespan(*WORKFLOW_RATE))
        logger.debug(f"job rate limit: {WORKFLOW_RATE[0]} jobs per {WORKFLOW_RATE[1]}")


def cancel_pending_wakeups():
    """Cancel the scheduler's pending wake-up timers (threading.Timer; Snakemake starts no other)."""
    import threading

    pending = [thread for thread in threading.enumerate() if isinstance(thread, threading.Timer)]
    for thread in pending:
        thread.cancel()
    logger.debug(f"cancelled {len(pending)} pending scheduler wake-up(s)")


onstart:
    relax_job_rate_limiter()


onsuccess:
    cancel_pending_wakeups()


onerror:
    cancel_pending_wakeups()


# the schema (one-line messages), its defaults, then names, numbers, registry entries, options,
# gaps, settings against cores: before any job runs (the same function the cost command uses)
try:
    prepare(config, cores=snakemake_cores(), schema=f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
except ConfigError as error:  # the message names the key, and the task or model file where one is at fault
    raise SystemExit(f"gapbench: {error}") from None

TASKS = [task_label(entry) for entry in config["tasks"]]  # labels; default: registry names
MODELS = [model_label(entry) for entry in config["models"]]  # labels; default: registry names
CLIPS = list(config["clip"]["arms"])
SEEDS = list(config["seeds"])
TABLE_FILES = {name: f"{TABLES_DIR}/{table_file(name)}" for name in TABLES}
# every page of every figure: how many pages depends on the tasks, the lines a panel would hold
# and the model families (gapbench.reports.figures.pages), the same shape draw_all reads from the tables
FIGURE_PAGES = figure_stems(shape_of_config(config))
FIGURES = expand(f"{FIGURES_DIR}/{{page}}.{{ext}}", page=FIGURE_PAGES, ext=FIGURE_FORMATS)
PAPER_TABLES = expand(f"{PAPER_DIR}/{{name}}.{{ext}}", name=list(PAPER_TABLE_REGISTRY), ext=PAPER_TABLE_FORMATS)


wildcard_constraints:
    task="|".join(map(re.escape, TASKS)),
    model="|".join(map(re.escape, MODELS)),
    clip="|".join(map(re.escape, CLIPS)),
    gap=r"[1-9][0-9]*",
    seed=r"[0-9]+",
    page="|".join(map(re.escape, FIGURE_PAGES)),


# every training job of the grid, (task label, gap, model): tasks × their gaps × their models;
# its record (listing its runs: × clip arms × seeds)
TRAIN_JOBS = [
    {"task": task_label(entry), "gap": gap, "model": model}
    for entry in config["tasks"]
    for gap in entry["gaps"]
    for model in task_models(config, entry)
]
JOB_RECORDS = [JOB_RECORD.format(**job) for job in TRAIN_JOBS]


def train_arguments(wc):
    """The arguments of one training job: per seed, its typed specification (gapbench.spec) as
    JSON, its dataset and `--run CLIP=FOLDER` for every clip arm; every word shell-quoted."""
    words = []
    for seed in SEEDS:
        spec = RunSpec.from_config(config, wc.task, int(wc.gap), wc.model, int(seed)).to_json()
        words += ["--spec", spec, "--data", DATA_DIR.format(task=wc.task, gap=wc.gap, seed=seed)]
        for clip in CLIPS:
            words += ["--run", f"{clip}={RUN_DIR.format(task=wc.task, gap=wc.gap, model=wc.model, clip=clip, seed=seed)}"]
    return " ".join(map(shlex.quote, words))


# The code a job's outputs depend on, as a digest in the rule's `params`: Snakemake's params
# rerun trigger then reruns a job whose code changed, and only it (it does not watch the modules
# a job imports). gapbench.provenance says which files each digest covers.
def data_code(wc):
    return data_code_digest(task_entry(config, wc.task)["name"])


def train_code(wc):
    return train_code_digest(task_entry(config, wc.task)["name"], model_entry(config, wc.model)["name"])


# Minutes a training job asks a cluster (its `runtime`; a local run ignores it): 3 times
# `gapbench cost`'s estimate of that job where the calibration of the config's device covers the
# grid (results/bench/step_costs.csv, made by `python -m gapbench cost CONFIG`), else 60 a seed.
# The paper grid's longest job is estimated at about 43 hours on a 2-core VM (docs/clusters.md):
# 60 a seed would see it killed.
@functools.cache
def estimated_job_minutes():
    return job_minutes(config)


def train_runtime(wc):
    estimated = estimated_job_minutes()
    if estimated is None:
        return 60 * len(SEEDS)
    return estimated[(wc.task, int(wc.gap), wc.model)]
