"""Datasets on disk: one folder per (task, params, gap, seed) with train/validation/test splits.

Layout: `{split}.npz` holding arrays `x` (n, seq_len, input_size) float32 and `y`, plus
`meta.json` with the task description, the generator parameters and a SHA-256 of every
array, so other tools can load the files and anyone can check them.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np

import tasks
from gapbench.io import atomic_path, provenance, write_json

SPLITS = ("train", "validation", "test")


def split_rng(task_name: str, gap: int, seed: int, split: str) -> np.random.Generator:
    """An independent, platform-independent stream per (task, gap, seed, split)."""
    key = [seed, gap, SPLITS.index(split), zlib.crc32(task_name.encode())]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


def array_digest(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def generate(task_name: str, gap: int, params: dict, seed: int, sizes: dict, out_dir) -> dict:
    """Write the three splits and meta.json (last: its presence marks a complete dataset)."""
    task = tasks.build(task_name, gap, **params)
    out_dir = Path(out_dir)
    checksums = {}
    for split in SPLITS:
        arrays = task.sample(int(sizes[split]), split_rng(task_name, gap, seed, split))
        checksums[split] = array_digest(arrays)
        with atomic_path(out_dir / f"{split}.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)
    meta = {
        **task.describe(),
        "seed": seed,
        "sizes": {split: int(sizes[split]) for split in SPLITS},
        "sha256": checksums,
        "provenance": provenance(),
    }
    write_json(out_dir / "meta.json", meta)
    return meta


def load(data_dir, split: str) -> dict[str, np.ndarray]:
    """Load one split and check it against the checksum recorded in meta.json."""
    data_dir = Path(data_dir)
    if not (data_dir / "meta.json").exists():
        raise FileNotFoundError(
            f"no complete dataset in {data_dir} (meta.json is missing); make one with "
            "`python -m gapbench generate ...` or let the pipeline generate it"
        )
    meta = json.loads((data_dir / "meta.json").read_text())
    with np.load(data_dir / f"{split}.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    if array_digest(arrays) != meta["sha256"][split]:
        raise ValueError(
            f"{data_dir / (split + '.npz')} does not match its checksum in meta.json; "
            "delete the folder and let the pipeline generate it again"
        )
    return arrays
