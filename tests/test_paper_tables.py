"""The paper tables' cells, parts and LaTeX, on small tables whose every number is known; the
smoke pipeline's tables are checked in test_pipeline.py, and LaTeX compiles them where installed."""
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from gapbench.reports import paper_tables
from gapbench.reports.tables import INTERVAL_SEEDS, UnreadableTable


def accuracy_table() -> pd.DataFrame:
    """Two tasks with different gaps; `copy` with 2 seeds, `adding` with 5 (one of them not finite)."""
    rows = []
    for model in ("gru", "vanilla"):
        for clip in ("none", "norm"):
            for gap in (10, 30):
                for seed, score in enumerate((0.5, 1.0)):
                    rows.append(("copy", gap, model, clip, seed, score, score == 1.0, "accuracy", "test accuracy"))
            for gap in (20, 40, 80):
                for seed in range(5):
                    score = math.inf if (model, clip, gap, seed) == ("gru", "none", 80, 4) else 0.01 * (seed + 1)
                    rows.append(("adding", gap, model, clip, seed, score, score < 0.0167, "mse", "test MSE"))
    table = pd.DataFrame(rows, columns=["task", "gap", "model", "clip", "seed", "test_score", "success", "metric",
                                        "score_label"])
    return table.assign(model_name=table.model)


def reader(**tables):
    return lambda name, columns=None, rows=None: tables[name][columns or list(tables[name].columns)].copy()


def test_a_cell_is_the_seeds_range_below_the_interval_seeds_and_a_t_interval_from_there():
    assert INTERVAL_SEEDS == 5
    assert paper_tables._spread(pd.Series([0.5, 1.0])) == "0.75 [0.5, 1]"
    assert paper_tables._spread(pd.Series([0.5, 1.0, np.nan])) == "0.75 [0.5, 1] (1 not finite)"
    assert paper_tables._spread(pd.Series([0.25])) == "0.25"
    assert paper_tables._spread(pd.Series([np.inf])) == "— (1 not finite)"
    five = pd.Series([0.01, 0.02, 0.03, 0.04, 0.05])
    half = 2.7764451 * five.std(ddof=1) / math.sqrt(5)  # Student's t, 97.5%, 4 degrees of freedom
    assert paper_tables._spread(five) == f"0.03 ± {half:.2g}"


def test_tables_per_gap_are_one_float_per_task_with_its_own_gaps_and_seeds():
    read = reader(accuracy_vs_gap=accuracy_table())
    parts = paper_tables.score_vs_gap(read)
    assert [part.key for part in parts] == ["adding", "copy"]
    adding, copy = (part.table for part in parts)
    assert list(adding.columns) == [20, 40, 80] and list(copy.columns) == [10, 30]
    assert adding.loc[("gru", "none"), 80] == "0.025 [0.01, 0.04] (1 not finite)"  # 4 finite seeds: the range
    # models family by family, as the figures' legends (elementwise vanilla before gated gru)
    assert list(adding.index) == [("vanilla", "none"), ("vanilla", "norm"), ("gru", "none"), ("gru", "norm")]
    assert adding.loc[("vanilla", "norm"), 20].startswith("0.03 ± ")
    assert copy.loc[("vanilla", "none"), 10] == "0.75 [0.5, 1]"
    assert parts[0].caption == "adding: test MSE; 5 seeds a cell"
    assert parts[1].caption == "copy: test accuracy; 2 seeds a cell"
    one_seed = accuracy_table().query("seed == 0")
    assert paper_tables.score_vs_gap(reader(accuracy_vs_gap=one_seed))[1].caption == "copy: test accuracy; 1 seed a cell"
    success = {part.key: part.table for part in paper_tables.success_rate(read)}
    assert success["copy"].loc[("gru", "norm"), 30] == "1/2" and success["adding"].loc[("gru", "none"), 20] == "1/5"


