"""Every registered figure, drawn from the smoke run's real tidy tables, is saved at a paper's
width (TEXT_WIDTH, or COLUMN_WIDTH with one column of panels) with all its text between
FONT_SIZES points at that size, inside the page and not overlapping other text."""
import re
import zlib

import matplotlib.axis
import matplotlib.figure
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from conftest import ROOT
from gapbench import models
from gapbench.reports import figures
from gapbench.reports.tables import table_reader
from gapbench.results import FIGURE_FORMATS, FIGURES_DIR


def pdf_page_size(pdf: bytes) -> tuple[float, float]:
    """(width, height) in points of the PDF's single page, from its MediaBox."""
    boxes = re.findall(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]", pdf)
    assert len(boxes) == 1, boxes
    x0, y0, x1, y1 = map(float, boxes[0])
    return x1 - x0, y1 - y0


def pdf_font_sizes(pdf: bytes) -> set[float]:
    """Every font size the PDF's content streams select (the Tf operator), in points."""
    sizes = set()
    # up to "endstream" with the end of line before it: a compressed stream may itself end in a
    # byte \r, which a pattern taking "\r\n" as that end of line would cut off (1 in 256 streams;
    # which one depends on the plotted numbers, so on the machine); zlib stops at its stream's end
    for stream in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            content = zlib.decompressobj().decompress(stream)
        except zlib.error:  # an uncompressed or font stream
            content = stream
        sizes |= {float(size) for size in re.findall(rb"/F\d+\s+([\d.]+)\s+Tf", content)}
    return sizes


def png_width(png: bytes) -> int:
    assert png.startswith(b"\x89PNG")
    return int.from_bytes(png[16:20], "big")


def drawn_texts(figure) -> list[Text]:
    """The figure's texts that are drawn: visible, not empty, and for tick labels, at a tick
    inside the axis' view (matplotlib keeps labels of ticks beyond the limits, undrawn)."""
    ticks, drawn = set(), set()
    for ax in figure.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            for minor, locs in ((False, axis.get_majorticklocs()), (True, axis.get_minorticklocs())):
                labels = axis.get_ticklabels(minor=minor)
                ticks |= {id(t) for tick in (axis.get_minor_ticks() if minor else axis.get_major_ticks())
                          for t in (tick.label1, tick.label2)}
                tolerance = 1e-9 * max(abs(low), abs(high), 1)
                drawn |= {id(label) for label, loc in zip(labels, locs) if low - tolerance <= loc <= high + tolerance}
    hidden = {id(t) for ax in figure.axes if not ax.get_visible() for t in ax.findobj(Text)}
    return [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()
            and id(t) not in hidden and (id(t) not in ticks or id(t) in drawn)]


@pytest.fixture(scope="module")
def read(smoke_run):
    return table_reader(smoke_run / "results" / "tables")


def one_task(read, task):
    """A reader of the same tables cut down to one task: a figure with a single column of panels."""
    def reader(name, columns=None, rows=None):
        extra = columns is not None and "task" not in columns
        table = read(name, [*columns, "task"] if extra else columns, rows)
        table = table[table.task == task]
        return table.drop(columns="task") if extra else table
    return reader


# per table, the column a probe writes a value to that cannot be drawn: log10 of a norm that
# underflowed to 0 (−∞), memory capacity where states overflow (NaN), no decay rate (NaN)
UNDRAWABLE = {"gradient_decay": ("log10_grad_norm", -np.inf), "sensitivity": ("log10_sensitivity", -np.inf),
              "jacobian_spectrum": ("value", -np.inf), "lyapunov": ("exponent", -np.inf),
              "memory_capacity": ("mc", np.nan), "propagation_summary": ("decay_log10_per_step", np.nan)}
LOST_RUN = {"model": "vanilla", "clip": "none", "seed": 0, "stage": "trained"}


def with_undrawable_values(read):
    """The same tables with every value of one trained run (LOST_RUN) replaced by one the figures
    cannot draw (UNDRAWABLE)."""
    def reader(name, columns=None, rows=None):
        table = read(name, columns, rows)
        if name in UNDRAWABLE:
            column, value = UNDRAWABLE[name]
            run = np.logical_and.reduce([table[key] == value_ for key, value_ in LOST_RUN.items()])
            table.loc[run, column] = value
        return table
    return reader


