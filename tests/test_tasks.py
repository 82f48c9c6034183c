"""Tasks: registry, baselines against their formulas, scored positions, balance, determinism,
bad parameters, and the irregular-sampling mechanism shared by several tasks."""
import inspect
import json
import math

import numpy as np
import pytest
import torch

from gapbench import tasks
from gapbench.data import array_digest as digest
from gapbench.registry import options_of
from gapbench.tasks._base import Task
from gapbench.tasks._sampling import Sampled
from gapbench.tasks.adding import AddingArjovsky, AddingHochreiter

ALL = ["adding", "copy", "delay", "latch", "memory_capacity", "multiplication", "parity",
       "sine_frequency", "temporal_order"]
SAMPLED = ["adding", "copy", "delay", "multiplication", "sine_frequency"]
SAMPLING_OPTIONS = {"sampling": "regular", "rate": 1.0, "keep": 0.5, "gap_unit": "time", "time_channels": ()}


def within(sample_mean, expected, values, sds=5):
    """|mean − expected| below `sds` standard errors of the mean of `values`."""
    return abs(sample_mean - expected) < sds * np.std(values) / math.sqrt(np.size(values))


@pytest.mark.parametrize("name", [name for name in ALL if type(tasks.build(name, 20)).success is Task.success])
def test_the_shared_success_rule_is_a_tenth_of_the_baseline(name):
    """Every task without a published criterion of its own: solved below 0.1 × its baseline."""
    task = tasks.build(name, 20)
    assert task.success(0.099 * task.baseline) and not task.success(0.101 * task.baseline)
    assert not task.success(math.nan)


def test_registry_lists_the_tasks():
    assert set(ALL) <= set(tasks.names())


# Hashes of Task.sample for the default copy and adding, computed with the generator before the
# task catalogue was added: published numbers depend on these arrays staying the same.
@pytest.mark.parametrize("name, gap, n, seed, expected", [
    ("copy", 1, 7, 0, "b09fd99cbc91974d17418d6d79514d20e7416e980ee06acb60f6406e7b7da2fa"),
    ("copy", 30, 50, 1, "63f9b9b17f800aac279c0e9b335e45331139886d5636294bace195e5f533229e"),
    ("adding", 2, 5, 2, "e200e5695c1c1fc0335c36bf02266c5b1bda84f05a798a13b07c97c033303320"),
    ("adding", 51, 40, 3, "e7266a05aa6f3582bd0d73ae7db4e22b5e532897499fb1212ed04451485aae87"),
])
def test_default_copy_and_adding_arrays_are_unchanged(name, gap, n, seed, expected):
    assert digest(tasks.build(name, gap).sample(n, np.random.default_rng(seed))) == expected


@pytest.mark.parametrize("name", ALL)
def test_every_task_is_deterministic_and_describes_itself(name):
    task = tasks.build(name, 24)
    first, again = (task.sample(16, np.random.default_rng(5)) for _ in range(2))
    other = task.sample(16, np.random.default_rng(6))
    assert digest(first) == digest(again) != digest(other)
    x, y = first["x"], first["y"]
    assert x.dtype == np.float32 and x.shape == (16, task.seq_len, task.input_size)
    assert y.dtype == (np.int64 if task.metric == "accuracy" and name != "adding" else np.float32)
    description = json.loads(json.dumps(task.describe()))
    assert description["scored"] == task.scored and isinstance(task.scored, str)
    rebuilt = tasks.build(name, 24, **description["params"])  # what train.py does from meta.json
    assert digest(rebuilt.sample(16, np.random.default_rng(5))) == digest(first)
    # the interface train.py and the probes use, with a readout at every step
    pred = torch.zeros(16, task.seq_len, task.output_size)
    yt = torch.from_numpy(y)
    assert task.loss(pred, yt).ndim == 0 and task.score(pred, yt).ndim == 0
    assert task.probe_loss(pred[:, task.probe_step], yt).shape == (16,)
    assert task.probe_step == task.seq_len - 1


# ---------------------------------------------------------------- options and params

SAMPLINGS = [{}, {"time_channels": ["mask", "dt"]}, {"sampling": "poisson", "rate": 2.5},
             {"sampling": "thinned", "keep": 0.3, "gap_unit": "steps", "time_channels": ["dt"]},
             {"sampling": "regular", "rate": 3.0, "gap_unit": "steps"}]
