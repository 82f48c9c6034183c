"""The extension path, proven as a user takes it in a copy of the project: one new file in models/,
one config line, the pipeline on one task of the smoke grid, and the new model's runs, probe tables
and figure lines appear; then the inner loop: edited code reruns exactly the jobs it determines, a
model added to the finished grid schedules only its jobs, and a broken task file stops Snakemake
before any job, naming the file."""
import json
import re
import subprocess
import sys
import sysconfig
import textwrap

import pandas as pd
import pytest
import yaml

from conftest import ROOT, SMOKE, snakemake
from gapbench.probes import TABLES as PROBE_TABLES
from gapbench.reports.tables import read_table

# A real model, not a stub: the minimal gated unit (Zhou et al. 2016), one forget gate.
MINIMAL_GATED_UNIT = textwrap.dedent('''
    """Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016): one gate that forgets and writes.

        f_t = σ(W_f x_t + U_f h_{t-1} + b_f)
        h̃_t = tanh(W_h x_t + U_h (f_t ⊙ h_{t-1}) + b_h)
        h_t = (1 − f_t) ⊙ h_{t-1} + f_t ⊙ h̃_t
    """
    import torch
    from torch import nn

    from gapbench.models import RecurrentModel, register


    @register("mgu")
    class MinimalGatedUnit(RecurrentModel):
        family = "gated"

        def __init__(self, input_size, hidden_size, **kwargs):
            super().__init__(input_size, hidden_size, **kwargs)
            self.gate = nn.Linear(input_size + hidden_size, hidden_size)
            self.candidate_x = nn.Linear(input_size, hidden_size)
            self.candidate_h = nn.Linear(hidden_size, hidden_size, bias=False)

        def step(self, state, x_t):
            forget = torch.sigmoid(self.gate(torch.cat([x_t, state], -1)))
            candidate = torch.tanh(self.candidate_x(x_t) + self.candidate_h(forget * state))
            return (1 - forget) * state + forget * candidate
''')


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of this checkout, committed into a git repository of its own, installed into its own
    environment that reuses this one's packages."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes((ROOT / name).read_bytes())
    for command in (["init", "-q"], ["add", "-A"], ["-c", "user.name=test", "-c", "user.email=test@localhost",
                                                    "commit", "-qm", "the checkout"]):
        subprocess.run(["git", *command], cwd=root, check=True, capture_output=True)
    venv = root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # this environment's packages (torch, snakemake, ...) without its editable gapbench
    (root / site / "_base_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-e", str(root)], check=True, capture_output=True)
    return root, python


@pytest.fixture(scope="module")
def finished(project, tmp_path_factory):
    """The extension path taken once in the project copy: step 1, one file in models/; step 2, one
    config line; then the pipeline on one task of the smoke grid with one shipped model beside the
    new one (the path is the same for every task). Returns (root, python, workdir, configfile, config)."""
    root, python = project
    (root / "models" / "mgu.py").write_text(MINIMAL_GATED_UNIT)
    config = yaml.safe_load(SMOKE.read_text())
    config["tasks"] = [{"name": "adding", "gaps": [4]}]
    config["models"] = [{"name": "vanilla"}, {"name": "mgu"}]
    folder = tmp_path_factory.mktemp("finished")
    configfile = folder / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    snakemake(folder / "work", configfile=configfile, root=root, python=python)
    return root, python, folder / "work", configfile, config


def test_a_new_model_file_and_one_config_line_run_through_the_pipeline(finished):
    root, python, work, configfile, config = finished
    env = {"PATH": f"{python.parent}:/usr/bin:/bin"}
    tables = work / "results" / "tables"
    accuracy = pd.read_csv(tables / "accuracy_vs_gap.csv")
    runs = accuracy[accuracy.model == "mgu"]
    expected = sum(len(t["gaps"]) for t in config["tasks"]) * len(config["clip"]["arms"]) * len(config["seeds"])
    assert len(runs) == expected and runs.test_loss.notna().all()
    for name in PROBE_TABLES:
        table = read_table(tables / f"{name}.parquet")
        assert (table.model == "mgu").any(), name
    decay = read_table(tables / "gradient_decay.parquet")
    assert decay[decay.model == "mgu"].log10_grad_norm.notna().all()
    summary = pd.read_csv(tables / "propagation_summary.csv")
    mgu = summary[summary.model == "mgu"]
    assert mgu.spectral_radius.isna().all()  # no W_h: written as missing, not faked
    assert mgu.decay_log10_per_step.notna().all() and mgu.lyapunov_max.notna().all()
    # the run records that its model file is in no commit (git describe --dirty alone would not),
    # and the digest of the code that made it: the one its run-cache key and its rerun use
    run = work / "results" / "runs" / "adding" / "gap4" / "mgu" / "none" / "seed0"
    recorded = json.loads((run / "metrics.json").read_text())["provenance"]
    assert recorded["code_version"].endswith("-untracked"), recorded
    digest = subprocess.run([python, "-c", "from gapbench.provenance import train_code_digest; "
                             "print(train_code_digest('adding', 'mgu'))"], capture_output=True, text=True, env=env,
                            check=True, cwd=root).stdout.strip()
    assert recorded["train_code_digest"] == digest
    # the figures give the new model a shade of its family's hue (gated: shared with lstm and gru)
    shades = subprocess.run(
        [python, "-c", "from gapbench.reports.figures import FAMILY_COLOURS, model_colours; from matplotlib.colors import "
                       "to_rgb, rgb_to_hsv; c = model_colours(['mgu', 'lstm', 'gru', 'vanilla']); "
                       "hue = rgb_to_hsv(to_rgb(FAMILY_COLOURS['gated']))[0]; "
                       "print(*(f'{m}={abs(rgb_to_hsv(c[m])[0] - hue) < 1e-6}' for m in sorted(c)), len(set(c.values())))"],
        capture_output=True, text=True, env=env, check=True).stdout.split()
    # mgu, lstm and gru: shades (same hue) of the gated family's colour, vanilla not; four distinct colours
    assert shades == ["gru=True", "lstm=True", "mgu=True", "vanilla=False", "4"]
    assert (work / "results" / "figures" / "accuracy_vs_gap.png").stat().st_size > 10_000