def figure_pages(read, subset):
    """[(name, file stem, draw function of (read, gaps))]: every page the pipeline draws from the
    smoke tables, or each figure drawn for the copy task alone (one panel, one column), also with
    one run's values undrawable (with_undrawable_values)."""
    if subset.startswith("one task"):
        reader = one_task(read, "copy")
        if subset.endswith("undrawable values"):
            reader = with_undrawable_values(reader)
        return [(name, name, lambda spec=spec: spec.draw(reader, None)) for name, spec in figures.FIGURES.items()]
    shape = figures.shape_of_tables(read)
    return [(name, stem, lambda spec=spec, layout=layout: spec.draw(read, None, layout))
            for name, spec in figures.FIGURES.items() for stem, layout in figures.pages(name, shape)]


def test_smoke_figures_are_faceted_by_family_and_split_into_pages(read, smoke_run):
    """The smoke grid's adding entry holds 8 models × 3 clip arms (24 lines > 14): a panel per
    family, and the per-stage figures split over pages; the pipeline drew exactly these pages."""
    shape = figures.shape_of_tables(read)
    assert shape.faceted and shape.families == ("elementwise", "orthogonal/unitary", "gated")
    stems = figures.figure_stems(shape)
    assert "accuracy_vs_gap" in stems and "gradient_decay_page1" in stems and "gradient_decay" not in stems
    drawn = {p.name for p in (smoke_run / FIGURES_DIR).iterdir()}
    assert drawn == {f"{stem}.{suffix}" for stem in stems for suffix in FIGURE_FORMATS}
    accuracy = read("accuracy_vs_gap")
    with figures.paper_style():
        figure = figures.FIGURES["accuracy_vs_gap"].draw(read, None, figures.pages("accuracy_vs_gap", shape)[0][1])
    # a panel per task and family that has runs: adding has all three families, copy two
    panels = [ax for ax in figure.axes if ax.get_visible()]
    expected = sum(accuracy[accuracy.task == task].model_name.map(models.family).nunique()
                   for task in accuracy.task.unique())
    assert len(panels) == expected
    # greyscale: within every panel each (model, clip arm) line has its own (marker, dash) pair
    for ax in panels:
        # (matplotlib keeps a line's dash sequence, before scaling by line width, in _unscaled_dash_pattern)
        styles = [(line.get_marker(), repr(line._unscaled_dash_pattern)) for line in ax.get_lines()
                  if line.get_marker() not in ("", "None", None) and line.get_linestyle() not in ("None", "")]
        assert len(styles) == len(set(styles)) > 0, ax.get_title()
    # and every model of the registry has a marker of its own, every clip arm its own dash
    every = figures.model_markers(models.names())
    assert len(set(every.values())) == len(every) == len(models.names())
    assert len({repr(d) for d in figures.clip_dashes(["none", "norm", "value"]).values()}) == 3
    figures.plt.close(figure)


@pytest.mark.parametrize("config", ["smoke.yaml", "literature.yaml", "default.yaml"])
def test_a_registered_model_keeps_its_marker_and_labelled_variants_get_free_ones(config):
    """Whatever models a grid shows, each registered one has the marker it has among all of them,
    and a labelled variant (smoke's vanilla_h4, literature's two ESN variants) one of its own."""
    from gapbench.config import load_config, model_label

    loaded = load_config(ROOT / "config" / config, cores=2, cuda_available=lambda: True)
    labels = {model_label(entry): entry["name"] for entry in loaded["models"]}
    every = figures.model_markers(models.names())
    shown = figures.model_markers(list(labels), labels)
    assert shown.keys() == labels.keys()
    assert all(shown[name] == every[name] for name in labels if name in every)
    assert len(set(shown.values())) == len(shown)
    assert any(name not in every for name in labels) or config == "default.yaml"


def test_a_clip_arm_keeps_its_dash_and_fill_without_the_others():
    assert figures.clip_fills(["none", "value"]) == {"none": "full", "value": "bottom"}
    assert figures.clip_dashes(["value"])["value"] == figures.clip_dashes(["none", "norm", "value"])["value"]


