"""Publication figures drawn from the tidy tables only (never from in-memory training state)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from gapbench.io import atomic_path  # noqa: E402

METRIC_LABEL = {"accuracy": "test accuracy (recall positions)", "mse": "test MSE"}
KEY_COLUMNS = ["task", "model", "clip", "gap", "seed"]
STYLE = {"errorbar": ("ci", 95), "seed": 0, "markers": True, "dashes": True}
# Per-lag curves have hundreds of points per line: a bootstrap at each would take minutes, and
# over a few seeds a 95% interval says little, so their band is the range over seeds.
CURVE_STYLE = {**STYLE, "errorbar": ("pi", 100), "markers": False}


def _save(grid, out_dir: Path, stem: str) -> None:
    for suffix in ("pdf", "png"):
        with atomic_path(out_dir / f"{stem}.{suffix}") as tmp:
            # no timestamps in the files: same tables, same bytes
            metadata = {"CreationDate": None} if suffix == "pdf" else {"Software": None}
            grid.savefig(tmp, format=suffix, dpi=150, bbox_inches="tight", metadata=metadata)
    plt.close(grid.figure)


def accuracy_vs_gap(accuracy: pd.DataFrame, out_dir) -> None:
    """Test score against the gap (log x): one panel per task, a line per model, clip as style.

    Lines are the mean over seeds with a 95% bootstrap confidence band; the dotted
    horizontal line is the score of the memoryless predictor (chance accuracy or baseline MSE).
    Runs whose test score is not finite (diverged forward pass) are left out and counted
    in the panel title; diverged runs with finite scores stay in.
    """
    finite = accuracy[np.isfinite(accuracy.test_score)]
    dropped = accuracy[~np.isfinite(accuracy.test_score)].groupby("task").size()
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=finite, x="gap", y="test_score", col="task", hue="model", style="clip",
        kind="line", facet_kws={"sharey": False, "sharex": False}, height=3.2, aspect=1.3, **STYLE,
    )
    for task, ax in grid.axes_dict.items():
        rows = accuracy[accuracy.task == task]
        ax.set_xscale("log")
        ax.set_xticks(sorted(rows.gap.unique()))  # label the gaps that were run, nothing else
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(METRIC_LABEL.get(rows.metric.iloc[0], rows.metric.iloc[0]))
        ax.axhline(rows.chance_score.mean(), color="grey", linestyle=":", linewidth=1)
        lost = f"; {dropped[task]} non-finite runs left out" if task in dropped else ""
        ax.set_title(f"{task} (dotted: memoryless{lost})")
    grid.set_xlabels("gap (steps)")
    grid.figure.subplots_adjust(wspace=0.3)
    _save(grid, Path(out_dir), "accuracy_vs_gap")


def _at_chosen_gap(table: pd.DataFrame, gaps: dict | None) -> pd.DataFrame:
    """The rows of each task at its gap in `gaps` (default: the task's largest), with the
    task column relabelled "task, gap G" for the panel titles."""
    gaps = gaps or {}
    chosen = {task: gaps.get(task, rows.gap.max()) for task, rows in table.groupby("task")}
    shown = table[table.gap == table.task.map(chosen)].copy()
    shown["task"] = shown.task.map(lambda t: f"{t}, gap {chosen[t]}")
    return shown


def _per_stage(table, x, y, out_dir, stem, xlabel, ylabel, gaps=None) -> None:
    """One column per task (at its chosen gap), one row per stage (init, trained), a line
    per model, clip arm as style; mean over seeds, the band their range (min to max)."""
    shown = _at_chosen_gap(table, gaps)
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=shown, x=x, y=y, col="task", row="stage", hue="model", style="clip", kind="line",
        row_order=["init", "trained"], facet_kws={"sharey": False, "sharex": False},
        height=3.0, aspect=1.3, **CURVE_STYLE,
    )
    grid.set_axis_labels(xlabel, ylabel)
    _save(grid, Path(out_dir), stem)


def gradient_decay(decay: pd.DataFrame, out_dir, gaps: dict | None = None) -> None:
    """log10 ||∂L_t/∂h_k|| against the lag t − k, at initialisation and after training.

    Each run's value is the mean norm over its probe sequences; lines are the mean of log10
    over seeds (a geometric mean). A straight line of slope −r/ln10 is exponential decay at
    the fitted rate r; a flat line is a norm-preserving Jacobian product.
    """
    _per_stage(decay, "lag", "log10_grad_norm", out_dir, "gradient_decay",
               "lag t − k (steps)", "log₁₀ ‖∂L_t/∂h_k‖", gaps)


def sensitivity(table: pd.DataFrame, out_dir, gaps: dict | None = None) -> None:
    """log10 ||∂h_t/∂x_l||_F against the lag t − l: how much of an input l steps back still
    moves the last state (forward memory), init and trained."""
    _per_stage(table, "lag", "log10_sensitivity", out_dir, "sensitivity",
               "lag t − l (steps)", "log₁₀ ‖∂h_t/∂x_l‖", gaps)


def jacobian_spectrum(table: pd.DataFrame, out_dir, gaps: dict | None = None) -> None:
    """Singular values σ_i of ∂h_t/∂h_{t−L} (log10, descending) at the largest probed lag L:
    a flat top near 0 is dynamical isometry; a steep fall means only a few directions of the
    past state still reach h_t."""
    product = table[(table.quantity == "product") & (table.statistic == "log10_singular_value")]
    longest = product.groupby(KEY_COLUMNS + ["stage"]).lag.transform("max")
    _per_stage(product[product.lag == longest], "index", "value", out_dir, "jacobian_spectrum",
               "singular value index i", "log₁₀ σ_i(∂h_t/∂h_{t−L}), L = longest lag", gaps)


def lyapunov(table: pd.DataFrame, out_dir, gaps: dict | None = None) -> None:
    """Lyapunov exponents λ_i (natural log per step) in decreasing order: λ_1 < 0 means
    perturbations, and memories, fade at rate λ_1; λ ≡ 0 is a norm-preserving map."""
    finite = table[np.isfinite(table.exponent)]
    _per_stage(finite, "index", "exponent", out_dir, "lyapunov", "exponent index i", "λ_i (per step)", gaps)


def memory_capacity(table: pd.DataFrame, out_dir, gaps: dict | None = None) -> None:
    """MC_k, the squared correlation of a linear readout of the state with u(t − k), against
    the delay k (Jaeger 2001); the area under each curve is the memory capacity MC ≤ H."""
    _per_stage(table, "delay", "mc", out_dir, "memory_capacity", "delay k (steps)", "MC_k", gaps)


def largest_gap_solved(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model, clip, seed): the largest gap whose run succeeded (0 if none)."""
    solved = accuracy.assign(solved_gap=accuracy.gap.where(accuracy.success.astype(bool), 0))
    return solved.groupby(["task", "model", "clip", "seed"], as_index=False).solved_gap.max()


def decay_rate_vs_gap_solved(accuracy: pd.DataFrame, summary: pd.DataFrame, out_dir) -> None:
    """The fitted gradient decay rate r of the trained network (at the task's largest gap)
    against the largest gap the same (model, clip, seed) solved: theory predicts that fast
    decay (large r, half-life ln2/r short) goes with short solved gaps. One point per
    (model, clip, seed), one panel per task."""
    trained = summary[summary.stage == "trained"]
    hardest = trained[trained.gap == trained.groupby("task").gap.transform("max")]
    points = largest_gap_solved(accuracy).merge(
        hardest[["task", "model", "clip", "seed", "decay_rate"]], on=["task", "model", "clip", "seed"])
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=points, x="decay_rate", y="solved_gap", col="task", hue="model", style="clip",
        kind="scatter", facet_kws={"sharey": False, "sharex": False}, height=3.0, aspect=1.2, s=40,
    )
    grid.set_axis_labels("fitted decay rate r (ln per step; trained, largest gap)", "largest gap solved")
    _save(grid, Path(out_dir), "decay_rate_vs_gap_solved")


def draw_all(tables_dir, out_dir, gaps: dict | None = None) -> None:
    tables_dir = Path(tables_dir)
    read = lambda name: pd.read_csv(tables_dir / f"{name}.csv")  # noqa: E731
    accuracy = read("accuracy_vs_gap")
    accuracy_vs_gap(accuracy, out_dir)
    gradient_decay(read("gradient_decay"), out_dir, gaps)
    sensitivity(read("sensitivity"), out_dir, gaps)
    jacobian_spectrum(read("jacobian_spectrum"), out_dir, gaps)
    lyapunov(read("lyapunov"), out_dir, gaps)
    memory_capacity(read("memory_capacity"), out_dir, gaps)
    decay_rate_vs_gap_solved(accuracy, read("propagation_summary"), out_dir)
