"""config/literature.yaml and the rules that judge its claims (gapbench.reports.literature)."""
import subprocess
import sys

import numpy as np
import pandas as pd
import yaml

from conftest import SMOKE
from gapbench.reports import cost, literature
from gapbench.config import load_config, model_label, task_label

LITERATURE = SMOKE.parent / "literature.yaml"


def test_the_literature_config_is_valid_and_pairs_each_experiment_with_its_models():
    config = load_config(LITERATURE)  # the pipeline's own checks, before any job
    grid = cost.jobs(config)
    entries = {task_label(entry): entry for entry in config["tasks"]}
    for claim in literature.CLAIMS:  # every claim is judged on a task the config runs
        assert claim.task in entries, claim.task
    for label, entry in entries.items():
        assert set(grid[grid.task == label].model) == set(entry["models"])
    sizes = {model_label(m): m.get("hidden_size", config["hidden_size"]) for m in config["models"]}
    assert sizes["esn_linear_n10"] == 10 and sizes["esn_tanh_n40"] == 40 and sizes["vanilla"] == 64
    assert len(grid) == sum(len(e["gaps"]) * len(e["models"]) for e in config["tasks"])


def _accuracy(rows):
    columns = ["task", "model", "clip", "gap", "seed", "test_loss", "baseline", "success", "test_score", "hidden_size"]
    return pd.DataFrame([dict(zip(columns, row)) for row in rows])


def _tables(tmp_path, accuracy, summary=None):
    accuracy.to_csv(tmp_path / "accuracy_vs_gap.csv", index=False)
    (summary if summary is not None else pd.DataFrame(
        columns=["task", "model", "clip", "gap", "seed", "stage", "memory_capacity_from_1", "norm_max"])
     ).to_csv(tmp_path / "propagation_summary.csv", index=False)
    return literature.table_reader(tmp_path)


def test_stays_and_goes_below_judges_by_the_declared_fractions(tmp_path):
    judge = literature._stays_and_goes_below("copy_x", ["vanilla"], ["orthogonal"])
    rows = [("copy_x", "vanilla", "none", 100, s, 0.95, 1.0, False, 0.1, 64) for s in (0, 1)]
    rows += [("copy_x", "orthogonal", "none", 100, s, 0.2, 1.0, True, 1.0, 64) for s in (0, 1)]
    measured, reproduced, why = judge(_tables(tmp_path, _accuracy(rows)), {})
    assert reproduced and why == "" and "vanilla 0.95 (0/2 solved)" in measured
    assert "orthogonal 0.2 (2/2 solved)" in measured
    rows[-1] = ("copy_x", "orthogonal", "none", 100, 1, 0.9, 1.0, False, 0.3, 64)  # mean 0.55 > 0.5
    measured, reproduced, why = judge(_tables(tmp_path, _accuracy(rows)), {})
    assert reproduced is False and "orthogonal" in why
    # every model the claim names must go far below ("the IRNN and the LSTM"), not one of them
    both = literature._stays_and_goes_below("copy_x", ["vanilla"], ["orthogonal", "lstm"])
    rows = [("copy_x", "vanilla", "none", 100, s, 0.95, 1.0, False, 0.1, 64) for s in (0, 1)]
    rows += [("copy_x", "orthogonal", "none", 100, s, 0.2, 1.0, True, 1.0, 64) for s in (0, 1)]
    rows += [("copy_x", "lstm", "none", 100, s, 0.7, 1.0, False, 0.5, 64) for s in (0, 1)]
    measured, reproduced, why = both(_tables(tmp_path, _accuracy(rows)), {})
    assert reproduced is False and why.startswith("lstm did not reach 0.5 × baseline")
    # stand-ins for one model of the paper: one of them far below is enough
    either = literature._stays_and_goes_below("copy_x", ["vanilla"], ["orthogonal", "lstm"], every_going=False)
    assert either(_tables(tmp_path, _accuracy(rows)), {})[1] is True
    # a claimed model the tables lack leaves the claim unjudged, not failed
    measured, reproduced, why = both(_tables(tmp_path, _accuracy(rows[:4])), {})
    assert reproduced is None and why == "lstm not in these tables (clip arm none)"
    # at the fractions' edges: 0.85 of the baseline is below "stays" (0.9); 0.45 is "far below" (0.5)
    for vanilla, orthogonal, expected in ((0.85, 0.2, False), (0.95, 0.45, True)):
        rows = [("copy_x", "vanilla", "none", 100, s, vanilla, 1.0, False, 0.1, 64) for s in (0, 1)]
        rows += [("copy_x", "orthogonal", "none", 100, s, orthogonal, 1.0, True, 1.0, 64) for s in (0, 1)]
        assert judge(_tables(tmp_path, _accuracy(rows)), {})[1] is expected, (vanilla, orthogonal)