def test_largest_gap_solved_gives_the_largest_gap_run():
    table = paper_tables.largest_gap_solved(reader(accuracy_vs_gap=accuracy_table()))
    # copy's gru: one of two seeds at 30, the largest gap copy ran (censored); adding's: 1 of 5
    assert table.loc[("copy", "gru"), "clip none"] == "≥30 (1/2)" and table.loc[("adding", "gru"), "clip none"] == "—"
    # each clip arm's column says so itself: no header name ("clip") that LaTeX and Markdown
    # would write over the index, labelling the model column, with "largest gap run" beside the arms
    assert list(table.columns) == ["clip none", "clip norm", "largest gap run"] and table.columns.name is None
    assert table.loc[("copy", "gru"), "largest gap run"] == "30"
    assert table.loc[("adding", "vanilla"), "largest gap run"] == "80"


def test_largest_gap_solved_says_how_many_seeds_and_marks_a_limit_beyond_the_gaps_run():
    """k/n where not every seed succeeded (with 2 seeds "at least half" is one); ≥G where G is the
    largest gap run (the model's limit was not reached); the largest such gap even where a longer
    gap was solved by fewer than half."""
    rows = [("t", gap, model, "none", seed, success)
            for model, solved in (("all", {10: 3, 20: 3, 40: 3}), ("most", {10: 3, 20: 2, 40: 1}),
                                  ("short", {10: 3, 20: 1, 40: 0}), ("none", {10: 1, 20: 0, 40: 0}))
            for gap, k in solved.items() for seed in range(3) for success in [seed < k]]
    accuracy = pd.DataFrame(rows, columns=["task", "gap", "model", "clip", "seed", "success"])
    table = paper_tables.largest_gap_solved(reader(accuracy_vs_gap=accuracy.assign(model_name=accuracy.model)))
    assert table["clip none"].droplevel("task").to_dict() == {"all": "≥40", "most": "20 (2/3)", "short": "10",
                                                          "none": "—"}
    assert paper_tables._latex("≥40 (2/3)") == "$\\geq$40 (2/3)"


def summary_table() -> pd.DataFrame:
    """identity's λ1 float64 rounding; irnn with a run without a decay rate and no MC at all, its
    λ1 spread unevenly (the median, -0.4, is not the mean, -0.5)."""
    return pd.DataFrame({
        "model": ["identity"] * 2 + ["irnn"] * 3, "stage": ["trained"] * 5,
        "decay_log10_per_step": [0.0, 0.0, -0.1, np.nan, -0.3], "half_life_steps": [np.inf, np.inf, 3.0, np.nan, 1.0],
        "lyapunov_max": [3e-16, 2e-16, -0.2, -0.4, -0.9], "memory_capacity": [1.0, 2.0, np.nan, np.nan, np.nan],
        "memory_capacity_from_1": [0.5, 1.5, np.nan, np.nan, np.nan], "spectral_radius": [1.0, 1.0, 1.5, 1.5, 1.5],
        "task": "adding", "clip": "none", "gap": 20, "seed": [0, 1, 0, 1, 2]})


def test_propagation_counts_runs_without_a_value_and_writes_rounding_as_zero():
    summary = summary_table()
    names = pd.DataFrame({"model": summary.model, "model_name": summary.model})
    table = paper_tables.propagation(reader(propagation_summary=summary, accuracy_vs_gap=names))
    assert list(table.index) == [("identity", "trained"), ("irnn", "trained")]
    identity, irnn = table.loc[("identity", "trained")], table.loc[("irnn", "trained")]
    assert identity["λ1"] == "0" and identity["half-life"] == "∞" and identity["MC"] == "1.5"
    assert irnn["decay (log10/step)"] == "-0.2 (2/3)" and irnn["half-life"] == "2 (2/3)"
    assert irnn["MC"] == "—" and irnn["λ1"] == "-0.4" and irnn["ρ(W_h)"] == "1.5"