# options beyond the defaults, per shipped task (ALL); a user's own task, in one new file
# (docs/extending.md promises nothing else to edit), needs no entry: tests/test_conformance.py
# builds every registered task
OPTION_SETS = {
    "adding": [{"convention": "hochreiter"}, *SAMPLINGS],
    "copy": [{"convention": "selective", "length": 4}, {"convention": "expRNN", "alphabet": 5},
             *SAMPLINGS, {"convention": "expRNN", "sampling": "poisson", "gap_unit": "steps"}],
    "delay": [{"outputs": 3, "components": 5, "bandwidth": 0.3}, *SAMPLINGS],
    "latch": [{"classes": 3, "noise": 1}],
    "memory_capacity": [{"delays": 4, "outputs": 7}],
    "multiplication": SAMPLINGS,
    "parity": [{"distractors": True}],
    "sine_frequency": [{"classes": 4, "noise": 0}, *SAMPLINGS],
    "temporal_order": [{"relevant": 3}],
}


def test_every_shipped_task_has_option_sets_here():
    assert set(ALL) <= set(OPTION_SETS)


@pytest.mark.parametrize("name, options", [(name, {}) for name in ALL] + [
    (name, options) for name, sets in OPTION_SETS.items() for options in sets])
def test_params_rebuild_an_equal_task(name, options):
    task = tasks.build(name, 30, **options)
    params = task.params()
    assert set(params) <= set(tasks.options(name))
    rebuilt = tasks.build(name, 30, **params)
    assert rebuilt.describe() == task.describe()
    assert tasks.build(name, 30, **json.loads(json.dumps(params))).describe() == task.describe()
    assert rebuilt.params() == params
    # every option but the sampling ones is recorded, under its own name
    assert set(params) - set(SAMPLING_OPTIONS) == set(tasks.options(name)) - set(SAMPLING_OPTIONS)


@pytest.mark.parametrize("options, params", [
    ({}, {"sampling": "regular"}),
    ({"rate": 3.0, "keep": 0.2, "gap_unit": "steps"}, {"sampling": "regular"}),  # regular: nothing else matters
    ({"time_channels": ("mask", "dt")}, {"sampling": "regular", "time_channels": ["mask", "dt"]}),
    ({"sampling": "poisson", "rate": 2, "keep": 0.2}, {"sampling": "poisson", "gap_unit": "time", "rate": 2.0}),
    ({"sampling": "thinned", "rate": 2, "gap_unit": "steps", "time_channels": []},
     {"sampling": "thinned", "gap_unit": "steps", "keep": 0.5}),
])
def test_sampling_options_are_recorded_only_where_they_matter(options, params):
    assert tasks.build("delay", 30, **options).params() == {
        "outputs": 10, "components": 16, "bandwidth": 0.1, **params}
    assert tasks.build("multiplication", 30, **options).params() == params


@pytest.mark.parametrize("name", ALL)
def test_the_registry_lists_the_shared_sampling_options_with_their_defaults(name):
    builder = tasks._registry.get(name)
    assert tasks.options(name) == options_of(builder)
    if name in SAMPLED:  # one definition: Sampling's defaults, whichever task shows them
        parameters = inspect.signature(builder).parameters
        assert {key: parameters[key].default for key in SAMPLING_OPTIONS} == SAMPLING_OPTIONS
    else:
        assert not set(SAMPLING_OPTIONS) & set(tasks.options(name))


def test_a_sampled_class_must_take_the_sampling_options():
    with pytest.raises(TypeError, match="sampling_options"):
        class Forgetful(Sampled, Task):
            def __init__(self, gap, *, width=3):
                super().__init__(gap)


