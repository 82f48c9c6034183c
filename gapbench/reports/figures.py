"""Publication figures drawn from the tidy tables only (never from in-memory training state).

Each figure is one function decorated with `@figure("name")`: it gets `read(table_name,
columns=None, rows=None)` (gapbench.reports.tables.table_reader: the tidy table as a DataFrame,
only the columns and rows asked for) and the per-task gaps to show, and returns its seaborn grid;
`draw_all` saves every registered figure as name.pdf and name.png. Adding a figure touches
nothing outside this module: the pipeline's targets come from `FIGURES`.

Every figure is drawn in one paper style (`paper_style`: fonts of FONT_SIZES points) and saved
at a width a paper includes at 100% scale (`fit_to_page`): TEXT_WIDTH, or COLUMN_WIDTH for a
figure with a single column of panels; the legend goes to the right of the panels, the height
follows the rows of panels (PANEL_HEIGHT each for line and scatter panels).
"""
from __future__ import annotations

import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation, NullFormatter, ScalarFormatter  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from gapbench.files import atomic_path  # noqa: E402
from gapbench.reports.tables import table_reader  # noqa: E402
from gapbench.results import FIGURE_FORMATS, KEYS  # noqa: E402

# Print sizes, in inches: the column of a two-column paper and its full text width (which also
# fits the text block of a one-column paper); every figure is saved at one of the two, so it is
# included at 100% scale and its text prints at FONT_SIZES.
COLUMN_WIDTH = 3.4
TEXT_WIDTH = 7.0
PANEL_HEIGHT = 1.75  # one row of line or scatter panels, titles and axis labels included
FONT_SIZES = (7.0, 9.0)  # points at the printed size: every text in every figure is in this range
PNG_DPI = 200  # the PNG (for the HTML report) is TEXT_WIDTH × 200 = 1400 pixels wide; the PDF is vector
PAPER_RC = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "legend.title_fontsize": 8, "figure.titlesize": 9,
    "lines.linewidth": 1.0, "lines.markersize": 4, "axes.linewidth": 0.6, "grid.linewidth": 0.5,
    "xtick.major.size": 2.5, "ytick.major.size": 2.5, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
    "xtick.major.pad": 2, "ytick.major.pad": 2, "axes.labelpad": 2, "axes.titlepad": 3,
    "legend.handlelength": 2.2, "legend.borderaxespad": 0.3,
    # TrueType (Type 42) fonts, not Type 3: publishers' PDF checks refuse Type 3
    "pdf.fonttype": 42, "ps.fonttype": 42,
}

MSE_AXIS_TOP = 100  # MSE panels stop at this multiple of the memoryless baseline
METRIC_LABEL = {"accuracy": "test accuracy", "mse": "test MSE"}  # tables without a score_label column
STYLE = {"errorbar": ("ci", 95), "seed": 0, "markers": True, "dashes": True}
BOOTSTRAP_SEEDS = 5  # from this many seeds a band is a 95% bootstrap interval; below, the seeds' range
# Per-lag curves have hundreds of points per line: a bootstrap at each would take minutes, and
# over a few seeds a 95% interval says little, so their band is the range over seeds.
CURVE_STYLE = {**STYLE, "errorbar": ("pi", 100), "markers": False}
# One colour per model in every figure: a hue per family (Okabe & Ito's colour-blind-safe
# palette), shades of it for the models of a family; legends list models family by family.
FAMILY_COLOURS = {
    "elementwise": "#0072B2", "orthogonal/unitary": "#CC79A7", "gated": "#D55E00", "reservoir": "#009E73",
    "diagonal": "#E69F00", "oscillator": "#56B4E9", "other": "#000000",
}


