"""Publication figures drawn from the tidy tables only (never from in-memory training state).

Each figure is one function decorated with `@figure("name", tasks_per_page)`: it gets
`read(table_name, columns=None, rows=None)` (gapbench.reports.tables.table_reader: the tidy
table as a DataFrame, only the columns and rows asked for), the per-task gaps to show and the
page's Layout, and returns its matplotlib figure. `draw_all` saves every page of every registered
figure as STEM.pdf and STEM.png: STEM is the figure's name when its tasks fit one page, else
name_page1, name_page2, ... (`pages`). Adding a figure touches nothing outside this module: the
pipeline's targets come from `figure_stems`, for the grid's GridShape (`shape_of_config`).

Every figure is drawn in one paper style (`paper_style`: fonts of FONT_SIZES points) and saved
at a width a paper includes at 100% scale (`fit_to_page`): TEXT_WIDTH, or COLUMN_WIDTH for a
figure with a single column of panels; the legend goes to the right of the panels, the height
follows the rows of panels (PANEL_HEIGHT each for line and scatter panels), at most
MAX_PANEL_ROWS to a page. Where one panel would hold more than MAX_LINES_PER_PANEL lines (14
models × 3 clip arms in the paper grid), each task gets a panel per model family. Every model
has its colour (a shade of its family's hue) and its marker, every clip arm its dash, so a
figure printed in greyscale still tells each line apart.
"""
from __future__ import annotations

import inspect
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, Formatter, Locator, LogFormatterSciNotation, MaxNLocator, NullLocator  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from gapbench.files import atomic_path  # noqa: E402
from gapbench.reports.families import FAMILY_COLOURS, model_order, registry_names  # noqa: E402
from gapbench.registry import source_file  # noqa: E402
from gapbench.reports.tables import INTERVAL_SEEDS, UnreadableTable, table_reader  # noqa: E402
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
SEED_POINT = {"markersize": 2.5, "fillstyle": "none", "markeredgewidth": 0.5}  # a seed's score, below INTERVAL_SEEDS
BOOTSTRAP_RESAMPLES = 1000  # resamples of the seeds per point (seeded: the same tables, the same figure)
# Per-lag curves have hundreds of points per line: a bootstrap at each would take minutes, and
# over a few seeds a 95% interval says little, so their band is always the range over seeds.
# One colour per model in every figure: a hue per family (FAMILY_COLOURS: Okabe & Ito's
# colour-blind-safe palette), shades of it for the models of a family; legends list models
# family by family (model_order, the paper tables' order too).
# Greyscale print: a marker per model (model_markers) and a dash per clip arm (clip_dashes),
# so every line is told apart without its colour.
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "p", "h", "<", ">", "d", "8", "H")
CLIP_DASHES = {"none": "-", "norm": (0, (4, 1.5)), "value": (0, (1, 1.2))}
SPARE_DASHES = ((0, (6, 1.5, 1, 1.5)), (0, (2, 2)), (0, (8, 2)))
CLIP_FILLS = {"none": "full", "norm": "none", "value": "bottom"}  # a scatter point's fill (no dash there)
SPARE_FILLS = ("left", "right", "top")


def model_colours(names, registry_names: dict | None = None) -> dict[str, tuple]:
    """{model: RGB} for the models in `names`, ordered family by family, then by name (see
    model_order). Shades depend only on the family's registered members and the variants
    shown, so a model keeps its colour whichever subset a figure shows."""
    from matplotlib.colors import to_rgb

    ordered, family = model_order(names, registry_names)
    colours = {}
    for name in ordered:
        members = [n for n in ordered if family[n] == family[name]]
        base = np.array(to_rgb(FAMILY_COLOURS.get(family[name], "#000000")))
        # from a darker (55% of the hue) to a lighter shade (a third of the way to white)
        position = members.index(name) / (len(members) - 1) if len(members) > 1 else 0.5
        dark, light = 0.55 * base, base + 0.35 * (1 - base)
        colours[name] = tuple(float(c) for c in (1 - position) * dark + position * light)
    return {name: colour for name, colour in colours.items() if name in set(names)}


def model_markers(names, registry_names: dict | None = None) -> dict[str, str]:
    """{model: marker}: each registered model its own marker, in the order of model_order, so
    that a figure printed in greyscale still tells every model apart (shades alone would not).
    A registered model keeps its marker in every figure of every grid; a labelled variant
    (vanilla_h4, esn_linear_n40) takes one that no model of `names` has, so it never moves
    theirs (15 markers: past that, markers repeat)."""
    from gapbench import models

    ordered, _ = model_order(names, registry_names)
    registered, shown = set(models.names()), set(names)
    fixed = {name: MARKERS[i % len(MARKERS)] for i, name in enumerate(n for n in ordered if n in registered)}
    free = [marker for marker in MARKERS if marker not in {fixed[n] for n in shown if n in fixed}] or list(MARKERS)
    variants = iter(free * len(shown))
    return {name: fixed[name] if name in fixed else next(variants) for name in ordered if name in shown}


def clip_dashes(arms) -> dict[str, object]:
    """{clip arm: matplotlib linestyle}: the arms of gapbench's clip registry keep theirs in
    every figure (none solid, norm dashed, value dotted); other arms get the next free one."""
    known = {arm: style for arm, style in CLIP_DASHES.items() if arm in set(arms)}
    spare = iter(SPARE_DASHES)
    return {arm: known[arm] if arm in known else next(spare, "-") for arm in arms}


def clip_fills(arms) -> dict[str, str]:
    """{clip arm: marker fill style} for scatter plots, where a point has no dash: the arms of
    gapbench's clip registry keep theirs in every figure (none filled, norm open, value
    half-filled); other arms get the next free one."""
    spare = iter(SPARE_FILLS * len(arms))
    return {arm: CLIP_FILLS[arm] if arm in CLIP_FILLS else next(spare) for arm in arms}


class _PlainLogFormatter(LogFormatterSciNotation):
    """Log- and symlog-axis tick labels as plain numbers (0.2, 1, 30, −100): the same ticks as
    matplotlib's default, without 10^k superscripts, which would print below FONT_SIZES."""

    def __call__(self, x, pos=None):
        return f"{x:g}".replace("-", "\N{MINUS SIGN}") if super().__call__(x, pos) else ""