def test_adding_builds_one_class_per_convention_recorded_as_adding():
    default, hochreiter = tasks.build("adding", 30), tasks.build("adding", 30, convention="hochreiter")
    assert type(default) is AddingArjovsky and type(hochreiter) is AddingHochreiter
    assert default.describe()["task"] == hochreiter.describe()["task"] == "adding"
    assert default.params() == {"convention": "arjovsky", "sampling": "regular"}
    assert hochreiter.params() == {"convention": "hochreiter", "sampling": "regular"}
    assert tasks.options("adding") == ["convention", "gap_unit", "keep", "rate", "sampling", "time_channels"]
    product = tasks.build("multiplication", 30, sampling="thinned")
    assert isinstance(product, AddingArjovsky) and product.describe()["task"] == "multiplication"
    assert product.params() == {"sampling": "thinned", "gap_unit": "time", "keep": 0.5}
    assert tasks.options("multiplication") == ["gap_unit", "keep", "rate", "sampling", "time_channels"]


# ---------------------------------------------------------------- copy

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
    assert task.loss(logits, torch.from_numpy(y)).item() == pytest.approx(task.baseline, rel=1e-6)


def test_copy_exprnn_recall_begins_at_the_delimiter():
    gap = 12
    task = tasks.build("copy", gap, convention="expRNN")
    batch = task.sample(300, np.random.default_rng(0))
    tokens, y = batch["x"].argmax(-1), batch["y"]
    assert task.seq_len == gap + 20
    np.testing.assert_array_equal(tokens[:, gap + 10], 9)  # the delimiter ...
    assert (y[:, gap + 10] > 0).all() and (y[:, : gap + 10] == 0).all()  # ... is the first recall step
    np.testing.assert_array_equal(tokens[:, :10], y[:, -10:])
    assert ((tokens[:, 10 : gap + 10] == 0)).all() and (tokens[:, gap + 11 :] == 0).all()
    assert task.baseline == pytest.approx(10 * math.log(8) / (gap + 20))  # their loss: all outputs


def test_copy_selective_recalls_scattered_symbols_in_order():
    gap, L = 15, 10
    task = tasks.build("copy", gap, convention="selective")
    batch = task.sample(400, np.random.default_rng(1))
    tokens, y = batch["x"].argmax(-1), batch["y"]
    region = tokens[:, : gap + L - 1]
    assert ((region > 0).sum(1) == L).all() and (tokens[:, gap + L - 1] == 9).all()
    np.testing.assert_array_equal(region[region > 0].reshape(-1, L), y[:, -L:])  # order of appearance
    positions = np.nonzero(region)[1]
    assert len(np.unique(positions)) == gap + L - 1  # every position of the region gets used
    assert task.baseline == pytest.approx(math.log(8)) and task.scored == "last 10 steps (recall)"
    # the loss reads the recall steps only: wrong blanks cost nothing, uniform recall costs ln 8
    logits = torch.zeros(400, task.seq_len, 9)
    logits[:, :-L, 5] = 50.0
    logits[:, -L:, 0] = -1e9
    assert task.loss(logits, torch.from_numpy(y)).item() == pytest.approx(math.log(8), rel=1e-6)


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


# ---------------------------------------------------------------- adding, multiplication

def test_adding_baseline_by_monte_carlo():
    task = tasks.build("adding", 50)
    batch = task.sample(200_000, np.random.default_rng(3))
    x, y = batch["x"], batch["y"]
    assert (x[:, :, 1].sum(1) == 2).all()
    assert (x[:, :25, 1].sum(1) == 1).all() and (x[:, 25:, 1].sum(1) == 1).all()
    np.testing.assert_allclose((x[:, :, 0] * x[:, :, 1]).sum(1), y, rtol=1e-6)
    # predicting the mean (1) scores Var(v_i + v_j) = 1/6; 5 standard errors
    squared = (y - 1.0) ** 2
    assert within(squared.mean(), task.baseline, squared)
    pred = torch.ones(len(y), 50, 1)
    assert task.loss(pred, torch.from_numpy(y)).item() == pytest.approx(squared.mean(), rel=1e-5)