def model_colours(names, registry_names: dict | None = None) -> dict[str, tuple]:
    """{model: RGB} for the models in `names`, ordered family by family, then by name.

    A model's family is its class attribute in gapbench.models; registry_names maps a model
    entry's label to its registered name (a label names a variant, e.g. esn_linear). A name
    the registry does not know, e.g. from someone else's tables, counts as "other". Shades
    depend only on the family's registered members and the variants shown, so a model keeps
    its colour whichever subset a figure shows.
    """
    from matplotlib.colors import to_rgb

    from gapbench import models

    registered = set(models.names())
    registry_names = registry_names or {}

    def family_of(name):
        name = registry_names.get(name, name)
        return models.family(name) if name in registered else "other"

    family = {name: family_of(name) for name in set(names) | registered}
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


class _PlainLogFormatter(LogFormatterSciNotation):
    """Log-axis tick labels as plain numbers (0.2, 1, 30): the same ticks as matplotlib's
    default, without 10^k superscripts, which would print below FONT_SIZES."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def _registry_names(read) -> dict:
    """{model label: registered model name}, from the accuracy table."""
    accuracy = read("accuracy_vs_gap")
    return dict(zip(accuracy["model"], accuracy["model_name"]))


def _hue(table: pd.DataFrame, read) -> dict:
    """seaborn keywords that give each model its fixed colour and the family order."""
    colours = model_colours(table["model"].unique(), _registry_names(read))
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


@contextmanager
def paper_style():
    """The figures' style (seaborn's whitegrid, fonts of FONT_SIZES points), undone on exit."""
    with plt.rc_context():
        sns.set_theme(style="whitegrid", context="paper", rc=PAPER_RC)
        yield


def page_width(figure) -> float:
    """COLUMN_WIDTH for a figure with one column of panels, else TEXT_WIDTH (inches)."""
    columns = max((ax.get_subplotspec().colspan.stop for ax in figure.axes
                   if ax.get_visible() and ax.get_subplotspec() is not None), default=1)
    return COLUMN_WIDTH if columns == 1 else TEXT_WIDTH


def _legend_right(figure, legend):
    """`legend` redrawn to the right of the panels, outside them; group titles (seaborn's
    entries with an invisible handle, e.g. "model" and "clip") set as titles."""
    from matplotlib.lines import Line2D
    from matplotlib.offsetbox import DrawingArea, HPacker, TextArea

    def draws_nothing(handle):  # seaborn's group titles have an empty or invisible handle
        if not handle.get_visible():
            return True
        if isinstance(handle, Line2D):
            no_line = handle.get_linewidth() == 0 or handle.get_linestyle() in ("None", "", " ")
            no_marker = handle.get_marker() in ("", " ", "None", None) or handle.get_markersize() == 0
            return no_line and no_marker
        return False

    handles, labels = legend.legend_handles, [text.get_text() for text in legend.texts]
    legend.remove()
    moved = figure.legend(handles, labels, loc="outside right upper", frameon=False)
    titles = {label for handle, label in zip(handles, labels) if draws_nothing(handle)}
    for entry in moved.findobj(HPacker):  # an entry is a handle's drawing area and its label
        parts = entry.get_children()
        if len(parts) == 2 and isinstance(parts[0], DrawingArea) and isinstance(parts[1], TextArea) \
                and parts[1].get_text() in titles:
            parts[0].set_width(0)
            for text in parts[1].get_children():
                text.set_fontsize(plt.rcParams["legend.title_fontsize"])
    return moved


def fit_to_page(figure) -> None:
    """Size `figure` for print at 100% scale: page_width wide, the height it was drawn with
    (rows of panels) or the legend's if taller; panels laid out by matplotlib's constrained
    layout, the figure legend to their right, so no text overlaps another or leaves the page.
    Font sizes were set when drawing (paper_style); any text outside FONT_SIZES is clamped."""
    from matplotlib.text import Text

    figure.set_layout_engine("constrained", w_pad=2 / 72, h_pad=2 / 72, wspace=0.03, hspace=0.04)
    width, height = page_width(figure), figure.get_figheight()
    figure.set_size_inches(width, height)
    legends = [_legend_right(figure, legend) for legend in list(figure.legends)]
    renderer = figure.canvas.get_renderer()
    for legend in legends:
        height = max(height, legend.get_window_extent(renderer).height / figure.dpi + 0.15)
    figure.set_size_inches(width, height)
    low, high = FONT_SIZES
    for text in figure.findobj(Text):
        text.set_fontsize(min(max(text.get_fontsize(), low), high))


def _save(grid, out_dir: Path, stem: str) -> None:
    """Save a seaborn grid (or a matplotlib figure) as stem.pdf and stem.png, sized for print
    by fit_to_page (the page is the figure: no tight bounding box), without timestamps."""
    figure = getattr(grid, "figure", grid)
    fit_to_page(figure)
    for suffix in FIGURE_FORMATS:
        with atomic_path(out_dir / f"{stem}.{suffix}") as tmp:
            # no timestamps in the files: same tables, same bytes
            metadata = {"CreationDate": None} if suffix == "pdf" else {"Software": None}
            figure.savefig(tmp, format=suffix, dpi=PNG_DPI, metadata=metadata)
    plt.close(figure)


@figure("accuracy_vs_gap")
def accuracy_vs_gap(read, gaps=None):
    """Test score against the gap (log x): one panel per task (wrapped three to a row), a line
    per model, clip arm as style.

    Lines are the mean over seeds; the band is a 95% bootstrap confidence interval from
    BOOTSTRAP_SEEDS seeds on, and the seeds' range (min to max) below; the dotted grey line
    is the score of the memoryless predictor (chance accuracy or baseline MSE). MSE panels
    have a log y axis that stops at MSE_AXIS_TOP × the baseline, so one exploding run cannot
    flatten the others (the runs above it are counted in the panel title). Runs marked diverged
    are ringed in black at their score (at the top edge when off scale); runs whose score is
    not finite cannot be drawn and are counted in the panel title.
    """
    from matplotlib.lines import Line2D

    accuracy = read("accuracy_vs_gap")
    finite = accuracy[np.isfinite(accuracy.test_score)]
    dropped = accuracy[~np.isfinite(accuracy.test_score)].groupby("task").size()
    seeds = accuracy.groupby(["task", "gap", "model", "clip"]).seed.nunique().min()
    # a 95% bootstrap interval over 2 or 3 seeds spans whole panels and means little: below
    # BOOTSTRAP_SEEDS seeds the band is their range (min to max), and says so in the legend
    errorbar = STYLE["errorbar"] if seeds >= BOOTSTRAP_SEEDS else ("pi", 100)
    grid = sns.relplot(
        data=finite, x="gap", y="test_score", col="task", col_order=sorted(accuracy.task.unique()),
        col_wrap=min(3, accuracy.task.nunique()), style="clip",
        **_hue(finite, read), kind="line", facet_kws={"sharey": False, "sharex": False}, height=PANEL_HEIGHT,
        aspect=1.2, **{**STYLE, "errorbar": errorbar},
    )
    for task, ax in grid.axes_dict.items():
        rows = accuracy[accuracy.task == task]
        ax.set_xscale("log")
        ax.set_xticks(sorted(rows.gap.unique()))  # label the gaps that were run, nothing else
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        metric = rows.metric.iloc[0]
        label = rows.score_label.iloc[0] if "score_label" in rows else METRIC_LABEL.get(metric, metric)
        ax.set_ylabel("\n".join(textwrap.wrap(label, 20)))  # a panel is ~2 in tall: two short lines
        if metric == "mse":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(_PlainLogFormatter())
            ax.yaxis.set_minor_formatter(_PlainLogFormatter())
        ax.axhline(rows.chance_score.mean(), color="grey", linestyle=":", linewidth=1)
        notes = [f"{dropped[task]} non-finite runs not drawn"] if task in dropped else []
        top = np.inf
        if metric == "mse":  # an exploded run (MSE 1e30) would squash every other line to the floor
            top = MSE_AXIS_TOP * rows.chance_score.max()
            above = rows[np.isfinite(rows.test_score) & (rows.test_score > top)]
            if len(above):
                low, _ = ax.get_ylim()
                ax.set_ylim(low, top)
                notes.append(f"{len(above)} runs above {MSE_AXIS_TOP:g}× baseline: off scale")
        diverged = rows[rows.diverged.astype(bool) & np.isfinite(rows.test_score)]
        ax.scatter(diverged.gap, np.minimum(diverged.test_score, top), marker="o", facecolors="none",
                   edgecolors="black", s=40, linewidths=0.9, zorder=5, clip_on=False)  # off scale: at the top
        ax.set_title("\n".join([task] + [f"({note})" for note in notes]))
    grid.set_xlabels("gap (steps)")
    # the memoryless line and the diverged mark, explained once in the legend
    legend = grid.legend
    band = "band: 95% bootstrap\ninterval over seeds" if errorbar[0] == "ci" else "band: min to max\nover seeds"
    handles = [*legend.legend_handles,
               Line2D([], [], color="grey", linestyle=":", linewidth=1, label="memoryless predictor"),
               Line2D([], [], color="black", marker="o", markerfacecolor="none", markersize=6, linestyle="",
                      label="diverged run (ringed)"),
               Line2D([], [], linestyle="", label=band)]
    labels = [t.get_text() for t in legend.texts] + ["memoryless predictor", "diverged run (ringed)", band]
    legend.remove()
    grid.figure.legend(handles, labels)  # placed by fit_to_page, to the right of the panels
    return grid


@figure("success_rate_vs_gap")
def success_rate_vs_gap(read, gaps=None):
    """The fraction of seeds whose run succeeded (test loss below 10% of the memoryless
    baseline) at each gap, as a heatmap per task (three to a row): a row per model and clip arm
    (models family by family), a column per gap, the fraction written in each cell. A heatmap,
    not lines: fractions of a few seeds take few values, and lines at 0 and 1 would hide each
    other."""
    accuracy = read("accuracy_vs_gap")
    order = list(model_colours(accuracy["model"].unique(), _registry_names(read)))
    rate = accuracy.assign(success=accuracy.success.astype(float),
                           row=accuracy["model"] + " / " + accuracy["clip"])
    tasks = sorted(rate.task.unique())
    columns = min(3, len(tasks))
    rows = -(-len(tasks) // columns)
    # the same rows, in the same order, in every panel, so only the left column names them
    labels = sorted(rate.row.unique(), key=lambda r: (order.index(r.split(" / ")[0]), r))
    height = 0.13 * len(labels) + 0.5  # a 7-point label per row, the title and the gap axis
    figure, axes = plt.subplots(rows, columns, figsize=(TEXT_WIDTH, height * rows + 0.35), squeeze=False)
    for i, (ax, task) in enumerate(zip(axes.flat, tasks)):
        table = rate[rate.task == task].pivot_table(index="row", columns="gap", values="success", aggfunc="mean")
        sns.heatmap(table.reindex(labels), ax=ax, vmin=0, vmax=1, cmap="cividis", annot=True, fmt=".2g",
                    cbar=False, linewidths=0.5, annot_kws={"fontsize": PAPER_RC["xtick.labelsize"]},
                    yticklabels=i % columns == 0)
        ax.set_title(task)
        ax.set_xlabel("gap (steps)")
        ax.set_ylabel("")
        ax.tick_params(length=0)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    figure.suptitle("fraction of seeds that solved the task\n(a row per model / clip arm, a column per gap)")
    return figure


def _at_chosen_gap(read, name: str, columns: list[str], gaps: dict | None, where=()) -> pd.DataFrame:
    """The rows of table `name` of each task at its gap in `gaps` (default: the task's largest
    run), read with only the run keys, stage and `columns`, and only the rows that pass the
    (column, op, value) terms `where`; the task column relabelled "task, gap G" for the panel
    titles. Only these rows and columns are read from disk: a per-lag table of the paper grid
    holds ~10^8 rows, a figure draws one gap per task."""
    gaps = gaps or {}
    runs = read("accuracy_vs_gap", columns=["task", "gap"])
    chosen = {task: int(gaps.get(task, rows.gap.max())) for task, rows in runs.groupby("task")}
    shown = read(name, columns=KEYS + ["stage"] + columns,
                 rows=[[("task", "==", task), ("gap", "==", gap), *where] for task, gap in chosen.items()])
    shown["task"] = shown.task.map(lambda t: f"{t}, gap {chosen[t]}")
    return shown


STAGES = ("init", "trained")


def _per_stage(read, shown, x, y, xlabel, ylabel):
    """A panel per task (at its chosen gap: _at_chosen_gap) and stage: tasks three to a row,
    each task's init panel above its trained panel; a line per model, clip arm as style; mean
    over seeds, the band their range (min to max). One legend for the figure."""
    tasks = list(dict.fromkeys(shown.task))  # in the order of the table, as a facet grid has it
    columns = min(3, len(tasks))
    blocks = -(-len(tasks) // columns)
    figure, axes = plt.subplots(len(STAGES) * blocks, columns, figsize=(TEXT_WIDTH, len(STAGES) * blocks * PANEL_HEIGHT),
                                squeeze=False)
    hue = _hue(shown, read)
    clips = list(dict.fromkeys(shown["clip"]))
    # the mean and range over seeds, computed once by pandas: seaborn's own aggregation, point by
    # point, took about 3 minutes a figure at paper size (42 lines of ~300 points in 42 panels)
    curves = shown.groupby(["task", "stage", "model", "clip", x], sort=False)[y].agg(["mean", "min", "max"])
    curves = curves.reset_index()
    handles = {}
    for i, task in enumerate(tasks):
        for j, stage in enumerate(STAGES):
            ax = axes[len(STAGES) * (i // columns) + j, i % columns]
            panel = curves[(curves.task == task) & (curves.stage == stage)]
            sns.lineplot(data=panel, x=x, y="mean", style="clip", style_order=clips, ax=ax, legend="full", **hue,
                         **{**CURVE_STYLE, "errorbar": None})
            for (model, _), line in panel.groupby(["model", "clip"], sort=False):  # the band, as seaborn draws it
                ax.fill_between(line[x], line["min"], line["max"], color=hue["palette"][model], alpha=0.2, linewidth=0,
                                edgecolor="none")
            if ax.get_legend() is not None:  # every panel's entries, one legend for the figure
                handles.update({text.get_text(): handle for text, handle
                                in zip(ax.get_legend().texts, ax.get_legend().legend_handles)})
                ax.get_legend().remove()
            ax.set_title(f"{task}\n{stage}")
            ax.set_xlabel(xlabel if stage == STAGES[-1] else "")
            ax.set_ylabel(ylabel if i % columns == 0 else "")
    for i in range(len(tasks), blocks * columns):  # an incomplete last row of tasks
        for j in range(len(STAGES)):
            axes[len(STAGES) * (i // columns) + j, i % columns].set_visible(False)
    order = ["model", *hue["hue_order"], "clip", *clips]
    figure.legend([handles[label] for label in order if label in handles], [label for label in order if label in handles])
    return figure


@figure("gradient_decay")
def gradient_decay(read, gaps=None):
    """log10 ||∂L_t/∂h_k|| against the lag t − k, at initialisation and after training.

    Each run's value is the mean norm over its probe sequences; lines are the mean of log10
    over seeds (a geometric mean). A straight line of slope −r/ln10 is exponential decay at
    the fitted rate r; a flat line is a norm-preserving Jacobian product.
    """
    shown = _at_chosen_gap(read, "gradient_decay", ["lag", "log10_grad_norm"], gaps)
    return _per_stage(read, shown, "lag", "log10_grad_norm", "lag t − k (steps)", "log₁₀ ‖∂L_t/∂s_k‖\n(full state s)")


@figure("sensitivity")
def sensitivity(read, gaps=None):
    """log10 ||∂h_t/∂x_l||_F against the lag t − l: how much of an input l steps back still
    moves the last state (forward memory), init and trained."""
    shown = _at_chosen_gap(read, "sensitivity", ["lag", "log10_sensitivity"], gaps)
    return _per_stage(read, shown, "lag", "log10_sensitivity", "lag t − l (steps)", "log₁₀ ‖∂s_t/∂x_l‖\n(full state s)")


@figure("jacobian_spectrum")
def jacobian_spectrum(read, gaps=None):
    """Singular values σ_i of ∂h_t/∂h_{t−L} (log10, descending) at the largest probed lag L:
    a flat top near 0 is dynamical isometry; a steep fall means only a few directions of the
    past state still reach h_t."""
    product = _at_chosen_gap(read, "jacobian_spectrum", ["lag", "index", "value"], gaps,
                             where=[("quantity", "==", "product"), ("statistic", "==", "log10_singular_value")])
    longest = product.groupby(KEYS + ["stage"]).lag.transform("max")
    return _per_stage(read, product[product.lag == longest], "index", "value",
                      "singular value index i", "log₁₀ σ_i(∂h_t/∂h_{t−L})\nL = longest lag")


@figure("lyapunov")
def lyapunov(read, gaps=None):
    """Lyapunov exponents λ_i (natural log per step) in decreasing order: λ_1 < 0 means
    perturbations, and memories, fade at rate λ_1; λ ≡ 0 is a norm-preserving map."""
    table = _at_chosen_gap(read, "lyapunov", ["index", "exponent"], gaps)
    finite = table[np.isfinite(table.exponent)]
    return _per_stage(read, finite, "index", "exponent", "exponent index i", "λ_i (per step)")


@figure("memory_capacity")
def memory_capacity(read, gaps=None):
    """MC_k, the squared correlation of a linear readout of the state with u(t − k), against
    the delay k (Jaeger 2001); the area under each curve is the memory capacity MC ≤ H."""
    shown = _at_chosen_gap(read, "memory_capacity", ["delay", "mc"], gaps)
    return _per_stage(read, shown, "delay", "mc", "delay k (steps)", "MC_k")


def largest_gap_solved_per_seed(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model, clip, seed): the largest gap whose run succeeded (0 if none)."""
    solved = accuracy.assign(solved_gap=accuracy.gap.where(accuracy.success.astype(bool), 0))
    return solved.groupby(["task", "model", "clip", "seed"], as_index=False).solved_gap.max()


