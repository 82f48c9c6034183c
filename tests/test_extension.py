"""The extension path, proven as a user takes it: one new file in models/, one config line,
the pipeline on one task of the smoke grid, and the new model's runs, probe tables and figure lines appear."""
import subprocess
import sys
import sysconfig
import textwrap

import pandas as pd
import pytest
import yaml

from conftest import ROOT, SMOKE
from gapbench.probes import TABLES as PROBE_TABLES

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
    """A copy of this checkout, installed into its own environment that reuses this one's packages."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for name in files:
        if (ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes((ROOT / name).read_bytes())
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


def test_a_new_model_file_and_one_config_line_run_through_the_pipeline(project, tmp_path):
    root, python = project
    (root / "models" / "mgu.py").write_text(MINIMAL_GATED_UNIT)  # step 1: one file in models/
    config = yaml.safe_load(SMOKE.read_text())
    config["models"].append({"name": "mgu"})  # step 2: one config line
    # one task and one shipped model beside the new one: the path is the same for every task
    config["tasks"] = [{"name": "adding", "gaps": [4]}]
    config["models"] = [{"name": "vanilla"}, {"name": "mgu"}]
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [python, "-m", "snakemake", "--snakefile", root / "Snakefile", "--directory", tmp_path / "work",
         "--workflow-profile", "none", "--cores", "2", "--configfile", configfile],
        capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    tables = tmp_path / "work" / "results" / "tables"
    accuracy = pd.read_csv(tables / "accuracy_vs_gap.csv")
    runs = accuracy[accuracy.model == "mgu"]
    expected = sum(len(t["gaps"]) for t in config["tasks"]) * len(config["clip"]["arms"]) * len(config["seeds"])
    assert len(runs) == expected and runs.test_loss.notna().all()
    for name in PROBE_TABLES:
        table = pd.read_csv(tables / f"{name}.csv")
        assert (table.model == "mgu").any(), name
    decay = pd.read_csv(tables / "gradient_decay.csv")
    assert decay[decay.model == "mgu"].log10_grad_norm.notna().all()
    summary = pd.read_csv(tables / "propagation_summary.csv")
    mgu = summary[summary.model == "mgu"]
    assert mgu.spectral_radius.isna().all()  # no W_h: written as missing, not faked
    assert mgu.decay_rate.notna().all() and mgu.lyapunov_max.notna().all()
    # the figures give the new model a shade of its family's hue (gated: shared with lstm and gru)
    shades = subprocess.run(
        [python, "-c", "from gapbench.reports.figures import FAMILY_COLOURS, model_colours; from matplotlib.colors import "
                       "to_rgb, rgb_to_hsv; c = model_colours(['mgu', 'lstm', 'gru', 'vanilla']); "
                       "hue = rgb_to_hsv(to_rgb(FAMILY_COLOURS['gated']))[0]; "
                       "print(*(f'{m}={abs(rgb_to_hsv(c[m])[0] - hue) < 1e-6}' for m in sorted(c)), len(set(c.values())))"],
        capture_output=True, text=True, env=env, check=True).stdout.split()
    # mgu, lstm and gru: shades (same hue) of the gated family's colour, vanilla not; four distinct colours
    assert shades == ["gru=True", "lstm=True", "mgu=True", "vanilla=False", "4"]
    assert (tmp_path / "work" / "results" / "figures" / "accuracy_vs_gap.png").stat().st_size > 10_000
