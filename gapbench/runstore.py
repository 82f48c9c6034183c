"""Run storage: writing a run folder, the run cache, restoring from it.

A run folder (gapbench.results.RUN_DIR) holds RUN_FILES, metrics.json written last, so a
folder is complete only once it is there. Every complete run is also kept in the run cache
(results/cache/runs/<key>/, keyed by the run's full specification, clip arm, dataset
checksums and source code: gapbench.job.run_key), from which a job restores it instead of
training it again: an interruption or another run's failure never costs a completed run.
Every run folder, and so every cache entry, records the SHA-256 of its files (CHECKSUMS_FILE),
checked before a restore and when the tables are collected (`changed_files`).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import torch

from gapbench.files import FOLDER_MODE, atomic_path, json_text, write_csv, write_json, write_text
from gapbench.probes import TABLES as PROBE_TABLES
from gapbench.results import (
    CHECKSUMS_FILE,
    COMPLETE_MARKER,
    HISTORY_FILE,
    STEP_COLUMNS,
    STEPS_FILE,
    SUMMARY_FILE,
    WEIGHTS_FILE,
    RunMetrics,
    run_files,
)

RUN_FILES = run_files(PROBE_TABLES)


def write_run(run_dir, metrics: RunMetrics, training, probes: list[dict], weights: dict) -> None:
    """Write one run folder (RUN_FILES); then checksums.json, the SHA-256 of every other file
    (metrics.json's from the text about to be written); metrics.json last, so the folder is
    complete only once it is there.

    training: gapbench.train.Training; probes: one {table name: DataFrame, "summary": dict}
    per stage (init, trained); weights: the network's state_dict.
    """
    run_dir = Path(run_dir)
    keys = {"task": metrics.task, "model": metrics.model, "clip": metrics.clip, "gap": metrics.gap,
            "seed": metrics.seed}
    write_csv(run_dir / HISTORY_FILE, pd.DataFrame(training.history).assign(**keys))
    write_csv(run_dir / STEPS_FILE, pd.DataFrame(training.steps, columns=STEP_COLUMNS).assign(**keys))
    for name in PROBE_TABLES:
        write_csv(run_dir / f"{name}.csv", pd.concat([p[name] for p in probes]).assign(**keys))
    summary = pd.DataFrame([p["summary"] for p in probes]).assign(
        **keys, diverged=metrics.diverged, **{k: v for k, v in metrics.stability.items() if k != "steps"})
    write_csv(run_dir / SUMMARY_FILE, summary)
    # saved through memory: torch.save names the archive after the file it writes to, and the
    # temporary file's random name would make model.pt differ byte for byte between runs
    buffer = io.BytesIO()
    torch.save({name: value.cpu() for name, value in weights.items()}, buffer)
    with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
        tmp.write_bytes(buffer.getvalue())
    metrics_text = json_text(metrics.to_dict())
    checksums = {name: _sha256(run_dir / name) for name in RUN_FILES if name not in (COMPLETE_MARKER, CHECKSUMS_FILE)}
    write_json(run_dir / CHECKSUMS_FILE, {**checksums, COMPLETE_MARKER: hashlib.sha256(metrics_text.encode("utf-8")).hexdigest()})
    write_text(run_dir / COMPLETE_MARKER, metrics_text)


def is_complete(run_dir) -> bool:
    return (Path(run_dir) / COMPLETE_MARKER).exists()


def write_cached(cache_dir, write) -> None:
    """Write a run into the run cache, atomically: `write(folder)` fills a staging folder beside
    cache_dir (`write_run`), which is then renamed into place (an entry already there, written by
    an identical run, stays). A run is in the cache whole or not at all."""
    cache_dir = Path(cache_dir)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.", dir=cache_dir.parent))
    staging.chmod(FOLDER_MODE)  # mkdtemp's folder is private (0700)
    try:
        write(staging)
        if cache_dir.exists() and not is_complete(cache_dir):  # what a removal cut short left
            _discard(cache_dir)
        if not is_complete(cache_dir):
            try:
                os.replace(staging, cache_dir)
            except OSError:  # an identical run renamed its copy into place first: keep that one
                if not is_complete(cache_dir):
                    raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def changed_files(folder, names=None) -> list[str]:
    """The files of a run folder or cache entry whose bytes are no longer those its
    CHECKSUMS_FILE recorded when the run was written (edited, cut short, removed): of `names`,
    or of every file it records. [CHECKSUMS_FILE] where that record is missing or unreadable."""
    folder = Path(folder)
    try:
        stored = json.loads((folder / CHECKSUMS_FILE).read_text())
        if not isinstance(stored, dict) or COMPLETE_MARKER not in stored:
            raise ValueError(f"not a record of a run's files: {stored!r:.60}")
    except (OSError, ValueError):
        return [CHECKSUMS_FILE]
    return [name for name in (stored if names is None else names) if stored.get(name) != _sha256(folder / name)]


def said_changed(files: list[str], since: str) -> str:
    """`changed_files`' answer in words: which files changed `since` when ("it was stored", ...)."""
    return (f"its {CHECKSUMS_FILE} cannot be read" if files == [CHECKSUMS_FILE]
            else f"{', '.join(files)} changed since {since}")


def restorable(cache_dir, log) -> bool:
    """Whether the cache holds a complete run at cache_dir whose files are still the bytes it
    stored. A run folder's files are hard links to the cached ones (`restore_run`), so a file
    edited in place in a run folder (not by gapbench, which renames new files into place) has
    changed its cached copy too: such an entry is named in the log and removed, and its run
    trained again, rather than restored corrupt."""
    cache_dir = Path(cache_dir)
    if not is_complete(cache_dir):
        return False
    changed = changed_files(cache_dir)
    if not changed:
        return True
    log(f"run cache entry {cache_dir}: {said_changed(changed, 'it was stored')} (a run folder's files are links "
        "to it: edited in place?); "
        "removed, the run is trained again")
    _discard(cache_dir)
    return False


def _discard(cache_dir: Path) -> None:
    """Remove a cache entry: renamed aside first (one step), then deleted, so that no entry is
    ever left half-removed under its key, whatever stops the deletion."""
    aside = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.removed.", dir=cache_dir.parent))
    try:
        os.replace(cache_dir, aside / cache_dir.name)
    except FileNotFoundError:  # another job removed it first
        pass
    shutil.rmtree(aside, ignore_errors=True)


def restore_run(cache_dir, run_dir) -> None:
    """Put a cached run back into its run folder, byte for byte, metrics.json last.

    Each file is a hard link to the cached one where the file system allows it (one copy on
    disk, not two; a copy otherwise). That is safe because every file of a run is written by
    renaming a new file into place (`atomic_path`), never changed in place. The link gets the
    current time as its modification time, so Snakemake sees a freshly written output."""
    for name in sorted(RUN_FILES, key=lambda name: name == COMPLETE_MARKER):
        with atomic_path(Path(run_dir) / name) as tmp:
            tmp.unlink()
            try:
                os.link(Path(cache_dir) / name, tmp)
                os.utime(tmp)
            except OSError:  # another file system, or links not supported: copy
                shutil.copyfile(Path(cache_dir) / name, tmp)
