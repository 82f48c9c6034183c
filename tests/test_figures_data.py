"""What the figures draw (test_figures_layout.py checks how they look), from small made-up tidy
tables whose every value says which gap and seed it came from: accuracy_vs_gap's means and band,
the per-stage figures' gap (gradient_decay's curves), decay_rate_vs_gap_solved's rates."""
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection

from gapbench.reports import figures
from gapbench.reports.tables import INTERVAL_SEEDS, table_reader

GAPS = (10, 100)
STAGES = ("init", "trained")


def _tables(folder, seeds: int):
    """One task (adding), one model (vanilla), clip arm none, gaps 10 and 100: a run's test score
    is gap + seed / 100, its trained decay rate −gap / 1000, and its gradient norm at lag l
    10^(−gap − l)."""
    runs = [{"task": "adding", "model": "vanilla", "model_name": "vanilla", "clip": "none", "gap": gap, "seed": seed}
            for gap in GAPS for seed in range(seeds)]
    pd.DataFrame([{**run, "test_score": run["gap"] + 0.01 * run["seed"], "test_loss": 0.1, "metric": "accuracy",
                   "chance_score": 0.5, "diverged": False, "success": True, "baseline": 1.0, "hidden_size": 8}
                  for run in runs]).to_csv(folder / "accuracy_vs_gap.csv", index=False)
    keys = [{key: run[key] for key in ("task", "model", "clip", "gap", "seed")} for run in runs]
    pd.DataFrame([{**key, "stage": stage, "decay_log10_per_step": -key["gap"] / 1000}
                  for key in keys for stage in STAGES]).to_csv(folder / "propagation_summary.csv", index=False)
    pd.DataFrame([{**key, "stage": stage, "lag": lag, "log10_grad_norm": -key["gap"] - lag}
                  for key in keys for stage in STAGES for lag in range(3)]).to_parquet(
        folder / "gradient_decay.parquet", index=False)
    return table_reader(folder)


def _drawn(figure, axis: str) -> set[float]:
    """Every x (or y) value of every line on the figure's visible panels."""
    return {float(value) for ax in figure.axes if ax.get_visible() for line in ax.get_lines()
            for value in (line.get_xdata() if axis == "x" else line.get_ydata())}


def _draw(name: str, read):
    with figures.paper_style():
        drawn = figures.FIGURES[name].draw(read, None)
    return getattr(drawn, "figure", drawn)  # a seaborn grid holds its figure


@pytest.mark.parametrize("seeds", [INTERVAL_SEEDS, INTERVAL_SEEDS - 1, 2])
def test_the_accuracy_band_is_a_bootstrap_interval_from_interval_seeds_and_seeds_are_points_below(tmp_path, seeds):
    """From INTERVAL_SEEDS seeds a bootstrap band around the mean; below, no band but each
    seed's score a point (a band over 2 seeds, one solved and one not, covered whole panels)."""
    figure = _draw("accuracy_vs_gap", _tables(tmp_path, seeds))
    legend = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    bands = [collection for collection in ax.collections if isinstance(collection, PolyCollection)]
    drawn = {round(y, 9) for y in _drawn(figure, "y")}
    mean_seed = (seeds - 1) / 2  # each gap's point: the mean over the seeds of gap + seed / 100
    assert {10 + mean_seed / 100, 100 + mean_seed / 100} <= drawn
    every_seed = {round(gap + seed / 100, 9) for gap in GAPS for seed in range(seeds)}
    if seeds >= INTERVAL_SEEDS:
        assert any(text.startswith("band: 95% bootstrap") for text in legend), legend
        assert len(bands) == 1 and not every_seed <= drawn
    else:
        assert "each seed" in legend and not any(text.startswith("band") for text in legend), legend
        assert not bands and every_seed <= drawn
    figures.plt.close(figure)


def test_the_bootstrap_band_is_a_95_percent_interval_of_the_mean():
    """Over many seeds the percentile bootstrap interval of a mean is about ± 1.96 s/√n."""
    values = np.random.default_rng(0).normal(size=400)
    band = figures._mean_and_band(pd.DataFrame({"k": 0, "y": values}), ["k"], "y", bootstrap=True).iloc[0]
    assert band["mean"] == pytest.approx(values.mean())
    assert (band.high - band.low) / 2 == pytest.approx(1.96 * values.std() / math.sqrt(len(values)), rel=0.08)


