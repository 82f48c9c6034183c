"""How a training step's time grows with the sequence length, and how well `gapbench cost`
interpolates it: `python benchmarks/step_curve.py [--models vanilla lru] [--lengths ...] [--out CSV]`.

Each model (H = 128, the paper's size) is timed with `gapbench.reports.cost.measure_model`, the
calibration's own measurement (one thread, 4 runs together, a training step, a forward pass at the
evaluation batch, taken per sequence, every probe), at every length of --lengths. Then, for each
length, the cost at that length as the cost model would estimate it from

- the line through T = 50 and 200 alone (the calibration before f73958a; `--extrapolate` now), and
- the lengths `gapbench cost` calibrates for a grid whose longest sequence is the longest of
  --lengths (`cost.calibration_lengths`, piecewise linear between them),

each against the time measured there (a length the calibration measures itself shows 1.00).
Both estimates come from the measurements of this one run, so the ratios are side by side.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from gapbench.reports import cost

# a forward pass per sequence, as the estimate reads it (each length's timed at its own evaluation batch)
COLUMNS = ("step_seconds", "sequence_forward_seconds", "probe_seconds")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/step_curve.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vanilla", "lru"])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lengths", nargs="+", type=int, default=[50, 200, 430, 1000, 1600, 2295])
    parser.add_argument("--out", type=Path, help="write the measured rows here (CSV)")
    args = parser.parse_args(argv)
    calibrated = cost.calibration_lengths(max(args.lengths))
    if not set(calibrated) <= set(args.lengths):
        parser.error(f"--lengths must include the calibration's own {calibrated}")
    rows = []
    for model in args.models:
        for seq_len in args.lengths:
            rows.append(cost.measure_model(model, args.hidden, seq_len))
            print(f"{model} T={seq_len}: step {rows[-1]['step_seconds'] * 1e3:.1f} ms", file=sys.stderr, flush=True)
            if args.out:
                pd.DataFrame(rows).to_csv(args.out, index=False)  # a run cut short keeps what it measured
    measured = pd.DataFrame(rows)
    measured["sequence_forward_seconds"] = cost.sequence_forward_seconds(measured, "cpu")
    print(f"estimate / measured, H = {args.hidden}: 'line' through T = {cost.LENGTHS}, "
          f"'calibrated' piecewise through T = {calibrated}")
    for model, table in measured.groupby("model", sort=False):
        for column in COLUMNS:
            line = cost.interpolated(table[table.seq_len.isin(cost.LENGTHS)], model, args.hidden, column,
                                     table.seq_len)
            piecewise = cost.interpolated(table[table.seq_len.isin(calibrated)], model, args.hidden, column,
                                          table.seq_len)
            print(f"{model:>14} {column:<15} " + "  ".join(
                f"T={T}: {m * 1e3 if column != 'probe_seconds' else m:.4g}{'ms' if column != 'probe_seconds' else 's'}"
                f" line {l / m:.2f} calibrated {p / m:.2f}"
                for T, m, l, p in zip(table.seq_len, table[column], line, piecewise)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