def test_adding_hochreiter_layout_baseline_and_chance_by_monte_carlo():
    T = 40
    task = tasks.build("adding", T, convention="hochreiter")
    assert task.seq_len == 44 and task.metric == "accuracy"
    batch = task.sample(200_000, np.random.default_rng(4))
    values, markers, y = batch["x"][..., 0], batch["x"][..., 1], batch["y"]
    real = (markers != 0) | (values != 0)
    start = real.argmax(1)
    assert (real[:, -1]).all() and set(np.unique(T + 4 - start)) == set(range(T, T + 5))  # lengths
    assert not (real & (np.arange(T + 4) < start[:, None])).any()  # left padding is all zero
    assert (markers[:, -1] == -1).all() and (markers == 1).sum(1).min() == 2 == (markers == 1).sum(1).max()
    first, second = (np.nonzero(markers == 1)[1].reshape(-1, 2) - start[:, None]).T
    assert first.max() < T // 2 and second.max() < T // 2  # both in the first half ...
    assert (np.minimum(first, second) < 10).all()  # ... one of them among the first ten
    assert values.min() >= -1 and values.max() <= 1 and values.min() < -0.999
    np.testing.assert_allclose(0.5 + (values * (markers == 1)).sum(1) / 4, y, atol=1e-6)
    squared = (y - 0.5) ** 2
    assert within(squared.mean(), task.baseline, squared)
    pred = torch.full((len(y), task.seq_len, 1), 0.5)
    yt = torch.from_numpy(y)
    assert task.loss(pred, yt).item() == pytest.approx(squared.mean(), rel=1e-5)
    correct = (np.abs(y - 0.5) < 0.04).astype(float)
    assert within(task.score(pred, yt).item(), task.chance_score, correct)
    assert task.success(0.005, 1.0) and not task.success(0.005, 0.99) and not task.success(0.02, 1.0)


def test_multiplication_baseline_by_monte_carlo():
    task = tasks.build("multiplication", 30)
    batch = task.sample(200_000, np.random.default_rng(5))
    x, y = batch["x"], batch["y"]
    marked = x[:, :, 0][x[:, :, 1] == 1].reshape(-1, 2)
    np.testing.assert_allclose(marked.prod(1), y, rtol=1e-6)
    squared = (y - 0.25) ** 2
    assert task.baseline == pytest.approx(7 / 144) and within(squared.mean(), 7 / 144, squared)


# ---------------------------------------------------------------- classification at the last step

def chi2_uniform(labels, classes):
    counts = np.bincount(labels, minlength=classes)
    expected = len(labels) / classes
    return ((counts - expected) ** 2 / expected).sum()


def best_constant_loss(task, y):
    """Cross-entropy of the best memoryless predictor: the empirical class frequencies."""
    freq = np.bincount(y, minlength=task.output_size) / len(y)
    pred = torch.from_numpy(np.log(freq)).float().expand(len(y), task.seq_len, -1)
    return task.loss(pred, torch.from_numpy(y)).item()


@pytest.mark.parametrize("relevant", [2, 3])
def test_temporal_order_layout_classes_and_baseline(relevant):
    T = 100
    task = tasks.build("temporal_order", T, relevant=relevant)
    batch = task.sample(20_000, np.random.default_rng(6))
    tokens, y = batch["x"].argmax(-1), batch["y"]
    assert (tokens[:, 0] == 5).all() and (tokens[:, -1] == 4).all()  # E ... B
    relevant_at = np.nonzero(tokens >= 6)
    steps = relevant_at[1].reshape(-1, relevant)
    windows = [(10, 20), (50, 60)] if relevant == 2 else [(10, 20), (33, 43), (66, 76)]  # H&S at T = 100
    for k, (lo, hi) in enumerate(windows):
        assert steps[:, k].min() == lo and steps[:, k].max() == hi
    bits = (tokens[relevant_at] - 6).reshape(-1, relevant)
    np.testing.assert_array_equal(bits @ (2 ** np.arange(relevant)[::-1]), y)
    assert task.output_size == 2 ** relevant and chi2_uniform(y, 2 ** relevant) < 35
    assert best_constant_loss(task, y) == pytest.approx(task.baseline, abs=2e-3)
    assert task.baseline == pytest.approx(math.log(2 ** relevant))


def test_latch_class_is_in_the_first_step_and_noise_after():
    task = tasks.build("latch", 50, classes=3, noise=0.5)
    batch = task.sample(20_000, np.random.default_rng(7))
    x, y = batch["x"][..., 0], batch["y"]
    np.testing.assert_allclose(x[:, 0], -1.0 + y)  # levels −1, 0, 1
    noise = x[:, 1:]
    assert abs(noise.std() - 0.5) < 0.01 and abs(noise.mean()) < 0.01
    assert chi2_uniform(y, 3) < 25 and best_constant_loss(task, y) == pytest.approx(math.log(3), abs=2e-3)
    assert task.seq_len == 51 and task.chance_score == pytest.approx(1 / 3)


