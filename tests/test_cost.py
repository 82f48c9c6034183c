"""`gapbench cost`: the grid's jobs, the estimate's formula, its check against recorded job times.

How close the estimate comes on a real machine depends on how busy that machine is, so it is
measured (`python -m gapbench cost CONFIG --check results/benchmarks/train`, reported in
docs/performance.md), never asserted here."""
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import SMOKE, benchmark_module
from gapbench import tasks
from gapbench.config import jobs_environment, load_config, model_label, task_models
from gapbench.reports import cost
from gapbench.results import TRAIN_BENCHMARK
from gapbench.train import EVAL_BATCH, evaluation_batch  # EVAL_BATCH: a GPU's evaluation batch at any T


def test_jobs_are_the_grid_of_the_config():
    config = load_config(SMOKE)
    grid = cost.jobs(config)
    # a job trains every seed of a (task, gap, model); an entry's `models` narrows its models
    assert len(grid) == sum(len(entry["gaps"]) * len(task_models(config, entry)) for entry in config["tasks"]) == 28
    assert (grid.seeds == len(config["seeds"])).all()
    assert (grid.seq_len > 0).all() and set(grid.model) == {model_label(m) for m in config["models"]}
    assert set(grid.model_name) == {m["name"] for m in config["models"]}
    paper = cost.jobs(load_config(SMOKE.parent / "paper.yaml"))
    assert len(paper) == 1442 and paper.seeds.sum() == 7210  # the numbers docs/clusters.md states


def _calibration(models, hidden_sizes, forward_batch: bool = False) -> pd.DataFrame:
    """A made-up calibration: every cost linear in T with known coefficients, a forward pass
    3e-4 · T s per 64 sequences. Without forward_batch, as calibrations before it was recorded
    (the pass timed at 64 sequences); with it, timed at the evaluation batch."""
    rows = []
    for model, hidden in zip(models, hidden_sizes):
        for seq_len in cost.LENGTHS:
            batch = evaluation_batch(seq_len, "cpu") if forward_batch else 64
            rows.append({"model": model, "hidden_size": hidden, "seq_len": seq_len,
                         "step_seconds": 1e-3 + 2e-5 * seq_len, "forward_seconds": 3e-4 * seq_len * batch / 64,
                         "probe_seconds": 0.5 + 1e-2 * seq_len, "startup_seconds": 2.0, "contention": 1.25,
                         "machine": "test", **({"forward_batch": batch} if forward_batch else {})})
    return pd.DataFrame(rows)


def _smoke_pairs(config) -> list[tuple[str, int]]:
    return sorted({(m["name"], m.get("hidden_size", config["hidden_size"])) for m in config["models"]})


