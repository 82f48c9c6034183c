"""Atomic file writes and provenance records.

Every file is written to a temporary name in its final directory and renamed into
place, so an interrupted run never leaves a half-written file under a final name.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_csv(path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def code_version() -> str:
    """`git describe --always --dirty` of the source tree, or the package version outside git."""
    from gapbench import __version__

    root = Path(__file__).resolve().parent.parent
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return f"{__version__}+g{described}"
    except (OSError, subprocess.SubprocessError):
        return __version__


# gapbench modules that only read finished results or time the code (figures, tables, cost
# estimates, benchmarks): editing them cannot change a run, so they stay out of the run-cache
# key. Any other module, a new one included, is in it.
NOT_IN_RUNS = {"figures.py", "paper_tables.py", "cost.py", "literature.py", "stopping.py", "bench.py",
               "bench_gpu.py"}


@functools.lru_cache(maxsize=1)  # a job trains several seeds: hash the source once per process
def source_digest() -> str:
    """SHA-256 over the source that makes a run: gapbench's modules (but NOT_IN_RUNS) and the
    tasks and models it loads (every .py file, by relative path). The run cache keys on it, so
    that a change of that code, committed or not, makes earlier results unrestorable rather than
    silently reused."""
    import hashlib

    import gapbench
    from gapbench import models, tasks

    digest = hashlib.sha256()
    for package in (gapbench, tasks, models):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            if package is gapbench and path.parent == root and path.name in NOT_IN_RUNS:
                continue
            digest.update(f"{package.__name__}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def provenance() -> dict:
    """What made a result: code version, Python and package versions, machine."""
    import numpy
    import torch

    return {
        "code_version": code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "command": " ".join(sys.argv),
    }
