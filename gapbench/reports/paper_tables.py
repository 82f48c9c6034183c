"""Tables a paper can include, drawn from the tidy tables only, as LaTeX (booktabs) and Markdown.

Each table is one function decorated with `@paper_table("name", caption)`: it gets
`read(table_name)` and returns a DataFrame shaped for the page, or a list of `Part`s, one float
each (a table per task, where one table of every task's gaps would not fit a page); `write_all`
writes name.tex (pandas' Styler.to_latex, booktabs rules, a caption and a label per float) and
name.md (to_markdown). Adding a table touches nothing outside this module: the pipeline's
targets come from `PAPER_TABLES`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from gapbench.files import write_text
from gapbench.reports.families import model_order, registry_names
from gapbench.reports.tables import INTERVAL_SEEDS, table_reader
from gapbench.results import KEYS, STAGES

PAPER_TABLES: dict[str, tuple[Callable, str]] = {}  # name -> (function(read), caption)


@dataclass(frozen=True)
class Part:
    """One float of a paper table: its rows, the words its caption starts with, and the key
    that ends its label (tab:gapbench-NAME-KEY)."""
    key: str
    table: pd.DataFrame
    caption: str


def paper_table(name: str, caption: str):
    """Register a paper table under `name` (its file stem) with its caption."""
    def decorator(function):
        if name in PAPER_TABLES:
            raise ValueError(f"paper table {name!r} is registered twice")
        PAPER_TABLES[name] = (function, caption)
        return function

    return decorator


def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p > 0.5) of Student's t with df degrees of freedom: bisection on its CDF,
    0.5 + ∫_0^x Γ((ν+1)/2) / (√(νπ) Γ(ν/2)) (1 + t²/ν)^(−(ν+1)/2) dt, integrated numerically."""
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def cdf(x: float) -> float:
        t = np.linspace(0.0, x, 20001)
        return 0.5 + np.trapezoid(scale * (1 + t * t / df) ** (-(df + 1) / 2), t)

    low, high = 0.0, 1.0
    while cdf(high) < p:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < p else (low, middle)
    return (low + high) / 2


