"""The conda environment and the pip requirements describe the same packages."""
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