def scheduled(output: str) -> dict:
    """The jobs a dry run lists: {(rule, wildcards): reason}, wildcards as Snakemake prints them."""
    jobs = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if head:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            reason = re.search(r"^\s+reason: (.*)$", block, re.M)
            jobs[head.group(1), wildcards.group(1) if wildcards else ""] = reason.group(1) if reason else ""
    return jobs


def reports(work) -> set:
    """The jobs redrawn after any run: the tables, a figures job per page drawn, the paper tables."""
    pages = {("figures", f"page={path.stem}") for path in (work / "results" / "figures").glob("*.png")}
    return {("tables", ""), ("paper_tables", ""), ("all", "")} | pages


def test_edited_code_reruns_exactly_the_jobs_it_determines(finished):
    """A job's code is part of its identity (its `code` params): edit a model and only its training
    jobs rerun; edit a task and only its datasets and training jobs; edit a task the config does
    not use and nothing does. Every edit is undone afterwards: the digest, not the mtime, decides."""
    root, python, work, configfile, config = finished

    def dry_run_after(edited: str) -> dict:
        path = root / edited
        original = path.read_bytes()
        try:
            path.write_bytes(original + b"\n# an edit that changes no number, still a new version of the code\n")
            return scheduled(snakemake(work, "-n", configfile=configfile, root=root, python=python).stdout)
        finally:
            path.write_bytes(original)

    params_changed = "Params have changed since last execution"
    jobs = dry_run_after("models/mgu.py")
    assert set(jobs) == {("train", "task=adding, gap=4, model=mgu")} | reports(work), jobs
    assert params_changed in jobs["train", "task=adding, gap=4, model=mgu"]

    train = {("train", f"task=adding, gap=4, model={model}") for model in ("vanilla", "mgu")}
    jobs = dry_run_after("gapbench/optim.py")  # training code: every training job, no dataset
    assert set(jobs) == train | reports(work), jobs
    assert all(params_changed in jobs[job] for job in train)

    jobs = dry_run_after("tasks/adding.py")  # its datasets, and so (their input) its training jobs
    data = {("generate_data", f"task=adding, gap=4, seed={seed}") for seed in config["seeds"]}
    assert set(jobs) == data | train | reports(work), jobs
    assert all(params_changed in jobs[job] for job in data)

    assert dry_run_after("tasks/latch.py") == {}  # latch is not in this config
    assert "Nothing to be done" in snakemake(work, "-n", configfile=configfile, root=root, python=python).stdout


BROKEN_FIGURE = textwrap.dedent('''


    @figure("broken")
    def broken(read, gaps=None, layout=None):
        raise RuntimeError("a figure of the user's that fails")
''')


def test_a_figure_that_fails_costs_no_other_figure(finished):
    """Each page is a job of its own: a figure added to a finished grid that fails leaves every
    page drawn before it as it was (one figures job would have lost them all: Snakemake deletes
    a failed job's outputs), names its error in its own log, and is the only job to run."""
    root, python, work, configfile, config = finished
    figures = work / "results" / "figures"
    before = {path.name: path.read_bytes() for path in figures.iterdir()}
    module = root / "gapbench" / "reports" / "figures.py"
    original = module.read_bytes()
    try:
        module.write_bytes(original + BROKEN_FIGURE.encode())
        planned = scheduled(snakemake(work, "-n", configfile=configfile, root=root, python=python).stdout)
        assert set(planned) == {("figures", "page=broken"), ("all", "")}, planned
        result = snakemake(work, "--keep-going", configfile=configfile, root=root, python=python, check=False)
    finally:
        module.write_bytes(original)
    assert result.returncode != 0
    assert {path.name: path.read_bytes() for path in figures.iterdir()} == before
    log = (work / "results" / "logs" / "figures" / "broken.log").read_text()
    assert "RuntimeError: a figure of the user's that fails" in log
    assert "Nothing to be done" in snakemake(work, "-n", configfile=configfile, root=root, python=python).stdout


