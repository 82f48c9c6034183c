"""Every number docs/findings.md (and README's summary of it) quotes from the default grid,
recomputed from two tables of one run:

    python docs/measurements/findings_numbers.py [ACCURACY SUMMARY]

ACCURACY: the run's accuracy_vs_gap.csv (or the kept file of its runs, which holds the columns
read here); SUMMARY: its propagation_summary.csv. Without arguments, the kept files of the
default grid on the 2-core Intel Xeon VM (2026-12-07): measurements/
default_grid_runs_65ca298_intel.csv (its test losses and verdicts, which the runs at eccb4d2 and
8bd763d reproduced to the bit) and measurements/default_grid_summary_8bd763d_intel.csv (8bd763d's
propagation_summary.csv: λ1 averaged over each sequence's sorted exponents, since e4cf4b6).
Run it on your own run's results/tables to see which of the page's numbers your machine moves,
or on the kept files of the same code on a 2-core AMD EPYC VM (95a78b2, 2026-12-07):
measurements/default_grid_runs_95a78b2_amd.csv and measurements/default_grid_summary_95a78b2_amd.csv.

"Rate" is decay_log10_per_step (log10 of the gradient norm per step back, negative when
decaying); medians are over gaps and seeds (and clip arms, for the trained stage), as the page
says; accuracies and losses are means over seeds.
"""
import math
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).parent
KEPT = (HERE / "default_grid_runs_65ca298_intel.csv", HERE / "default_grid_summary_8bd763d_intel.csv")
STEPS = 600  # config/default.yaml's train.steps


