"""`python -m gapbench.reports.compare A B` on a kept run of the default grid (476 runs)."""
from pathlib import Path

import numpy as np
import pandas as pd

from gapbench.reports import compare

KEPT = Path(__file__).parents[1] / "docs" / "measurements" / "default_grid_runs_65ca298_intel.csv"


def test_a_run_compared_with_itself_is_the_same_to_the_bit(capsys):
    assert compare.main([str(KEPT), str(KEPT)]) == 0
    out = capsys.readouterr().out
    assert "runs in both: 476 (only in" in out and ": 0, only in" in out
    assert "test losses the same bits: 476 of 476" in out
    assert "success verdicts: 176 in" in out and "0 differ" in out


def test_a_changed_verdict_a_last_bit_and_a_missing_run_are_each_reported(tmp_path, capsys):
    table = pd.read_csv(KEPT, converters={"test_loss": float})
    flipped = table.index[(table.model == "irnn") & (table.task == "adding") & (table.gap == 10)][0]
    table.loc[flipped, "success"] = not table.loc[flipped, "success"]
    table.loc[flipped, "test_loss"] *= 2
    nudged = flipped + 1
    table.loc[nudged, "test_loss"] = np.nextafter(table.loc[nudged, "test_loss"], np.inf)  # one ulp
    table = table.drop(index=table.index[-1])
    other = tmp_path / "accuracy_vs_gap.csv"
    table.to_csv(other, index=False)

    assert compare.main([str(KEPT), str(other)]) == 1
    out = capsys.readouterr().out
    assert f"only in {KEPT}: 1, only in {other}: 0" in out
    assert "test losses the same bits: 473 of 475" in out
    row = table.loc[flipped]
    assert (f"  {row.task} gap {row.gap} {row.model} {row['clip']} seed {row.seed}: {not row.success} -> "
            f"{row.success}") in out
    # and its test score, which is what a task judging by its score (memory_capacity) changed
    score = f"{row.test_score:.6g}"
    assert f"test loss {row.test_loss / 2:.6g} -> {row.test_loss:.6g}, test score {score} -> {score})" in out
    assert "1 differ" in out
    assert len(compare.compare(compare.read(KEPT), compare.read(other)).changed) == 1


def test_a_diverged_run_s_nan_loss_is_the_same_as_nan():
    """A run that diverged in both has a NaN test loss in both (NaN != NaN as floats): the same."""
    table = compare.read(KEPT)
    table.loc[table.index[:2], "test_loss"] = np.nan
    both = compare.compare(table, table.copy())
    assert both.same_bits == len(table) and both.changed.empty
    other = table.copy()
    other.loc[other.index[2], "test_loss"] = np.nan  # NaN against a number: not the same
    assert compare.compare(table, other).same_bits == len(table) - 1


def test_a_file_that_is_not_an_accuracy_table_is_named(tmp_path, capsys):
    missing = tmp_path / "nowhere.csv"
    assert compare.main([str(KEPT), str(missing)]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    wrong = tmp_path / "probe.csv"
    pd.read_csv(KEPT).drop(columns=["success"]).to_csv(wrong, index=False)
    assert compare.main([str(wrong), str(KEPT)]) == 2
    assert f"{wrong}: not an accuracy table (missing columns success)" in capsys.readouterr().err
    empty = tmp_path / "empty.csv"
    pd.read_csv(KEPT).iloc[:0].to_csv(empty, index=False)
    assert compare.main([str(KEPT), str(empty)]) == 2
    assert f"{empty}: holds no runs" in capsys.readouterr().err
    twice = tmp_path / "twice.csv"
    pd.concat([pd.read_csv(KEPT)] * 2).to_csv(twice, index=False)
    assert compare.main([str(twice), str(KEPT)]) == 2
    assert f"{twice}: a run appears more than once" in capsys.readouterr().err


def test_the_findings_numbers_are_recomputed_from_the_kept_tables():
    """docs/findings.md quotes the default grid through docs/measurements/findings_numbers.py,
    run on the kept tables of one run (the test losses above and that run's propagation summary);
    the page's headline numbers come out of them."""
    import subprocess
    import sys

    script = KEPT.parent / "findings_numbers.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    assert "runs 476; stopped early 130 at 300-500 steps; failed runs that stopped early: 0; diverged 0" in out
    assert "successes 176: irnn 41, gru 40, orthogonal 40, lstm 31, linear 12, vanilla 12, identity 0" in out
    assert "vanilla init: rate median -0.233 (factor 0.59/step)" in out and "lambda1 -0.524" in out
    assert "vanilla trained: rho 1.34, lambda1 -0.242" in out  # λ1 of 8bd763d (per-sequence sort)
    assert "runs whose verdict differs between the clip arms (10):" in out
