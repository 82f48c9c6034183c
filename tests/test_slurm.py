"""The SLURM profile against a real SLURM: a single-node cluster started on this machine
(workflow/profiles/slurm/local-cluster.sh), the smoke grid submitted through Snakemake's SLURM
executor with the repository's profile, and its tables equal to a local run's.

Opt-in (it needs root, Debian's slurm-wlm and munge, and takes minutes):
    python -m pytest -m slurm
"""
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, SMOKE, local_slurm
from gapbench.reports.tables import read_table

pytestmark = pytest.mark.slurm  # conftest keeps every SLURM test on one xdist worker

TIMING = {"wall_seconds", "code_version"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with local_slurm(tmp_path_factory.mktemp("slurm")) as environment:
        yield environment


def test_the_smoke_grid_on_slurm_equals_the_local_run(cluster, smoke_run, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", ROOT / "Snakefile", "--directory", workdir,
         "--workflow-profile", ROOT / "workflow" / "profiles" / "slurm", "--configfile", SMOKE,
         # this node has 2 CPUs: two training jobs per SLURM job (the profile's 8 would not fit)
         "--group-components", "train_group=2"],
        capture_output=True, text=True, env=cluster, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    log = result.stdout + result.stderr
    assert "slurm" in log.lower()  # it really went through sbatch
    # the collecting rules run beside Snakemake (localrule: no queue wait, no cluster job of their
    # own); the training and dataset jobs go to the cluster
    for rule in ("tables", "figures", "paper_tables"):
        assert f"localrule {rule}:" in log, rule
    assert "localrule train:" not in log and "localrule generate_data:" not in log
    for path in sorted((smoke_run / "results" / "tables").glob("*.*")):
        local, cluster_table = read_table(path), read_table(workdir / "results" / "tables" / path.name)
        drop = [c for c in TIMING if c in local.columns]
        pd.testing.assert_frame_equal(local.drop(columns=drop), cluster_table.drop(columns=drop),
                                      check_exact=True, obj=path.name)
