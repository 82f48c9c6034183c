"""Datasets on disk: chunked streams, byte-identical archives, checks, bounded memory."""
import json
import tracemalloc

import numpy as np
import pytest

from gapbench import data, tasks

SIZES = {"train": 40, "validation": 8, "test": 8}


def test_generation_is_deterministic_and_checksummed(tmp_path):
    sizes = {"train": 16, "validation": 8, "test": 8}
    first = data.generate(tasks.build("adding", 6), 4, sizes, tmp_path / "a")
    second = data.generate(tasks.build("adding", 6), 4, sizes, tmp_path / "b")
    other_seed = data.generate(tasks.build("adding", 6), 5, sizes, tmp_path / "c")
    assert first["sha256"] == second["sha256"] != other_seed["sha256"]
    assert len(set(first["sha256"].values())) == 3  # splits are independent streams
    loaded = data.load(tmp_path / "a", "test")
    assert loaded["x"].shape == (8, 6, 2) and loaded["x"].dtype == np.float32


@pytest.mark.parametrize("compress", [True, False])
def test_two_generations_are_byte_identical(tmp_path, compress):
    params = {"sampling": "poisson", "rate": 1.5, "time_channels": ["dt"]}
    for folder in ("a", "b"):
        data.generate(tasks.build("copy", 9, **params), 3, SIZES, tmp_path / folder, compress=compress)
    for split in data.SPLITS:
        assert (tmp_path / "a" / f"{split}.npz").read_bytes() == (tmp_path / "b" / f"{split}.npz").read_bytes()
    import zipfile

    with zipfile.ZipFile(tmp_path / "a" / "train.npz") as archive:
        assert [info.date_time for info in archive.infolist()] == [data.ZIP_DATE] * 2
        assert archive.namelist() == ["x.npy", "y.npy"]
        assert {info.compress_type for info in archive.infolist()} == \
            {zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED}
    assert json.loads((tmp_path / "a" / "meta.json").read_text())["seed"] == 3


def test_files_hold_the_streamed_sequences_whatever_the_batch_size(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CHUNK_SEQUENCES", 16)  # several chunks, the last one partial
    task = tasks.build("delay", 12)
    meta = data.generate(tasks.build("delay", 12), 7, SIZES, tmp_path)
    assert meta["chunk_size"] == 16 and meta["scored"] == "last 10 steps"
    stored = data.load(tmp_path, "train")
    for batch_size in (1, 7, 16, 100):
        batches = list(data.stream(task, 7, "train", batch_size, n=40))
        assert [len(b["x"]) for b in batches[:-1]] == [batch_size] * (len(batches) - 1)
        for name in ("x", "y"):
            np.testing.assert_array_equal(np.concatenate([b[name] for b in batches]), stored[name])
    # chunk k is drawn from its own stream: the endless stream starts with the same sequences
    endless = data.stream(task, 7, "train", 40)
    np.testing.assert_array_equal(next(endless)["x"], stored["x"])
    assert len(next(endless)["x"]) == 40
    # and the chunks are independent draws, not copies
    assert not np.array_equal(stored["x"][:16], stored["x"][16:32])


def test_iter_batches_reads_what_load_reads(tmp_path):
    data.generate(tasks.build("copy", 5, convention="selective"), 1, SIZES, tmp_path)
    whole = data.load(tmp_path, "train")
    batches = list(data.iter_batches(tmp_path, "train", 12))
    assert [len(b["x"]) for b in batches] == [12, 12, 12, 4]
    for name in ("x", "y"):
        np.testing.assert_array_equal(np.concatenate([b[name] for b in batches]), whole[name])
    assert batches[0]["y"].dtype == np.int64 and batches[0]["x"].flags.writeable


@pytest.mark.parametrize("name", tasks.names())
def test_every_task_makes_a_dataset_that_train_can_rebuild(tmp_path, name):
    meta = data.generate(tasks.build(name, 24), 0, {"train": 4, "validation": 2, "test": 2}, tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    task = tasks.build(meta["task"], meta["gap"], **meta["params"])  # as train.py does
    test = data.load(tmp_path, "test")
    assert test["x"].shape == (2, task.seq_len, task.input_size) == (2, meta["seq_len"], meta["input_size"])


def test_corrupted_dataset_is_refused(tmp_path):
    data.generate(tasks.build("copy", 2), 0, {"train": 4, "validation": 4, "test": 4}, tmp_path)
    with np.load(tmp_path / "test.npz") as archive:
        arrays = dict(archive)
    arrays["y"][0, -1] = (arrays["y"][0, -1] % 8) + 1
    np.savez_compressed(tmp_path / "test.npz", **arrays)
    with pytest.raises(ValueError, match="does not match its checksum"):
        data.load(tmp_path, "test")
    with pytest.raises(ValueError, match="does not match its checksum"):
        next(data.iter_batches(tmp_path, "test", 2))  # before any batch is handed out


def test_missing_dataset_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete dataset in .*meta.json is missing"):
        data.load(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="meta.json is missing"):
        next(data.iter_batches(tmp_path / "nowhere", "train", 4))


def test_a_gap_of_10000_streams_and_writes_with_bounded_memory(tmp_path):
    gap, n = 10_000, 96
    task = tasks.build("copy", gap)
    split_bytes = n * task.seq_len * (task.input_size * 4 + 8)  # x float32 + y int64: 46 MB
    sizes = {"train": n, "validation": 1, "test": 1}
    tracemalloc.start()
    try:
        data.generate(tasks.build("copy", gap), 0, sizes, tmp_path)
        _, generate_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        rows, checksum = 0, 0
        for batch in data.iter_batches(tmp_path, "train", 4):
            rows += len(batch["x"])
            checksum += int(batch["y"][:, -10:].sum())
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == n and checksum > 0
    assert generate_peak < split_bytes / 3, (generate_peak, split_bytes)  # about one chunk
    batch_bytes = 4 * split_bytes // n
    assert read_peak < min(split_bytes / 4, 8 * batch_bytes), (read_peak, split_bytes)  # zip buffers: a few batches


@pytest.mark.pipeline
def test_generate_command_reports_a_bad_option_in_one_line(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "gapbench", "generate", "--task", "adding", "--gap", "10", "--seed", "0",
         "--params", '{"sampling": "poisson", "rate": -1}', "--sizes", '{"train": 4, "validation": 4, "test": 4}',
         "--out", str(tmp_path / "data")],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "rate must be a number > 0, got -1" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # nothing half-written


@pytest.mark.parametrize("name, spoil, said", [
    ("adding", lambda sample: sample["x"].__setitem__((3, 0, 0), np.inf), "non-finite values in x"),
    ("temporal_order", lambda sample: sample["y"].__setitem__(3, -1),
     "y with classes [-1], outside [0, output_size = 4)"),
])
def test_a_task_that_draws_what_training_cannot_read_writes_no_dataset(tmp_path, name, spoil, said):
    """A value a pre-flight sample can miss (here only in the fourth sequence of a draw) stops the
    dataset, named with the task's file, instead of training on it."""
    class Spoiled(type(tasks.build(name, 12))):
        def sample(self, n, rng):
            sample = super().sample(n, rng)
            if n > 3:
                spoil(sample)
            return sample

    with pytest.raises(data.DatasetError) as refused:
        data.generate(Spoiled(12), 0, SIZES, tmp_path / "data")
    assert str(refused.value) == (f"task {name!r} (tests/test_data.py) drew {said} in the train split; "
                                  "no dataset written")
    assert not list((tmp_path / "data").iterdir())  # no split, no meta.json