@pytest.mark.parametrize("distractors", [False, True])
def test_parity_is_the_xor_of_two_marked_bits(distractors):
    gap = 20
    task = tasks.build("parity", gap, distractors=distractors)
    batch = task.sample(20_000, np.random.default_rng(8))
    x, y = batch["x"], batch["y"]
    assert (x[:, [0, -1], 1] == 1).all() and (x[:, 1:-1, 1] == 0).all()
    a, b = x[:, 0, 0] > 0, x[:, -1, 0] > 0
    np.testing.assert_array_equal(a ^ b, y)
    assert (np.abs(x[:, 1:-1, 0]) == (1.0 if distractors else 0.0)).all()
    assert chi2_uniform(y, 2) < 20
    for bit in (a, b):  # either bit alone is independent of the label: nothing to learn without memory
        assert abs((bit == y).mean() - 0.5) < 0.02
    assert task.baseline == pytest.approx(math.log(2)) and task.chance_score == 0.5


def test_sine_frequency_classes_are_balanced_and_bands_are_right():
    gap = 400
    task = tasks.build("sine_frequency", gap, classes=3, noise=0.0)
    batch = task.sample(3000, np.random.default_rng(9))
    x, y = batch["x"][..., 0], batch["y"]
    assert chi2_uniform(y, 3) < 25
    spectrum = np.abs(np.fft.rfft(x * np.hanning(gap), axis=1))
    peak = np.fft.rfftfreq(gap)[spectrum.argmax(1)]
    band = np.searchsorted(task.band_edges, peak) - 1
    assert (band == y).mean() > 0.95  # only spectral leakage at the band edges can miss
    assert task.baseline == pytest.approx(math.log(3))
    # the bands: 1/100 to 1/4 cycles per unit time cut into equal widths in log-frequency
    edges = tasks.build("sine_frequency", 50, classes=4).band_edges
    assert (edges[0], edges[-1]) == (pytest.approx(1 / 100), pytest.approx(1 / 4))
    np.testing.assert_allclose(np.diff(np.log(edges)), np.log(25) / 4, rtol=1e-12)


# ---------------------------------------------------------------- time series

def test_delay_target_is_the_signal_gap_steps_ago_and_its_variance_is_the_baseline():
    gap, outputs = 30, 10
    task = tasks.build("delay", gap, outputs=outputs)
    batch = task.sample(20_000, np.random.default_rng(10))
    x, y = batch["x"][..., 0], batch["y"]
    assert task.seq_len == gap + outputs and y.shape == (20_000, outputs)
    np.testing.assert_allclose(y, x[:, :outputs], atol=1e-6)  # s(t − gap) for the last `outputs` t
    # predicting the mean 0: MSE = E[s²] = 1 (targets within a sequence correlate: use sequence means)
    per_sequence = (y**2).mean(1)
    assert within(per_sequence.mean(), task.baseline, per_sequence)
    loss = task.loss(torch.zeros(len(y), task.seq_len, 1), torch.from_numpy(y)).item()
    assert loss == pytest.approx(per_sequence.mean(), rel=1e-5)
    # band-limited: successive samples of f < 0.1 signals are strongly correlated
    assert np.corrcoef(x[:, 0], x[:, 1])[0, 1] > 0.8


def test_memory_capacity_targets_and_baseline():
    task = tasks.build("memory_capacity", 25, delays=5, outputs=8)
    np.testing.assert_array_equal(task.lags, [5, 10, 15, 20, 25])
    assert tasks.build("memory_capacity", 10, delays=10).lags.tolist() == list(range(1, 11))  # Jaeger's
    assert tasks.build("memory_capacity", 4, delays=10).lags.tolist() == [1, 2, 3, 4]
    batch = task.sample(20_000, np.random.default_rng(11))
    u, y = batch["x"][..., 0], batch["y"]
    for i in range(8):
        for j, k in enumerate(task.lags):
            np.testing.assert_array_equal(y[:, i, j], u[:, 25 + i - k])
    squared = y**2
    assert within(squared.mean(), 1 / 3, squared) and task.baseline == pytest.approx(1 / 3)
    assert task.loss(torch.zeros(20_000, 33, 5), torch.from_numpy(y)).item() == pytest.approx(squared.mean(), rel=1e-5)


