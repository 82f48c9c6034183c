"""Shared helpers: run the real Snakemake CLI on a config, as a user would; load a benchmark
script (benchmarks/ is not a package) to test its functions."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from gapbench.config import jobs_environment
from gapbench.job import exact_float32

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "config" / "smoke.yaml"
exact_float32()  # the tests compute as a training job does (on a GPU: float32, not TF32)


def benchmark_module(name: str):
    """benchmarks/NAME.py imported as a module (its `main` not run)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snakemake(workdir: Path, *args: str, configfile: Path = SMOKE, check: bool = True,
              root: Path = ROOT, python: Path | str = sys.executable):
    """Run `python -m snakemake` on `root`'s Snakefile in `workdir` (by default this checkout, with
    this environment; a copy of the project passes its own root and the python it is installed in)."""
    command = [
        str(python), "-m", "snakemake", "--snakefile", str(Path(root) / "Snakefile"),
        "--directory", str(workdir), "--workflow-profile", "none", "--cores", "2",
        *args, "--configfile", str(configfile),  # last: --configfile takes every word after it
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=jobs_environment(python), timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@contextmanager
def local_slurm(state: Path, *options: str, tools=("slurmctld", "slurmd", "munged")):
    """A real single-node SLURM cluster in `state` (workflow/profiles/slurm/local-cluster.sh start
    STATE OPTIONS), stopped on leaving; yields the environment that reaches it. Skips the test
    where this is not root or lacks `tools`."""
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in tools):
        pytest.skip(f"needs root and {', '.join(tools)} (docs/clusters.md#slurm)")
    script = ROOT / "workflow" / "profiles" / "slurm" / "local-cluster.sh"
    try:
        started = subprocess.run(["bash", script, "start", state, *options], capture_output=True, text=True,
                                 timeout=300)
        assert started.returncode == 0, started.stderr
        yield {**jobs_environment(), "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run(["bash", script, "stop", state])  # a failed stop must not hide the test's own error


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke pipeline, run once for the whole session; returns its working directory."""
    workdir = tmp_path_factory.mktemp("smoke")
    snakemake(workdir)
    return workdir


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """Two seeds' datasets of the adding task at gap 4: a job's runs read their own seed's data
    (tests/test_batched.py, tests/test_graphed.py)."""
    from gapbench import data, tasks

    folders = []
    for seed in (0, 1):
        folder = tmp_path_factory.mktemp(f"seed{seed}")
        data.generate(tasks.build("adding", 4), seed, {"train": 32, "validation": 16, "test": 16}, folder)
        folders.append(folder)
    return folders


# Fixtures that run the real pipeline: a test using one is a pipeline test (-m "not pipeline"
# leaves it out of the unit loop), as is every SLURM test.
PIPELINE_FIXTURES = {"smoke_run", "project", "reference"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if PIPELINE_FIXTURES & fixtures or item.get_closest_marker("slurm"):  # a SLURM test runs Snakemake
            item.add_marker(pytest.mark.pipeline)
        # pytest-xdist (-n 2, --dist loadgroup: pyproject.toml) runs a group on one worker (a test
        # with several groups gets their joined name: one group a test, chosen here)
        if item.get_closest_marker("slurm"):  # one local SLURM cluster at a time: its ports, /etc/slurm
            item.add_marker(pytest.mark.xdist_group("slurm"))
        elif PIPELINE_FIXTURES & fixtures:  # the smoke run and a module's pipeline fixtures made once
            item.add_marker(pytest.mark.xdist_group("smoke" if "smoke_run" in fixtures else item.module.__name__))