@figure("decay_rate_vs_gap_solved")
def decay_rate_vs_gap_solved(read, gaps=None):
    """The fitted gradient decay of the trained network (log10 per step, at the task's largest
    gap) against the largest gap the same (model, clip, seed) solved: theory predicts that fast
    decay (a steep negative slope, a short half-life) goes with short solved gaps. One point per
    (model, clip, seed), one panel per task."""
    accuracy, summary = read("accuracy_vs_gap"), read("propagation_summary")
    trained = summary[summary.stage == "trained"]
    hardest = trained[trained.gap == trained.groupby("task").gap.transform("max")]
    points = largest_gap_solved_per_seed(accuracy).merge(
        hardest[["task", "model", "clip", "seed", "decay_log10_per_step"]], on=["task", "model", "clip", "seed"])
    grid = sns.relplot(
        data=points, x="decay_log10_per_step", y="solved_gap", col="task",
        col_wrap=min(3, points.task.nunique()) or None,
        style="clip", **_hue(points, read), kind="scatter", facet_kws={"sharey": False, "sharex": False},
        height=PANEL_HEIGHT, aspect=1.2, s=20,
    )
    grid.set_axis_labels("gradient decay (log10 per step)\ntrained, largest gap", "largest gap solved\n(0: none)")
    grid.set_titles("{col_name}")
    for task, ax in grid.axes_dict.items():  # label the gaps that were run, nothing else
        run = sorted({0, *accuracy.gap[accuracy.task == task]})
        ax.set_yticks(run)
        ax.set_ylim(-0.06 * max(run) - 0.5, 1.06 * max(run) + 0.5)
    return grid


def draw_all(tables_dir, out_dir, gaps: dict | None = None) -> None:
    """Draw every registered figure from the tables in tables_dir (each table read once)."""
    read = table_reader(tables_dir)
    for name, draw in FIGURES.items():
        with paper_style():
            _save(draw(read, gaps), Path(out_dir), name)