def test_memory_capacity_succeeds_only_by_recalling_the_gap():
    """At K = 10 delays a network that recalls every shorter delay exactly and nothing of the gap
    has a loss of exactly 0.1 × Var(u): the shared rule (loss below it) passed on about half of
    the test sets. The score and success read the gap's delay alone."""
    task = tasks.build("memory_capacity", 30)
    assert task.lags[-1] == 30 and task.score_label == "test MSE at delay = gap"
    y = torch.from_numpy(task.sample(4096, np.random.default_rng(0))["y"]).double()
    pred = torch.zeros(4096, task.seq_len, len(task.lags), dtype=torch.float64)
    pred[:, -task.outputs:] = y
    pred[:, -task.outputs:, -1] = 0.0  # nothing of the gap
    loss, score = task.loss(pred, y).item(), task.score(pred, y).item()
    assert loss == pytest.approx(0.1 / 3, rel=0.05) and score == pytest.approx(1 / 3, rel=0.05)
    assert not task.success(loss, score)
    pred[:, -task.outputs:, -1] = 0.9 * y[..., -1]  # the gap to 1% of its variance, the rest exact
    loss, score = task.loss(pred, y).item(), task.score(pred, y).item()
    assert score == pytest.approx(0.01 / 3, rel=0.05) and task.success(loss, score)
    # a mean over sequences and steps: the score of a split is the same in batches of any size
    halves = [task.score(pred[part], y[part]).item() for part in (slice(0, 1000), slice(1000, None))]
    assert (1000 * halves[0] + 3096 * halves[1]) / 4096 == pytest.approx(score, rel=1e-12)
    assert task.chance_score == pytest.approx(task.score(torch.zeros_like(pred), y).item(), rel=0.05)


# ---------------------------------------------------------------- bad parameters

@pytest.mark.parametrize("name, gap", [("copy", 0), ("copy", -3), ("adding", 1), ("copy", 2.5),
                                       ("temporal_order", 9), ("delay", 0), ("parity", True)])
def test_bad_gap_names_the_parameter(name, gap):
    with pytest.raises(ValueError, match=f"task '{name}': gap must be an integer >= "):
        tasks.build(name, gap)


@pytest.mark.parametrize("name, options, message", [
    ("copy", {"convention": "graves"}, r"convention must be one of \['arjovsky', 'expRNN', 'selective'\]"),
    ("copy", {"length": 0}, "length must be an integer >= 1"),
    ("copy", {"alphabet": 1}, "alphabet must be an integer >= 2"),
    ("copy", {"convention": "selective", "sampling": "poisson"}, "needs sampling 'regular'"),
    ("copy", {"convention": "selective", "time_channels": ["dt", "mask"]},
     "convention 'selective' takes no time_channels"),
    ("adding", {"convention": "hochreiter", "time_channels": ["dt"]},
     "convention 'hochreiter' takes no time_channels"),
    ("adding", {"convention": "le"}, r"allowed|one of \['arjovsky', 'hochreiter'\]"),
    ("adding", {"sampling": "jittered"}, r"sampling must be one of \['regular', 'poisson', 'thinned'\]"),
    ("adding", {"sampling": "thinned", "keep": 0.0}, r"keep must be a number in \(0, 1\]"),
    ("adding", {"sampling": "thinned", "keep": 1.5}, r"keep must be a number in \(0, 1\]"),
    ("delay", {"sampling": "poisson", "rate": -1.0}, "rate must be a number > 0"),
    ("delay", {"gap_unit": "seconds"}, r"gap_unit must be one of \['time', 'steps'\]"),
    ("delay", {"time_channels": ["dt", "clock"]}, r"time_channels entry must be one of \['dt', 'mask'\]"),
    ("delay", {"time_channels": "dt"}, "time_channels must be a list"),
    ("delay", {"bandwidth": 0.7}, r"bandwidth must be a frequency in \(0, 0.5\]"),
    ("temporal_order", {"relevant": 4}, r"relevant must be one of \[2, 3\]"),
    ("latch", {"noise": -0.1}, "noise must be a number >= 0"),
    ("latch", {"classes": 1}, "classes must be an integer >= 2"),
    ("parity", {"distractors": "yes"}, "distractors must be true or false"),
    ("memory_capacity", {"delays": 0}, "delays must be an integer >= 1"),
    ("sine_frequency", {"classes": 1}, "classes must be an integer >= 2"),
])
def test_bad_options_name_the_option_and_the_allowed_values(name, options, message):
    with pytest.raises(ValueError, match=message):
        tasks.build(name, 30, **options)


