"""Every registered figure, drawn from the smoke run's real tidy tables, is saved at a paper's
width (TEXT_WIDTH, or COLUMN_WIDTH with one column of panels) with all its text between
FONT_SIZES points at that size, inside the page and not overlapping other text."""
import re
import zlib

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

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
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            content = zlib.decompress(stream)
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
        table = read(name, columns, rows)
        return table[table.task == task]
    return reader


@pytest.mark.parametrize("subset", ["every task", "one task"])
def test_every_figure_prints_at_a_paper_width_with_legible_text(read, smoke_run, tmp_path, subset):
    figures_dir = smoke_run / FIGURES_DIR
    tasks = sorted(read("accuracy_vs_gap").task.unique())
    assert len(tasks) > 3  # the smoke grid wraps onto a second row of panels
    reader, width = (read, figures.TEXT_WIDTH) if subset == "every task" else (one_task(read, "copy"), figures.COLUMN_WIDTH)
    low, high = figures.FONT_SIZES
    assert figures.FIGURES and (figures.COLUMN_WIDTH, figures.TEXT_WIDTH) == (3.4, 7.0) and (low, high) == (7, 9)
    for name, draw in figures.FIGURES.items():
        with figures.paper_style():
            drawn = draw(reader, None)
            figure = getattr(drawn, "figure", drawn)
            figures._save(drawn, tmp_path, name)
        assert {p.name for p in tmp_path.glob(f"{name}.*")} == {f"{name}.{suffix}" for suffix in FIGURE_FORMATS}
        if subset == "every task":  # drawn again from the same tables: the bytes the pipeline's figures rule wrote
            for suffix in FIGURE_FORMATS:
                assert (tmp_path / f"{name}.{suffix}").read_bytes() == (figures_dir / f"{name}.{suffix}").read_bytes()

        # the saved page is the declared width (no tight bounding box changing it), at most a page tall
        pdf = (tmp_path / f"{name}.pdf").read_bytes()
        page_width, page_height = pdf_page_size(pdf)
        assert page_width == pytest.approx(width * 72, abs=0.01), name
        assert tuple(figure.get_size_inches()) == pytest.approx((width, page_height / 72), abs=0.01), name
        assert page_height <= 9 * 72, name  # a page's text height, for the smoke grid
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
