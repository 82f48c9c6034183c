"""Tasks: registry, baselines against their formulas, scored positions, balance, determinism."""
import math

import numpy as np
import pytest
import torch

import tasks
from gapbench import data


def test_registry_lists_the_tasks():
    assert {"copy", "adding"} <= set(tasks.names())


@pytest.mark.parametrize("gap", [1, 7, 100])
def test_copy_layout_and_baseline(gap):
    task = tasks.build("copy", gap)
    assert task.seq_len == gap + 20 and task.probe_step == gap + 19
    assert task.baseline == pytest.approx(10 * math.log(8) / (gap + 20))
    batch = task.sample(500, np.random.default_rng(0))
    tokens, y = batch["x"].argmax(-1), batch["y"]
    assert batch["x"].shape == (500, gap + 20, 10)
    np.testing.assert_array_equal(tokens[:, gap + 9], 9)  # the delimiter, one step before recall
    np.testing.assert_array_equal(tokens[:, :10], y[:, -10:])  # recall = the first ten symbols
    assert (y[:, :-10] == 0).all() and (tokens[:, 10 : gap + 9] == 0).all()
    assert (tokens[:, gap + 10 :] == 0).all()

    # The memoryless predictor: blank for sure before recall, uniform over 8 symbols during it.
    logits = torch.full((500, gap + 20, 9), -1e9)
    logits[:, :-10, 0] = 0.0
    logits[:, -10:, 1:] = 0.0
    x, y = torch.from_numpy(batch["x"]), torch.from_numpy(y)
    assert task.loss(logits, y).item() == pytest.approx(task.baseline, rel=1e-6)


def test_copy_accuracy_counts_recall_positions_only():
    task = tasks.build("copy", 5)
    batch = task.sample(64, np.random.default_rng(1))
    y = torch.from_numpy(batch["y"])
    perfect = torch.nn.functional.one_hot(y, 9).float()
    assert task.score(perfect, y).item() == 1.0
    blanks_wrong = perfect.clone()
    blanks_wrong[:, :-10] = torch.nn.functional.one_hot(torch.full_like(y[:, :-10], 3), 9).float()
    assert task.score(blanks_wrong, y).item() == 1.0
    always_blank = torch.nn.functional.one_hot(torch.zeros_like(y), 9).float()
    assert task.score(always_blank, y).item() == 0.0


def test_copy_symbols_are_balanced():
    symbols = tasks.build("copy", 3).sample(4000, np.random.default_rng(2))["y"][:, -10:]
    counts = np.bincount(symbols.ravel(), minlength=9)[1:]
    expected = symbols.size / 8
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert counts.sum() == symbols.size and chi2 < 30  # 7 dof: p ≈ 1e-4


def test_adding_baseline_by_monte_carlo():
    task = tasks.build("adding", 50)
    batch = task.sample(200_000, np.random.default_rng(3))
    x, y = batch["x"], batch["y"]
    assert (x[:, :, 1].sum(1) == 2).all()
    assert (x[:, :25, 1].sum(1) == 1).all() and (x[:, 25:, 1].sum(1) == 1).all()
    np.testing.assert_allclose((x[:, :, 0] * x[:, :, 1]).sum(1), y, rtol=1e-6)
    # predicting the mean (1) scores Var(v_i + v_j) = 1/6; 5 standard errors
    squared = (y - 1.0) ** 2
    assert abs(squared.mean() - task.baseline) < 5 * squared.std() / math.sqrt(len(y))
    pred = torch.ones(len(y), 50, 1)
    assert task.loss(pred, torch.from_numpy(y)).item() == pytest.approx(squared.mean(), rel=1e-5)


@pytest.mark.parametrize("name, gap", [("copy", 0), ("copy", -3), ("adding", 1), ("copy", 2.5)])
def test_bad_gap_names_the_parameter(name, gap):
    with pytest.raises(ValueError, match=f"task '{name}': gap must be an integer >= "):
        tasks.build(name, gap)


def test_unknown_task_and_option_name_the_allowed_values():
    with pytest.raises(ValueError, match="allowed: \\['adding', 'copy'"):
        tasks.build("copyy", 5)
    with pytest.raises(ValueError, match="allowed: \\['alphabet', 'length'\\]"):
        tasks.build("copy", 5, symbols=3)


def test_generation_is_deterministic_and_checksummed(tmp_path):
    sizes = {"train": 16, "validation": 8, "test": 8}
    first = data.generate("adding", 6, {}, 4, sizes, tmp_path / "a")
    second = data.generate("adding", 6, {}, 4, sizes, tmp_path / "b")
    other_seed = data.generate("adding", 6, {}, 5, sizes, tmp_path / "c")
    assert first["sha256"] == second["sha256"] != other_seed["sha256"]
    assert len(set(first["sha256"].values())) == 3  # splits are independent streams
    loaded = data.load(tmp_path / "a", "test")
    assert loaded["x"].shape == (8, 6, 2) and loaded["x"].dtype == np.float32


def test_corrupted_dataset_is_refused(tmp_path):
    data.generate("copy", 2, {}, 0, {"train": 4, "validation": 4, "test": 4}, tmp_path)
    with np.load(tmp_path / "test.npz") as archive:
        arrays = dict(archive)
    arrays["y"][0, -1] = (arrays["y"][0, -1] % 8) + 1
    np.savez_compressed(tmp_path / "test.npz", **arrays)
    with pytest.raises(ValueError, match="does not match its checksum"):
        data.load(tmp_path, "test")


def test_missing_dataset_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no complete dataset in .*meta.json is missing"):
        data.load(tmp_path / "nowhere", "train")