def _spread(values: pd.Series) -> str:
    """A cell of seeds' scores: the mean and its spread over the seeds with a finite score: the
    half-width of the 95% Student-t interval (mean ± h) from INTERVAL_SEEDS seeds on, their range
    below (mean [min, max]), the mean alone for one seed; seeds whose score is not finite (a
    diverged run) are counted. The range is written to the mean's 3 significant figures:
    rounded coarser, it could leave the mean outside it (0.998 [1, 1] for 0.9977 to 0.9981)."""
    values = values.to_numpy(dtype=float)
    lost = int((~np.isfinite(values)).sum())
    values = values[np.isfinite(values)]
    note = f" ({lost} not finite)" if lost else ""
    if values.size == 0:
        return "—" + note
    mean = values.mean()
    if values.size == 1:
        return f"{mean:.3g}{note}"
    if values.size < INTERVAL_SEEDS:
        return f"{mean:.3g} [{values.min():.3g}, {values.max():.3g}]{note}"
    half = t_quantile(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return f"{mean:.3g} ± {half:.2g}{note}"


def _in_model_order(table: pd.DataFrame, read) -> pd.DataFrame:
    """`table` with its rows sorted by its index levels, the models family by family as every
    figure's legend lists them (families.model_order), not alphabetically."""
    order, _ = model_order(table.index.unique("model"), registry_names(read))
    rank = {model: place for place, model in enumerate(order)}
    return table.sort_index(key=lambda level: level.map(rank) if level.name == "model" else level)


def _seeds_a_cell(rows: pd.DataFrame) -> str:
    """"N seeds a cell" ("1 seed a cell"; "N–M seeds a cell" where cells differ) of one task's rows."""
    counts = rows.groupby(["model", "clip", "gap"]).seed.nunique()
    low, high = int(counts.min()), int(counts.max())
    return f"{low} seed{'s' * (high > 1)} a cell" if low == high else f"{low}–{high} seeds a cell"


def _per_task(read, cell, words) -> list[Part]:
    """A Part per task of accuracy_vs_gap: rows model and clip arm, a column per gap the task
    ran, `cell` of each group's rows; its caption "task: `words(rows)`" (a colon, not
    parentheses: a score's label may hold its own)."""
    parts = []
    for task, rows in read("accuracy_vs_gap").groupby("task", sort=True):
        table = rows.groupby(["model", "clip", "gap"]).apply(cell, include_groups=False).unstack("gap")
        table = _in_model_order(table.fillna("—").rename_axis(columns="gap"), read)
        parts.append(Part(task, table, f"{task}: {words(rows)}"))
    return parts


@paper_table("score_vs_gap", f"Test score at each gap: the mean over seeds, ± the half-width of its 95% "
             f"Student-t interval where {INTERVAL_SEEDS} or more seeds have a finite score, [the seeds' range] "
             f"where 2 to {INTERVAL_SEEDS - 1} do.")
def score_vs_gap(read) -> list[Part]:
    def words(rows):
        label = rows.score_label.iloc[0] if "score_label" in rows else rows.metric.iloc[0]
        return f"{label}; {_seeds_a_cell(rows)}"

    return _per_task(read, lambda rows: _spread(rows.test_score), words)


@paper_table("success_rate", "Seeds whose run succeeded at each gap, k of n, by the task's success criterion: "
             "a test loss below 10% of the memoryless baseline for every task that defines no other (gapbench's "
             "docs/tasks.md lists the ones that do).")
def success_rate(read) -> list[Part]:
    return _per_task(read, lambda rows: f"{int(rows.success.sum())}/{len(rows)}", _seeds_a_cell)


def half_solved_gaps(accuracy: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of `by`, the largest gap at which at least half of the seeds succeeded: rows of
    `by`, gap, sum (the seeds that succeeded there) and count (the seeds run); a group that
    solved no gap has no row. The reading of largest_gap_solved and the literature judge."""
    seeds = accuracy.assign(success=accuracy.success.astype(bool)).groupby(
        [*by, "gap"]).success.agg(["sum", "count"]).reset_index()
    half = seeds[seeds["sum"] >= 0.5 * seeds["count"]]
    return half.loc[half.groupby(by).gap.idxmax()]


@paper_table("largest_gap_solved", "Largest gap at which at least half of the seeds succeeded, per task, "
             "model and clip arm (— where no gap was), with (k/n) where only k of its n seeds did; ≥G where G "
             "is the largest gap the task ran: the model's limit lies beyond the gaps measured. Last column: the "
             "largest gap the task ran.")
def largest_gap_solved(read) -> pd.DataFrame:
    accuracy = read("accuracy_vs_gap")
    longest = accuracy.groupby("task").gap.max()
    solved = half_solved_gaps(accuracy, ["task", "model", "clip"])

    def cell(task, gap, k, n) -> str:
        # censored: solved at the largest gap run, so how much further it reaches is not measured
        text = f"≥{gap}" if gap == longest[task] else str(gap)
        return text if k == n else f"{text} ({k}/{n})"

    cells = pd.Series([cell(*row) for row in solved[["task", "gap", "sum", "count"]].itertuples(index=False)],
                      index=pd.MultiIndex.from_frame(solved[["task", "model", "clip"]]), dtype=object)
    everything = accuracy.groupby(["task", "model", "clip"]).size().index
    table = cells.reindex(everything).fillna("—")
    # "clip none", not "none" under a header "clip": pandas writes a header's name above the
    # index, where it would label the model column and the last column as a clip arm
    table = table.unstack("clip").rename(columns=lambda arm: f"clip {arm}").rename_axis(columns=None)
    table = table.assign(**{"largest gap run": table.index.get_level_values("task").map(longest).astype(str)})
    return _in_model_order(table, read)


ROUNDING = 1e-12  # propagation: a median this small in magnitude is float64 rounding (identity's λ1: 3e-16)


@paper_table("propagation", "Propagation at initialisation and after training, median over tasks, gaps "
             "and seeds (and, after training, clip arms: the arms of a seed start from one network, counted "
             "once at initialisation): gradient decay rate (log10 per step), its half-life (steps), the largest "
             "Lyapunov exponent λ1 (ln per step), memory capacity MC (delays k ≥ 0, and k ≥ 1 as Jaeger 2001 "
             "counts it) and ρ(W_h) (— for models without W_h). (k/n): the median of the k of n runs that have "
             "a value (a decay rate needs two lags with a nonzero gradient; MC, states that stay finite); "
             "(j infinite): a finite median over values of which j are infinite (λ1 is -∞ where, along "
             "some probe sequence, the steps after the warm-up annihilate every direction of the state: "
             "units switched off; a half-life is ∞ where the gradient does not shrink, flat or growing: the decay "
             f"column's sign tells which). Medians below {ROUNDING:g} in magnitude are float64 rounding, written 0.")
def propagation(read) -> pd.DataFrame:
    summary = read("propagation_summary")
    # the clip arms of a seed train from one initial network (gapbench.job refuses arms that do
    # not), so their init rows are one network's: each counted once in the (k/n) and (j infinite)
    initial = summary.stage == STAGES[0]
    network = [key for key in KEYS if key != "clip"]
    summary = pd.concat([summary[initial].drop_duplicates(network), summary[~initial]])
    columns = {"decay_log10_per_step": "decay (log10/step)", "half_life_steps": "half-life", "lyapunov_max": "λ1",
               "memory_capacity": "MC", "memory_capacity_from_1": "MC (k ≥ 1)", "spectral_radius": "ρ(W_h)"}
    groups = summary.groupby(["model", "stage"])[list(columns)]
    median, present, runs = groups.median(), groups.count(), groups.size()
    infinite = summary[list(columns)].apply(np.isinf).groupby([summary.model, summary.stage]).sum()

    def cell(value, k, n, j):
        if np.isnan(value):
            return "—"
        text = ("∞" if value > 0 else "-∞") if np.isinf(value) else "0" if abs(value) < ROUNDING else \
            f"{value + 0.0:.3g}"  # no "-0"
        notes = ([] if k == n else [f"{k}/{n}"]) + ([f"{j} infinite"] if j and np.isfinite(value) else [])
        return f"{text} ({'; '.join(notes)})" if notes else text

    table = pd.DataFrame({column: [cell(v, k, n, j) for v, k, n, j in
                                   zip(median[column], present[column], runs, infinite[column].reindex(median.index))]
                          for column in columns}, index=median.index)
    return _in_model_order(table.rename(columns=columns), read)


# LaTeX for what the Markdown tables write in Unicode (after escaping LaTeX's special characters)
LATEX = {"-∞": r"$-\infty$", "λ1": r"$\lambda_1$", r"ρ(W\_h)": r"$\rho(W_h)$", "±": r"$\pm$", "—": "---", "–": "--",
         "∞": r"$\infty$", "≥": r"$\geq$"}


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex(value):
    text = re.sub(r"[\\&%$#_{}~^]", lambda match: LATEX_SPECIAL[match.group()], str(value))  # one pass
    # Python's e-notation typeset: -4.19e-09 is $-4.19\times10^{-9}$ (its sign inside the math;
    # before the en dash of a range, 2e-05–3e-04, becomes LaTeX's "--")
    text = re.sub(r"(?<![\w.])(-?\d+(?:\.\d+)?)e([+-]\d+)\b",
                  lambda match: f"${match[1]}\\times10^{{{int(match[2])}}}$", text)
    for unicode, latex in LATEX.items():
        text = text.replace(unicode, latex)
    # a minus sign, not a hyphen: -0.2, not half-life or an en dash's "--" (2–5); not one inside
    # the math just written
    return re.sub(r"(?<![\w.\-${])-(?=\d)", "$-$", text)


LATEX_PACKAGES = "booktabs,multirow,graphicx"  # what the floats need in the paper's preamble
# atop every .tex: the packages, and the caption package for captions above a table, under
# which article.cls leaves no space (\belowcaptionskip 0 pt): the top rule touches the caption
LATEX_HEADER = (f"% gapbench paper tables: needs \\usepackage{{{LATEX_PACKAGES}}}; the captions are above the\n"
                "% tables, so add \\usepackage[tableposition=top]{caption} where the class leaves no space under\n"
                "% a caption (article, report, book)\n")


FIT_TO_TEXT = "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%\n"


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """booktabs LaTeX through pandas' Styler, a table* float in \\small type, scaled down to the
    text's width where wider (needs booktabs, multirow and graphicx); cells, index and
    headers made LaTeX-safe first, and the rules between row groups booktabs' \\cmidrule (pandas
    writes \\cline)."""
    safe = table.map(_latex)
    safe.index = safe.index.map(lambda key: tuple(map(_latex, key)) if isinstance(key, tuple) else _latex(key))
    safe.index.names = [_latex(name) for name in table.index.names]
    safe.columns = [_latex(column) for column in table.columns]
    safe.columns.name = None if table.columns.name is None else _latex(table.columns.name)
    # table*: the text's full width in a two-column paper, a plain float in a one-column one
    columns = "l" * table.index.nlevels + "r" * len(table.columns)  # numbers right-aligned
    caption = _latex(caption).replace(r"W\_h", "$W_h$")  # the caption's own symbol, not a model's name
    latex = safe.style.to_latex(hrules=True, caption=caption, label=label, position="t", environment="table*",
                                position_float="centering", clines="skip-last;data", column_format=columns)
    latex = latex.replace("\\centering\n", "\\centering\n\\small\n", 1)
    # a tabular wider than the text is scaled down to it (graphicx; \\width: the tabular's own)
    latex = latex.replace("\\begin{tabular}", FIT_TO_TEXT + "\\begin{tabular}", 1)
    latex = latex.replace("\\end{tabular}\n", "\\end{tabular}}\n", 1)
    latex = re.sub(r"\\cline\{[^}]*\}\n(?=\\bottomrule)", "", latex)  # a group's rule over the last rows
    return latex.replace("\\cline{", "\\cmidrule{")


def _markdown(table: pd.DataFrame) -> str:
    """`table` as a Markdown table, its index as leading columns; a header's name (gap) kept in
    each of its columns' headers ("gap 10"), which a flat Markdown header has no row for."""
    header = table.columns.name
    if header is not None:
        table = table.rename(columns=lambda column: f"{header} {column}")
    return table.reset_index().to_markdown(index=False)


def write_all(tables_dir, out_dir) -> None:
    """Write every registered paper table as name.tex and name.md into out_dir: one float (and
    one Markdown table) per Part where a table is built in parts."""
    out_dir, read = Path(out_dir), table_reader(tables_dir)

    for name, (build, caption) in PAPER_TABLES.items():
        built = build(read)
        label = f"tab:gapbench-{name.replace('_', '-')}"
        parts = built if isinstance(built, list) else [Part("", built, "")]
        floats, sections = [], []
        for part in parts:
            words = f"{part.caption}. {caption}" if part.caption else caption
            # the task's label as it is: \label takes its letters, digits, '_', '.' and '-'
            floats.append(to_latex(part.table, words, f"{label}-{part.key}" if part.key else label))
            sections.append(f"{words}\n\n{_markdown(part.table)}\n")
        for suffix, text in (("tex", LATEX_HEADER + "\n".join(floats)), ("md", "\n".join(sections))):
            write_text(out_dir / f"{name}.{suffix}", text)
