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
STYLE = {"errorbar": ("ci", 95), "seed": 0, "markers": True, "dashes": True}


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


def gradient_decay(decay: pd.DataFrame, out_dir, gaps: dict | None = None) -> None:
    """log10 ||∂L_t/∂h_k|| against the lag t − k, at initialisation and after training.

    One column per task (at the gap in `gaps`, default the task's largest), one row per
    stage, a line per model, clip arm as style. Each run's value is the mean norm over its
    probe sequences; lines are the mean of log10 over seeds (a geometric mean) with a 95% band.
    """
    gaps = gaps or {}
    chosen = {task: gaps.get(task, rows.gap.max()) for task, rows in decay.groupby("task")}
    shown = decay[decay.apply(lambda r: r.gap == chosen[r.task], axis=1)].copy()
    shown["task"] = shown.task.map(lambda t: f"{t}, gap {chosen[t]}")
    sns.set_theme(style="whitegrid", context="paper")
    grid = sns.relplot(
        data=shown, x="lag", y="log10_grad_norm", col="task", row="stage", hue="model",
        style="clip", kind="line", row_order=["init", "trained"],
        facet_kws={"sharey": False, "sharex": False}, height=3.0, aspect=1.3,
        **{**STYLE, "markers": False},
    )
    grid.set_axis_labels("lag t − k (steps)", "log₁₀ ‖∂L_t/∂h_k‖")
    _save(grid, Path(out_dir), "gradient_decay")


def draw_all(accuracy_csv, decay_csv, out_dir, decay_gaps: dict | None = None) -> None:
    accuracy_vs_gap(pd.read_csv(accuracy_csv), out_dir)
    gradient_decay(pd.read_csv(decay_csv), out_dir, decay_gaps)
