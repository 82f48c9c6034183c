"""The tidy tables: run folders collected into results/tables, and read back by every report.

TABLES are accuracy_vs_gap (one row per run, from its metrics.json), propagation_summary and
one table per registered probe (gapbench.probes.TABLES): concatenations of the run folders'
CSVs, which already carry the run keys, sorted by the run keys and then ROW_ORDER.

The two small tables (REPORT_TABLES: a few rows a run) are CSV, built in memory. The per-lag
probe tables (hundreds to thousands of rows a run; about 10^8 rows on the paper grid) are
Parquet, streamed run by run into row groups of ROW_GROUP_ROWS, so collecting holds one row
group at a time, whatever the grid's size; `table_reader` reads back only the columns and
rows a report asks for.
"""
from __future__ import annotations

import json
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gapbench.files import atomic_path, read_csv, write_csv
from gapbench.probes import TABLES as PROBE_ROW_ORDER
from gapbench.results import (
    ACCURACY_COLUMNS,
    ACCURACY_TABLE,
    CHECKSUMS_FILE,
    COMPLETE_MARKER,
    JOB_RECORD,
    KEYS,
    RUN_DIR,
    SUMMARY_FILE,
    SUMMARY_TABLE,
    RunMetrics,
    fields_of,
    table_file,
    table_names,
)
from gapbench.runstore import changed_files, said_changed

PROBE_TABLES = tuple(PROBE_ROW_ORDER)
COLLECTED_FILES = (COMPLETE_MARKER, SUMMARY_FILE) + tuple(f"{name}.csv" for name in PROBE_TABLES)  # of a run folder
# From this many seeds a spread over seeds is a 95% interval of the mean (accuracy_vs_gap:
# bootstrap; paper tables: Student t); below it, the seeds themselves (accuracy_vs_gap: a point
# each; paper tables: their range, min to max): an interval over 2 or 3 seeds spans whole
# panels (the t quantile at 2 seeds is 12.7) and means little.
INTERVAL_SEEDS = 5
TABLES = table_names(PROBE_TABLES)
# the order in which each table's rows are sorted, after the run keys
ROW_ORDER = {SUMMARY_TABLE: ["stage"], **PROBE_ROW_ORDER}
# Rows per Parquet row group: large enough that the per-group metadata stays small (the paper
# grid is ~10^8 rows), small enough that one group's columns fit in memory many times over.
ROW_GROUP_ROWS = 1_000_000
# string columns written with Parquet's dictionary encoding (a few distinct values each);
# read back as plain strings
DICTIONARY_COLUMNS = ["task", "model", "clip", "stage", "quantity", "statistic"]


def table_reader(tables_dir):
    """read(name, columns=None, rows=None) -> the tidy table `name` of tables_dir as a DataFrame.

    columns: the columns to read (default all); rows: a pyarrow filter in disjunctive normal
    form, e.g. [[("task", "==", "adding"), ("gap", "==", 100)]], applied while reading (Parquet
    row groups whose statistics rule them out are skipped). Each distinct request is read
    from disk once."""
    tables_dir, cache = Path(tables_dir), {}

    def read(name: str, columns: list[str] | None = None, rows: list | None = None) -> pd.DataFrame:
        key = (name, tuple(columns or ()), repr(rows))
        if key not in cache:
            path = tables_dir / table_file(name)
            if columns:  # the file's schema alone, only when a report names columns
                with _readable(path, UnreadableTable, COLLECT_AGAIN, passes=FileNotFoundError):  # missing: said so
                    held = table_columns(path)
                absent = [column for column in columns if column not in held]
                if absent:
                    raise UnreadableTable(f"{path} has no column {', '.join(absent)} (it has {', '.join(held)}): the "
                                          "figure or paper table that reads it asks for a column its table does not "
                                          f"hold (a probe writes its own table's columns); {COLLECT_AGAIN} only if "
                                          "an older gapbench wrote it")
            with _readable(path, UnreadableTable, COLLECT_AGAIN, passes=FileNotFoundError):
                table = read_table(path, columns, rows)
            missing = [column for column in KEYS if column not in table.columns] if not columns else []
            if missing:  # every tidy table holds the run keys (asked-for columns were checked above)
                raise UnreadableTable(f"{path} has no column {', '.join(missing)}: {COLLECT_AGAIN}")
            cache[key] = table
        return cache[key]

    return read


class UnreadableTable(ValueError):
    """A tidy table that cannot be read, or lacks a column a report reads: named, with the fix."""


COLLECT_AGAIN = "collect the tables again (snakemake --cores N --forcerun tables)"


def table_columns(path) -> list[str]:
    """The column names of a tidy table file, from its Parquet schema or CSV header alone."""
    path = Path(path)
    return pq.read_schema(path).names if path.suffix == ".parquet" else list(read_csv(path, nrows=0).columns)


