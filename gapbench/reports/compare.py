"""Two runs of a grid, run by run: `python -m gapbench.reports.compare A B`.

A and B are accuracy tables: results/tables/accuracy_vs_gap.csv of two runs, or a kept copy such
as docs/measurements/default_grid_runs_65ca298_intel.csv (any CSV or Parquet table with the run
keys, test_loss and success). Prints how many runs both hold (and those only one holds), how many test losses
are the same bits, the largest relative difference of the others, and every run whose success
verdict differs, with its test loss and (where both tables have it) its test score. Exit status as diff's: 0 when every shared run has the same verdict, 1 when
some differ, 2 when a file cannot be read.

Two machines can compute a run differently (another CPU's floating-point path: fused
multiply-adds, vector widths), and hundreds of training steps amplify the difference where
training is unstable: some runs' verdicts then follow the machine (docs/findings.md names the 7
such runs of the default grid between two VMs); the same machine and code give the same bits
(docs/reproducibility.md).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gapbench.reports.tables import read_table
from gapbench.results import KEYS

COLUMNS = KEYS + ["test_loss", "success"]
SCORE = "test_score"


@dataclass
class Comparison:
    both: pd.DataFrame  # the runs both tables hold: KEYS, test_loss_a/_b, success_a/_b
    only_a: int
    only_b: int

    @property
    def changed(self) -> pd.DataFrame:
        """The shared runs whose success verdict differs."""
        return self.both[self.both.success_a != self.both.success_b]

    @property
    def same_bits(self) -> int:
        """Shared runs whose test losses are the same float (NaN counting as equal to NaN)."""
        a, b = self.both.test_loss_a.to_numpy(), self.both.test_loss_b.to_numpy()
        return int(((a == b) | (np.isnan(a) & np.isnan(b))).sum())


def read(path) -> pd.DataFrame:
    """An accuracy table's run keys, test loss and verdict, read as every table is (CSV or
    Parquet, every float the bits the tables step wrote: `tables.read_table`)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    table = read_table(path)
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise ValueError(f"{path}: not an accuracy table (missing columns {', '.join(missing)})")
    if table.empty:
        raise ValueError(f"{path}: holds no runs")
    if table.duplicated(KEYS).any():
        raise ValueError(f"{path}: a run appears more than once (keys {', '.join(KEYS)})")
    # the test score too where a table has it: a task may judge success by its score (memory_capacity)
    return table[COLUMNS + [SCORE] * (SCORE in table.columns)].astype({"test_loss": float})


def compare(a: pd.DataFrame, b: pd.DataFrame) -> Comparison:
    """Join two accuracy tables on the run keys."""
    joined = a.merge(b, on=KEYS, how="outer", suffixes=("_a", "_b"), indicator=True)
    both = joined[joined._merge == "both"].drop(columns="_merge").reset_index(drop=True)
    return Comparison(both=both, only_a=int((joined._merge == "left_only").sum()),
                      only_b=int((joined._merge == "right_only").sum()))


def report(comparison: Comparison, name_a: str = "A", name_b: str = "B") -> str:
    both, changed = comparison.both, comparison.changed
    lines = [f"runs in both: {len(both)} (only in {name_a}: {comparison.only_a}, only in {name_b}: "
             f"{comparison.only_b})",
             f"test losses the same bits: {comparison.same_bits} of {len(both)}"]
    differ = both[both.test_loss_a != both.test_loss_b].dropna(subset=["test_loss_a", "test_loss_b"])
    if len(differ):
        relative = (differ.test_loss_b - differ.test_loss_a).abs() / differ.test_loss_a.abs().clip(lower=1e-300)
        lines.append(f"largest relative difference of the others: {relative.max():.3g}")
    lines.append(f"success verdicts: {int(both.success_a.sum())} in {name_a}, {int(both.success_b.sum())} in "
                 f"{name_b}; {len(changed)} differ")
    for row in changed.sort_values(KEYS).itertuples():
        scores = (f", test score {row.test_score_a:.6g} -> {row.test_score_b:.6g}"
                  if hasattr(row, "test_score_a") and hasattr(row, "test_score_b") else "")
        lines.append(f"  {row.task} gap {row.gap} {row.model} {row.clip} seed {row.seed}: {row.success_a} -> "
                     f"{row.success_b} (test loss {row.test_loss_a:.6g} -> {row.test_loss_b:.6g}{scores})")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gapbench.reports.compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="an accuracy table (e.g. a kept copy of a published run)")
    parser.add_argument("b", help="another (e.g. results/tables/accuracy_vs_gap.csv)")
    args = parser.parse_args(argv)
    try:
        comparison = compare(read(args.a), read(args.b))
    except (ValueError, OSError) as error:  # OSError: a file that cannot be opened (permissions)
        print(f"gapbench.reports.compare: {error}", file=sys.stderr)
        return 2
    print(report(comparison, args.a, args.b))
    return 1 if len(comparison.changed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
