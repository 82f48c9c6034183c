"""Atomic file writes: JSON and CSV written whole or not at all; CSV read back to the bit.

Every file is written to a temporary name in its final directory and renamed into
place, so an interrupted run never leaves a half-written file under a final name.
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# tempfile makes private files (0600) and folders (0700); a result gets the mode any new file
# gets, so that a group sharing a results folder (on a cluster, say) can read it
FILE_MODE, FOLDER_MODE = 0o666 & ~_umask(), 0o777 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.
    The file gets the mode the umask gives a new file (FILE_MODE), not tempfile's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        # gone after a failure; after success too, where renaming a hard link onto another link of
        # the same file did nothing and left it (POSIX rename): a run restored from the cache into
        # a folder that already holds it
        Path(tmp).unlink(missing_ok=True)


def json_text(obj) -> str:
    """The text `write_json` writes for `obj`."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n"


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    write_text(path, json_text(obj))


def write_csv(path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def read_csv(path, **options):
    """A CSV file as a DataFrame, every float the bits `write_csv` wrote (pandas writes the
    shortest text that round-trips). pandas before 3.1 parses floats with its "high" converter by
    default, which misses the last bit of many values (measured on 600,000 random doubles:
    175,997 wrong with pandas 2.2.3 and 3.0.6, none with "round_trip" or with pandas 3.1.1's
    default); pandas 3.1 made every mode exact and deprecated the option. Before 3.1 only the C
    engine takes float_precision: where the caller picks another parser, none is passed."""
    import pandas as pd

    if _inexact_by_default(pd.__version__) and options.get("engine", "c") == "c":
        options.setdefault("float_precision", "round_trip")
    return pd.read_csv(path, **options)


@functools.cache  # read_csv runs once a table a run when the tables are collected
def _inexact_by_default(version: str) -> bool:
    """Whether a pandas release ("3.0.6", "3.2.0rc1") is before 3.1, whose CSV floats are exact."""
    major, minor = version.split(".")[:2]
    return (int(major), int("".join(c for c in minor if c.isdigit()) or 0)) < (3, 1)


def read_benchmark(path):
    """The record of a Snakemake benchmark file (a TSV of s, max_rss, cpu_time, ...): its last
    row, the latest repeat where the rule's `benchmark: repeat(path, n)` wrote one row a repeat."""
    return read_csv(path, sep="\t").iloc[-1]


def append_csv(path, frame) -> None:
    """`frame`'s rows after those already in the CSV at `path` (which it creates, folders and
    all, where missing), written whole: the benchmarks' way of keeping every measurement."""
    import pandas as pd

    path = Path(path)
    previous = read_csv(path) if path.exists() else None
    write_csv(path, pd.concat([previous, frame], ignore_index=True))


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
