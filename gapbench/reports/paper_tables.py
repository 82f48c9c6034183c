"""Tables a paper can include, drawn from the tidy tables only, as LaTeX (booktabs) and Markdown.

Each table is one function decorated with `@paper_table("name", caption)`: it gets
`read(table_name)` and returns a DataFrame shaped for the page; `write_all` writes name.tex
(pandas' Styler.to_latex, booktabs rules, the caption and a label) and name.md (to_markdown).
Adding a table touches nothing outside this module: the pipeline's targets come from `PAPER_TABLES`.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from gapbench.files import atomic_path
from gapbench.reports.tables import table_reader

PAPER_TABLES: dict[str, tuple[Callable, str]] = {}  # name -> (function(read), caption)


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


def _mean_interval(values: pd.Series) -> str:
    """mean ± half-width of the 95% Student-t interval over the seeds with a finite score (the
    mean alone for one seed); seeds whose score is not finite (a diverged run) are counted."""
    values = values.to_numpy(dtype=float)
    lost = int((~np.isfinite(values)).sum())
    values = values[np.isfinite(values)]
    note = f" ({lost} not finite)" if lost else ""
    if values.size == 0:
        return "—" + note
    mean = values.mean()
    if values.size == 1:
        return f"{mean:.3g}{note}"
    half = t_quantile(0.975, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
    return f"{mean:.3g} ± {half:.2g}{note}"


@paper_table("score_vs_gap", "Test score (accuracy, or MSE for regression tasks) at each gap: mean ± "
             "half-width of the 95% Student-t interval over seeds.")
def score_vs_gap(read) -> pd.DataFrame:
    accuracy = read("accuracy_vs_gap")
    table = accuracy.groupby(["task", "metric", "model", "clip", "gap"]).test_score.apply(_mean_interval)
    return table.unstack("gap").fillna("—").rename_axis(columns="gap")


@paper_table("success_rate", "Fraction of seeds whose run succeeded (test loss below 10% of the memoryless "
             "baseline) at each gap.")
def success_rate(read) -> pd.DataFrame:
    accuracy = read("accuracy_vs_gap")
    counts = accuracy.groupby(["task", "model", "clip", "gap"]).success.agg(["sum", "size"])
    table = (counts["sum"].astype(int).astype(str) + "/" + counts["size"].astype(str)).unstack("gap")
    return table.fillna("—").rename_axis(columns="gap")


@paper_table("largest_gap_solved", "Largest gap at which at least half of the seeds succeeded, per task, "
             "model and clip arm (— where no gap was).")
def largest_gap_solved(read) -> pd.DataFrame:
    accuracy = read("accuracy_vs_gap")
    rate = accuracy.groupby(["task", "model", "clip", "gap"]).success.mean().reset_index()
    solved = rate[rate.success >= 0.5].groupby(["task", "model", "clip"]).gap.max()
    everything = rate.groupby(["task", "model", "clip"]).gap.max()
    table = solved.reindex(everything.index).map(lambda g: "—" if np.isnan(g) else str(int(g)))
    return table.unstack("clip").rename_axis(columns="clip")


@paper_table("propagation", "Propagation at initialisation and after training, median over tasks, gaps, "
             "clip arms and seeds: gradient decay rate (log10 per step), its half-life (steps), the largest "
             "Lyapunov exponent λ1 (ln per step), memory capacity MC (delays k ≥ 0, and k ≥ 1 as Jaeger 2001 "
             "counts it) and ρ(W_h) (— for models without W_h).")
def propagation(read) -> pd.DataFrame:
    summary = read("propagation_summary")
    columns = {"decay_log10_per_step": "decay (log10/step)", "half_life_steps": "half-life", "lyapunov_max": "λ1",
               "memory_capacity": "MC", "memory_capacity_from_1": "MC (k ≥ 1)", "spectral_radius": "ρ(W_h)"}
    table = summary.groupby(["model", "stage"])[list(columns)].median().rename(columns=columns)
    return table.map(lambda v: "—" if np.isnan(v) else "∞" if np.isinf(v) else f"{v + 0.0:.3g}")  # no "-0"


# LaTeX for what the Markdown tables write in Unicode (after escaping LaTeX's special characters)
LATEX = {"λ1": r"$\lambda_1$", r"ρ(W\_h)": r"$\rho(W_h)$", "±": r"$\pm$", "—": "---", "∞": r"$\infty$",
         "≥": r"$\geq$"}


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex(value):
    text = re.sub(r"[\\&%$#_{}~^]", lambda match: LATEX_SPECIAL[match.group()], str(value))  # one pass
    for unicode, latex in LATEX.items():
        text = text.replace(unicode, latex)
    return text


def to_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """booktabs LaTeX through pandas' Styler; cells, index and headers made LaTeX-safe first."""
    safe = table.map(_latex)
    safe.index = safe.index.map(lambda key: tuple(map(_latex, key)) if isinstance(key, tuple) else _latex(key))
    safe.index.names = [_latex(name) for name in table.index.names]
    safe.columns = [_latex(column) for column in table.columns]
    safe.columns.name = None if table.columns.name is None else _latex(table.columns.name)
    return safe.style.to_latex(hrules=True, caption=_latex(caption), label=label, position="t",
                               position_float="centering", clines="skip-last;data")


def write_all(tables_dir, out_dir) -> None:
    """Write every registered paper table as name.tex and name.md into out_dir."""
    out_dir, read = Path(out_dir), table_reader(tables_dir)

    for name, (build, caption) in PAPER_TABLES.items():
        table = build(read)
        latex = to_latex(table, caption, label=f"tab:gapbench-{name.replace('_', '-')}")
        markdown = f"{caption}\n\n{table.reset_index().to_markdown(index=False)}\n"
        for suffix, text in (("tex", latex), ("md", markdown)):
            with atomic_path(out_dir / f"{name}.{suffix}") as tmp:
                tmp.write_text(text)