def test_a_finite_median_over_infinite_values_says_how_many():
    """A ReLU network's λ1 is −inf where its switched-off units annihilate every direction: a
    median over such runs is counted, so that it does not read as one of finite runs; an
    infinite median (identity's half-life) is not."""
    summary = summary_table()
    summary.loc[summary.model == "irnn", "lyapunov_max"] = [-0.2, -np.inf, -0.1]
    names = pd.DataFrame({"model": summary.model, "model_name": summary.model})
    table = paper_tables.propagation(reader(propagation_summary=summary, accuracy_vs_gap=names))
    assert table.loc[("irnn", "trained"), "λ1"] == "-0.2 (1 infinite)"
    assert table.loc[("irnn", "trained"), "half-life"] == "2 (2/3)"  # no infinite value among its runs
    assert table.loc[("identity", "trained"), "half-life"] == "∞"
    summary.loc[summary.model == "irnn", "lyapunov_max"] = [-np.inf, -np.inf, -0.1]
    table = paper_tables.propagation(reader(propagation_summary=summary, accuracy_vs_gap=names))
    assert table.loc[("irnn", "trained"), "λ1"] == "-∞"  # not "∞", which would read as chaos
    assert paper_tables._latex("-∞ (2/3)") == "$-\\infty$ (2/3)"


def test_propagation_counts_an_initial_network_once_whatever_the_clip_arms():
    """The clip arms of a seed start from one network: its init rows, one per arm, are one
    network's, so a count at initialisation is of networks; after training, of runs."""
    trained = summary_table()
    trained.loc[trained.model == "irnn", "lyapunov_max"] = [-0.2, -np.inf, -0.1]
    initial = trained.assign(stage="init")
    summary = pd.concat([arm.assign(clip=clip) for clip in ("none", "norm") for arm in (initial, trained)])
    names = pd.DataFrame({"model": summary.model, "model_name": summary.model})
    table = paper_tables.propagation(reader(propagation_summary=summary, accuracy_vs_gap=names))
    assert table.loc[("irnn", "init"), "λ1"] == "-0.2 (1 infinite)"  # 3 networks, not 6 rows
    assert table.loc[("irnn", "init"), "half-life"] == "2 (2/3)"
    assert table.loc[("irnn", "trained"), "λ1"] == "-0.2 (2 infinite)"  # 6 runs
    assert table.loc[("irnn", "trained"), "half-life"] == "2 (4/6)"


def test_a_range_is_written_to_the_mean_s_precision_and_holds_the_mean():
    assert paper_tables._spread(pd.Series([0.9977, 0.9981])) == "0.998 [0.998, 0.998]"  # not "0.998 [1, 1]"
    rng = np.random.default_rng(0)
    for _ in range(2000):
        values = pd.Series(10.0 ** rng.uniform(-4, 4) * rng.uniform(0.9, 1.1, size=int(rng.integers(2, 5))))
        mean, low, high = (float(word.strip("[],")) for word in paper_tables._spread(values).split())
        assert low <= mean <= high, values.tolist()


def test_latex_floats_use_booktabs_rules_and_fit_the_text(tmp_path):
    accuracy = accuracy_table()
    accuracy.to_csv(tmp_path / "accuracy_vs_gap.csv", index=False)
    summary_table().to_csv(tmp_path / "propagation_summary.csv", index=False)
    paper_tables.write_all(tmp_path, tmp_path)
    latex = (tmp_path / "score_vs_gap.tex").read_text()
    assert latex.startswith(paper_tables.LATEX_HEADER) and "\\usepackage{booktabs,multirow,graphicx}" in latex
    assert latex.count("\\begin{table*}") == 2 and latex.count("\\resizebox{") == 2
    assert "\\label{tab:gapbench-score-vs-gap-adding}" in latex and "\\label{tab:gapbench-score-vs-gap-copy}" in latex
    assert "\\cline" not in latex and latex.count("\\cmidrule") == 2  # between gru and vanilla, in each float
    assert "\\cmidrule{1-5}\n\\bottomrule" not in latex and "\\bottomrule" in latex
    assert "\\begin{tabular}{llrrr}" in latex  # the index left, the numbers right-aligned
    # a minus sign typeset as one, not a hyphen; hyphens and exponents left as they are
    assert paper_tables._latex("-0.2 [-0.3, 1e-12] half-life") == "$-$0.2 [$-$0.3, $1\\times10^{-12}$] half-life"
    # Python's e-notation as LaTeX's, its sign inside the math; not in a name (esn_n1e3)
    assert paper_tables._latex("-4.19e-09 7.19e+07 esn_n1e3") == "$-4.19\\times10^{-9}$ $7.19\\times10^{7}$ esn\\_n1e3"
    assert paper_tables._latex("2e-05–3e-04") == "$2\\times10^{-5}$--$3\\times10^{-4}$"  # a range
    assert paper_tables._latex("2–5 seeds; myW_h") == "2--5 seeds; myW\\_h"  # an en dash; W_h only in captions
    assert paper_tables._latex("10% of") == "10\\% of"  # unescaped, % comments out the rest of the line
    assert paper_tables._latex("∞ (3/4)") == "$\\infty$ (3/4)"
    markdown = (tmp_path / "score_vs_gap.md").read_text()
    # the gaps' header keeps its name in Markdown, which has one header row
    headers = [line for line in markdown.splitlines() if line.startswith("| model")]
    assert [[cell.strip() for cell in line.strip("|").split("|")][2:] for line in headers] == \
        [[f"gap {gap}" for gap in sorted(gaps)] for _, gaps in sorted(accuracy_table().groupby("task").gap.unique().items())]
    assert markdown.startswith("adding: test MSE; 5 seeds a cell. Test score at each gap") and "copy: " in markdown


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX here (pdflatex)")
@pytest.mark.parametrize("layout, packages", [("onecolumn", ""), ("twocolumn", ""),
                                              ("twocolumn", "\\usepackage[tableposition=top]{caption}\n")])
