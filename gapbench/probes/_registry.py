"""The probe registry: `@probe` fills PROBES and TABLES, `probe_all` runs every registered probe."""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Callable

import pandas as pd

from gapbench.registry import source_file
from gapbench.probes._numerics import kept_positions
from gapbench.probes._summary import propagation_summary


@dataclass(frozen=True)
class Probe:
    """One registered probe table: `function` returns it, `row_order` says how rows sort."""

    name: str
    function: Callable[..., pd.DataFrame]
    row_order: list[str]
    arguments: tuple[str, ...]  # which of probe_all's arguments the function takes
    order: float = math.inf  # its place among the tables (ties: registration order)
    resolution: str | None = None  # the column cut to kept_positions once the summary is fitted


PROBE_ARGUMENTS = ("model", "readout", "task", "x", "y")  # what probe_all can pass, by name
PROBES: dict[str, Probe] = {}
# table name -> the columns its rows are sorted by after the run keys, in the tables' order
# (`order`: the order they are produced and written in, and of the columns and rows built
# from them downstream); "stage" is the column job.measure adds (init / trained)
TABLES: dict[str, list[str]] = {}


def probe(name: str, row_order: list[str], order: float = math.inf, resolution: str | None = None):
    """Register a probe table: `@probe("name", row_order=["stage", ...], order=6)` over a function
    whose parameters without defaults are among `PROBE_ARGUMENTS` (passed by name; a `method`
    parameter also receives probe_all's). probe_all then runs it with its defaults. `order`
    places the table among the others (the built-in ones take 1–5); without one it comes last.
    `resolution`: a per-lag column (e.g. "lag") whose rows probe_all keeps only at
    kept_positions (every lag up to LAG_LIMIT, log-spaced beyond), after the summary's fits."""
    def register(function):
        parameters = inspect.signature(function).parameters
        required = [p.name for p in parameters.values()
                    if p.default is inspect.Parameter.empty and p.kind != p.VAR_KEYWORD]
        unknown = [p for p in required if p not in PROBE_ARGUMENTS]
        if unknown:
            raise TypeError(f"probe {name!r}: probe_all cannot pass {unknown}; allowed: {list(PROBE_ARGUMENTS)}")
        if name == "summary":
            raise ValueError(f"probe table name 'summary' is taken (propagation_summary's), in {source_file(function)}")
        if name in PROBES:  # both files named: discovery order, not the mistake, decides which comes second
            raise ValueError(f"probe table name {name!r} is taken: {source_file(PROBES[name].function)} and "
                             f"{source_file(function)} both register it")
        arguments = tuple(p for p in parameters if p in PROBE_ARGUMENTS + ("method",))
        PROBES[name] = Probe(name, function, list(row_order), arguments, order, resolution)
        ordered = sorted(PROBES.values(), key=lambda entry: entry.order)  # stable: ties keep registration order
        PROBES.clear(), TABLES.clear()  # in place: other modules hold these very dicts
        for entry in ordered:
            PROBES[entry.name], TABLES[entry.name] = entry, list(entry.row_order)
        return function
    return register


def _checked(entry: Probe, table) -> pd.DataFrame:
    """A probe's table, or a TypeError naming the probe and its file: a DataFrame holding the
    columns of its row_order (but `stage`, which the job adds), as the collector sorts by them."""
    where = f"probe {entry.name!r} ({source_file(entry.function)})"
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"{where} returned {type(table).__name__}, not a pandas DataFrame")
    missing = [column for column in entry.row_order if column != "stage" and column not in table.columns]
    if missing:
        raise TypeError(f"{where} returned no column {missing} of its row_order {entry.row_order}; "
                        f"it returned {list(table.columns)}")
    return table


def probe_all(model, readout, task, x, y, *, method: str = "auto") -> dict:
    """Every registered probe (PROBES, in TABLES order) with its defaults on one probe batch:
    {name: DataFrame} plus "summary" (propagation_summary's dict, keys SUMMARY_COLUMNS), fitted
    on the full tables before a probe's `resolution` column is cut to kept_positions.

    method: "auto" (the analytic path for elementwise RNNs, the generic one otherwise),
    "analytic" or "generic", passed to every probe that takes it.
    """
    available = {"model": model, "readout": readout, "task": task, "x": x, "y": y, "method": method}
    tables = {name: _checked(entry, entry.function(**{a: available[a] for a in entry.arguments}))
              for name, entry in PROBES.items()}
    tables["summary"] = propagation_summary(
        tables.get("gradient_decay"), tables.get("jacobian_spectrum"), tables.get("lyapunov"),
        tables.get("memory_capacity"))
    for name, entry in PROBES.items():  # the fits above saw every lag; the tables keep kept_positions
        if entry.resolution is not None and len(tables[name]):
            column = tables[name][entry.resolution]
            tables[name] = tables[name][column.isin(kept_positions(int(column.max())))].reset_index(drop=True)
    return tables