def test_clipping_helps_only_where_it_raises_a_success_rate_and_gradients_explode(tmp_path):
    """No clipping solves 1 of 2 seeds at gap 10 and 0 of 2 at 30; norm clipping the same at 10,
    and at 30 the same (no help) or 1 of 2 (help: never lower, higher at one gap), as long as the
    unclipped runs' largest gradient norms exceed θ (the median over seeds, at one gap at least);
    the length each arm solves by half the seeds is reported beside."""
    judge = literature._clipping_helps("order_x")

    def tables(norm_at_30, largest_norms):
        success = {"none": {10: (True, False), 30: (False, False)}, "norm": {10: (True, False), 30: norm_at_30}}
        rows = [("order_x", "vanilla", clip, gap, s, 0.5, 1.0, ok, 0.5, 64)
                for clip, by_gap in success.items() for gap, oks in by_gap.items() for s, ok in enumerate(oks)]
        accuracy = _accuracy(rows).assign(clip_threshold=lambda table: np.where(table["clip"] == "norm", 1.0, np.nan))
        summary = pd.DataFrame([{"task": "order_x", "model": "vanilla", "clip": "none", "gap": gap, "seed": s,
                                 "stage": "trained", "memory_capacity_from_1": np.nan, "norm_max": norm}
                                for gap in (10, 30) for s, norm in enumerate(largest_norms[gap])])
        return _tables(tmp_path, accuracy, summary)

    exploding = {10: (0.5, 30.0), 30: (0.2, 0.3)}  # median 15.2 > θ = 1 at gap 10
    for norm_at_30, helps in (((False, False), False), ((True, False), True)):
        measured, reproduced, why = judge(tables(norm_at_30, exploding), {})
        assert reproduced is helps and ("did not raise" in why) is not helps
        assert "T=30: 0.00 → " + ("0.50" if helps else "0.00") in measured
        assert measured.endswith("largest T solved by half the seeds: 10 → " + ("30" if helps else "10"))
    tame = {10: (0.5, 0.9), 30: (0.2, 0.3)}  # median largest norm 0.7 and 0.25: below θ everywhere
    measured, reproduced, why = judge(tables((True, False), tame), {})
    assert reproduced is False and "did not exceed θ = 1.0" in why and "did not raise" not in why
    unmeasured = {10: (np.nan, np.nan), 30: (np.nan, np.nan)}  # no norms recorded: not judged, not "no"
    measured, reproduced, why = judge(tables((True, False), unmeasured), {})
    assert reproduced is None and "norm_max" in why


def test_success_must_fall_with_the_gap(tmp_path):
    judge = literature._success_falls_with_gap("latch_x")
    rows = [("latch_x", "vanilla", "none", gap, s, 0.1, 1.0, ok, 1.0, 64)
            for gap, oks in [(10, (True, True)), (30, (True, False)), (100, (False, False))] for s, ok in enumerate(oks)]
    assert judge(_tables(tmp_path, _accuracy(rows)), {})[1] is True
    rows[-1] = ("latch_x", "vanilla", "none", 100, 1, 0.1, 1.0, True, 1.0, 64)  # 0.5 at 100: not falling from 30
    assert judge(_tables(tmp_path, _accuracy(rows)), {})[1] is True  # non-increasing: 1.0, 0.5, 0.5
    rows[-2] = ("latch_x", "vanilla", "none", 100, 0, 0.1, 1.0, True, 1.0, 64)  # 1.0 at 100: rises
    assert judge(_tables(tmp_path, _accuracy(rows)), {})[1] is False