def _cuda_calibration(pairs, runs: int, graph: bool = False) -> pd.DataFrame:
    """A made-up GPU calibration: rows at `runs` runs per job and cuda_graph `graph`, with known
    coefficients, beside decoys at other runs and the other cuda_graph whose costs are 10x (no
    contention column: a GPU has none to measure)."""
    rows = []
    for at_runs, cuda_graph, scale in ((runs, graph, 1.0), (runs + 1, graph, 10.0), (runs, not graph, 10.0)):
        for model, hidden in pairs:
            for seq_len in cost.LENGTHS:
                rows.append({"model": model, "hidden_size": hidden, "seq_len": seq_len, "runs": at_runs,
                             "device": "cuda", "cuda_graph": cuda_graph,
                             "step_seconds": scale * (2e-4 + 1e-6 * seq_len),
                             "forward_seconds": scale * 5e-5 * seq_len, "probe_seconds": 0.5 + 1e-2 * seq_len,
                             "startup_seconds": scale * 400.0, "machine": "test GPU"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("forward_batch", [False, True], ids=["forward at 64", "forward at the evaluation batch"])
def test_the_estimate_is_the_documented_formula(forward_batch):
    """seconds = c · [startup + N · ((1 + A) · probes(T) + A · S · step(T) + A · (S/E + 1) · ⌈V/B⌉ · forward(T)
    + A · ⌈V_test/B⌉ · forward(T))], forward(T) a pass over the evaluation batch B (512 sequences, on
    the CPU ⌊512 · 256 / T⌋ where T > 256: here the adding task at gap 1000 and 3000), from the
    calibration's pass per sequence: timed at its forward_batch, or at 64 where it has none."""
    config = load_config(SMOKE)
    config["tasks"] = config["tasks"] + [{"name": "adding", "gaps": [1000, 3000], "params": {}}]
    pairs = sorted({(m["name"], m.get("hidden_size", config["hidden_size"])) for m in config["models"]})
    estimated = cost.estimate(config, _calibration(*zip(*pairs), forward_batch=forward_batch))
    train, sizes = config["train"], config["data"]["sizes"]
    arms, seeds = len(config["clip"]["arms"]), len(config["seeds"])
    assert estimated.seq_len.max() > 256 >= estimated.seq_len.min()
    for row in estimated.itertuples():
        T = row.seq_len
        B = 512 if T <= 256 else 512 * 256 // T
        evaluations = (train["steps"] // train["eval_every"] + 1) * math.ceil(sizes["validation"] / B) + \
            math.ceil(sizes["test"] / B)
        step, forward, probes = 1e-3 + 2e-5 * T, 3e-4 * T * B / 64, 0.5 + 1e-2 * T
        fitting = train["steps"] * step + evaluations * forward
        assert row.seconds == pytest.approx(1.25 * (2.0 + seeds * ((1 + arms) * probes + arms * fitting)), rel=1e-12)


def test_the_machine_wide_terms_are_the_medians_over_the_calibration():
    """c and startup, recorded with every row, are read as their medians: a calibration's odd
    reading (a busy moment) moves neither."""
    config = load_config(SMOKE)
    calibration = _calibration(*zip(*_smoke_pairs(config)))
    odd = [1.0 if index % 3 == 2 else 0.0 for index in range(len(calibration))]  # a third of the rows, high
    assert sum(odd) and sum(odd) < len(odd) / 2
    varied = calibration.assign(contention=calibration.contention + 3 * pd.Series(odd),
                                startup_seconds=calibration.startup_seconds + 7 * pd.Series(odd))
    pd.testing.assert_frame_equal(cost.estimate(config, varied), cost.estimate(config, calibration))


def test_a_model_fitted_by_guessing_is_estimated_at_one_search_a_seed():
    """random_guess: K validation passes (and its test pass) a seed, not A · S steps; one search
    serves a seed's A clip arms (gapbench.train.train_runs), so more arms add only their probes."""
    config = load_config(SMOKE)
    config["tasks"] = [{"name": "adding", "gaps": [100, 1000], "params": {}}]
    config["models"] = [{"name": "random_guess", "options": {"guesses": 7}}]
    # as measure_model records it: no gradient step to time
    calibration = _calibration(["random_guess"], [config["hidden_size"]], forward_batch=True).assign(
        step_seconds=math.nan)
    seeds, sizes, train = len(config["seeds"]), config["data"]["sizes"], config["train"]
    validations = train["steps"] // train["eval_every"] + 1
    by_arms = {}
    for arms in (["none"], ["none", "norm", "value"]):
        config["clip"]["arms"] = arms
        by_arms[len(arms)] = cost.estimate(config, calibration)
    for one, three in zip(by_arms[1].itertuples(), by_arms[3].itertuples()):
        T = one.seq_len
        B = 512 if T <= 256 else 512 * 256 // T
        passes = validations * math.ceil(sizes["validation"] / B) + math.ceil(sizes["test"] / B)
        search = 7 * passes / validations * 3e-4 * T * B / 64
        probes = 0.5 + 1e-2 * T
        assert one.seconds == pytest.approx(1.25 * (2.0 + seeds * (2 * probes + search)), rel=1e-12)
        assert three.seconds == pytest.approx(1.25 * (2.0 + seeds * (4 * probes + search)), rel=1e-12)
        assert three.device_seconds == one.device_seconds == pytest.approx(1.25 * seeds * search, rel=1e-12)


def test_the_gpu_estimate_is_the_documented_formula():
    """On cuda: c = 1 (jobs one after another on one GPU), the rows at the job's R = N · A runs
    and the config's cuda_graph only, forward(T) timed at the evaluation batch itself (not
    scaled); the GPU's part (training, evaluation) apart from the CPU's (start-up, probes), and the
    wall time of jobs one after another or sharing the GPU (`gpu_wall_hours`)."""
    config = load_config(SMOKE)
    train, sizes = config["train"], config["data"]["sizes"]
    arms, seeds = len(config["clip"]["arms"]), len(config["seeds"])
    assert cost.calibration_setting(config, "cuda") == (seeds * arms, False)
    estimated = cost.estimate(config, _cuda_calibration(_smoke_pairs(config), runs=seeds * arms), device="cuda")
    evaluations = (train["steps"] // train["eval_every"] + 1) * math.ceil(sizes["validation"] / EVAL_BATCH) + \
        math.ceil(sizes["test"] / EVAL_BATCH)
    for row in estimated.itertuples():
        T = row.seq_len
        step, forward, probes = 2e-4 + 1e-6 * T, 5e-5 * T, 0.5 + 1e-2 * T
        fitting = train["steps"] * step + evaluations * forward
        assert row.seconds == pytest.approx(400.0 + seeds * ((1 + arms) * probes + arms * fitting), rel=1e-12)
        assert row.device_seconds == pytest.approx(seeds * arms * fitting, rel=1e-12)  # the GPU's part
    gpu, cpu = estimated.device_seconds.sum(), estimated.seconds.sum() - estimated.device_seconds.sum()
    assert cost.gpu_wall_hours(estimated, 1, 16) == pytest.approx((gpu + cpu) / 3600)  # one after another
    assert cost.gpu_wall_hours(estimated, 8, 16) == pytest.approx(max(gpu, cpu / 8) / 3600)
    assert cost.gpu_wall_hours(estimated, 8, 2) == pytest.approx(max(gpu, cpu / 2) / 3600)  # cores bound it
    summary = cost.summary(estimated, config, "cuda")
    assert f"the GPU trains and evaluates for {gpu / 3600:,.1f} h" in summary
    assert f"one job after another (snakemake --cores N --resources gpu=1): {(gpu + cpu) / 3600:,.1f} h" in summary


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_check_compares_the_estimate_with_recorded_job_times(tmp_path, device):
    """Each job's Snakemake benchmark record is found by the contract's path template and
    compared: here every job measured at exactly twice its estimate, so the error is −50%."""
    config = load_config(SMOKE)
    pairs = _smoke_pairs(config)
    calibration = _calibration(*zip(*pairs)) if device == "cpu" else _cuda_calibration(
        pairs, cost.calibration_setting(config, "cuda")[0])
    estimated = cost.estimate(config, calibration, device)
    for row in estimated.itertuples():
        path = tmp_path / TRAIN_BENCHMARK.format(task=row.task, gap=row.gap, model=row.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"s\tmax_rss\n{2 * row.seconds}\t{100 + row.gap}\n")
    report = cost.check(estimated, tmp_path / "results" / "benchmarks" / "train", device)
    assert report.startswith(f"{len(estimated)} jobs compared: estimated {estimated.seconds.sum() / 3600:.3g} "
                             f"{cost.UNITS[device]}")
    assert "(-50% in total)" in report and "median |error| 50%" in report
    assert f"largest {100 + estimated.gap.max()} MB" in report


def test_a_grid_is_calibrated_up_to_its_longest_sequences():
    """T = 50 and 200 for every grid; a grid with longer sequences also at 1000 (5000, ...) below
    its longest and at its longest, per (model, hidden size); what is measured already is not
    measured again, and the longest counts as measured where a longer length is."""
    default, paper = load_config(SMOKE.parent / "default.yaml"), load_config(SMOKE.parent / "paper.yaml")
    empty = pd.DataFrame(columns=["model", "hidden_size", "seq_len"])
    assert set(cost.missing_lengths(default, empty, "cpu").values()) == {cost.LENGTHS}  # its longest T is 91
    needed = cost.missing_lengths(paper, empty, "cpu")
    assert len(needed) == 14 and set(needed.values()) == {(50, 200, 1000, 2295)}
    assert cost.calibration_lengths(430) == (50, 200, 430) and cost.calibration_lengths(200) == (50, 200)
    assert cost.calibration_lengths(12000) == (50, 200, 1000, 5000, 12000)
    pairs = list(needed)
    short = _calibration(*zip(*pairs))
    assert cost.missing_lengths(paper, short, "cpu") == {pair: (1000, 2295) for pair in pairs}
    assert cost.missing_lengths(paper, short, "cpu", extrapolate=True) == {}
    assert cost.missing_lengths(paper, short[short.seq_len == 50], "cpu", extrapolate=True) == {
        pair: (200,) for pair in pairs}
    longer = pd.concat([short, short.assign(seq_len=1000), short.assign(seq_len=3000)])
    assert cost.missing_lengths(paper, longer, "cpu") == {}  # 3000 measured: 2295 is within it
    assert cost.missing_lengths(paper, longer[longer.model != "gru"], "cpu") == {("gru", 128): (50, 200, 1000, 2295)}


def test_a_longest_length_among_the_long_lengths_is_calibrated_once():
    assert cost.calibration_lengths(1000) == (50, 200, 1000)
    assert cost.calibration_lengths(200) == (50, 200)
    assert cost.calibration_lengths(2295) == (50, 200, 1000, 2295)


def test_a_short_job_asks_the_cluster_for_ten_minutes_at_least(tmp_path):
    config = load_config(SMOKE)
    path = tmp_path / "step_costs.csv"
    _calibration(*zip(*_smoke_pairs(config))).assign(step_seconds=1e-9, forward_seconds=1e-9, probe_seconds=1e-9,
                                                     startup_seconds=1e-9).to_csv(path, index=False)
    minutes = cost.job_minutes(config, path)
    assert minutes and set(minutes.values()) == {10}


def test_costs_are_piecewise_linear_between_the_calibrated_lengths():
    """Between two calibrated lengths on their line; below the first and beyond the last on the
    line of the first two and the last two; the estimate says which jobs it extrapolated."""
    config = load_config(SMOKE)
    config["tasks"] = [{"name": "adding", "gaps": [20, 100, 600, 1000, 3000], "params": {}}]
    config["models"] = [m for m in config["models"] if model_label(m) == "vanilla"]
    step = {50: 1.0, 200: 4.0, 1000: 24.0, 2000: 64.0}  # slopes 0.02, 0.025, 0.04 a time step
    calibration = pd.DataFrame([{"model": "vanilla", "hidden_size": config["hidden_size"], "seq_len": T,
                                 "step_seconds": c, "forward_seconds": c, "probe_seconds": c,
                                 "startup_seconds": 0.0, "contention": 1.0} for T, c in step.items()])
    interpolated = cost.interpolated(calibration, "vanilla", config["hidden_size"], "step_seconds",
                                     [20, 50, 100, 200, 600, 1000, 1500, 2000, 3000])
    assert interpolated == pytest.approx([0.4, 1.0, 2.0, 4.0, 14.0, 24.0, 44.0, 64.0, 104.0], rel=1e-12)
    # a length measured again (a recalibration appends its rows): its latest measurement counts
    again = pd.concat([calibration, calibration[calibration.seq_len == 50].assign(step_seconds=2.0)])
    assert cost.interpolated(again, "vanilla", config["hidden_size"], "step_seconds", [50])[0] == 2.0
    estimated = cost.estimate(config, calibration)
    assert (estimated.calibrated_to == 2000).all()
    summary = cost.summary(estimated, config)
    share = estimated.seconds[estimated.seq_len > 2000].sum() / estimated.seconds.sum()
    assert f"extrapolated: 1 jobs ({share:.0%} of the estimate) have longer sequences (up to T = 3000)" in summary
    assert "extrapolated" not in cost.summary(estimated[estimated.seq_len <= 2000], config)


def test_calibration_measures_a_model(tmp_path):
    row = cost.measure_model("vanilla", 8, 10, batch=8, probe_batch=4, steps=2)
    assert row["model"] == "vanilla" and row["seq_len"] == 10
    assert row["forward_batch"] == evaluation_batch(10, "cpu") == 512  # the pass a job's evaluation makes
    assert all(row[k] > 0 for k in ("step_seconds", "forward_seconds", "probe_seconds"))


def test_the_step_profile_profiles_the_step_the_calibration_times(tmp_path):
    """benchmarks/step_profile.py, on cost.TimedTraining (measure_model's set-up), at a tiny
    size: a table per kind (step, forward) and length, operator rows whose per-time-step times
    add up to a positive total, and its refusal of a length that would rename another size."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "step_profile.py"
    out = tmp_path / "profile.txt"
    subprocess.run([sys.executable, str(script), "--models", "vanilla", "--hidden", "8", "--lengths", "5", "9",
                    "--out", str(out)], check=True, capture_output=True, text=True, timeout=300)
    text = out.read_text()
    for kind in ("step", "forward"):
        assert f"vanilla, {kind} (" in text
    totals = [line.split()[-2:] for line in text.splitlines() if "profiled total" in line]
    assert len(totals) == 2 and all(float(value) > 0 for row in totals for value in row)
    assert re.search(r"aten::\S+ .*×\d+", text)  # operator rows with their calls
    refused = subprocess.run([sys.executable, str(script), "--models", "vanilla", "--hidden", "8",
                              "--lengths", "8"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--lengths [8]" in refused.stderr


def test_the_allocator_benchmark_times_the_step_the_calibration_times(tmp_path):
    """benchmarks/cpu_allocator.py, whose children train through cost.TimedTraining with a task
    that stamps its training losses, at a tiny size: one row of three settings, each with a
    positive step time from those stamps; and TimedTraining refuses a task of another length."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "cpu_allocator.py"
    out = tmp_path / "allocator.csv"
    subprocess.run([sys.executable, str(script), "--models", "vanilla", "--hidden", "8", "--lengths", "6",
                    "--runs", "2", "--steps", "4", "--warmup", "2", "--repeats", "1", "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    row = pd.read_csv(out).iloc[0]
    assert (row.model, row.seq_len, row.runs, row.steps) == ("vanilla", 6, 2, 4)
    for setting in ("default", "kept", "returned"):
        assert row[f"{setting}_step_seconds"] > 0 and row[f"{setting}_max_rss_mb"] > 0
    with pytest.raises(ValueError, match="length 7, the timing's seq_len is 6"):
        cost.TimedTraining("vanilla", 8, 6, task=tasks.build("adding", 7))


def test_calibration_times_no_step_of_a_model_fitted_by_guessing(monkeypatch, tmp_path):
    """random_guess takes no gradient step: the calibration trains nothing (a timed "step" there
    was whole searches, never read), records the step as NaN, and times its pass and probes."""
    def no_training(*args, **kwargs):
        raise AssertionError("a model fitted by guessing was trained to time a step")

    monkeypatch.setattr(cost.TimedTraining, "train", no_training)
    row = cost.measure_model("random_guess", 8, 10, batch=8, probe_batch=4, steps=2, runs=3)
    assert math.isnan(row["step_seconds"]) and row["forward_seconds"] > 0 and row["probe_seconds"] > 0
    logged = []
    monkeypatch.setattr(cost, "measure_startup", lambda *args: 1.0)
    monkeypatch.setattr(cost, "measure_contention", lambda: 1.0)
    monkeypatch.setattr(cost, "measure_model", lambda *args, **kwargs: row)
    cost.calibrate({("random_guess", 8): (10,)}, tmp_path / "costs.csv", log=logged.append)
    assert "random_guess H=8 T=10: no gradient step (fitted by guessing)" in logged[-1]


@pytest.mark.parametrize("model", ["vanilla", "lstm"])  # runs batched into one recurrence, and one by one
def test_calibration_measures_a_model_at_the_runs_of_a_job(model):
    """The arguments a GPU calibration passes (runs, device, cuda_graph), on the CPU: the same
    training, forward and probe code, recorded with what it was measured at."""
    row = cost.measure_model(model, 8, 10, batch=8, probe_batch=4, steps=2, runs=3, device="cpu", cuda_graph=False)
    assert (row["runs"], row["device"], row["cuda_graph"]) == (3, "cpu", False)
    assert all(row[k] > 0 for k in ("step_seconds", "forward_seconds", "probe_seconds"))


@pytest.mark.pipeline
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: it would calibrate")
def test_a_gpu_estimate_without_a_gpu_or_its_calibration_says_where_to_calibrate(tmp_path):
    missing = tmp_path / "step_costs_cuda.csv"
    result = subprocess.run([sys.executable, "-m", "gapbench", "cost", str(SMOKE), "--device", "cuda",
                             "--calibration", str(missing)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr  # one line, no traceback
    assert str(missing) in result.stderr and "GPU machine" in result.stderr
    assert not missing.exists()


@pytest.mark.pipeline
def test_a_gpu_estimate_from_a_complete_calibration_needs_no_gpu(tmp_path):
    """config/gpu.yaml over the smoke grid (two files merged in order, as --configfile A B): the
    device and the captured step come from the config, the estimate from the calibration."""
    gpu = SMOKE.parent / "gpu.yaml"
    config = load_config([SMOKE, gpu], cuda_available=lambda: True)
    assert (config["train"]["device"], config["train"]["cuda_graph"]) == ("cuda", True)
    calibration = tmp_path / "step_costs_cuda.csv"
    runs, cuda_graph = cost.calibration_setting(config, "cuda")
    _cuda_calibration(_smoke_pairs(config), runs, cuda_graph).to_csv(calibration, index=False)
    before = calibration.read_text()
    result = subprocess.run([sys.executable, "-m", "gapbench", "cost", str(SMOKE), str(gpu),
                             "--calibration", str(calibration)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert re.match(rf"{len(cost.jobs(config))} training jobs .*: the GPU trains and evaluates for [\d.]+ h",
                    result.stdout), result.stdout
    assert re.search(r"one job after another \(snakemake --cores N --resources gpu=1\): [\d.]+ h", result.stdout)
    assert "hours on one GPU by model" in result.stdout and calibration.read_text() == before  # nothing calibrated


@pytest.mark.pipeline
def test_cost_command_checks_a_finished_grid(smoke_run, tmp_path):
    """The command as a user runs it on a finished grid, with a calibration file given."""
    calibration = tmp_path / "step_costs.csv"
    config = load_config(SMOKE)
    pairs = sorted({(m["name"], m.get("hidden_size", config["hidden_size"])) for m in config["models"]})
    _calibration(*zip(*pairs)).to_csv(calibration, index=False)
    result = subprocess.run(
        [sys.executable, "-m", "gapbench", "cost", str(SMOKE), "--calibration", str(calibration),
         "--check", str(smoke_run / "results" / "benchmarks" / "train")],
        capture_output=True, text=True, check=True, timeout=900)
    jobs = int(re.search(r"^(\d+) training jobs", result.stdout, re.M).group(1))
    assert jobs == len(cost.jobs(config))
    compared = re.search(r"(\d+) jobs compared: estimated ([\d.e+-]+) core-hours, measured ([\d.e+-]+)", result.stdout)
    assert int(compared.group(1)) == jobs and float(compared.group(3)) > 0, result.stdout


def test_a_calibration_at_other_runs_reuses_the_probes_and_keeps_every_row(tmp_path, monkeypatch):
    """The probes run on the CPU whatever the runs: a second calibration (another R) takes the
    probe seconds measured before on this machine instead of measuring them again; and each row
    is in the file as soon as it is measured (a calibration cut short keeps what it has)."""
    measured = []

    def fake_measure(model, hidden, seq_len, runs, device, cuda_graph, probe_seconds=None):
        measured.append((model, seq_len, runs, probe_seconds))
        if len(measured) == 2:  # were the second measurement cut short, the first would be on disk
            assert len(pd.read_csv(path)) == 1
        return {"model": model, "hidden_size": hidden, "seq_len": seq_len, "runs": runs, "device": device,
                "cuda_graph": cuda_graph, "step_seconds": 1e-3 * runs, "forward_seconds": 1e-3,
                "probe_seconds": probe_seconds if probe_seconds is not None else 0.5 + seq_len * 1e-3}

    path = tmp_path / "step_costs.csv"
    monkeypatch.setattr(cost, "measure_model", fake_measure)
    monkeypatch.setattr(cost, "measure_startup", lambda device, cuda_graph: 1.0)
    monkeypatch.setattr(cost, "measure_contention", lambda: 1.0)
    cost.calibrate({("vanilla", 8): cost.LENGTHS}, path, log=lambda _: None, runs=4)
    cost.calibrate({("vanilla", 8): cost.LENGTHS}, path, log=lambda _: None, runs=15)
    assert [probe for *_, probe in measured] == [None, None] + [0.5 + t * 1e-3 for t in cost.LENGTHS]
    measured.clear()
    cost.calibrate({("vanilla", 8): (1000,)}, path, log=lambda _: None, runs=4)  # only the lengths asked
    assert measured == [("vanilla", 1000, 4, None)]
    table = pd.read_csv(path)
    assert sorted(table.runs) == [4, 4, 4, 15, 15] and table.probe_seconds.nunique() == len(cost.LENGTHS) + 1


def test_calibration_times_a_step_as_a_job_runs_it_with_subnormals_flushed(monkeypatch):
    """A training job flushes float32 subnormals to zero (gapbench.job), and a step with
    subnormals can take several times as long (measured: vanilla, H = 128, T = 200, 143 ms
    against 23 ms): the calibration trains under the same setting and leaves the caller's as
    it was."""
    import gapbench.graphed
    from gapbench.job import flushing_subnormals

    seen = []
    real = gapbench.graphed.train_job

    def spying(*args, **kwargs):
        seen.append(flushing_subnormals())
        return real(*args, **kwargs)

    monkeypatch.setattr(gapbench.graphed, "train_job", spying)
    before = flushing_subnormals()
    cost.measure_model("vanilla", 8, 10, batch=8, probe_batch=4, steps=2, probe_seconds=1.0)
    assert seen and all(seen) and flushing_subnormals() == before


def test_a_step_is_timed_on_runs_that_keep_stepping(monkeypatch):
    """irnn at H = 128, T = 2295 diverges at its second step at a job's learning rate (a job
    stops such a run); the calibration times it at TIMING_LR, where every run applies all its
    steps, so the time is of that many steps. A run that diverges even so is a clear error."""
    import gapbench.graphed
    from gapbench import data, models, tasks
    from gapbench.spec import TrainConfig
    from gapbench.train import RunSetup

    task = tasks.build("adding", 2295)
    net = models.Net(models.build("irnn", task.input_size, 128), task.output_size)
    config = TrainConfig(steps=3, batch_size=4, optimizer="adam", lr=1e-3, eval_every=3, probe_batch=4, device="cpu")
    with tempfile.TemporaryDirectory() as folder:
        data.generate(task, 0, {"train": 12, "validation": 4, "test": 4}, folder)
        torch.manual_seed(0)
        [at_job_rate] = gapbench.graphed.train_job([RunSetup(net, "norm", 1.0, folder)], task, config, "cpu",
                                                   lambda message: None)
    assert at_job_rate.diverged and at_job_rate.applied_steps < 3
    timed, real = [], gapbench.graphed.train_job

    def spying(runs, task, cfg, *args, **kwargs):
        trainings = real(runs, task, cfg, *args, **kwargs)
        timed.append((cfg.lr, [(t.applied_steps, t.diverged) for t in trainings]))
        return trainings

    monkeypatch.setattr(gapbench.graphed, "train_job", spying)
    row = cost.measure_model("irnn", 128, 2295, batch=4, probe_batch=4, steps=3, runs=2, probe_seconds=1.0)
    assert timed and all(lr == cost.TIMING_LR and trained == [(3, False)] * 2 for lr, trained in timed)
    assert row["step_seconds"] > 0

    def diverging(*args, **kwargs):
        trainings = real(*args, **kwargs)
        trainings[0].diverged = True
        return trainings

    monkeypatch.setattr(gapbench.graphed, "train_job", diverging)
    with pytest.raises(ValueError, match=r"vanilla \(H = 8\) cannot be timed at T = 10"):
        cost.measure_model("vanilla", 8, 10, batch=8, probe_batch=4, steps=2, probe_seconds=1.0)


def test_a_model_that_cannot_be_timed_is_one_line_from_the_cost_command(tmp_path, monkeypatch, capsys):
    """`gapbench cost` reports measure_model's error in one line naming the calibration file,
    exit 2, no traceback."""
    import argparse

    def failing(model, hidden, seq_len, **kwargs):
        raise ValueError(f"{model} (H = {hidden}) cannot be timed at T = {seq_len}: its loss is not finite")

    monkeypatch.setattr(cost, "measure_model", failing)
    monkeypatch.setattr(cost, "measure_startup", lambda device, cuda_graph: 1.0)
    monkeypatch.setattr(cost, "measure_contention", lambda: 1.0)
    path = tmp_path / "step_costs.csv"
    args = argparse.Namespace(config=[str(SMOKE)], device="cpu", calibration=path, recalibrate=False,
                              extrapolate=False, check=None)
    assert cost.run(args) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("gapbench cost: ") and "cannot be timed at T = 50" in error and str(path) in error


@pytest.mark.pipeline
@pytest.mark.parametrize("name", ["paper.yaml", "literature.yaml"])
def test_a_shipped_config_plans_a_train_job_for_each_of_its_jobs(tmp_path, name):
    """`snakemake -n` of the paper grid (gaps up to 2000, 14 models) and the literature config
    plans one train job for each (task, gap, model) of `gapbench cost`'s list, and nothing is
    refused on the way (a wildcard constraint or rule that missed a gap or a model would be)."""
    from conftest import snakemake

    configfile = SMOKE.parent / name
    grid = cost.jobs(load_config(configfile))
    planned = _train_resources(snakemake(tmp_path, "-n", configfile=configfile).stdout)
    assert set(planned) == set(zip(grid.task, grid.gap, grid.model)) and len(planned) == len(grid)


def _train_resources(dry_run: str) -> dict[tuple[str, int, str], dict[str, str]]:
    """Each train job's `resources:` of a `snakemake -n` listing, by (task, gap, model)."""
    jobs = re.findall(r"wildcards: task=(\S+), gap=(\d+), model=(\S+)\n(?:\s+threads: \d+\n)?\s+resources: (.*)",
                      dry_run)
    return {(task, int(gap), model): dict(item.split("=", 1) for item in resources.split(", "))
            for task, gap, model, resources in jobs}


@pytest.mark.pipeline
def test_a_cluster_job_asks_for_its_estimated_runtime_once_calibrated(tmp_path):
    """The train rule's `runtime` (minutes, what a SLURM job asks): 60 a seed without a
    calibration; 3 × the job's estimate (at least 10) once results/bench/step_costs.csv covers
    the grid's models; 60 a seed again where the calibration lacks one of them."""
    from conftest import snakemake

    config = load_config(SMOKE)

    def runtimes() -> dict[tuple[str, int, str], int]:
        return {job: int(resources["runtime"]) for job, resources in _train_resources(snakemake(tmp_path, "-n").stdout).items()}

    grid = cost.jobs(config)
    assert set(runtimes()) == set(zip(grid.task, grid.gap, grid.model))
    assert set(runtimes().values()) == {60 * len(config["seeds"])}
    calibration = _calibration(*zip(*_smoke_pairs(config)))
    calibration.step_seconds *= 1e5  # long enough jobs that the estimate, not the 10-minute floor, decides
    path = tmp_path / "results" / "bench" / "step_costs.csv"
    path.parent.mkdir(parents=True)
    calibration.to_csv(path, index=False)
    estimated = cost.estimate(config, calibration)
    expected = {(row.task, row.gap, row.model): max(10, math.ceil(3 * row.seconds / 60))
                for row in estimated.itertuples()}
    assert runtimes() == expected and len(set(expected.values())) > 1 and min(expected.values()) > 10
    calibration[calibration.model != "lstm"].to_csv(path, index=False)  # a pair missing: no estimate
    assert set(runtimes().values()) == {60 * len(config["seeds"])}
    path.write_text("not,a calibration\n1,2\n")  # a file this code did not write: a clear error before any job
    failed = snakemake(tmp_path, "-n", check=False)
    assert failed.returncode != 0
    assert "results/bench/step_costs.csv is not a calibration gapbench cost can read" in failed.stdout + failed.stderr


@pytest.mark.pipeline
def test_a_train_job_asks_for_its_threads_memory_runtime_and_gpu(tmp_path):
    """What a cluster job asks (SLURM reads these): threads_per_job threads, 4000 MB, 60 minutes a
    seed uncalibrated (two seeds here: 120), no GPU on the CPU; on cuda one GPU a job (CUDA
    faked in the dry-running Snakemake process only: a dry run starts no job). A job trains
    every seed and clip arm of its (task, gap, model), and a dataset job asks 2000 MB and 10
    minutes."""
    from conftest import ROOT, snakemake

    config = yaml.safe_load(SMOKE.read_text())
    config.update(seeds=[0, 1], threads_per_job=2)
    configfile = tmp_path / "two_seeds.yaml"
    configfile.write_text(yaml.safe_dump(config))
    listing = snakemake(tmp_path, "-n", "-p", configfile=configfile).stdout
    jobs = _train_resources(listing)
    grid = cost.jobs(load_config(configfile))
    assert len(jobs) == len(grid)
    assert all((job["mem_mb"], job["runtime"], job.get("gpu", "0")) == ("4000", "120", "0") for job in jobs.values())
    blocks = re.findall(r"^rule train:\n((?:[ \t]+.*\n)+)", listing, re.M)  # each job's indented lines
    assert len(blocks) == len(jobs) and all(re.search(r"^\s+threads: 2$", block, re.M) for block in blocks)
    commands = re.findall(r"^Shell command: (python -m gapbench train .*)$", listing, re.M)
    for task, gap, model in zip(grid.task, grid.gap, grid.model):
        runs = {f"--run {arm}=results/runs/{task}/gap{gap}/{model}/{arm}/seed{seed}"
                for arm in config["clip"]["arms"] for seed in (0, 1)}
        assert sum(all(run + " " in command for run in runs) for command in commands) == 1, (task, gap, model)
    datasets = re.findall(r"^rule generate_data:\n(?:[ \t]+.*\n)*?\s+resources: (.*)$", listing, re.M)
    assert len(datasets) == 2 * len(set(zip(grid.task, grid.gap)))
    assert all("runtime=10, mem_mb=2000," in resources for resources in datasets)
    faked = ("import sys, torch; torch.cuda.is_available = lambda: True; from snakemake.cli import main; "
             "sys.argv = ['snakemake'] + sys.argv[1:]; main()")
    on_gpu = subprocess.run([sys.executable, "-c", faked, "--snakefile", str(ROOT / "Snakefile"), "--directory",
                             str(tmp_path / "gpu"), "--workflow-profile", "none", "--cores", "2", "-n", "--configfile",
                             str(SMOKE), str(ROOT / "config" / "gpu.yaml")],
                            capture_output=True, text=True, env=jobs_environment(sys.executable), timeout=600)
    assert on_gpu.returncode == 0, on_gpu.stdout + on_gpu.stderr
    gpu_jobs = _train_resources(on_gpu.stdout)
    assert gpu_jobs and all(job.get("gpu") == "1" for job in gpu_jobs.values())


def test_contention_is_the_median_of_its_readings(monkeypatch):
    """One reading varies by several percent on a quiet VM: an outlying one does not set the factor."""
    readings = iter([1.30, 0.95, 1.02])
    monkeypatch.setattr(cost, "_contention_once", lambda: next(readings))
    assert cost.measure_contention() == pytest.approx(1.02)
    readings = iter([1.30])
    assert cost.measure_contention(repeats=1) == pytest.approx(1.30)


def test_the_paper_floor_counts_every_trained_time_step():
    """benchmarks/paper_floor.py's table on a made-up calibration (a step 2e-5 s per time step):
    a trained model's floor is products × u for every time step its jobs train (runs × steps × T),
    random_guess's is its estimate, and no floor exceeds its estimate."""
    paper_floor = benchmark_module("paper_floor")
    config = load_config(SMOKE)
    pairs = _smoke_pairs(config)
    calibration = _calibration(*zip(*pairs))
    unit = 1e-6
    table = paper_floor.floor_table(config, calibration, unit).set_index("model")
    estimated = cost.estimate(config, calibration)
    runs_steps = len(config["clip"]["arms"]) * config["train"]["steps"]
    for model, row in table.iterrows():
        jobs = estimated[estimated.model_name == model]
        assert row["core-hours"] == pytest.approx(jobs.seconds.sum() / 3600)
        assert row["measured ms per time step"] == pytest.approx(2e-2)
        products = paper_floor.RECURRENT_PRODUCTS.get(model)
        expected = row["core-hours"] if products is None else \
            (jobs.seeds * jobs.seq_len).sum() * runs_steps * products * unit / 3600
        assert row["floor core-hours"] == pytest.approx(expected)
        assert row["floor core-hours"] <= row["core-hours"]
    assert set(table.index) == {name for name, _ in pairs}


def test_the_paper_floor_names_a_missing_calibration(tmp_path):
    """paper_floor.py stops with the file and the command that writes it, not pandas' error,
    where the calibration is missing or lacks a pair the config needs."""
    paper_floor = benchmark_module("paper_floor")
    config = load_config(SMOKE)
    path = tmp_path / "step_costs.csv"
    with pytest.raises(SystemExit, match=f"{path} does not exist; run `python -m gapbench cost"):
        paper_floor.read_calibration(config, path)
    calibration = _calibration(*zip(*_smoke_pairs(config)))
    calibration[calibration.model != "lstm"].to_csv(path, index=False)
    with pytest.raises(SystemExit, match=f"{path} lacks lengths"):
        paper_floor.read_calibration(config, path)
    calibration.to_csv(path, index=False)
    assert len(paper_floor.read_calibration(config, path)) == len(calibration)