def test_a_model_added_to_a_finished_grid_schedules_only_its_jobs(finished, tmp_path):
    """README's "Benchmark your model": one more model in the config of a finished grid trains
    that model's jobs only (one per (task, gap)); datasets and the other runs are reused."""
    root, python, work, configfile, config = finished
    config = {**config, "models": [*config["models"], {"name": "gru"}]}
    grown = tmp_path / "grown.yaml"
    grown.write_text(yaml.safe_dump(config))
    jobs = scheduled(snakemake(work, "-n", configfile=grown, root=root, python=python).stdout)
    assert set(jobs) == {("train", "task=adding, gap=4, model=gru")} | reports(work), jobs
    assert jobs["train", "task=adding, gap=4, model=gru"].startswith("Missing output files")

# A task file whose sample breaks its declared input size: without the pre-flight check, the
# dataset is written and training fails inside torch ("mat1 and mat2 shapes cannot be multiplied").
BAD_TASK = textwrap.dedent('''
    import numpy as np

    from gapbench.tasks import register
    from gapbench.tasks._base import LastStepClassification


    @register("badshape")
    class BadShape(LastStepClassification):
        input_size = 5

        def __init__(self, gap):
            super().__init__(gap)
            self.output_size = 2

        @property
        def seq_len(self):
            return self.gap + 1

        def sample(self, n, rng):
            return {"x": np.zeros((n, self.seq_len, 4), np.float32), "y": np.zeros(n, np.int64)}
''')


def refused_with(project, tmp_path, file: str, text: str, configfile) -> str:
    """Snakemake's stderr in the project copy with `file` holding `text` for the run (removed
    after it): the run failed and wrote nothing."""
    root, python = project
    (root / file).write_text(text)
    try:
        result = snakemake(tmp_path / "work", configfile=configfile, root=root, python=python, check=False)
    finally:
        (root / file).unlink()
    assert result.returncode != 0
    assert not (tmp_path / "work" / "results").exists()  # nothing written
    return result.stderr


def test_a_task_file_in_no_commit_marks_the_code_version_untracked(project, tmp_path):
    """As a new model file does (above): git's --dirty sees only tracked files. The source files
    the module's other tests left uncommitted in the project (mgu.py) are set aside meanwhile."""
    import shutil

    root, python = project
    version = [python, "-c", "from gapbench.provenance import code_version; print(code_version())"]
    left = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "--", "gapbench", "models", "tasks"],
                          cwd=root, capture_output=True, text=True, check=True).stdout.split()
    aside = {name: tmp_path / name.replace("/", "_") for name in left}
    added = root / "tasks" / "just_added.py"
    try:
        for name, kept in aside.items():
            shutil.move(root / name, kept)
        assert not subprocess.run(version, cwd=root, capture_output=True, text=True,
                                  check=True).stdout.strip().endswith("-untracked")
        added.write_text("# a task file not committed yet\n")
        assert subprocess.run(version, cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip().endswith("-untracked")
    finally:
        added.unlink(missing_ok=True)
        for name, kept in aside.items():
            shutil.move(kept, root / name)


def test_a_broken_task_file_stops_snakemake_before_any_job_naming_the_file(project, tmp_path):
    config = yaml.safe_load(SMOKE.read_text())
    config["tasks"] = [{"name": "badshape", "gaps": [3]}]
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    stderr = refused_with(project, tmp_path, "tasks/badshape.py", BAD_TASK, configfile)
    assert ("config key tasks[badshape] (gap 3): task 'badshape' (tasks/badshape.py): sample x must be float32 of "
            "shape (n, seq_len, input_size) = (32, 4, 5), got float32 of shape (32, 4, 4)") in stderr, stderr
    assert "common.smk" not in stderr  # the message blames the task file, not the workflow


def test_a_model_file_that_cannot_be_imported_stops_snakemake_naming_it(project, tmp_path):
    """Every file of models/ is imported when a config is read (the registry finds its models so),
    so one that fails to import stops any run, before any job, with its file, error and line, not a
    traceback through the workflow's files."""
    stderr = refused_with(project, tmp_path, "models/broken.py", "import torch\nimport a_module_nobody_installed\n",
                          SMOKE)
    assert ("gapbench: model file models/broken.py (line 2) cannot be imported: ModuleNotFoundError: No module "
            "named 'a_module_nobody_installed'") in stderr, stderr
    assert "common.smk" not in stderr and "Traceback" not in stderr, stderr
