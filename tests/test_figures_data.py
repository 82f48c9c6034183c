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


def test_the_decay_rate_against_the_gap_solved_is_the_largest_gap_s_rate(tmp_path):
    figure = _draw("decay_rate_vs_gap_solved", _tables(tmp_path, 2))
    assert _drawn(figure, "x") - {0.0} == {-0.1}  # the trained rate at gap 100 (a grey line at x = 0 aside)
    figures.plt.close(figure)