def test_the_latex_compiles_with_nothing_wider_than_the_text(tmp_path, layout, packages):
    accuracy = accuracy_table()
    wide = pd.concat([accuracy.assign(gap=accuracy.gap * k + k) for k in range(1, 5)])  # 13 gaps: too wide
    for name, table in (("score_vs_gap", paper_tables.score_vs_gap), ("success_rate", paper_tables.success_rate)):
        for part in table(reader(accuracy_vs_gap=wide)):
            (tmp_path / f"{name}_{part.key}.tex").write_text(paper_tables.to_latex(part.table, part.caption, "tab:x"))
    # the whole-grid tables too: ≥G (k/n), -∞, e-notation, ∞ and their captions
    summary = summary_table()
    summary.loc[summary.model == "irnn", ["lyapunov_max", "decay_log10_per_step"]] = [[-np.inf, -4.19e-9]] * 3
    read = reader(accuracy_vs_gap=accuracy, propagation_summary=summary)
    for name in ("largest_gap_solved", "propagation"):
        build, caption = paper_tables.PAPER_TABLES[name]
        (tmp_path / f"{name}.tex").write_text(paper_tables.to_latex(build(read), caption, "tab:y"))
    inputs = "\n".join(f"\\input{{{path.name}}}" for path in sorted(tmp_path.glob("*.tex")))
    (tmp_path / "paper.tex").write_text(f"\\documentclass[{layout}]{{article}}\n"
                                        f"\\usepackage{{{paper_tables.LATEX_PACKAGES}}}\n{packages}"
                                        f"\\begin{{document}}\n{inputs}\n\\end{{document}}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "paper.tex"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert result.returncode == 0, log[-3000:]
    assert "Overfull \\hbox" not in log and "Float too large" not in log, log[-3000:]


def test_a_table_that_cannot_be_read_is_named_with_the_fix(tmp_path):
    """A tidy table edited or cut short by hand: the figures and paper tables commands stop with
    one line naming the file and how to collect it again, not pandas' KeyError."""
    import sys

    accuracy = accuracy_table()
    accuracy.to_csv(tmp_path / "accuracy_vs_gap.csv", index=False)
    summary_table().drop(columns="model").to_csv(tmp_path / "propagation_summary.csv", index=False)  # a header edited
    with pytest.raises(UnreadableTable) as refused:
        paper_tables.write_all(tmp_path, tmp_path)
    assert str(refused.value) == (f"{tmp_path / 'propagation_summary.csv'} has no column model: collect the tables "
                                  "again (snakemake --cores N --forcerun tables)")
    (tmp_path / "accuracy_vs_gap.csv").write_bytes(b"\x00\x01 not a table")
    result = subprocess.run([sys.executable, "-m", "gapbench", "paper-tables", "--tables", str(tmp_path), "--out-dir",
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"gapbench paper-tables: {tmp_path / 'accuracy_vs_gap.csv'} ") and \
        "collect the tables again" in result.stderr and "Traceback" not in result.stderr, result.stderr