def test_memory_capacity_claims_use_jaegers_count_and_the_model_sizes(tmp_path):
    judge = literature._memory_capacity("mc_x")
    models = {"esn_linear_n10": (10, 9.5), "esn_tanh_n10": (10, 7.0), "esn_linear_n20": (20, 19.0),
              "esn_tanh_n20": (20, 12.0)}
    accuracy = _accuracy([("mc_x", m, "none", 10, 0, 1.0, 1.0, False, 0.0, n) for m, (n, _) in models.items()])
    summary = pd.DataFrame([{"task": "mc_x", "model": m, "clip": "none", "gap": 10, "seed": 0, "stage": "init",
                             "memory_capacity_from_1": mc, "norm_max": 1.0} for m, (_, mc) in models.items()])
    # the reservoir's kind is read from the config entry's options, not from its label
    config = {"models": [{"name": "esn", "label": m, "options": {"activation": "tanh" if "tanh" in m else "linear"}}
                         for m in models]}
    measured, reproduced, why = judge(_tables(tmp_path, accuracy, summary), config)
    assert reproduced and "N=20: 19.0" in measured and "linear N=10: 9.5" in measured
    config["models"][0]["options"] = {}  # esn_linear_n10 now builds with the ESN's default, tanh
    assert "tanh N=10: 9.5" in judge(_tables(tmp_path, accuracy, summary), config)[0]
    summary.loc[summary.model == "esn_linear_n20", "memory_capacity_from_1"] = 17.0  # below 0.9 N
    assert "0.9 N" in judge(_tables(tmp_path, accuracy, summary), config)[2]
    config["models"][0]["options"] = {"activation": "linear"}
    summary.loc[summary.model == "esn_linear_n20", "memory_capacity_from_1"] = 19.0
    summary.loc[summary.model == "esn_tanh_n20", "memory_capacity_from_1"] = 19.5  # tanh beats linear
    assert judge(_tables(tmp_path, accuracy, summary), config)[1:] == (
        False, "a tanh reservoir matched or beat the linear one")
    summary.loc[summary.model == "esn_tanh_n20", "memory_capacity_from_1"] = 12.0
    summary.loc[summary.model == "esn_linear_n20", "memory_capacity_from_1"] = 20.6  # MC > N + 0.5
    assert judge(_tables(tmp_path, accuracy, summary), config)[1:] == (False, "MC exceeded N")


def test_claims_on_tables_without_their_tasks_say_not_run(smoke_run):
    table = literature.reproduction_table(smoke_run / "results" / "tables")
    assert (table.reproduced == "not run").all() and len(table) == len(literature.CLAIMS)


def test_each_setting_is_written_from_the_config_it_describes(smoke_run, tmp_path):
    """The settings column is filled from config/literature.yaml, so it says what ran."""
    tables = smoke_run / "results" / "tables"  # no literature task in them: every claim "not run"
    table = literature.reproduction_table(tables)
    settings = dict(zip(table.paper, table.setting))
    assert settings["Arjovsky, Shah & Bengio 2016"] == (
        "copy 10 symbols of 8 after T = 100, 200 blanks; H = 64, at most 3000 adam steps of batch 64")
    assert "N = 10, 20, 40, spectral radius 0.9" in settings["Jaeger 2001"]
    changed = yaml.safe_load(LITERATURE.read_text())
    changed["train"]["steps"] = 5000
    changed["tasks"][0]["gaps"] = [100, 200, 400]
    changed["tasks"][0]["params"] = {"length": 5}  # the alphabet left to the task's default, 8
    (tmp_path / "literature.yaml").write_text(yaml.safe_dump(changed))
    setting = literature.reproduction_table(tables, tmp_path / "literature.yaml").setting[0]
    assert setting.startswith("copy 5 symbols of 8 after T = 100, 200, 400 blanks")
    assert "at most 5000 adam steps" in setting
    # tables judged against a config that lacks the claims' entries: one line naming the problem
    out = subprocess.run([sys.executable, "-m", "gapbench.reports.literature", "--tables", str(tables),
                          "--config", str(SMOKE)], capture_output=True, text=True)
    assert out.returncode != 0 and "no task entry 'copy_arjovsky' in this config" in out.stderr
    assert "Traceback" not in out.stderr
    missing = subprocess.run([sys.executable, "-m", "gapbench.reports.literature", "--tables", str(tmp_path / "none")],
                             capture_output=True, text=True)
    assert missing.returncode != 0 and "accuracy_vs_gap.csv not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    (tmp_path / "cut").mkdir()  # a table cut short by hand: its header line alone, half of it
    (tmp_path / "cut" / "accuracy_vs_gap.csv").write_text("task,model,cl")
    cut = subprocess.run([sys.executable, "-m", "gapbench.reports.literature", "--tables", str(tmp_path / "cut")],
                         capture_output=True, text=True)
    assert cut.returncode != 0 and "Traceback" not in cut.stderr, cut.stderr
    assert f"{tmp_path / 'cut' / 'accuracy_vs_gap.csv'} has no column clip, gap, seed: collect the tables" in cut.stderr