def test_the_per_stage_figures_draw_the_largest_gap_unless_told(tmp_path):
    read = _tables(tmp_path, 2)
    figure = _draw("gradient_decay", read)
    titles = " ".join(ax.get_title() for ax in figure.axes if ax.get_visible())
    assert "gap 100" in titles and "gap 10," not in titles
    assert _drawn(figure, "y") == {-100.0, -101.0, -102.0}
    figures.plt.close(figure)
    with figures.paper_style():
        chosen = figures.FIGURES["gradient_decay"].draw(read, {"adding": 10})
    assert _drawn(chosen, "y") == {-10.0, -11.0, -12.0}
    figures.plt.close(chosen)


def test_a_per_stage_figure_of_a_few_lags_ticks_whole_lags_only(tmp_path):
    """Lags 0 to 2: matplotlib's own ticks would be 0, 0.25, 0.5, ..., lags no run has."""
    figure = _draw("gradient_decay", _tables(tmp_path, 2))
    for ax in (ax for ax in figure.axes if ax.get_visible()):
        low, high = ax.get_xlim()
        shown = [tick for tick in ax.xaxis.get_majorticklocs() if low <= tick <= high]
        assert len(shown) >= 2 and all(float(tick).is_integer() for tick in shown), shown
    figures.plt.close(figure)


def test_the_decay_rate_against_the_gap_solved_is_the_largest_gap_s_rate(tmp_path):
    figure = _draw("decay_rate_vs_gap_solved", _tables(tmp_path, 2))
    assert _drawn(figure, "x") - {0.0} == {-0.1}  # the trained rate at gap 100 (a grey line at x = 0 aside)
    figures.plt.close(figure)


def test_a_panel_without_any_decay_rate_draws_every_run_at_no_rate(tmp_path):
    """Every run without a rate (each solved to a loss of exactly 0): no finite x to scale by,
    every point at "no rate" (the axis' limits were NaN, and the figure failed)."""
    _tables(tmp_path, 2)
    summary = pd.read_csv(tmp_path / "propagation_summary.csv").assign(decay_log10_per_step=np.nan)
    summary.to_csv(tmp_path / "propagation_summary.csv", index=False)
    figure = _draw("decay_rate_vs_gap_solved", table_reader(tmp_path))
    figures.fit_to_page(figure)
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    ticks = list(ax.xaxis.get_majorticklocs())
    no_rate = ticks[ax.xaxis.get_major_formatter().format_ticks(ticks).index("no\nrate")]
    assert _drawn(figure, "x") - {0.0} == {no_rate} and np.isfinite(ax.get_xlim()).all()
    figures.plt.close(figure)


def test_below_interval_seeds_every_seed_stays_on_an_mse_axis_cut_above_an_exploded_one(tmp_path):
    """An MSE task, 2 seeds: at gap 10 one seed solved (1e-4) and one exploded (1e30, off scale
    at the top); the axis is cut at 100 × the baseline and still shows the solved seed."""
    rows = [{"task": "adding", "model": "vanilla", "model_name": "vanilla", "clip": "none", "gap": gap, "seed": seed,
             "test_score": score, "test_loss": score, "metric": "mse", "chance_score": 1 / 6, "diverged": False,
             "success": score < 1 / 60, "baseline": 1 / 6, "hidden_size": 8}
            for gap, scores in ((10, (1e-4, 1e30)), (100, (0.1, 0.12))) for seed, score in enumerate(scores)]
    pd.DataFrame(rows).to_csv(tmp_path / "accuracy_vs_gap.csv", index=False)
    figure = _draw("accuracy_vs_gap", table_reader(tmp_path))
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    low, high = ax.get_ylim()
    assert low < 1e-4 and high == pytest.approx(100 / 6) and "1 run above 100× baseline" in ax.get_title().replace("\n", " ")
    figures.plt.close(figure)


def _decay_reader(tmp_path, trained_norms):
    """gradient_decay of 2 seeds whose trained log10 norms at lags 0-2 are `trained_norms[seed]`."""
    read = _tables(tmp_path, 2)
    decay = read("gradient_decay").astype({"log10_grad_norm": float})
    for seed, values in enumerate(trained_norms):
        for lag, value in enumerate(values):
            decay.loc[(decay.seed == seed) & (decay.stage == "trained") & (decay.gap == 100) & (decay.lag == lag),
                      "log10_grad_norm"] = value
    decay.to_parquet(tmp_path / "gradient_decay.parquet", index=False)
    return table_reader(tmp_path)


