"""Datasets on disk: one folder per (task, params, gap, seed) with train/validation/test splits.

Layout: `{split}.npz` holding arrays `x` (n, seq_len, input_size) float32 and `y`, plus
`meta.json` with the task description, the generator parameters and a SHA-256 of every
split, so other tools can load the files and anyone can check them.

Nothing here holds a whole split in memory. A split is made of chunks of `chunk_size(task)`
sequences, each drawn from its own stream seeded by (seed, gap, split, task, chunk index),
so a split can be streamed batch by batch (`stream`), written member by member into the
.npz (`generate`) and read back batch by batch (`iter_batches`) at any gap. The archives
carry fixed timestamps and attributes: the same (task, parameters, seed) gives byte-identical
files (deflate through the same zlib; the sha256 in meta.json is checked on the arrays
themselves, so it holds whatever compressor wrote them).
"""
from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
import zlib
from contextlib import ExitStack
from itertools import count
from pathlib import Path
from typing import Iterator

import numpy as np

from gapbench import tasks
from gapbench.files import atomic_path, write_json
from gapbench.provenance import provenance

SPLITS = ("train", "validation", "test")
CHUNK_SEQUENCES = 256  # at most this many sequences per chunk ...
CHUNK_BYTES = 8 << 20  # ... and about this many bytes of arrays, so long sequences stay bounded
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest zip date: no wall-clock time in the archives
COPY_BLOCK = 1 << 20


