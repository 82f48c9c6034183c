# Config validation, the run grid and the file layout shared by every rule.
import json
import os
import re
import sys

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

sys.path.insert(0, workflow.basedir)
from gapbench.config import check_config, prepare_job_environment, run_spec, task_entry, task_label  # noqa: E402
from gapbench.tables import RUN_FILES, TABLES  # noqa: E402

# Jobs run `python -m gapbench` with this interpreter and import this source tree.
prepare_job_environment(workflow.basedir)

check_config(config)  # registry names, options and gaps, before any job runs

RESULTS = "results"
TASKS = [task_label(entry) for entry in config["tasks"]]  # labels; default: registry names
MODELS = [entry["name"] for entry in config["models"]]
CLIPS = list(config["clip"]["arms"])
SEEDS = list(config["seeds"])
DATA_DIR = f"{RESULTS}/data/{{task}}/gap{{gap}}/seed{{seed}}"
RUN_DIR = f"{RESULTS}/runs/{{task}}/gap{{gap}}/{{model}}/{{clip}}/seed{{seed}}"
TABLE_FILES = {name: f"{RESULTS}/tables/{name}.csv" for name in TABLES}
REPORT_TABLES = ["accuracy_vs_gap", "propagation_summary"]
FIGURE_NAMES = [
    "accuracy_vs_gap", "gradient_decay", "jacobian_spectrum", "sensitivity", "lyapunov",
    "memory_capacity", "decay_rate_vs_gap_solved",
]
FIGURES = expand(f"{RESULTS}/figures/{{name}}.{{ext}}", name=FIGURE_NAMES, ext=["pdf", "png"])


wildcard_constraints:
    task="|".join(map(re.escape, TASKS)),
    model="|".join(map(re.escape, MODELS)),
    clip="|".join(map(re.escape, CLIPS)),
    gap=r"[1-9][0-9]*",
    seed=r"[0-9]+",


def all_run_dirs():
    """Every run of the grid: tasks × their gaps × models × clip arms × seeds."""
    return [
        RUN_DIR.format(task=task, gap=gap, model=model, clip=clip, seed=seed)
        for task in TASKS
        for gap in task_entry(config, task)["gaps"]
        for model in MODELS
        for clip in CLIPS
        for seed in SEEDS
    ]


def run_folders(wc):
    """`--run CLIP=FOLDER` for every clip arm of one training job."""
    return " ".join(f"--run {clip}={RUN_DIR.format(clip=clip, **wc)}" for clip in CLIPS)