@pytest.mark.parametrize("subset", ["every task", "one task", "one task, undrawable values"])
def test_every_figure_prints_at_a_paper_width_with_legible_text(read, smoke_run, tmp_path, subset, monkeypatch):
    figures_dir = smoke_run / FIGURES_DIR
    tasks = sorted(read("accuracy_vs_gap").task.unique())
    assert len(tasks) > 3  # the smoke grid wraps onto a second row of panels
    width = figures.TEXT_WIDTH if subset == "every task" else figures.COLUMN_WIDTH
    low, high = figures.FONT_SIZES
    assert figures.FIGURES and (figures.COLUMN_WIDTH, figures.TEXT_WIDTH) == (3.4, 7.0) and (low, high) == (7, 9)
    # the ticks each saved file drew (matplotlib's Axis._update_ticks, called several times per
    # axis and draw: the sequence compared whole) and where its panels were: the PDF and the PNG
    # of a figure must show the same ticks at the same places
    saved_ticks, update_ticks, savefig = [], matplotlib.axis.Axis._update_ticks, matplotlib.figure.Figure.savefig
    saved_places = []

    def recording_ticks(axis):
        ticks = update_ticks(axis)
        if saved_ticks:  # in a savefig (_save draws the figure once before)
            saved_ticks[-1].append(tuple(float(tick.get_loc()) for tick in ticks))
        return ticks

    def recording_savefig(figure, *args, **kwargs):
        saved_ticks.append([])
        result = savefig(figure, *args, **kwargs)
        saved_places.append([tuple(ax.get_position().bounds) for ax in figure.axes])  # as drawn
        return result

    monkeypatch.setattr(matplotlib.axis.Axis, "_update_ticks", recording_ticks)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording_savefig)
    for name, stem, draw in figure_pages(read, subset):
        with figures.paper_style():
            drawn = draw()
            figure = getattr(drawn, "figure", drawn)
            saved_ticks.clear()
            saved_places.clear()
            figures._save(drawn, tmp_path, stem)
        assert {p.name for p in tmp_path.glob(f"{stem}.*")} == {f"{stem}.{suffix}" for suffix in FIGURE_FORMATS}
        assert len(saved_ticks) == len(FIGURE_FORMATS) and saved_ticks[0] and \
            all(ticks == saved_ticks[0] for ticks in saved_ticks), stem
        assert all(places == saved_places[0] for places in saved_places), stem
        if subset == "every task":  # drawn again from the same tables: the bytes the pipeline's figures rule wrote
            for suffix in FIGURE_FORMATS:
                assert (tmp_path / f"{stem}.{suffix}").read_bytes() == (figures_dir / f"{stem}.{suffix}").read_bytes()
        name = stem

        # the saved page is the declared width (no tight bounding box changing it), at most a page tall
        pdf = (tmp_path / f"{name}.pdf").read_bytes()
        page_width, page_height = pdf_page_size(pdf)
        assert page_width == pytest.approx(width * 72, abs=0.01), name
        assert tuple(figure.get_size_inches()) == pytest.approx((width, page_height / 72), abs=0.01), name
        assert page_height <= figures.PAGE_HEIGHT * 72, name  # a page's text height
        assert png_width((tmp_path / f"{name}.png").read_bytes()) == round(width * figures.PNG_DPI), name

        # every font the PDF uses is within the declared sizes (tick labels, labels, titles, legend)
        sizes = pdf_font_sizes(pdf)
        assert sizes and low <= min(sizes) and max(sizes) <= high, (name, sorted(sizes))

        # every text on the page: within the sizes, inside the page, not on top of another text
        canvas = FigureCanvasAgg(figure)  # _save closed the figure: lay it out again, as saved
        canvas.draw()
        renderer = canvas.get_renderer()
        page = figure.bbox
        boxes = []
        for text in drawn_texts(figure):
            assert low <= text.get_fontsize() <= high, (name, text.get_text(), text.get_fontsize())
            box = text.get_window_extent(renderer)
            assert (box.x0 >= page.x0 - 1 and box.y0 >= page.y0 - 1 and box.x1 <= page.x1 + 1
                    and box.y1 <= page.y1 + 1), (name, text.get_text(), box, page)
            boxes.append((text.get_text(), box.shrunk(0.95, 0.8)))  # glyph boxes include some padding
        for i, (label, box) in enumerate(boxes):
            for other, other_box in boxes[i + 1:]:
                assert not box.overlaps(other_box), (name, label, other)

        # the legend is outside every panel: it hides no data
        for legend in figure.legends:
            legend_box = legend.get_window_extent(renderer)
            for ax in figure.axes:
                if ax.get_visible():
                    assert not legend_box.overlaps(ax.get_window_extent(renderer)), (name, ax.get_title())