def main(accuracy_file, summary_file):
    runs = pd.read_csv(accuracy_file)
    summary = pd.read_csv(summary_file)
    trained = summary[summary.stage == "trained"]
    init = summary[(summary.stage == "init") & (summary["clip"] == "none")]  # the same for every clip arm

    def median(table, model, column, **where):
        rows = table[table.model == model]
        for key, value in where.items():
            rows = rows[rows[key] == value]
        return rows[column].median()

    def per_task(table, model, column):
        values = table[table.model == model].groupby("task")[column].median()
        return f"{values.min():.3g} to {values.max():.3g} ({', '.join(f'{t} {v:.3g}' for t, v in values.items())})"

    def scores(task, model, gap=None, clip=None, column="test_score"):
        rows = runs[(runs.task == task) & (runs.model == model)]
        if gap is not None:
            rows = rows[rows.gap == gap]
        if clip is not None:
            rows = rows[rows["clip"] == clip]
        return rows

    def line(text):
        print(text)

    stopped = runs[runs.train_steps < STEPS]
    line(f"runs {len(runs)}; stopped early {len(stopped)} at {stopped.train_steps.min()}-{stopped.train_steps.max()} "
         f"steps; failed runs that stopped early: {int((~stopped.success).sum())}; diverged {int(runs.diverged.sum())}")
    line(f"successes {int(runs.success.sum())}: " + ", ".join(
        f"{m} {n}" for m, n in runs.groupby("model").success.sum().sort_values(ascending=False).items()))

    line("\n## Gradients and dynamics")
    for model in ("vanilla", "linear", "gru", "lstm", "irnn"):
        rate = median(init, model, "decay_log10_per_step")
        line(f"{model} init: rate median {rate:.3g} (factor {10 ** rate:.2g}/step), per task {per_task(init, model, 'decay_log10_per_step')}; "
             f"rho {median(init, model, 'spectral_radius'):.3g} (ln {math.log(median(init, model, 'spectral_radius')) if model in ('vanilla', 'linear', 'irnn') else float('nan'):.3g}); "
             f"lambda1 {median(init, model, 'lyapunov_max'):.3g}")
    irnn = init[init.model == "irnn"]
    wide = irnn[irnn.decay_log10_per_step.abs() > 0.04]
    line(f"irnn init: |rate| max {irnn.decay_log10_per_step.abs().max():.3g}; {len(wide)} of {len(irnn)} beyond 0.04: "
         + ", ".join(f"{r.task} gap {r.gap} seed {r.seed} {r.decay_log10_per_step:.3g}" for r in wide.itertuples())
         + f"; |rate| of the other runs at most {irnn[irnn.decay_log10_per_step.abs() <= 0.04].decay_log10_per_step.abs().max():.3g}")
    for model in ("identity", "orthogonal"):
        rows = summary[summary.model == model]
        line(f"{model} (both stages): |rate| max {rows.decay_log10_per_step.abs().max():.3g}, rate median init "
             f"{median(init, model, 'decay_log10_per_step'):.3g} trained {median(trained, model, 'decay_log10_per_step'):.3g}; "
             f"|lambda1| max {rows.lyapunov_max.abs().max():.3g}; rho range {rows.spectral_radius.min():.9g}-{rows.spectral_radius.max():.9g}")
    for model in ("vanilla", "irnn", "lstm", "gru"):
        line(f"{model} trained: rho {median(trained, model, 'spectral_radius'):.3g}, lambda1 {median(trained, model, 'lyapunov_max'):.3g}, "
             f"rate median {median(trained, model, 'decay_log10_per_step'):.3g}, per task {per_task(trained, model, 'decay_log10_per_step')}")
    for model in ("vanilla", "linear", "identity", "orthogonal", "lstm", "gru", "irnn"):
        line(f"{model} memory capacity: init {median(init, model, 'memory_capacity'):.3g}, trained "
             f"{median(trained, model, 'memory_capacity'):.3g} (median; trained runs with a value "
             f"{int(trained[trained.model == model].memory_capacity.notna().sum())} of {int((trained.model == model).sum())})")

    unmeasured = trained[(trained.model == "linear") & trained.memory_capacity.isna()]
    line(f"linear trained runs without memory capacity: {len(unmeasured)} ({sorted(set(unmeasured.task))}), "
         f"rho {unmeasured.spectral_radius.min():.2g} to {unmeasured.spectral_radius.max():.2g}")

    line("\n## Accuracy against the gap (mean over seeds (each seed's score, in seed order) solved/runs)")
    for task, models in (("copy", ("orthogonal", "vanilla", "identity", "irnn", "lstm", "gru", "linear")),
                         ("adding", ("vanilla", "irnn", "linear", "orthogonal", "identity", "gru", "lstm")),
                         ("adding_poisson", ("irnn", "vanilla", "gru", "lstm")),
                         ("latch", ("orthogonal", "vanilla", "linear", "irnn", "identity", "gru", "lstm")),
                         ("temporal_order", ("orthogonal", "vanilla", "linear", "irnn", "identity", "gru", "lstm"))):
        line(f"{task}:")
        for model in models:
            rows = scores(task, model)
            cells = rows.sort_values("seed").groupby(["gap", "clip"])
            text = "; ".join(
                f"gap {g} {c}: {cell.test_score.mean():.3g} (seeds {', '.join(f'{v:.3g}' for v in cell.test_score)}) "
                f"{int(cell.success.sum())}/{len(cell)}" for (g, c), cell in cells)
            line(f"  {model}: {text}")
    line("\n## Clipping")
    clipped = summary[(summary.stage == "trained") & (summary["clip"] == "norm")]  # .clip: DataFrame.clip
    line("median clipped fraction (norm arm): " + ", ".join(
        f"{m} {v:.0%}" for m, v in clipped.groupby("model").clipped_fraction.median().sort_values().items()))
    arms = runs.pivot_table(index=["task", "gap", "model", "seed"], columns="clip", values="success", aggfunc="first")
    differ = arms[arms["none"] != arms["norm"]]
    line(f"runs whose verdict differs between the clip arms ({len(differ)}):")
    for (task, gap, model, seed), row in differ.iterrows():
        line(f"  {model} {task} gap {gap} seed {seed}: none {'solved' if row['none'] else 'failed'}, "
             f"norm {'solved' if row['norm'] else 'failed'}")


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) == 3 else KEPT))
