"""benchmarks/gpu_slice.py, the paper slice a GPU session runs: its config is paper.yaml's cut,
and the whole script (estimate, sizing, the real workflow, the check) runs on the CPU at a tiny
size, so that on a GPU a single call only has to run it."""
import os
import re
import subprocess
import tarfile

import pytest
import yaml

from conftest import ROOT, benchmark_module
from gapbench.config import load_config, model_label


def _script():
    return benchmark_module("gpu_slice")


def test_the_slice_is_the_paper_grid_cut(tmp_path):
    """paper.yaml's adding entry at gaps 30 and 100, every paper model at the paper's H, every
    seed and clip arm (the paper's 15 runs a job), the paper's data and optimiser; steps cut,
    on the GPU captured."""
    gpu_slice = _script()
    paper = load_config(ROOT / "config" / "paper.yaml")
    path = tmp_path / "slice.yaml"
    path.write_text(yaml.safe_dump(gpu_slice.slice_config("paper", "cuda", 200, None)))
    cut = load_config(path, cuda_available=lambda: True)
    assert [(e["name"], e["gaps"], e.get("params")) for e in cut["tasks"]] == \
        [("adding", [30, 100], {"convention": "arjovsky"})]
    assert [model_label(m) for m in cut["models"]] == [model_label(m) for m in paper["models"]]
    assert len(cut["models"]) == 14 and cut["hidden_size"] == paper["hidden_size"] == 128
    assert cut["seeds"] == paper["seeds"] and cut["clip"] == paper["clip"] and cut["data"] == paper["data"]
    assert {k: v for k, v in cut["train"].items() if k not in ("steps", "eval_every", "device", "cuda_graph")} == \
        {k: v for k, v in paper["train"].items() if k not in ("steps", "eval_every", "device", "cuda_graph")}
    assert (cut["train"]["steps"], cut["train"]["eval_every"], cut["train"]["device"], cut["train"]["cuda_graph"]) == \
        (200, 100, "cuda", True)


def test_a_slice_whose_captured_step_is_in_doubt_trains_uncaptured(tmp_path):
    """--uncaptured (gpu_session.sh's answer to failing graph tests): the slice and the paper
    grid's estimate on cuda without CUDA graphs, the rest as captured."""
    gpu_slice = _script()
    configs = {}
    for captured in (True, False):
        path = tmp_path / f"slice_{captured}.yaml"
        path.write_text(yaml.safe_dump(gpu_slice.slice_config("paper", "cuda", 200, None, captured)))
        paper = load_config(gpu_slice.paper_configs("cuda", captured, tmp_path), cuda_available=lambda: True)
        configs[captured] = load_config(path, cuda_available=lambda: True), paper
        for config in configs[captured]:
            assert (config["train"]["device"], config["train"]["cuda_graph"]) == ("cuda", captured)
    for kept, dropped in zip(*configs.values()):
        assert {**kept, "train": {**kept["train"], "cuda_graph": None}} == \
            {**dropped, "train": {**dropped["train"], "cuda_graph": None}}
    assert gpu_slice.paper_configs("cpu", False, tmp_path) == [ROOT / "config" / "paper.yaml"]


@pytest.mark.pipeline
def test_the_gpu_session_runs_end_to_end_on_the_cpu(tmp_path):
    """benchmarks/gpu_session.sh, the one call a GPU session makes, at its tiny size on this CPU:
    the graph tests, the step timings, and the tiny slice calibrated, estimated, run through
    Snakemake and checked; what it leaves in $OUT is what the device call can bring back (at
    most 8 files): the report, the calibration, a figure and the slice's results."""
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "DEVICE": "cpu", "SIZE": "tiny", "SLICE": str(tmp_path / "slice")}
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_session.sh")], capture_output=True, text=True,
                            env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "batched_training.csv", "machine.txt", "slice_accuracy_vs_gap.png", "slice_report.txt", "slice_results.tgz",
        "step_costs_cpu.csv", "test_graphed.txt"]
    assert re.search(r"\d+ passed", (out / "test_graphed.txt").read_text())
    report = (out / "slice_report.txt").read_text()
    assert re.search(r"steps per run: 4 \(given\); estimated wall time \d+ s", report)
    assert re.search(r"measured wall time: data and training \d+ s \(estimate/measured [\d.]+, [+-]\d+%\)", report)
    assert re.search(r"4 jobs compared: estimated .* core-hours, measured", report)
    with tarfile.open(out / "slice_results.tgz") as archive:
        names = set(archive.getnames())
    assert {"work/results/tables/accuracy_vs_gap.csv", "work/results/paper/success_rate.tex",
            "work/results/figures/accuracy_vs_gap.png", "snakemake.log"} <= names
    assert not any("/runs/" in name or "/data/" in name or name.endswith(".parquet") for name in names)  # small files
    assert len(list((tmp_path / "slice" / "work" / "results" / "runs").glob("adding/gap*/*/*/seed*/metrics.json"))) \
        == 2 * 2 * 2 * 3  # gaps × models × seeds × arms