# ---- pages: which tasks and panels a figure's page holds -----------------------------------
MAX_LINES_PER_PANEL = 14  # more (model, clip arm) lines than this in one panel: a panel per family
TASK_COLUMNS = 3  # one panel per task: this many tasks to a row
FACET_COLUMNS = 4  # a panel per family: a task's family panels, this many to a row
MAX_PANEL_ROWS = 5  # rows of PANEL_HEIGHT on a page: 8.75 in, inside a page's text height
LEGEND_WIDTH = 1.6  # inches the legend takes right of the panels (about)
GAP_LABEL_SPACING = 0.3  # inches between the starts of two gap labels of 3 digits, at least
PAGE_HEIGHT = 9.0  # inches of text on a page (a legend or a heatmap page is at most this tall)


@dataclass(frozen=True)
class GridShape:
    """What decides a figure's pages: the task labels, the most (model, clip arm) lines any task
    has, and the model families shown (in FAMILY_COLOURS order). The Snakefile builds it from
    the config (figure targets), draw_all from the tables; both give the same pages."""
    tasks: tuple[str, ...]
    lines: int
    families: tuple[str, ...]

    @property
    def faceted(self) -> bool:
        """A panel per family where one panel would hold more than MAX_LINES_PER_PANEL lines."""
        return self.lines > MAX_LINES_PER_PANEL and len(self.families) > 1


def grid_shape(tasks, model_names: dict[str, str], lines: int) -> GridShape:
    """The GridShape of task labels `tasks` and models {label: registered name}, with at most
    `lines` (model, clip arm) pairs in any task."""
    _, family = model_order(list(model_names), model_names)
    present = {family[model] for model in model_names}
    families = [f for f in FAMILY_COLOURS if f in present] + sorted(present - set(FAMILY_COLOURS))
    return GridShape(tuple(sorted(tasks)), int(lines), tuple(families))


def shape_of_config(config: dict) -> GridShape:
    """The GridShape of a config's grid (the Snakefile's figure pages); shape_of_tables reads the
    same from the grid's tables."""
    from gapbench.config import model_label, task_label, task_models  # here: drawing a page needs no torch

    lines = max(len(task_models(config, entry)) for entry in config["tasks"]) * len(config["clip"]["arms"])
    return grid_shape([task_label(entry) for entry in config["tasks"]],
                      {model_label(entry): entry["name"] for entry in config["models"]}, lines)


def shape_of_tables(read) -> GridShape:
    accuracy = read("accuracy_vs_gap", columns=["task", "model", "model_name", "clip"])
    lines = accuracy.drop_duplicates(["task", "model", "clip"]).groupby("task").size().max()
    return grid_shape(accuracy.task.unique(), dict(zip(accuracy["model"], accuracy["model_name"])), lines)


@dataclass(frozen=True)
class Layout:
    """One page: its tasks and, where faceted, the families (one panel each; None: a panel per task)."""
    tasks: tuple[str, ...]
    families: tuple[str, ...] | None = None