def test_a_whole_number_given_as_a_float_is_kept_as_an_integer():
    """The registry takes 3.0 for an integer option (YAML writes numbers either way); the task's
    sizes and recorded params are then integers, as its class declares."""
    task = tasks.build("temporal_order", 30, relevant=3.0)
    assert (task.relevant, task.output_size, task.params()) == (3, 8, {"relevant": 3})
    assert type(task.relevant) is int and type(task.output_size) is int
    # handed on as an int, so a builder's own strict check (tasks._base.is_int) takes it too
    copy = tasks.build("copy", 30, length=10.0, alphabet=8.0)
    assert (copy.length, copy.alphabet) == (10, 8) and type(copy.length) is int and type(copy.alphabet) is int
    with pytest.raises(ValueError, match=r"option length must be an integer \(default 10\), got 10.5"):
        tasks.build("copy", 30, length=10.5)


def test_hochreiter_adding_needs_a_gap_of_20():
    with pytest.raises(ValueError, match="task 'adding': gap must be an integer >= 20 with convention 'hochreiter'"):
        tasks.build("adding", 19, convention="hochreiter")


def test_unknown_task_and_option_name_the_allowed_values():
    with pytest.raises(ValueError, match="allowed: \\['adding', 'copy'"):
        tasks.build("copyy", 5)
    with pytest.raises(ValueError, match="allowed: \\['alphabet', 'convention', 'gap_unit', 'keep', 'length'"):
        tasks.build("copy", 5, symbols=3)


# ---------------------------------------------------------------- irregular sampling

def copy_timeline(task, n, seed):
    """Observed steps, dt and the step indices of cue and query recovered from copy's inputs."""
    x = task.sample(n, np.random.default_rng(seed))["x"]
    dt, mask = x[..., -2], x[..., -1]
    return x, dt.astype(np.float64), mask.astype(bool)


def test_poisson_inter_arrival_times_are_exponential_with_mean_one_over_rate():
    rate = 2.5
    task = tasks.build("copy", 20, sampling="poisson", rate=rate, time_channels=["dt", "mask"])
    x, dt, mask = copy_timeline(task, 4000, 0)
    start = mask.argmax(1)
    rows = np.arange(len(x))[:, None]
    # symbol and recall steps are pure renewals (the gap region ends with a forced query)
    spacings = np.concatenate([dt[rows, start[:, None] + np.arange(1, 10)].ravel(), dt[:, -10:].ravel()])
    assert within(spacings.mean(), 1 / rate, spacings)
    assert abs((spacings > 1 / rate).mean() - math.exp(-1)) < 0.01  # the exponential tail
    assert abs(spacings.std() - 1 / rate) < 0.02


@pytest.mark.parametrize("sampling, option, mean, var", [
    ("poisson", {"rate": 0.5}, 0.5 * 40, 0.5 * 40),  # g − 1 ~ Poisson(λΔ)
    ("thinned", {"keep": 0.3}, 0.3 * 39, 0.3 * 0.7 * 39),  # g − 1 ~ Binomial(Δ − 1, p)
])
def test_gap_in_time_fixes_delta_and_the_step_count_is_random(sampling, option, mean, var):
    gap = 40
    task = tasks.build("copy", gap, sampling=sampling, time_channels=["dt", "mask"], **option)
    x, dt, mask = copy_timeline(task, 5000, 1)
    start = mask.argmax(1)
    cue, query = start + 9, task.seq_len - 11  # last symbol; the delimiter
    assert (x[:, query, 9] == 1).all()
    time = np.cumsum(dt, axis=1)
    np.testing.assert_allclose(time[:, query] - time[np.arange(len(x)), cue], gap, atol=1e-9)
    inside = query - cue - 1  # steps strictly between cue and query
    assert within(inside.mean(), mean, inside)
    assert abs(inside.var() / var - 1) < 0.1
    assert (mask.sum(1) == 10 + query - cue + 10).all()  # symbols, gap region, recall: nothing else
    assert not x[~mask].any()  # left padding is all-zero input
    if sampling == "thinned":
        assert (dt[mask] == np.round(dt[mask])).all()  # kept steps of the integer grid