def test_plus_and_minus_infinity_at_one_point_are_counted_in_the_title(tmp_path):
    figure = _draw("gradient_decay", _decay_reader(tmp_path, [(-1, -np.inf, -3), (-1, np.inf, -3)]))
    trained = [ax for ax in figure.axes if ax.get_visible() and "trained" in ax.get_title()]
    assert len(trained) == 1
    assert "(+∞ and −∞ among the seeds at 1 point of vanilla: not drawn)" in trained[0].get_title().replace("\n", " ")
    figures.plt.close(figure)


def test_a_panel_of_nothing_but_minus_infinity_has_no_other_tick(tmp_path):
    figure = _draw("gradient_decay", _decay_reader(tmp_path, [(-np.inf,) * 3, (-np.inf,) * 3]))
    figures.fit_to_page(figure)
    (trained,) = [ax for ax in figure.axes if ax.get_visible() and "trained" in ax.get_title()]
    ticks = trained.yaxis.get_majorticklocs()
    assert trained.yaxis.get_major_formatter().format_ticks(ticks) == ["−∞"]
    figures.plt.close(figure)


def test_a_figure_function_of_the_wrong_signature_is_refused_when_registered():
    with pytest.raises(TypeError) as refused:
        figures.figure("registry_test_two_arguments")(lambda read, gaps: None)
    assert str(refused.value).startswith("figure 'registry_test_two_arguments' (tests/test_figures_data.py): its "
                                         "function must take (read, gaps, layout)"), refused.value
    assert "registry_test_two_arguments" not in figures.FIGURES


def test_a_figure_reading_a_column_its_table_lacks_is_named_with_the_figure(tmp_path, monkeypatch):
    """Not "collect the tables again", which cannot add a column no probe writes: the figure, its
    file, the column and the columns the table holds."""
    from gapbench.reports.tables import UnreadableTable

    _tables(tmp_path, 2)
    monkeypatch.setattr(figures, "FIGURES", {})  # this figure alone
    figures.figure("registry_test_norms")(
        lambda read, gaps, layout: read("gradient_decay", columns=["lag", "norms"]))
    with pytest.raises(UnreadableTable) as refused:
        figures.draw_all(tmp_path, tmp_path / "figures")
    message = str(refused.value)
    assert message.startswith(f"figure 'registry_test_norms' (tests/test_figures_data.py): {tmp_path}/gradient_decay."
                              "parquet has no column norms (it has "), message
    assert "only if an older gapbench wrote it" in message


def test_draw_all_draws_only_the_pages_asked_for(tmp_path, monkeypatch):
    """The pipeline draws each page in a job of its own (`gapbench figures --page STEM`)."""
    _tables(tmp_path, 2)
    monkeypatch.setattr(figures, "FIGURES", {})
    for name in ("registry_test_first", "registry_test_second"):
        figures.figure(name)(lambda read, gaps, layout: figures.plt.figure())
    assert figures.draw_all(tmp_path, tmp_path / "figures", stems=["registry_test_second"]) == ["registry_test_second"]
    assert sorted(path.name for path in (tmp_path / "figures").iterdir()) == [
        "registry_test_second.pdf", "registry_test_second.png"]


def test_a_page_the_tables_do_not_have_is_refused_before_any_is_drawn(tmp_path):
    """A page asked of the command line that the tables' figures do not have (the Snakefile's
    pages, from the config, disagree with the tables'): named, with the pages there are."""
    import subprocess
    import sys

    _tables(tmp_path, 2)
    result = subprocess.run([sys.executable, "-m", "gapbench", "figures", "--tables", str(tmp_path), "--out-dir",
                             str(tmp_path / "figures"), "--page", "accuracy_vs_gap_page2"],
                            capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"gapbench figures: no figure page 'accuracy_vs_gap_page2' in the tables of {tmp_path}; "
                                    "their pages: accuracy_vs_gap, success_rate_vs_gap, gradient_decay,"), result.stderr
    assert not (tmp_path / "figures").exists()