def chunk_size(task) -> int:
    """Sequences per chunk: a function of the task's parameters only, so chunks are reproducible."""
    one = task.sample(1, np.random.default_rng(0))  # byte count of one sequence (shapes are fixed)
    per_sequence = sum(array.nbytes for array in one.values())
    return int(max(1, min(CHUNK_SEQUENCES, CHUNK_BYTES // per_sequence)))


def chunk_rng(task, seed: int, split: str, chunk: int) -> np.random.Generator:
    """An independent, platform-independent stream per (seed, gap, split, task, chunk)."""
    key = [seed, task.gap, SPLITS.index(split), zlib.crc32(task.registry_name.encode()), chunk]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


def chunks(task, seed: int, split: str, n: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The split's sequences chunk by chunk, in order; endless when n is None.

    Every chunk is drawn whole and the last one cut, so a split of n sequences is the first n
    of the endless stream, whatever n.
    """
    size = chunk_size(task)
    for index in count():
        start = index * size
        if n is not None and start >= max(n, 1):  # n = 0 still yields one (empty) chunk: the shapes
            return
        arrays = task.sample(size, chunk_rng(task, seed, split, index))
        if n is not None and start + size > n:
            arrays = {k: v[: n - start] for k, v in arrays.items()}
        yield arrays
        del arrays  # drop this chunk before drawing the next: one chunk in memory at a time


def stream(task, seed: int, split: str, batch_size: int, n: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Batches of `batch_size` sequences of the split (endless when n is None; else the last may
    be shorter). The sequences are those `generate` writes, whatever the batch size."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    pending = None
    for chunk in chunks(task, seed, split, n):
        pending = chunk if pending is None else {k: np.concatenate([pending[k], chunk[k]]) for k in chunk}
        while len(pending["x"]) >= batch_size:
            yield {k: v[:batch_size] for k, v in pending.items()}
            pending = {k: v[batch_size:] for k, v in pending.items()}
    if pending is not None and len(pending["x"]):
        yield pending


def _digest_header(name: str, dtype: np.dtype, shape: tuple) -> bytes:
    """What array_digest hashes before an array's bytes (shared by the streaming writer and reader)."""
    return f"{name}:{dtype.str}:{tuple(shape)}".encode()


def array_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays in name order: each one's name, dtype and shape, then its bytes."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(_digest_header(name, array.dtype, array.shape))
        digest.update(array.tobytes())
    return digest.hexdigest()


def _member_info(name: str, compress: bool) -> zipfile.ZipInfo:
    """A zip entry with nothing machine- or time-dependent in it."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.create_system = 3  # unix, on every platform
    info.external_attr = 0o644 << 16
    return info


def write_split(task, seed: int, split: str, n: int, path, compress: bool = True) -> str:
    """Write one split's .npz chunk by chunk; return its array_digest.

    A zip member is written in one go, so each array is first spooled to a temporary file
    beside `path`, then copied into its member behind a .npy header: memory holds one chunk.
    """
    path = Path(path)
    with ExitStack() as stack:
        spools, first = {}, {}
        for arrays in chunks(task, seed, split, n):
            check_chunk(task, split, arrays)
            for name, array in arrays.items():
                if name not in spools:
                    spools[name] = stack.enter_context(tempfile.TemporaryFile(dir=path.parent))
                    first[name] = np.empty((0, *array.shape[1:]), array.dtype)  # not a view: it would pin the chunk
                spools[name].write(np.ascontiguousarray(array).data)  # the array's buffer, no copy
            arrays = array = None  # let the chunk go before the next one is drawn
        digest = hashlib.sha256()
        with zipfile.ZipFile(path, "w") as archive:
            for name in sorted(spools):
                shape = (n, *first[name].shape[1:])
                digest.update(_digest_header(name, first[name].dtype, shape))
                header = {"descr": np.lib.format.dtype_to_descr(first[name].dtype),
                          "fortran_order": False, "shape": shape}
                with archive.open(_member_info(name, compress), "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_1_0(member, header)
                    spools[name].seek(0)
                    while block := spools[name].read(COPY_BLOCK):
                        digest.update(block)
                        member.write(block)
    return digest.hexdigest()


def unreadable(task, arrays: dict) -> str | None:
    """What in a task's draw training cannot read, or None: a non-finite value in any array, an
    integer target outside the classes [0, output_size). One check for the pre-flight's sample
    (gapbench.config.check_task_sample) and every chunk a dataset is written from."""
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            return f"non-finite values in {name}"
        if name == "y" and array.dtype.kind in "iu" and not ((array >= 0) & (array < task.output_size)).all():
            return (f"y with classes {sorted(set(array[(array < 0) | (array >= task.output_size)].tolist()))}, "
                    f"outside [0, output_size = {task.output_size})")
    return None


def check_chunk(task, split: str, arrays: dict) -> None:
    """Every sequence of a chunk is one training can read (`unreadable`); else a DatasetError
    naming the task and its file. The pre-flight checks a sample before any job; this checks
    every sequence of every split, so that a value a sample missed (an inf one draw in a
    thousand) stops its dataset instead of being reported as the models' divergence."""
    from gapbench.registry import source_file

    problem = unreadable(task, arrays)
    if problem:
        raise DatasetError(f"task {task.registry_name!r} ({source_file(type(task))}) drew {problem} in the "
                           f"{split} split; no dataset written")


def generate(task, seed: int, sizes: dict, out_dir, compress: bool = True) -> dict:
    """Write the three splits of a built task and meta.json (last: its presence marks a complete dataset)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checksums = {}
    for split in SPLITS:
        with atomic_path(out_dir / f"{split}.npz") as tmp:
            checksums[split] = write_split(task, seed, split, int(sizes[split]), tmp, compress)
    meta = {
        **task.describe(),
        "seed": seed,
        "sizes": {split: int(sizes[split]) for split in SPLITS},
        "chunk_size": chunk_size(task),
        "sha256": checksums,
        "provenance": provenance(),
    }
    write_json(out_dir / "meta.json", meta)
    return meta


def read_meta(data_dir) -> dict:
    """The dataset's meta.json: task, gap, params, sizes, checksums, provenance."""
    data_dir = Path(data_dir)
    if not (data_dir / "meta.json").exists():
        raise FileNotFoundError(
            f"no complete dataset in {data_dir} (meta.json is missing); make one with "
            "`python -m gapbench generate ...` or let the pipeline generate it"
        )
    return json.loads((data_dir / "meta.json").read_text())


def _mismatch(data_dir: Path, split: str) -> ValueError:
    return ValueError(
        f"{data_dir / (split + '.npz')} does not match its checksum in meta.json; "
        "delete the folder and let the pipeline generate it again"
    )


def load(data_dir, split: str) -> dict[str, np.ndarray]:
    """Load one split and check it against the checksum recorded in meta.json."""
    data_dir = Path(data_dir)
    meta = read_meta(data_dir)
    with np.load(data_dir / f"{split}.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    if array_digest(arrays) != meta["sha256"][split]:
        raise _mismatch(data_dir, split)
    return arrays


def task_of(meta: dict):
    """The task a dataset was generated from, rebuilt from its meta.json."""
    return tasks.build(meta["task"], meta["gap"], **meta["params"])


class DatasetError(ValueError):
    """A dataset file that is corrupt or does not match its meta.json; the message names it."""


def verify(data_dir, discard: bool = False) -> None:
    """Check every split against the checksums in meta.json; raise DatasetError naming the
    first bad file. With `discard`, a bad dataset's meta.json and bad file are removed first,
    so the pipeline's next run sees the dataset missing and generates it again (generation is
    deterministic: the same config and seed give the same bytes)."""
    data_dir = Path(data_dir)
    read_meta(data_dir)  # a missing meta.json is a FileNotFoundError naming the folder
    for split in SPLITS:
        path = data_dir / f"{split}.npz"
        try:
            for _ in iter_batches(data_dir, split, 1, verify=True):
                break
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            reason = "does not match its checksum in meta.json" if "checksum" in str(error) else (
                f"cannot be read ({type(error).__name__}: {error})")
            if discard:
                (data_dir / "meta.json").unlink(missing_ok=True)
                path.unlink(missing_ok=True)
                raise DatasetError(f"{path} {reason}; removed it and {data_dir / 'meta.json'}: "
                                   "run the pipeline again and it generates the dataset anew") from None
            raise DatasetError(f"{path} {reason}; delete {data_dir} and let the pipeline generate it again") from None


def _read_header(member) -> tuple[tuple, np.dtype]:
    major, _ = np.lib.format.read_magic(member)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read(member)
    if fortran_order:
        raise ValueError("Fortran-ordered arrays cannot be read in batches")
    return shape, dtype


def iter_batches(data_dir, split: str, batch_size: int, verify: bool = True) -> Iterator[dict[str, np.ndarray]]:
    """Read a split sequentially, `batch_size` sequences at a time, never the whole split at once.

    With `verify` (default) a first sequential pass checks the archive against meta.json, so a
    corrupted split raises before any batch is used; it costs one extra read of the file.
    """
    data_dir = Path(data_dir)
    meta, path = read_meta(data_dir), data_dir / f"{split}.npz"
    with zipfile.ZipFile(path) as archive:
        names = sorted(name[: -len(".npy")] for name in archive.namelist())
        if verify:
            digest = hashlib.sha256()
            for name in names:
                with archive.open(f"{name}.npy") as member:
                    shape, dtype = _read_header(member)
                    digest.update(_digest_header(name, dtype, shape))
                    while block := member.read(COPY_BLOCK):
                        digest.update(block)
            if digest.hexdigest() != meta["sha256"][split]:
                raise _mismatch(data_dir, split)
        with ExitStack() as stack:
            members = {name: stack.enter_context(archive.open(f"{name}.npy")) for name in names}
            headers = {name: _read_header(member) for name, member in members.items()}
            n = headers[names[0]][0][0]
            for start in range(0, n, batch_size):
                rows = min(batch_size, n - start)
                batch = {}
                for name, member in members.items():
                    shape, dtype = headers[name]
                    batch[name] = np.empty((rows, *shape[1:]), dtype=dtype)
                    if member.readinto(memoryview(batch[name]).cast("B")) != batch[name].nbytes:
                        raise _mismatch(data_dir, split)  # truncated
                yield batch