def read_table(path, columns: list[str] | None = None, rows: list | None = None) -> pd.DataFrame:
    """One tidy table file (CSV or Parquet) as a DataFrame, its strings as plain strings."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pq.read_table(path, columns=columns, filters=rows or None).to_pandas()
    table = read_csv(path, usecols=columns)
    return _filter(table, rows).reset_index(drop=True) if rows else table


def _filter(table: pd.DataFrame, rows: list) -> pd.DataFrame:
    """The rows of `table` that pass a DNF filter of (column, "==" or "in", value) terms."""
    keep = pd.Series(False, index=table.index)
    for conjunction in rows:
        term = pd.Series(True, index=table.index)
        for column, op, value in conjunction:
            term &= table[column].isin(value) if op == "in" else table[column] == value
        keep |= term
    return table[keep]


def accuracy_row(run_dir) -> dict:
    with _readable_run_file(run_dir, COMPLETE_MARKER) as path:
        return RunMetrics.from_dict(json.loads(path.read_text())).accuracy_row()


def _read_run_csv(run_dir, name: str) -> pd.DataFrame:
    with _readable_run_file(run_dir, f"{name}.csv") as path:
        return read_csv(path)


def _sorted(table: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    by = KEYS + [column for column in order if column in table.columns]
    return table.sort_values(by, kind="stable").reset_index(drop=True)


def run_order(run_dir) -> tuple:
    """A run folder's place in the tables: its keys as the tables sort them (gap and seed as numbers)."""
    keys = fields_of(RUN_DIR, str(run_dir))
    return tuple(int(keys[k]) if k in ("gap", "seed") else keys[k] for k in KEYS)