@pytest.mark.parametrize("sampling, option, spacing", [("poisson", {"rate": 2.0}, 0.5), ("thinned", {"keep": 0.25}, 4.0)])
def test_gap_in_steps_fixes_the_step_count_and_delta_is_random(sampling, option, spacing):
    gap = 30
    task = tasks.build("copy", gap, sampling=sampling, gap_unit="steps", time_channels=["dt", "mask"], **option)
    assert task.seq_len == gap + 20
    x, dt, mask = copy_timeline(task, 3000, 2)
    assert mask.all() and (x[:, gap + 9, 9] == 1).all()  # no padding, the delimiter where it always is
    delta = dt[:, 10 : gap + 10].sum(1)  # from the last symbol to the delimiter: gap inter-arrivals
    assert within(delta.mean(), gap * spacing, delta) and delta.std() > 0


def test_regular_sampling_with_time_channels_adds_constant_channels_only():
    plain = tasks.build("adding", 12).sample(50, np.random.default_rng(3))
    timed_task = tasks.build("adding", 12, time_channels=["mask", "dt"])
    timed = timed_task.sample(50, np.random.default_rng(3))
    assert timed_task.input_size == 4 and timed["x"].shape == (50, 12, 4)
    assert (timed["x"][..., 2] == 1).all()  # mask first: the order asked for
    np.testing.assert_array_equal(timed["x"][0, :, 3], [0] + [1] * 11)
    marked = (timed["x"][..., 0] * timed["x"][..., 1]).sum(1)
    np.testing.assert_allclose(marked, timed["y"], rtol=1e-6)
    assert plain["x"].shape == (50, 12, 2)


@pytest.mark.parametrize("name", ["adding", "multiplication", "sine_frequency", "delay"])
def test_irregular_variants_of_the_other_tasks(name):
    gap = 25
    task = tasks.build(name, gap, sampling="thinned", keep=0.5, time_channels=["dt", "mask"])
    batch = task.sample(2000, np.random.default_rng(4))
    x, y = batch["x"], batch["y"]
    dt, mask = x[..., -2].astype(np.float64), x[..., -1] == 1
    assert mask[:, -1].all() and not x[~mask].any()
    time = np.cumsum(dt, axis=1)
    if name == "delay":  # the first scored step comes exactly gap after the first observation ...
        start = mask.argmax(1)
        first_scored = task.seq_len - task.outputs
        np.testing.assert_allclose(time[:, first_scored] - time[np.arange(len(x)), start], gap)
        np.testing.assert_allclose(y[:, 0], x[np.arange(len(x)), start, 0], atol=1e-5)  # ... and recalls it
    else:  # the sequence spans gap − 1 time units, like the regular gap steps
        np.testing.assert_allclose(time[:, -1], gap - 1)
        assert within(mask.sum(1).mean(), 2 + 0.5 * (gap - 2), mask.sum(1))
    if name in ("adding", "multiplication"):
        combine = np.add if name == "adding" else np.multiply
        marked = x[..., 0][x[..., 1] == 1].reshape(-1, 2)
        np.testing.assert_allclose(combine(marked[:, 0], marked[:, 1]), y, rtol=1e-6)
    again = task.sample(2000, np.random.default_rng(4))
    assert digest(again) == digest(batch)


def test_delay_in_steps_recalls_the_input_gap_observations_back():
    task = tasks.build("delay", 15, sampling="poisson", rate=0.7, gap_unit="steps")
    batch = task.sample(500, np.random.default_rng(5))
    np.testing.assert_allclose(batch["y"], batch["x"][:, : task.outputs, 0], atol=1e-6)
