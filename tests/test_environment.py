"""The environment: conda and pip describe the same packages; what the install puts where."""
import importlib.metadata
from pathlib import Path

import yaml

from conftest import ROOT


def _pins(lines):
    return sorted(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def test_environment_yml_pins_exactly_requirements_txt():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    assert _pins(pip_section) == _pins(requirements)
    assert "python=3.11" in environment["dependencies"]
    assert any(line.startswith("torch==2.13.0") for line in requirements)


def test_the_package_installs_no_generic_top_level_names():
    """tasks/ and models/ install as gapbench.tasks and gapbench.models, never as top-level
    `tasks` and `models` that would collide with a user's own modules."""
    distribution = importlib.metadata.distribution("gapbench")
    assert distribution.read_text("top_level.txt").split() == ["gapbench"]
    from gapbench import models, tasks

    assert models.__name__ == "gapbench.models" and tasks.__name__ == "gapbench.tasks"
    assert (ROOT / "models") == Path(models.__file__).parent  # the user's folder