class _ParquetStream:
    """One probe table written run by run: each run's rows are appended; every ROW_GROUP_ROWS
    rows become a row group. The schema is the first run's; a later run whose columns differ,
    or do not convert to it, is named in the error."""

    def __init__(self, tmp: Path, name: str):
        self.tmp, self.name = tmp, name  # tmp: the temporary file atomic_path renames into place
        self.parts, self.rows, self.writer, self.schema, self.total = [], 0, None, None, 0

    def append(self, frame: pd.DataFrame, run_dir) -> None:
        if self.schema is None:
            self.schema = pa.Schema.from_pandas(frame, preserve_index=False)
        elif list(frame.columns) != self.schema.names:
            raise ValueError(f"{run_dir}/{self.name}.csv: columns {list(frame.columns)} differ from the other "
                             f"runs' {self.schema.names}")
        try:
            self.parts.append(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"{run_dir}/{self.name}.csv: a column does not match the other runs' types "
                             f"({error})") from error
        self.rows += len(frame)
        if self.rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.writer is None:
            columns = [c for c in DICTIONARY_COLUMNS if c in self.schema.names]
            self.writer = pq.ParquetWriter(self.tmp, self.schema, use_dictionary=columns, compression="zstd")
        if self.parts:
            self.writer.write_table(pa.concat_tables(self.parts), row_group_size=ROW_GROUP_ROWS)
        self.total += self.rows
        self.parts, self.rows = [], 0

    def close(self) -> int:
        """Finish the file; returns its number of rows."""
        if self.schema is None:
            raise ValueError(f"no run holds a {self.name} table")
        self._flush()
        self.abandon()
        return self.total

    def abandon(self) -> None:
        """Close the file, complete or not."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class IncompleteRuns(RuntimeError):
    """A run folder to collect has no completion record, or a file of it cannot be read."""


def _recovery(run_dir) -> str:
    record = Path(run_dir).parent.parent / Path(JOB_RECORD).name
    return f"delete its training job's record ({record}) and run snakemake again; {_RESTORES}"


_RESTORES = "the job restores its completed runs from the run cache (and trains again any whose cached copy changed too)"


@contextmanager
def _readable(path: Path, refusal: type, fix: str, passes=()):
    """Yield `path`; a failure to read or parse it (a file edited or cut short by hand) becomes
    `refusal` naming it and `fix`; exceptions of `passes` stay as they are."""
    try:
        yield path
    except passes:
        raise
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as error:  # json's, pandas', pyarrow's,
        raise refusal(f"{path} cannot be read ({type(error).__name__}: {error}): {fix}") from error  # RunMetrics'


def _readable_run_file(run_dir, name: str):
    """`_readable` for a file of a run folder: IncompleteRuns, and the recovery."""
    return _readable(Path(run_dir) / name, IncompleteRuns, _recovery(run_dir))


def recorded_runs(job_records) -> list[str]:
    """The run folders the training jobs' records (results.JOB_RECORD) list: what the tables
    collect. Read from the records rather than passed as the rule's params, so that the tables
    job's entry in Snakemake's report does not list every run folder (21,630 on the paper grid)."""
    runs = []
    for record in map(Path, job_records):  # one edited by hand: named, with the fix
        with _readable(record, IncompleteRuns, f"delete it and run snakemake again; {_RESTORES}"):
            runs += json.loads(record.read_text())["runs"]
    return runs


def collect(run_dirs, out_dir, log=lambda message: print(message, file=sys.stderr, flush=True)) -> dict[str, int]:
    """Write every table of TABLES into out_dir (table_file names); return {name: rows}.

    accuracy_vs_gap: one row per run. propagation_summary: one row per (run, stage) with the
    fitted gradient decay rate, half-life, λ1, Σλ, ρ(W_h), memory capacity and the training's
    clipping statistics; it joins accuracy_vs_gap on the run keys. gradient_decay also gets
    each (run, stage)'s fitted decay_log10_per_step and half_life_steps next to its per-lag norms.
    The probe tables are streamed run by run in key order (the order a global sort by the run
    keys gives), each run's rows sorted by its ROW_ORDER; a progress line every 10% of the runs.
    """
    run_dirs = sorted(run_dirs, key=run_order)
    incomplete = [d for d in run_dirs if not (Path(d) / COMPLETE_MARKER).exists()]
    if incomplete:  # e.g. a run folder deleted by hand behind its job's record
        raise IncompleteRuns(
            f"{len(incomplete)} of {len(run_dirs)} run folders are incomplete (no {COMPLETE_MARKER}), the first "
            f"{incomplete[0]}: {_recovery(incomplete[0])}")
    # a folder written before runs recorded their checksums (37d30b0) has none to check: said, not
    # refused; a file edited or cut short by hand since written (a CSV cut at a line end reads as
    # fewer rows) is refused
    unrecorded, changed = [], {}
    for run_dir in run_dirs:
        if not (Path(run_dir) / CHECKSUMS_FILE).exists():
            unrecorded.append(run_dir)
        elif files := changed_files(run_dir, COLLECTED_FILES):
            changed[run_dir] = files
    if unrecorded:
        log(f"tables: {len(unrecorded)} of {len(run_dirs)} run folders have no {CHECKSUMS_FILE} (written before runs "
            f"recorded their files' checksums, the first {unrecorded[0]}): collected without that check")
    if changed:
        first, files = next(iter(changed.items()))
        raise IncompleteRuns(f"{len(changed)} of {len(run_dirs)} run folders hold files that are not what their run "
                             f"wrote, the first {first}: {said_changed(files, 'the run wrote them')}; "
                             f"{_recovery(first)}")
    out_dir = Path(out_dir)
    accuracy = _sorted(pd.DataFrame([accuracy_row(d) for d in run_dirs], columns=ACCURACY_COLUMNS), [])
    summary = _sorted(pd.concat([_read_run_csv(d, SUMMARY_TABLE) for d in run_dirs], ignore_index=True),
                      ROW_ORDER[SUMMARY_TABLE])
    rates = summary[KEYS + ["stage", "decay_log10_per_step", "half_life_steps"]]
    rates_of = {key: rows.drop(columns=KEYS) for key, rows in rates.groupby(KEYS, sort=False)}
    started, step = time.monotonic(), max(1, len(run_dirs) // 10)
    with ExitStack() as files:  # every table renamed into place on success, none on an error
        streams = {name: _ParquetStream(files.enter_context(atomic_path(out_dir / table_file(name))), name)
                   for name in PROBE_TABLES}
        for stream in streams.values():
            files.callback(stream.abandon)  # runs before the renames: a writer is closed first
        for i, run_dir in enumerate(run_dirs, 1):
            for name, stream in streams.items():
                frame = _read_run_csv(run_dir, name)
                if name == "gradient_decay":
                    with _readable_run_file(run_dir, f"{name}.csv"):
                        key = tuple(frame[k].iloc[0] for k in KEYS)
                        frame = frame.merge(rates_of[key], on="stage", how="left")
                order = [column for column in ROW_ORDER[name] if column in frame.columns]
                stream.append(frame.sort_values(order, kind="stable"), run_dir)
            if i % step == 0 or i == len(run_dirs):
                log(f"tables: {i}/{len(run_dirs)} runs collected ({time.monotonic() - started:.0f} s)")
        rows = {name: stream.close() for name, stream in streams.items()}
    write_csv(out_dir / table_file(ACCURACY_TABLE), accuracy)
    write_csv(out_dir / table_file(SUMMARY_TABLE), summary)
    return {ACCURACY_TABLE: len(accuracy), SUMMARY_TABLE: len(summary), **rows}
