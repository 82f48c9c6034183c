"""Bad configs stop before any job runs, with a message naming the key and allowed values."""
import pytest
import yaml

from conftest import SMOKE, snakemake

BASE = yaml.safe_load(SMOKE.read_text())


def _with(**changes):
    config = yaml.safe_load(SMOKE.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[leaf]
        else:
            node[leaf] = value
    return config


CASES = [
    ("unknown task", _with(tasks=[{"name": "kopy", "gaps": [3]}]), ["kopy", "allowed", "'adding'", "'copy'"]),
    ("unknown model", _with(models=[{"name": "transformer"}]), ["transformer", "allowed", "'lstm'", "'vanilla'"]),
    ("unknown clip arm", _with(**{"clip.arms": ["none", "adaptive"]}), ["adaptive", "'none'", "'norm'", "'value'"]),
    ("non-positive gap", _with(tasks=[{"name": "copy", "gaps": [0, 4]}]), ["gaps", "0", "minimum"]),
    ("gap too small for the task", _with(tasks=[{"name": "adding", "gaps": [1]}]), ["tasks[adding]", "gap must be an integer >= 2"]),
    ("missing key", _with(tasks=[{"name": "copy"}]), ["'gaps' is a required property"]),
    ("wrong type", _with(hidden_size="big"), ["hidden_size", "big", "integer"]),
    ("unknown key", _with(hiden_size=8), ["hiden_size"]),
    ("unknown model option", _with(models=[{"name": "vanilla", "options": {"nonlinearity": "relu"}}]),
     ["models[vanilla]", "nonlinearity", "allowed", "init_gain"]),
    ("repeated seed", _with(seeds=[0, 0]), ["seeds", "non-unique"]),
    ("batch_first option", _with(models=[{"name": "vanilla", "options": {"batch_first": False}}]),
     ["models[vanilla].options.batch_first"]),
    ("unknown optimiser", _with(**{"train.optimizer": "lbfgs"}), ["optimizer", "lbfgs", "adam"]),
    ("task listed twice without labels",
     _with(tasks=[{"name": "copy", "gaps": [2]}, {"name": "copy", "gaps": [4], "params": {"convention": "selective"}}]),
     ["['copy'] listed more than once", "distinct `label`s"]),
    ("unknown task option value", _with(tasks=[{"name": "adding", "gaps": [4], "params": {"sampling": "uniform"}}]),
     ["tasks[adding]", "sampling", "uniform", "poisson", "thinned"]),
    ("sampling probability out of range",
     _with(tasks=[{"name": "adding", "label": "adding_thinned", "gaps": [4], "params": {"sampling": "thinned", "keep": 1.5}}]),
     ["tasks[adding_thinned]", "keep", "1.5"]),
]


@pytest.mark.parametrize("label, config, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_config_stops_before_any_job(tmp_path, label, config, expected):
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, configfile=configfile, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in expected:
        assert fragment in output, f"{label}: {fragment!r} not in\n{output}"
    assert not (workdir / "results").exists()
