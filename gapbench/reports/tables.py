"""The tidy tables: run folders collected into results/tables, and read back by every report.

TABLES are accuracy_vs_gap (one row per run, from its metrics.json), propagation_summary and
one table per registered probe (gapbench.probes.TABLES): concatenations of the run folders'
CSVs, which already carry the run keys, sorted by the run keys and then ROW_ORDER.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from gapbench.files import write_csv
from gapbench.probes import TABLES as PROBE_ROW_ORDER
from gapbench.results import (
    ACCURACY_COLUMNS,
    ACCURACY_TABLE,
    COMPLETE_MARKER,
    KEYS,
    SUMMARY_TABLE,
    RunMetrics,
    table_names,
)

PROBE_TABLES = tuple(PROBE_ROW_ORDER)
TABLES = table_names(PROBE_TABLES)
# the order in which each table's rows are sorted, after the run keys
ROW_ORDER = {SUMMARY_TABLE: ["stage"], **PROBE_ROW_ORDER}


def table_reader(tables_dir):
    """read(name) -> the tidy table name.csv in tables_dir, each read from disk once."""
    tables_dir, cache = Path(tables_dir), {}

    def read(name: str) -> pd.DataFrame:
        if name not in cache:
            cache[name] = pd.read_csv(tables_dir / f"{name}.csv")
        return cache[name]

    return read


def accuracy_row(run_dir) -> dict:
    return RunMetrics.from_dict(json.loads((Path(run_dir) / COMPLETE_MARKER).read_text())).accuracy_row()


def _sorted(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    by = KEYS + [column for column in order if column in table.columns]
    return table.sort_values(by, kind="stable").reset_index(drop=True)


def collect(run_dirs, out_dir) -> dict[str, pd.DataFrame]:
    """Write `{name}.csv` in out_dir for every name in TABLES; return the tables.

    accuracy_vs_gap: one row per run. propagation_summary: one row per (run, stage) with the
    fitted gradient decay rate, half-life, λ1, Σλ, ρ(W_h), memory capacity and the training's
    clipping statistics; it joins accuracy_vs_gap on the run keys. gradient_decay also gets
    each (run, stage)'s fitted decay_log10_per_step and half_life_steps next to its per-lag norms.
    """
    run_dirs = list(run_dirs)
    tables = {ACCURACY_TABLE: _sorted(pd.DataFrame([accuracy_row(d) for d in run_dirs],
                                                   columns=ACCURACY_COLUMNS), [])}
    for name in (SUMMARY_TABLE,) + PROBE_TABLES:
        parts = [pd.read_csv(Path(d) / f"{name}.csv") for d in run_dirs]
        tables[name] = _sorted(pd.concat(parts, ignore_index=True), ROW_ORDER[name])
    rates = tables[SUMMARY_TABLE][KEYS + ["stage", "decay_log10_per_step", "half_life_steps"]]
    tables["gradient_decay"] = tables["gradient_decay"].merge(rates, on=KEYS + ["stage"], how="left")
    for name, table in tables.items():
        write_csv(Path(out_dir) / f"{name}.csv", table)
    return tables