def _tick_labels(ax, axis="y"):
    """The tick labels of `ax` as drawn (the figure laid out at its saved size first)."""
    scaled = ax.yaxis if axis == "y" else ax.xaxis
    ticks = scaled.get_majorticklocs()
    return list(ticks), scaled.get_major_formatter().format_ticks(ticks)


def test_infinite_values_are_drawn_on_a_labelled_edge_and_undefined_ones_counted_by_model(read):
    """One trained run's values replaced (with_undrawable_values): a −∞ (a norm that underflowed to
    0, a direction a ReLU step annihilates) is drawn on a dotted line labelled −∞ below every finite
    value, and so is the mean over seeds at a point where one seed is −∞ (a mean of logs); init
    panels have no such line. A NaN (memory capacity of overflowing states) is left out, the
    title counting its runs and naming their model; a run without a decay rate is drawn at "no
    rate". The lyapunov axis is symlog."""
    reader = with_undrawable_values(one_task(read, "copy"))
    for name in ("gradient_decay", "sensitivity", "jacobian_spectrum", "lyapunov"):
        with figures.paper_style():
            figure = figures.FIGURES[name].draw(reader, None)
        figures.fit_to_page(figure)
        panels = {ax.get_title().replace("\n", " "): ax for ax in figure.axes if ax.get_visible()}
        for title, ax in panels.items():
            assert "not drawn" not in title, (name, title)
            ticks, labels = _tick_labels(ax)
            if "init" in title:
                assert "−∞" not in labels, (name, title)
                continue
            assert labels.count("−∞") == 1, (name, title, labels)
            floor = ticks[labels.index("−∞")]
            # every line's lowest point: the mean lines of the run's model (one seed of two −∞) on
            # the floor, every other line above it
            lowest = [np.min(np.asarray(line.get_ydata(), dtype=float)) for line in ax.get_lines()
                      if len(line.get_xdata()) > 2]
            assert floor in lowest and all(value >= floor for value in lowest), (name, title, lowest, floor)
            assert ax.get_ylim()[0] < floor < ax.get_ylim()[1]
        legend = [text.get_text() for legend in figure.legends for text in legend.get_texts()]
        assert "−∞ (dotted line)" in legend, (name, legend)
        if name == "lyapunov":
            assert {ax.get_yscale() for ax in figure.axes if ax.get_visible()} == {"symlog"}
        figures.plt.close(figure)
    with figures.paper_style():
        figure = figures.FIGURES["memory_capacity"].draw(reader, None)
    titles = {ax.get_title().replace("\n", " ") for ax in figure.axes if ax.get_visible()}
    assert any("trained" in t and "(NaN in 1 run of vanilla: not drawn)" in t for t in titles), titles
    assert not any("init" in t and "not drawn" in t for t in titles), titles
    figures.plt.close(figure)
    with figures.paper_style():
        figure = figures.FIGURES["decay_rate_vs_gap_solved"].draw(reader, None)
    figures.fit_to_page(figure)
    (ax,) = [ax for ax in figure.axes if ax.get_visible()]
    ticks, labels = _tick_labels(ax, "x")
    assert labels.count("no\nrate") == 1, labels
    no_rate = ticks[labels.index("no\nrate")]
    xs = np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in ax.get_lines()
                         if line.get_marker() not in (None, "None", "")])
    assert (xs == no_rate).sum() == 1 and (xs[xs != no_rate] > no_rate).all()  # the one run without a rate
    figures.plt.close(figure)


def test_a_score_that_is_not_finite_is_counted_by_model_in_its_panel_title(read):
    copy = one_task(read, "copy")

    def reader(name, columns=None, rows=None):
        table = copy(name, columns, rows)
        if name == "accuracy_vs_gap" and {"model", "clip", "seed", "gap", "test_score"} <= set(table.columns):
            run = (table["model"] == "vanilla") & (table["clip"] == "none") & (table.seed == 0)
            table.loc[run & (table.gap == table.gap.max()), "test_score"] = np.inf
        return table

    with figures.paper_style():
        figure = figures.FIGURES["accuracy_vs_gap"].draw(reader, None)
    titles = [ax.get_title().replace("\n", " ") for ax in figure.axes if ax.get_visible()]
    assert titles == ["copy (1 run of vanilla not finite: not drawn)"], titles
    figures.plt.close(figure)