def tasks_per_page_of_lines(stages: int) -> Callable[[GridShape], int]:
    """Tasks on a page of line or scatter panels with `stages` panels above each other per task:
    as many as fit MAX_PANEL_ROWS rows of panels (at least one)."""
    def per_page(shape: GridShape) -> int:
        if shape.faceted:
            return max(1, MAX_PANEL_ROWS // (stages * -(-len(shape.families) // FACET_COLUMNS)))
        return TASK_COLUMNS * max(1, MAX_PANEL_ROWS // stages)
    return per_page


@dataclass(frozen=True)
class FigureSpec:
    draw: Callable  # draw(read, gaps, layout) -> a matplotlib figure or seaborn grid
    tasks_per_page: Callable[[GridShape], int]


FIGURES: dict[str, FigureSpec] = {}  # name -> how to draw it and how many tasks fit a page


def figure(name: str, tasks_per_page: Callable[[GridShape], int] = tasks_per_page_of_lines(1)):
    """Register a figure under `name` (its file stem, or the stem of its pages): a function
    draw_all calls as function(read, gaps, layout), checked here, before any job runs."""
    def decorator(function):
        if name in FIGURES:
            raise ValueError(f"figure {name!r} is registered twice")
        try:
            inspect.signature(function).bind(None, None, None)
        except TypeError:
            raise TypeError(f"figure {name!r} ({source_file(function)}): its function must take (read, gaps, layout), "
                            f"as draw_all passes them; it takes {inspect.signature(function)}") from None
        FIGURES[name] = FigureSpec(function, tasks_per_page)
        return function

    return decorator


def pages(name: str, shape: GridShape) -> list[tuple[str, Layout]]:
    """[(file stem, layout)] of figure `name`: `name` if its tasks fit one page, else
    name_page1, name_page2, ... with the tasks in order, as many to a page as fit."""
    per_page = FIGURES[name].tasks_per_page(shape)
    chunks = [shape.tasks[i:i + per_page] for i in range(0, len(shape.tasks), per_page)] or [()]
    families = shape.families if shape.faceted else None
    if len(chunks) == 1:
        return [(name, Layout(chunks[0], families))]
    return [(f"{name}_page{k}", Layout(chunk, families)) for k, chunk in enumerate(chunks, 1)]


def figure_stems(shape: GridShape) -> list[str]:
    """The file stem of every page of every registered figure (the pipeline's figure targets)."""
    return [stem for name in FIGURES for stem, _ in pages(name, shape)]


def _on_page(table: pd.DataFrame, layout: "Layout | None") -> pd.DataFrame:
    """The rows of `table` of the page's tasks (all rows without a layout): the small tables
    are read whole and cut here (the per-lag ones are read for the page's tasks alone:
    _at_chosen_gap)."""
    return table if layout is None else table[table.task.isin(layout.tasks)].reset_index(drop=True)


def _panel_grid(layout: Layout, stages=(None,)):
    """(figure, {(task, stage, family): axes}) for a page, PANEL_HEIGHT a row of panels.

    One panel per task (family None): tasks TASK_COLUMNS to a row, a task's stages one above the
    other. Faceted: each task and stage a block of rows holding one panel per family,
    FACET_COLUMNS to a row. Unused grid cells are hidden."""
    tasks = layout.tasks
    if layout.families is None:
        columns = max(1, min(TASK_COLUMNS, len(tasks)))
        place = {(task, stage, None): (len(stages) * (i // columns) + j, i % columns)
                 for i, task in enumerate(tasks) for j, stage in enumerate(stages)}
    else:
        columns = min(FACET_COLUMNS, len(layout.families))
        block = -(-len(layout.families) // columns)
        place = {(task, stage, family): ((i * len(stages) + j) * block + k // columns, k % columns)
                 for i, task in enumerate(tasks) for j, stage in enumerate(stages)
                 for k, family in enumerate(layout.families)}
    rows = max((row for row, _ in place.values()), default=0) + 1
    figure, axes = plt.subplots(rows, columns, figsize=(TEXT_WIDTH, rows * PANEL_HEIGHT), squeeze=False)
    panels = {key: axes[row, column] for key, (row, column) in place.items()}
    used = {id(ax) for ax in panels.values()}
    for ax in axes.flat:
        if id(ax) not in used:
            ax.set_visible(False)
    return figure, panels


def _first_in_row(panels: dict) -> set:
    """ids of the panels in the first used column of their row (where a row's y label goes)."""
    first = {}
    for ax in panels.values():
        spec = ax.get_subplotspec()
        row, column = spec.rowspan.start, spec.colspan.start
        first[row] = min(first.get(row, column), column)
    return {id(ax) for ax in panels.values()
            if ax.get_subplotspec().colspan.start == first[ax.get_subplotspec().rowspan.start]}


def _share_y(panels: dict) -> None:
    """The family panels of one task and stage on one y scale (so panels compare like one)."""
    blocks = {}
    for (task, stage, _), ax in panels.items():
        if ax.has_data():
            blocks.setdefault((task, stage), []).append(ax)
    for group in blocks.values():
        low = min(ax.get_ylim()[0] for ax in group)
        high = max(ax.get_ylim()[1] for ax in group)
        for ax in group:
            ax.set_ylim(low, high)


def _gap_axis(ax, gaps, columns: int) -> None:
    """A log x axis with a tick at every gap that was run and a label at as many as fit: a
    label is left out where it would sit closer than GAP_LABEL_SPACING to the previous one
    (1000 and 2000, or 20 and 30, in a narrow panel)."""
    gaps = sorted(int(gap) for gap in gaps)
    ax.set_xscale("log")
    ax.set_xticks(gaps)
    panel_width = (TEXT_WIDTH - LEGEND_WIDTH) / columns
    span = np.log10(gaps[-1] / gaps[0]) if len(gaps) > 1 else 1.0
    labels, last = [], None
    for gap in gaps:
        if last is None or np.log10(gap / last) / span * panel_width >= GAP_LABEL_SPACING * len(str(gap)) / 3:
            labels.append(str(gap))
            last = gap
        else:
            labels.append("")
    ax.set_xticklabels(labels)
    ax.xaxis.set_minor_locator(NullLocator())  # the gaps run are the ticks; no log minor ticks


TITLE_CHARACTERS = 22  # a title line of 8-point text fits a faceted panel (~1.4 in) at this length


def _runs(count: int) -> str:
    """"1 run", "3 runs": the counts in panel titles."""
    return f"{count} run" if count == 1 else f"{count} runs"


def _title(*parts) -> str:
    """A panel title of short lines (a faceted panel is ~1.4 in wide; a longer line runs into
    the next panel's title, or the legend: adding_poisson, gap 10 / init, reservoir)."""
    return "\n".join(line for part in parts if part for line in textwrap.wrap(str(part), TITLE_CHARACTERS))


@dataclass(frozen=True)
class Styles:
    """How each model and clip arm is drawn: colour and marker per model, dash per clip arm."""
    colours: dict
    markers: dict
    dashes: dict
    families: dict  # model -> family

    @property
    def models(self) -> list[str]:
        return list(self.colours)


def _styles(table: pd.DataFrame, read) -> Styles:
    names = registry_names(read)
    shown = table["model"].unique()
    _, family = model_order(shown, names)
    arms = [arm for arm in CLIP_DASHES if arm in set(table["clip"])] + sorted(set(table["clip"]) - set(CLIP_DASHES))
    return Styles(model_colours(shown, names), model_markers(shown, names), clip_dashes(arms),
                  {model: family[model] for model in shown})


def _in_panel(table: pd.DataFrame, styles: Styles, task, family, stage=None) -> pd.DataFrame:
    rows = table.task == task
    if stage is not None:
        rows &= table.stage == stage
    if family is not None:
        rows &= table["model"].map(styles.families) == family
    return table[rows]


def _draw_lines(ax, curves: pd.DataFrame, x: str, styles: Styles, markers_per_line: int | None = None,
                band: bool = True) -> None:
    """A line per (model, clip arm) of `curves` (columns model, clip, x, mean, low, high): the
    mean in the model's colour and marker and the arm's dash, the band from low to high (unless
    not `band`). Long
    curves get markers_per_line markers, staggered by model so that they do not sit on each other."""
    order = styles.models
    for (model, clip), line in curves.groupby(["model", "clip"], sort=False):
        line = line.sort_values(x)
        colour = styles.colours[model]
        if band:
            ax.fill_between(line[x], line["low"], line["high"], color=colour, alpha=0.2, linewidth=0,
                            edgecolor="none")
        markevery = None
        if markers_per_line and len(line) > markers_per_line:
            step = len(line) // markers_per_line
            markevery = (order.index(model) * step // max(len(order), 1), step)
        ax.plot(line[x], line["mean"], color=colour, marker=styles.markers[model], linestyle=styles.dashes[clip],
                markevery=markevery, markersize=3.5, markeredgewidth=0.6)


def _legend(figure, styles: Styles, clips, extra=(), clip_handle=None, model_line: bool = True) -> None:
    """One legend for the figure: the models family by family (each family's name a title),
    then the clip arms, then `extra` handles; fit_to_page places it right of the panels."""
    from matplotlib.lines import Line2D

    def title(text):  # no line and no marker: _legend_right sets it as a title
        return Line2D([], [], linestyle="", marker="", label=text)

    handles, family = [], None
    for model in styles.models:
        if styles.families[model] != family:
            family = styles.families[model]
            handles.append(title(family))
        handles.append(Line2D([], [], color=styles.colours[model], marker=styles.markers[model],
                              linestyle="-" if model_line else "", markersize=3.5, label=model))
    handles.append(title("clip"))
    handles += [clip_handle(clip) if clip_handle else Line2D([], [], color="black", linestyle=styles.dashes[clip],
                                                                label=clip) for clip in clips]
    handles += list(extra)
    figure.legend(handles, [handle.get_label() for handle in handles])


def _mean_and_band(table: pd.DataFrame, keys: list[str], y: str, bootstrap: bool) -> pd.DataFrame:
    """Per group of `keys`: the mean of y over its rows (seeds) and a band, low to high: a 95%
    bootstrap interval of the mean (BOOTSTRAP_RESAMPLES resamples, seeded) or the range."""
    rng = np.random.default_rng(0)
    rows = []
    for key, values in table.groupby(keys, sort=False)[y]:
        values = values.to_numpy(float)
        if bootstrap:
            means = rng.choice(values, size=(BOOTSTRAP_RESAMPLES, len(values))).mean(axis=1)
            low, high = np.percentile(means, [2.5, 97.5])
        else:
            low, high = values.min(), values.max()
        rows.append((*key, values.mean(), low, high))
    return pd.DataFrame(rows, columns=[*keys, "mean", "low", "high"])


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


def _freeze_layout(figure) -> None:
    """Lay `figure` out once, at the PNG's resolution, and keep that layout and its ticks for
    every file. Constrained layout and the tick locators run again at each draw, at the
    resolution drawn, and text extents round otherwise at 72 dots an inch (the PDF) than at
    PNG_DPI: the axes moved a little and another number of ticks fitted (gradient_decay's lag
    axis read 0, 25, 50, 75 in the PDF and 0, 20, 40, 60, 80 in the PNG)."""
    dpi = figure.dpi
    figure.set_dpi(PNG_DPI)
    figure.canvas.draw()
    figure.set_layout_engine("none")  # the positions just computed stay
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(FixedLocator(axis.get_majorticklocs()))
            axis.set_minor_locator(FixedLocator(axis.get_minorticklocs()))
    figure.set_dpi(dpi)


def _save(grid, out_dir: Path, stem: str) -> None:
    """Save a seaborn grid (or a matplotlib figure) as stem.pdf and stem.png, sized for print
    by fit_to_page (the page is the figure: no tight bounding box), laid out once for both
    (_freeze_layout), without timestamps."""
    figure = getattr(grid, "figure", grid)
    fit_to_page(figure)
    _freeze_layout(figure)
    for suffix in FIGURE_FORMATS:
        with atomic_path(out_dir / f"{stem}.{suffix}") as tmp:
            # no timestamps in the files: same tables, same bytes
            metadata = {"CreationDate": None} if suffix == "pdf" else {"Software": None}
            figure.savefig(tmp, format=suffix, dpi=PNG_DPI, metadata=metadata)
    plt.close(figure)



@figure("accuracy_vs_gap")
def accuracy_vs_gap(read, gaps=None, layout=None):
    """Test score against the gap (log x): a panel per task (or per task and family, where one
    panel would hold more than MAX_LINES_PER_PANEL lines), a line per model and clip arm.

    Lines are the mean over seeds with, from INTERVAL_SEEDS seeds on, a band: the 95% bootstrap
    confidence interval of the mean; below that each seed's score is a small open point of the
    line's colour and marker (a band over 2 seeds, one solved and one not, covered whole panels
    and hid the other lines; points show the same range and which seeds lie where); the dotted grey line
    is the score of the memoryless predictor (chance accuracy or baseline MSE). MSE panels
    have a log y axis that stops at MSE_AXIS_TOP × the baseline, so one exploding run cannot
    flatten the others (the runs above it are counted in the panel title). Runs marked diverged
    are ringed in black at their score (at the top edge when off scale); runs whose score is
    not finite cannot be drawn and are counted in the panel title.
    """
    from matplotlib.lines import Line2D

    accuracy = _on_page(read("accuracy_vs_gap"), layout)
    layout = layout or Layout(tuple(sorted(accuracy.task.unique())))
    styles = _styles(accuracy, read)
    finite = accuracy[np.isfinite(accuracy.test_score)]
    seeds = accuracy.groupby(["task", "gap", "model", "clip"]).seed.nunique().min()
    # below INTERVAL_SEEDS seeds no band: each seed a point (and the legend says which)
    bootstrap = seeds >= INTERVAL_SEEDS
    curves = _mean_and_band(finite, ["task", "gap", "model", "clip"], "test_score", bootstrap)
    figure, panels = _panel_grid(layout)
    labelled = _first_in_row(panels)
    columns = max(ax.get_subplotspec().colspan.stop for ax in panels.values())
    for (task, _, family), ax in panels.items():
        rows = _in_panel(accuracy, styles, task, family)
        if rows.empty:
            ax.set_visible(False)
            continue
        _draw_lines(ax, _in_panel(curves, styles, task, family), "gap", styles, band=bootstrap)
        _gap_axis(ax, accuracy.gap[accuracy.task == task].unique(), columns)
        ax.set_xlabel("gap (steps)")
        metric = rows.metric.iloc[0]
        label = rows.score_label.iloc[0] if "score_label" in rows else METRIC_LABEL.get(metric, metric)
        # each task's own metric; faceted, a task's row shares its label (first panel)
        ax.set_ylabel("\n".join(textwrap.wrap(label, 20)) if family is None or id(ax) in labelled else "")
        if metric == "mse":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(_PlainLogFormatter())
            ax.yaxis.set_minor_formatter(_PlainLogFormatter())
        ax.axhline(rows.chance_score.mean(), color="grey", linestyle=":", linewidth=1)
        dropped = rows[~np.isfinite(rows.test_score)]
        notes = [f"{_runs(len(dropped))} of {_models_in(dropped, styles)} not finite: not drawn"] if len(dropped) else []
        # an exploded run (MSE 1e30) would squash every other line to the floor: MSE axes stop at top
        top = MSE_AXIS_TOP * accuracy.chance_score[accuracy.task == task].max() if metric == "mse" else np.inf
        if not bootstrap:  # each seed's score, where there are too few for an interval (drawn before
            # the axis is cut at top, so that its lower limit holds every seed, not only the means)
            for (model, clip), seed_rows in rows[np.isfinite(rows.test_score)].groupby(["model", "clip"], sort=False):
                ax.plot(seed_rows.gap, np.minimum(seed_rows.test_score, top), linestyle="", alpha=0.8,
                        marker=styles.markers[model], color=styles.colours[model], **SEED_POINT)
        above = rows[np.isfinite(rows.test_score) & (rows.test_score > top)]
        if len(above):
            low, _ = ax.get_ylim()
            ax.set_ylim(low, top)
            notes.append(f"{_runs(len(above))} above {MSE_AXIS_TOP:g}× baseline: off scale")
        diverged = rows[rows.diverged.astype(bool) & np.isfinite(rows.test_score)]
        ax.scatter(diverged.gap, np.minimum(diverged.test_score, top), marker="o", facecolors="none",
                   edgecolors="black", s=40, linewidths=0.9, zorder=5, clip_on=False)  # off scale: at the top
        ax.set_title(_title(task, family, *[f"({note})" for note in notes]))
    if layout.families is not None:
        _share_y(panels)
    extra = [Line2D([], [], color="grey", linestyle=":", linewidth=1, label="memoryless predictor")]
    if accuracy.diverged.astype(bool).any():
        extra.append(Line2D([], [], color="black", marker="o", markerfacecolor="none", markersize=6, linestyle="",
                            label="diverged run (ringed)"))
    extra.append(Line2D([], [], linestyle="", label="band: 95% bootstrap\ninterval over seeds") if bootstrap else
                 Line2D([], [], color="grey", marker="o", linestyle="", label="each seed", **SEED_POINT))
    _legend(figure, styles, list(styles.dashes), extra)
    return figure


def _heatmap_height(lines: int) -> float:
    return 0.13 * lines + 0.5  # a 7-point label per row, the title and the gap axis


def _heatmap_tasks_per_page(shape: GridShape) -> int:
    return TASK_COLUMNS * max(1, int((PAGE_HEIGHT - 0.5) // _heatmap_height(shape.lines)))


@figure("success_rate_vs_gap", _heatmap_tasks_per_page)
def success_rate_vs_gap(read, gaps=None, layout=None):
    """The fraction of seeds whose run succeeded (by the task's criterion: test loss below 10% of
    the memoryless baseline unless the task defines another) at each gap, as a heatmap per task
    (three to a row): a row per model and clip arm (models family by family), a column per gap,
    k/n written in each cell (k of the n seeds succeeded). A heatmap,
    not lines: fractions of a few seeds take few values, and lines at 0 and 1 would hide each
    other."""
    accuracy = _on_page(read("accuracy_vs_gap"), layout)
    order, _ = model_order(accuracy["model"].unique(), registry_names(read))
    rate = accuracy.assign(success=accuracy.success.astype(float),
                           row=accuracy["model"] + " / " + accuracy["clip"])
    tasks = list(layout.tasks) if layout else sorted(rate.task.unique())
    columns = min(TASK_COLUMNS, len(tasks))
    rows = -(-len(tasks) // columns)
    # the same rows, in the same order, in every panel, so only the left column names them
    labels = sorted(rate.row.unique(), key=lambda r: (order.index(r.split(" / ")[0]), r))
    height = _heatmap_height(len(labels))
    figure, axes = plt.subplots(rows, columns, figsize=(TEXT_WIDTH, height * rows + 0.35), squeeze=False)
    for i, (ax, task) in enumerate(zip(axes.flat, tasks)):
        counts = rate[rate.task == task].pivot_table(index="row", columns="gap", values="success",
                                                     aggfunc=["sum", "count"]).reindex(labels)
        table = counts["sum"] / counts["count"]
        # k/n in each cell, not the fraction: how many seeds it is out of shows (a gap not run: blank)
        whole = counts.fillna(0).astype(int).astype(str)
        written = (whole["sum"] + "/" + whole["count"]).where(table.notna(), "")
        sns.heatmap(table, ax=ax, vmin=0, vmax=1, cmap="cividis", annot=written.to_numpy(),
                    fmt="",
                    cbar=False, linewidths=0.5, annot_kws={"fontsize": PAPER_RC["xtick.labelsize"]},
                    yticklabels=i % columns == 0)
        ax.set_title(task)
        ax.set_xlabel("gap (steps)")
        ax.set_ylabel("")
        ax.tick_params(length=0)
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    figure.suptitle("seeds that solved the task: k of n, colour k/n\n(a row per model / clip arm, a column per gap)")
    return figure


def _at_chosen_gap(read, name: str, columns: list[str], gaps: dict | None, where=(), layout=None) -> pd.DataFrame:
    """The rows of table `name` of each task at its gap in `gaps` (default: the task's largest
    run), read with only the run keys, stage and `columns`, and only the rows that pass the
    (column, op, value) terms `where`; a column `shown` holds "task, gap G" for the panel
    titles; only the page's tasks (`layout`). Only these rows and columns are read from disk: a
    per-lag table of the paper grid holds ~10^8 rows, a page draws one gap of a few tasks (the
    pipeline draws each page in a process of its own: reading the page's rows alone took its
    largest peak from 2.03 to ... GB, benchmarks/paper_load.py)."""
    gaps = gaps or {}
    runs = read("accuracy_vs_gap", columns=["task", "gap"])
    chosen = {task: int(gaps.get(task, rows.gap.max())) for task, rows in runs.groupby("task")
              if layout is None or task in layout.tasks}
    shown = read(name, columns=KEYS + ["stage"] + columns,
                 rows=[[("task", "==", task), ("gap", "==", gap), *where] for task, gap in chosen.items()])
    return shown.assign(shown=shown.task.map(lambda t: f"{t}, gap {chosen[t]}"))


STAGES = ("init", "trained")
MARKERS_PER_CURVE = 6  # markers on a per-lag curve of hundreds of points (greyscale: which model)


EDGE_OFFSET = 0.1  # ±∞ is drawn this fraction of the finite values' span beyond them (on the axis' scale)
EDGE_TICK_CLEARANCE = 0.07  # a tick this fraction of the axis' span from an edge line loses its label to it
# ... or this many tick-label font sizes of the drawn axis, if more. Across (x): a label such as
# −0.15 is about 3 sizes wide, and half of it and half of the edge's ("no rate") must fit. Up (y):
# a label's ink is about 0.75 sizes tall (its box, ascent to descent, 1.2): at 0.9 two labels' ink
# stays apart, and a symlog axis keeps its −10 above −∞ (at 1.2, 6 of the default run's 10
# Lyapunov panels lost it)
EDGE_LABEL_CLEARANCE = {"y": 0.9, "x": 3.5}


def _edges(values, linear_within: float | None = None) -> tuple[float, float]:
    """(floor, ceiling): where −∞ and +∞ are drawn, EDGE_OFFSET of the span of the finite
    `values` below the lowest and above the highest, measured on the axis' scale (symlog with
    `linear_within`, else linear), so that the edge lines sit just outside every finite value."""
    from matplotlib.scale import SymmetricalLogTransform

    scale = None if linear_within is None else SymmetricalLogTransform(10, linear_within, 1)
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if scale is not None:
        values = scale.transform(values.reshape(-1, 1)).ravel()
    low, high = (values.min(), values.max()) if values.size else (-1.0, 1.0)
    span = (high - low) or 1.0
    edges = np.array([low - EDGE_OFFSET * span, high + EDGE_OFFSET * span])
    if scale is not None:
        edges = scale.inverted().transform(edges.reshape(-1, 1)).ravel()
    return float(edges[0]), float(edges[1])


class _EdgeLocator(Locator):
    """The axis' own ticks (`base`, at the size the figure is drawn), less those closer to an
    edge line than EDGE_TICK_CLEARANCE of the axis' span or EDGE_LABEL_CLEARANCE label sizes,
    whichever is more, and the edge lines themselves (only those, without `base_ticks`: an axis
    of nothing but edges has no scale to mark)."""

    def __init__(self, base: Locator, edges: dict[float, str], base_ticks: bool = True):
        self.base, self.edges, self.base_ticks = base, edges, base_ticks

    def set_axis(self, axis):
        super().set_axis(axis)
        self.base.set_axis(axis)

    def __call__(self):
        low, high = sorted(self.axis.get_view_interval())
        transform = self.axis.get_transform()
        place = lambda value: float(transform.transform(np.array([[value]]))[0, 0])  # noqa: E731
        span = abs(place(high) - place(low)) or 1.0
        clearance = max(EDGE_TICK_CLEARANCE, self._labels_apart()) * span
        ticks = [tick for tick in (self.base() if self.base_ticks else []) if low <= tick <= high and
                 all(abs(place(tick) - place(edge)) >= clearance for edge in self.edges)]
        return sorted([*ticks, *self.edges])

    def _labels_apart(self) -> float:
        """EDGE_LABEL_CLEARANCE as a fraction of the axis' drawn length: on a short axis a
        fraction of its span is less than a label's size, and the edge's label touched the next."""
        axes = self.axis.axes
        name = "x" if self.axis is axes.xaxis else "y"
        length = (axes.bbox.width if name == "x" else axes.bbox.height) * 72 / axes.figure.dpi  # points
        return EDGE_LABEL_CLEARANCE[name] * PAPER_RC[f"{name}tick.labelsize"] / max(length, 1.0)


class _EdgeFormatter(Formatter):
    """The axis' own tick labels (`base`), and each edge line's label at its position."""

    def __init__(self, base: Formatter, edges: dict[float, str]):
        self.base, self.edges = base, edges

    def set_axis(self, axis):
        super().set_axis(axis)
        self.base.set_axis(axis)

    def format_ticks(self, values):
        labels = iter(self.base.format_ticks([value for value in values if value not in self.edges]))
        return [self.edges[value] if value in self.edges else next(labels) for value in values]

    def __call__(self, x, pos=None):
        return self.edges[x] if x in self.edges else self.base(x, pos)

    def get_offset(self):
        return self.base.get_offset()


def _mark_edges(ax, edges: dict[float, str], axis: str = "y", base_ticks: bool = True) -> None:
    """Label the lines where infinite (or undefined) values are drawn: a dotted line at each
    position of `edges` ({position: label}), its label as a tick label, in place of the axis'
    ticks that would crowd it (chosen when the figure is drawn, at its printed size)."""
    scaled, limits = getattr(ax, f"{axis}axis"), getattr(ax, f"get_{axis}lim")()
    for position in edges:
        (ax.axhline if axis == "y" else ax.axvline)(position, color="grey", linestyle=":", linewidth=0.8)
    scaled.set_major_locator(_EdgeLocator(scaled.get_major_locator(), edges, base_ticks))
    scaled.set_major_formatter(_EdgeFormatter(scaled.get_major_formatter(), edges))
    getattr(ax, f"set_{axis}lim")(limits)  # a new locator must not move the limits drawn with


def _models_in(rows: pd.DataFrame, styles: Styles) -> str:
    """"irnn, linear": the models of `rows`, in legend order."""
    return ", ".join(model for model in styles.models if model in set(rows["model"]))


def _per_stage(read, shown, x, y, xlabel, ylabel, layout, linear_within: float | None = None):
    """A panel per task (at its chosen gap: _at_chosen_gap) and stage, or per task, stage and
    family where faceted: each task's init panels above its trained panels; a line per model and
    clip arm, the mean over seeds, the band their range (min to max). One legend for the figure.

    Infinite values are drawn, at the edge: log10 of a norm that underflowed to 0 in float64 and
    the Lyapunov exponent of a direction a ReLU step annihilates are −∞, and so is the mean over
    seeds at an x where any seed's value is (the mean of logs: a geometric mean with a 0 in it);
    −∞ is drawn on a dotted line just below the panel's finite values (+∞ above them), labelled
    −∞ (+∞) on the axis (_edges, _mark_edges). A value that is undefined (NaN: a memory capacity
    whose network's states overflow) is left out of its line, whose mean at that x is then over
    the other seeds; the panel's title counts those runs and names their models, and the points
    where one seed is +∞ and another −∞ (no mean). With
    `linear_within` the y axis is symlog: linear within ±linear_within, logarithmic beyond (for
    values spanning decades of either sign)."""
    from matplotlib.lines import Line2D

    layout = layout or Layout(tuple(sorted(shown.task.unique())))
    styles = _styles(shown, read)
    undefined = shown[y].isna()
    defined, lost = shown[~undefined], shown.loc[undefined, KEYS + ["stage", "shown"]].drop_duplicates()
    # the mean and range over seeds, computed once by pandas: seaborn's own aggregation, point by
    # point, took about 3 minutes a figure at paper size (42 lines of ~300 points in 42 panels)
    curves = defined.groupby(["task", "shown", "stage", "model", "clip", x], sort=False)[y].agg(["mean", "min", "max"])
    curves = curves.reset_index().rename(columns={"min": "low", "max": "high"})
    clashing = curves[curves["mean"].isna()]  # +∞ and −∞ among the seeds of one point: no mean
    curves = curves[curves["mean"].notna()]
    # where ±∞ goes: one floor and ceiling per task and stage (faceted, its family panels share
    # them); a block with no finite value at all gets no other tick than its edges
    blocks = {key: block[["mean", "low", "high"]].to_numpy().ravel() for key, block in curves.groupby(["task", "stage"])}
    edges = {key: _edges(values, linear_within) for key, values in blocks.items()}
    any_finite = {key: bool(np.isfinite(values).any()) for key, values in blocks.items()}
    figure, panels = _panel_grid(layout, STAGES)
    labelled = _first_in_row(panels)
    whole_x = bool((curves[x] % 1 == 0).all())  # a lag, a delay, an exponent's index
    titles = dict(zip([*curves.task, *lost.task, *clashing.task], [*curves.shown, *lost.shown, *clashing.shown]))
    marked, drawn_edges = {}, set()
    for (task, stage, family), ax in panels.items():
        panel = _in_panel(curves, styles, task, family, stage)
        dropped = _in_panel(lost, styles, task, family, stage)
        clashes = _in_panel(clashing, styles, task, family, stage)
        if panel.empty and dropped.empty and clashes.empty:
            ax.set_visible(False)
            continue
        if linear_within is not None:
            ax.set_yscale("symlog", linthresh=linear_within)
            ax.yaxis.set_major_formatter(_PlainLogFormatter())
        floor, ceiling = edges.get((task, stage), (-1.0, 1.0))
        values = panel[["mean", "low", "high"]].to_numpy()
        infinite = {label: position for label, position, sign in (("−∞", floor, -1), ("+∞", ceiling, 1))
                    if (values == sign * np.inf).any()}
        _draw_lines(ax, panel.replace({-np.inf: floor, np.inf: ceiling}), x, styles, MARKERS_PER_CURVE)
        if whole_x:  # ticks at whole numbers only (matplotlib's own put 0.5, 1.5, ... on lags 0 to 3)
            ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))
        if infinite:
            marked[ax] = ({position: label for label, position in infinite.items()}, any_finite[(task, stage)])
            drawn_edges |= set(infinite)
        notes = [f"(NaN in {_runs(len(dropped))} of {_models_in(dropped, styles)}: not drawn)"] if len(dropped) else []
        if len(clashes):
            points = f"{len(clashes)} point{'s' * (len(clashes) > 1)}"
            notes.append(f"(+∞ and −∞ among the seeds at {points} of {_models_in(clashes, styles)}: not drawn)")
        label, gap = titles[task].rsplit(", ", 1)  # "task, gap G": the task on a line of its own
        ax.set_title(_title(label, f"{gap}, {stage}", family, *notes))
        ax.set_xlabel(xlabel if stage == STAGES[-1] else "")
        ax.set_ylabel(ylabel if id(ax) in labelled else "")
    if layout.families is not None:
        _share_y(panels)
    for ax, (positions, with_ticks) in marked.items():
        _mark_edges(ax, positions, base_ticks=with_ticks)
    extra = [Line2D([], [], color="grey", linestyle=":", linewidth=0.8, label=f"{label} (dotted line)")
             for label in ("−∞", "+∞") if label in drawn_edges]
    _legend(figure, styles, list(styles.dashes), extra)
    return figure


@figure("gradient_decay", tasks_per_page_of_lines(len(STAGES)))
def gradient_decay(read, gaps=None, layout=None):
    """log10 ||∂L_t/∂h_k|| against the lag t − k, at initialisation and after training.

    Each run's value is the mean norm over its probe sequences; lines are the mean of log10
    over seeds (a geometric mean). A straight line of slope −r/ln10 is exponential decay at
    the fitted rate r; a flat line is a norm-preserving Jacobian product.
    """
    shown = _at_chosen_gap(read, "gradient_decay", ["lag", "log10_grad_norm"], gaps, layout=layout)
    return _per_stage(read, shown, "lag", "log10_grad_norm", "lag t − k (steps)",
                      "log₁₀ ‖∂Lₜ/∂sₖ‖\n(full state s)",
                      layout)


@figure("sensitivity", tasks_per_page_of_lines(len(STAGES)))
def sensitivity(read, gaps=None, layout=None):
    """log10 ||∂h_t/∂x_l||_F against the lag t − l: how much of an input l steps back still
    moves the last state (forward memory), init and trained."""
    shown = _at_chosen_gap(read, "sensitivity", ["lag", "log10_sensitivity"], gaps, layout=layout)
    return _per_stage(read, shown, "lag", "log10_sensitivity", "lag t − l (steps)",
                      "log₁₀ ‖∂sₜ/∂xₗ‖\n(full state s)",
                      layout)


@figure("jacobian_spectrum", tasks_per_page_of_lines(len(STAGES)))
def jacobian_spectrum(read, gaps=None, layout=None):
    """Singular values σ_i of ∂s_t/∂s_{t−L} (the full state; log10, descending) at the longest
    probed lag, L = T: a flat top near 0 is dynamical isometry; a steep fall means only a few
    directions of the past state still reach s_t."""
    product = _at_chosen_gap(read, "jacobian_spectrum", ["lag", "index", "value"], gaps,
                             where=[("quantity", "==", "product"), ("statistic", "==", "log10_singular_value")],
                             layout=layout)
    longest = product.groupby(KEYS + ["stage"]).lag.transform("max")
    return _per_stage(read, product[product.lag == longest], "index", "value", "singular value index i",
                      "log₁₀ σᵢ(∂sₜ/∂sₖ)\n(full state s, t − k = T)", layout)


LYAPUNOV_LINEAR_WITHIN = 1.0  # ln per step: the lyapunov figure's y axis is linear within ±1, log beyond


@figure("lyapunov", tasks_per_page_of_lines(len(STAGES)))
def lyapunov(read, gaps=None, layout=None):
    """Lyapunov exponents λ_i (natural log per step) in decreasing order: λ_1 < 0 means
    perturbations, and memories, fade at rate λ_1; λ ≡ 0 is a norm-preserving map. The y axis
    is symlog: the lowest exponents reach −12 (lstm, default grid at f458346) while others sit
    within 1e-7 of 0, where a linear axis would press them into one line. Exponents of −∞ (a
    ReLU unit off: gapbench.probes.lyapunov) are drawn on the dotted −∞ line below the others."""
    table = _at_chosen_gap(read, "lyapunov", ["index", "exponent"], gaps, layout=layout)
    return _per_stage(read, table, "index", "exponent", "exponent index i",
                      f"λᵢ (ln per step; symlog,\nlinear in ±{LYAPUNOV_LINEAR_WITHIN:g})", layout,
                      linear_within=LYAPUNOV_LINEAR_WITHIN)


@figure("memory_capacity", tasks_per_page_of_lines(len(STAGES)))
def memory_capacity(read, gaps=None, layout=None):
    """MC_k, the squared correlation of a linear readout of the state with u(t − k), against
    the delay k (Jaeger 2001); the area under each curve is the memory capacity MC ≤ H."""
    shown = _at_chosen_gap(read, "memory_capacity", ["delay", "mc"], gaps, layout=layout)
    return _per_stage(read, shown, "delay", "mc", "delay k (steps)", "MCₖ", layout)


def largest_gap_solved_per_seed(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per (task, model, clip, seed): the largest gap whose run succeeded (0 if none)."""
    solved = accuracy.assign(solved_gap=accuracy.gap.where(accuracy.success.astype(bool), 0))
    return solved.groupby(["task", "model", "clip", "seed"], as_index=False).solved_gap.max()


MIN_DECAY_SPAN = 0.1  # log10 per step: the narrowest x range of a decay_rate_vs_gap_solved panel


@figure("decay_rate_vs_gap_solved")
def decay_rate_vs_gap_solved(read, gaps=None, layout=None):
    """The fitted gradient decay of the trained network (log10 per step, at the task's largest
    gap; x axis "trained decay") against the largest gap the same (model, clip, seed) solved: theory predicts that fast
    decay (a steep negative slope, a short half-life) goes with short solved gaps. One point per
    (model, clip, seed): the model's colour and marker, the clip arm's fill; a panel per task
    (per task and family where faceted). A run without a decay rate (fewer than two lags whose
    gradient norm is above float64's smallest normal number, as where the loss's gradient is
    exactly 0, a latch run solved to loss 0: probes/_summary.py fit_decay_rate) is drawn left of
    the others, on a dotted line labelled "no rate" (_edges, _mark_edges)."""
    from matplotlib.lines import Line2D

    accuracy, summary = _on_page(read("accuracy_vs_gap"), layout), _on_page(read("propagation_summary"), layout)
    trained = summary[summary.stage == "trained"]
    hardest = trained[trained.gap == trained.groupby("task").gap.transform("max")]
    points = largest_gap_solved_per_seed(accuracy).merge(
        hardest[["task", "model", "clip", "seed", "decay_log10_per_step"]], on=["task", "model", "clip", "seed"])
    layout = layout or Layout(tuple(sorted(accuracy.task.unique())))
    styles = _styles(accuracy, read)
    fills = clip_fills(list(styles.dashes))
    figure, panels = _panel_grid(layout)
    labelled = _first_in_row(panels)
    without_rate = False
    for (task, _, family), ax in panels.items():
        panel = _in_panel(points, styles, task, family)
        if panel.empty:
            ax.set_visible(False)
            continue
        rated = panel[np.isfinite(panel.decay_log10_per_step)]
        # the x range of the finite rates (if any), at least MIN_DECAY_SPAN wide (every run may
        # decay at nearly the same rate), and 0 (no decay) in it; runs without a rate go left of it
        rates = rated.decay_log10_per_step
        low, high = (min(rates.min(), 0.0), max(rates.max(), 0.0)) if len(rated) else (0.0, 0.0)
        if high - low < MIN_DECAY_SPAN:
            middle = (low + high) / 2
            low, high = middle - MIN_DECAY_SPAN / 2, middle + MIN_DECAY_SPAN / 2
        no_rate, _ = _edges([low, high])
        # the gaps that were run (and 0, none solved) evenly spaced, labelled, nothing else:
        # on a linear axis 0, 10, 30 and 100 would sit on each other below 2000
        run = sorted({0, *accuracy.gap[accuracy.task == task]})
        ax.axvline(0, color="grey", linestyle=":", linewidth=1)  # no decay: the gradient keeps its norm
        for (model, clip), group in panel.groupby(["model", "clip"], sort=False):
            ax.plot(group.decay_log10_per_step.fillna(no_rate), group.solved_gap.map(run.index), linestyle="",
                    marker=styles.markers[model], fillstyle=fills[clip], color=styles.colours[model], markersize=4,
                    markeredgewidth=0.7)
        ax.set_yticks(range(len(run)), [str(gap) for gap in run])
        ax.set_ylim(-0.5, len(run) - 0.5)
        # rates as −0.1, −0.05, not −0.100, −0.075 (steps of 2.5 make labels too wide for a panel)
        ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 5, 10]))
        ax.ticklabel_format(axis="x", style="plain", useOffset=False)  # no offset text on the axis label
        margin = 0.05 * (high - low)
        ax.set_xlim((no_rate if len(rated) < len(panel) else low) - margin, high + margin)
        if len(rated) < len(panel):
            _mark_edges(ax, {no_rate: "no\nrate"}, axis="x")
            without_rate = True
        ax.set_title(_title(task, family))
        ax.set_xlabel("trained decay\n(log10 per step)")
        ax.set_ylabel("largest gap solved\n(0: none)" if id(ax) in labelled else "")
    extra = [Line2D([], [], linestyle="", label="no rate: under 2 lags\nwith a nonzero gradient")] if without_rate else []
    _legend(figure, styles, list(fills), extra, clip_handle=lambda clip: Line2D(
        [], [], color="black", marker="o", fillstyle=fills[clip], linestyle="", markersize=4, label=clip),
        model_line=False)
    return figure


class UnknownPage(LookupError):
    """A page asked of draw_all that the tables' figures do not have."""


def draw_all(tables_dir, out_dir, gaps: dict | None = None, stems=None) -> list[str]:
    """Draw every page of every registered figure from the tables in tables_dir (each table
    request read once), or only the pages named in `stems` (the pipeline draws each page in a
    job of its own, so one page that fails costs no other); returns the file stems written
    (figure_stems of the tables' shape, in that order)."""
    read = table_reader(tables_dir)
    shape = shape_of_tables(read)
    every_page = [(name, spec, stem, layout) for name, spec in FIGURES.items() for stem, layout in pages(name, shape)]
    if stems is not None:
        unknown = sorted(set(stems) - {stem for _, _, stem, _ in every_page})
        if unknown:  # the Snakefile derives its pages from the config, this from the tables: they disagree
            raise UnknownPage(f"no figure page {', '.join(map(repr, unknown))} in the tables of {tables_dir}; their pages: "
                             f"{', '.join(stem for _, _, stem, _ in every_page)}")
        every_page = [page for page in every_page if page[2] in set(stems)]
    for name, spec, stem, layout in every_page:
        with paper_style():
            try:
                drawn = spec.draw(read, gaps, layout)
            except UnreadableTable as error:  # which figure asked, and where it is written
                raise UnreadableTable(f"figure {name!r} ({source_file(spec.draw)}): {error}") from None
            _save(drawn, Path(out_dir), stem)
    return [stem for _, _, stem, _ in every_page]
