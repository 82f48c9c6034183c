"""Publication figures drawn from the tidy tables only (never from in-memory training state).

Each figure is one function decorated with `@figure("name")`: it gets `read(table_name)`
(the tidy table as a DataFrame) and the per-task gaps to show, and returns its seaborn grid;
`draw_all` saves every registered figure as name.pdf and name.png. Adding a figure touches
nothing outside this module: the pipeline's targets come from `FIGURES`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from gapbench.io import atomic_path  # noqa: E402
from gapbench.results import FIGURE_FORMATS, KEYS, table_reader  # noqa: E402

METRIC_LABEL = {"accuracy": "test accuracy (recall positions)", "mse": "test MSE"}
STYLE = {"errorbar": ("ci", 95), "seed": 0, "markers": True, "dashes": True}
# Per-lag curves have hundreds of points per line: a bootstrap at each would take minutes, and
# over a few seeds a 95% interval says little, so their band is the range over seeds.
CURVE_STYLE = {**STYLE, "errorbar": ("pi", 100), "markers": False}
# One colour per model in every figure: a hue per family (Okabe & Ito's colour-blind-safe
# palette), shades of it for the models of a family; legends list models family by family.
FAMILY_COLOURS = {
    "elementwise": "#0072B2", "orthogonal/unitary": "#CC79A7", "gated": "#D55E00", "reservoir": "#009E73",
    "diagonal": "#E69F00", "oscillator": "#56B4E9", "other": "#000000",
}


def model_colours(names) -> dict[str, tuple]:
    """{model: RGB} for the models in `names`, ordered family by family, then by name.

    A model's family is its class attribute in gapbench.models (a name the registry does not
    know, e.g. from someone else's tables, counts as "other"). Shades depend only on the
    family's registered members, so a model keeps its colour whichever subset a figure shows.
    """
    from matplotlib.colors import to_rgb

    from gapbench import models

    registered = set(models.names())
    family = {name: models.family(name) if name in registered else "other" for name in set(names) | registered}
    order = list(FAMILY_COLOURS)
    colours = {}
    for name in sorted(family, key=lambda n: (order.index(family[n]) if family[n] in order else len(order), n)):
        members = sorted(n for n in family if family[n] == family[name])
        base = np.array(to_rgb(FAMILY_COLOURS.get(family[name], "#000000")))
        # from a darker (55% of the hue) to a lighter shade (a third of the way to white)
        position = members.index(name) / (len(members) - 1) if len(members) > 1 else 0.5
        dark, light = 0.55 * base, base + 0.35 * (1 - base)
        colours[name] = tuple(float(c) for c in (1 - position) * dark + position * light)
    return {name: colour for name, colour in colours.items() if name in set(names)}


def _hue(table: pd.DataFrame) -> dict:
    """seaborn keywords that give each model its fixed colour and the family order."""
    colours = model_colours(table["model"].unique())
    return {"hue": "model", "palette": colours, "hue_order": list(colours)}


FIGURES: dict[str, Callable] = {}  # name -> function(read, gaps) returning the figure's grid


def figure(name: str):
    """Register a figure under `name` (its file stem)."""
    def decorator(function):
        if name in FIGURES:
            raise ValueError(f"figure {name!r} is registered twice")
        FIGURES[name] = function
        return function

    return decorator


def _save(grid, out_dir: Path, stem: str) -> None:
    """Save a seaborn grid (or a matplotlib figure) as stem.pdf and stem.png, without timestamps."""
    for suffix in FIGURE_FORMATS:
        with atomic_path(out_dir / f"{stem}.{suffix}") as tmp:
            # no timestamps in the files: same tables, same bytes
            metadata = {"CreationDate": None} if suffix == "pdf" else {"Software": None}
            grid.savefig(tmp, format=suffix, dpi=150, bbox_inches="tight", metadata=metadata)
    plt.close(grid.figure)


@figure("accuracy_vs_gap")
def accuracy_vs_gap(read, gaps=None):
    """Test score against the gap (log x): one panel per task (wrapped three to a row), a line
    per model, clip arm as style.

    Lines are the mean over seeds with a 95% bootstrap confidence band; the dotted grey line
    is the score of the memoryless predictor (chance accuracy or baseline MSE). MSE panels
    have a log y axis, so one exploding run cannot flatten the others. Runs marked diverged
    are ringed in black at their score; runs whose score is not finite cannot
    be drawn and are counted in the panel title.
    """
    from matplotlib.lines import Line2D

    accuracy = read("accuracy_vs_gap")
    finite = accuracy[np.isfinite(accuracy.test_score)]
    dropped = accuracy[~np.isfinite(accuracy.test_score)].groupby("task").size()
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=finite, x="gap", y="test_score", col="task", col_order=sorted(accuracy.task.unique()),
        col_wrap=min(3, accuracy.task.nunique()), style="clip",
        **_hue(finite), kind="line", facet_kws={"sharey": False, "sharex": False}, height=2.6, aspect=1.25, **STYLE,
    )
    for task, ax in grid.axes_dict.items():
        rows = accuracy[accuracy.task == task]
        ax.set_xscale("log")
        ax.set_xticks(sorted(rows.gap.unique()))  # label the gaps that were run, nothing else
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        metric = rows.metric.iloc[0]
        ax.set_ylabel(METRIC_LABEL.get(metric, metric))
        if metric == "mse":
            ax.set_yscale("log")
        ax.axhline(rows.chance_score.mean(), color="grey", linestyle=":", linewidth=1)
        diverged = rows[rows.diverged.astype(bool) & np.isfinite(rows.test_score)]
        ax.scatter(diverged.gap, diverged.test_score, marker="o", facecolors="none", edgecolors="black", s=70,
                   linewidths=1.2, zorder=5)
        lost = f" ({dropped[task]} non-finite runs not drawn)" if task in dropped else ""
        ax.set_title(f"{task}{lost}")
    grid.set_xlabels("gap (steps)")
    # the memoryless line and the diverged mark, explained once in the legend
    legend = grid.legend
    handles = [*legend.legend_handles,
               Line2D([], [], color="grey", linestyle=":", linewidth=1, label="memoryless predictor"),
               Line2D([], [], color="black", marker="o", markerfacecolor="none", markersize=8, linestyle="",
                      label="diverged run (ringed)")]
    labels = [t.get_text() for t in legend.texts] + ["memoryless predictor", "diverged run (ringed)"]
    legend.remove()
    grid.figure.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    grid.figure.subplots_adjust(wspace=0.3, hspace=0.45)
    return grid


@figure("success_rate_vs_gap")
def success_rate_vs_gap(read, gaps=None):
    """The fraction of seeds whose run succeeded (test loss below 10% of the memoryless
    baseline) at each gap, as a heatmap per task (three to a row): a row per model and clip arm
    (models family by family), a column per gap, the fraction written in each cell. A heatmap,
    not lines: fractions of a few seeds take few values, and lines at 0 and 1 would hide each
    other."""
    accuracy = read("accuracy_vs_gap")
    order = list(model_colours(accuracy["model"].unique()))
    rate = accuracy.assign(success=accuracy.success.astype(float),
                           row=accuracy["model"] + " / " + accuracy["clip"])
    tasks = sorted(rate.task.unique())
    columns = min(3, len(tasks))
    rows = -(-len(tasks) // columns)
    height = 0.22 * rate.row.nunique() + 1.0
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, height * rows), squeeze=False,
                                constrained_layout=True)
    for ax, task in zip(axes.flat, tasks):
        table = rate[rate.task == task].pivot_table(index="row", columns="gap", values="success", aggfunc="mean")
        labels = sorted(table.index, key=lambda r: (order.index(r.split(" / ")[0]), r))
        sns.heatmap(table.loc[labels], ax=ax, vmin=0, vmax=1, cmap="cividis", annot=True, fmt=".2g",
                    cbar=False, linewidths=0.5, annot_kws={"fontsize": 6})
        ax.set_title(task)
        ax.set_xlabel("gap (steps)")
        ax.set_ylabel("")
        ax.tick_params(axis="y", labelsize=6)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    figure.suptitle("fraction of seeds that solved the task", fontsize=9)
    return figure


def _at_chosen_gap(table: pd.DataFrame, gaps: dict | None) -> pd.DataFrame:
    """The rows of each task at its gap in `gaps` (default: the task's largest), with the
    task column relabelled "task, gap G" for the panel titles."""
    gaps = gaps or {}
    chosen = {task: gaps.get(task, rows.gap.max()) for task, rows in table.groupby("task")}
    shown = table[table.gap == table.task.map(chosen)].copy()
    shown["task"] = shown.task.map(lambda t: f"{t}, gap {chosen[t]}")
    return shown


def _per_stage(table, x, y, xlabel, ylabel, gaps=None):
    """One column per task (at its chosen gap), one row per stage (init, trained), a line
    per model, clip arm as style; mean over seeds, the band their range (min to max)."""
    shown = _at_chosen_gap(table, gaps)
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=shown, x=x, y=y, col="task", row="stage", style="clip", kind="line", **_hue(shown),
        row_order=["init", "trained"], facet_kws={"sharey": False, "sharex": False},
        height=3.0, aspect=1.3, **CURVE_STYLE,
    )
    grid.set_axis_labels(xlabel, ylabel)
    return grid


@figure("gradient_decay")
def gradient_decay(read, gaps=None):
    """log10 ||∂L_t/∂h_k|| against the lag t − k, at initialisation and after training.

    Each run's value is the mean norm over its probe sequences; lines are the mean of log10
    over seeds (a geometric mean). A straight line of slope −r/ln10 is exponential decay at
    the fitted rate r; a flat line is a norm-preserving Jacobian product.
    """
    return _per_stage(read("gradient_decay"), "lag", "log10_grad_norm",
                      "lag t − k (steps)", "log₁₀ ‖∂L_t/∂s_k‖ (full state s)", gaps)


@figure("sensitivity")
def sensitivity(read, gaps=None):
    """log10 ||∂h_t/∂x_l||_F against the lag t − l: how much of an input l steps back still
    moves the last state (forward memory), init and trained."""
    return _per_stage(read("sensitivity"), "lag", "log10_sensitivity",
                      "lag t − l (steps)", "log₁₀ ‖∂s_t/∂x_l‖ (full state s)", gaps)


@figure("jacobian_spectrum")
def jacobian_spectrum(read, gaps=None):
    """Singular values σ_i of ∂h_t/∂h_{t−L} (log10, descending) at the largest probed lag L:
    a flat top near 0 is dynamical isometry; a steep fall means only a few directions of the
    past state still reach h_t."""
    table = read("jacobian_spectrum")
    product = table[(table.quantity == "product") & (table.statistic == "log10_singular_value")]
    longest = product.groupby(KEYS + ["stage"]).lag.transform("max")
    return _per_stage(product[product.lag == longest], "index", "value",
                      "singular value index i", "log₁₀ σ_i(∂h_t/∂h_{t−L}), L = longest lag", gaps)


@figure("lyapunov")
def lyapunov(read, gaps=None):
    """Lyapunov exponents λ_i (natural log per step) in decreasing order: λ_1 < 0 means
    perturbations, and memories, fade at rate λ_1; λ ≡ 0 is a norm-preserving map."""
    table = read("lyapunov")
    finite = table[np.isfinite(table.exponent)]
    return _per_stage(finite, "index", "exponent", "exponent index i", "λ_i (per step)", gaps)


@figure("memory_capacity")
def memory_capacity(read, gaps=None):
    """MC_k, the squared correlation of a linear readout of the state with u(t − k), against
    the delay k (Jaeger 2001); the area under each curve is the memory capacity MC ≤ H."""
    return _per_stage(read("memory_capacity"), "delay", "mc", "delay k (steps)", "MC_k", gaps)


def largest_gap_solved_per_seed(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model, clip, seed): the largest gap whose run succeeded (0 if none)."""
    solved = accuracy.assign(solved_gap=accuracy.gap.where(accuracy.success.astype(bool), 0))
    return solved.groupby(["task", "model", "clip", "seed"], as_index=False).solved_gap.max()


@figure("decay_rate_vs_gap_solved")
def decay_rate_vs_gap_solved(read, gaps=None):
    """The fitted gradient decay rate r of the trained network (at the task's largest gap)
    against the largest gap the same (model, clip, seed) solved: theory predicts that fast
    decay (large r, half-life ln2/r short) goes with short solved gaps. One point per
    (model, clip, seed), one panel per task."""
    accuracy, summary = read("accuracy_vs_gap"), read("propagation_summary")
    trained = summary[summary.stage == "trained"]
    hardest = trained[trained.gap == trained.groupby("task").gap.transform("max")]
    points = largest_gap_solved_per_seed(accuracy).merge(
        hardest[["task", "model", "clip", "seed", "decay_rate"]], on=["task", "model", "clip", "seed"])
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=points, x="decay_rate", y="solved_gap", col="task", style="clip", **_hue(points),
        kind="scatter", facet_kws={"sharey": False, "sharex": False}, height=3.0, aspect=1.2, s=40,
    )
    grid.set_axis_labels("fitted decay rate r (ln per step; trained, largest gap)", "largest gap solved")
    return grid


def draw_all(tables_dir, out_dir, gaps: dict | None = None) -> None:
    """Draw every registered figure from the tables in tables_dir (each table read once)."""
    read = table_reader(tables_dir)
    for name, draw in FIGURES.items():
        _save(draw(read, gaps), Path(out_dir), name)
