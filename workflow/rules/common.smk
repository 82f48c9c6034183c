# Config validation, the run grid and the file layout shared by every rule.
import json
import os
import re
import sys

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

sys.path.insert(0, workflow.basedir)
from gapbench.config import check_config, prepare_job_environment, run_spec, task_entry  # noqa: E402

# Jobs run `python -m gapbench` with this interpreter and import this source tree.
prepare_job_environment(workflow.basedir)

check_config(config)  # registry names, options and gaps, before any job runs

RESULTS = "results"
TASKS = [entry["name"] for entry in config["tasks"]]
MODELS = [entry["name"] for entry in config["models"]]
CLIPS = list(config["clip"]["arms"])
SEEDS = list(config["seeds"])
RUN_FILES = ["metrics.json", "history.csv", "gradient_decay.csv", "model.pt"]
DATA_DIR = f"{RESULTS}/data/{{task}}/gap{{gap}}/seed{{seed}}"
RUN_DIR = f"{RESULTS}/runs/{{task}}/gap{{gap}}/{{model}}/{{clip}}/seed{{seed}}"
ACCURACY_TABLE = f"{RESULTS}/tables/accuracy_vs_gap.csv"
DECAY_TABLE = f"{RESULTS}/tables/gradient_decay.csv"
FIGURES = expand(
    f"{RESULTS}/figures/{{name}}.{{ext}}",
    name=["accuracy_vs_gap", "gradient_decay"],
    ext=["pdf", "png"],
)


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
