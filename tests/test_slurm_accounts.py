"""The SLURM profile on a cluster with accounts, as most are: a single-node cluster with an
accounting database (workflow/profiles/slurm/local-cluster.sh start DIR --accounting: MariaDB,
slurmdbd, account "gapbench" root's default, jobs under any other account refused by SLURM).
One training job of the smoke grid (and its dataset) is submitted through the repository's
profile with the account given, with a wrong one, and with none, and once with sacct asked for
the jobs' states.

Opt-in (it needs root, Debian's slurm-wlm, munge, slurmdbd and mariadb-server; about 3 minutes):
    python -m pytest -m slurm
"""
import subprocess
import sys

import pytest

from conftest import ROOT, SMOKE, local_slurm

pytestmark = pytest.mark.slurm  # conftest keeps every SLURM test on one xdist worker

DEFAULT = "gapbench"  # the account local-cluster.sh --accounting makes, root's default
OTHER = "root"  # SLURM's own account, also root's, but not its default
JOB = "results/runs/copy/gap2/vanilla/job.json"  # one training job and the dataset it reads


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tools = ("slurmctld", "slurmd", "munged", "slurmdbd", "sacctmgr", "sacct", "mariadbd", "mariadb",
             "mariadb-install-db")
    with local_slurm(tmp_path_factory.mktemp("slurm"), "--accounting", tools=tools) as environment:
        yield environment


def _submit(cluster, workdir, *resources, options=()):
    """The smoke grid's JOB through the SLURM profile, with `resources` as --default-resources
    (the profile's own when none) and further command-line `options`; returns the snakemake process."""
    workdir.mkdir()
    chosen = ["--default-resources", *resources, "mem_mb=3000", "runtime=60"] if resources else []
    return subprocess.run(
        [sys.executable, "-m", "snakemake", JOB, "--snakefile", ROOT / "Snakefile", "--directory", workdir,
         "--workflow-profile", ROOT / "workflow" / "profiles" / "slurm", "--configfile", SMOKE,
         "--group-components", "train_group=2", *options, *chosen],
        capture_output=True, text=True, env=cluster, timeout=900)


def _jobs(cluster) -> list[tuple[str, str]]:
    """(account, state) of every SLURM job so far, from the accounting database (sacct)."""
    listed = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", "2000-01-01", "-o", "Account,State"],
                            capture_output=True, text=True, env=cluster, check=True)
    return [tuple(line.split("|")) for line in listed.stdout.splitlines()]


def test_jobs_run_under_the_account_given(cluster, tmp_path):
    before = len(_jobs(cluster))
    result = _submit(cluster, tmp_path / "work", f"slurm_account={OTHER}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (tmp_path / "work" / JOB).exists()
    assert _jobs(cluster)[before:] == [(OTHER, "COMPLETED")] * 2  # the dataset's job, the training job's


def test_an_account_not_yours_stops_the_workflow_before_any_job_is_submitted(cluster, tmp_path):
    before = len(_jobs(cluster))
    result = _submit(cluster, tmp_path / "work", "slurm_account=nosuch")
    assert result.returncode != 0
    assert "The given account nosuch appears to be invalid" in result.stdout + result.stderr
    listed = (result.stdout + result.stderr).split("Available accounts:", 1)[1].split("\n")[1]  # yours
    assert set(listed.split(", ")) == {DEFAULT, OTHER}
    assert len(_jobs(cluster)) == before


def test_without_an_account_jobs_run_under_your_default_one(cluster, tmp_path):
    before = len(_jobs(cluster))
    result = _submit(cluster, tmp_path / "work")  # the profile's resources: no slurm_account
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # the pinned plugin's guess from sacct fails (docs/clusters.md#slurm): it submits without -A
    assert "Unable to guess SLURM account. Trying to proceed without." in result.stdout + result.stderr
    assert _jobs(cluster)[before:] == [(DEFAULT, "COMPLETED")] * 2


def test_where_sacct_works_it_can_report_job_states(cluster, tmp_path):
    """The profile asks squeue for job states (it works without accounting); where sacct works,
    docs/clusters.md says the profile's line can go: then the executor asks sacct, and jobs finish."""
    before = len(_jobs(cluster))
    result = _submit(cluster, tmp_path / "work", options=["--slurm-status-command", "sacct", "--verbose"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Status query timing (cycle): command=sacct" in result.stdout + result.stderr
    assert _jobs(cluster)[before:] == [(DEFAULT, "COMPLETED")] * 2
