"""Checks of a pipeline config beyond its JSON schema, all before the first job runs.

The schema (workflow/schemas/config.schema.yaml) fixes the structure and types; here: every
string that becomes part of a path or a shell line is a safe name, every number is finite,
the names of tasks and models exist in their registries, the user code behind them runs (every
task is built at every gap and draws a small sample checked against what it declares; every model
is built and run forward and through `step` on a tiny input: `check_task_sample`,
`check_model_runs`), and every setting can take effect (batch sizes against split sizes,
the device, threads against cores).
"""
from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path

from gapbench import models, tasks
from gapbench.registry import UnimportableFile, raised_in, source_file, source_path

# a label names folders and appears on shell lines: letters, digits, '_', '.', '-' only,
# matched whole (re.fullmatch: a trailing newline does not slip through as with `$`)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SAFE_NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit"


class ConfigError(ValueError):
    """A config value that cannot run; the message names the key and the allowed values."""


def _unique(names: list, key: str) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"config key {key}: {repeated} listed more than once; give repeated {key} distinct `label`s")


def entry_label(entry: dict) -> str:
    """The name results use for a task or model entry: its `label`, else its registry name."""
    return entry.get("label", entry["name"])


task_label = model_label = entry_label


def _entry(config: dict, key: str, label: str) -> dict:
    """The entry of config[key] ("tasks" or "models") that results call `label`."""
    for entry in config[key]:
        if entry_label(entry) == label:
            return entry
    raise KeyError(f"no {key[:-1]} entry {label!r} in this config; it has {[entry_label(e) for e in config[key]]}")


def task_entry(config: dict, label: str) -> dict:
    return _entry(config, "tasks", label)


def model_entry(config: dict, label: str) -> dict:
    return _entry(config, "models", label)


def task_models(config: dict, entry: dict) -> list[str]:
    """The model labels trained on a task entry: its `models`, else every model of the config."""
    return entry.get("models", [model_label(model) for model in config["models"]])


def model_hidden_size(config: dict, entry: dict) -> int:
    """A model entry's hidden size: its own `hidden_size`, else the grid's."""
    return entry.get("hidden_size", config["hidden_size"])


def check_schema(config: dict, schema_path) -> None:
    """The config against the JSON schema, with a one-line message naming the key (and, for
    an unknown key, the allowed ones) instead of a dump of the schema. Defaults are filled
    afterwards by Snakemake's own `validate`."""
    import jsonschema
    import yaml

    with open(schema_path) as handle:
        schema = yaml.safe_load(handle)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path).lstrip(".")
    where = f"config key {key}" if key else "config"
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(error.schema['properties'])}")
    raise ConfigError(f"{where}: {error.message}")


def _check_finite(node, key: str = "") -> None:
    """Every number anywhere in the config is finite (YAML's .nan and .inf are floats too)."""
    if isinstance(node, dict):
        for name, value in node.items():
            _check_finite(value, f"{key}.{name}" if key else str(name))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_finite(value, f"{key}[{index}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config key {key}: must be a finite number, got {node}")


def _check_name(value, key: str) -> None:
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise ConfigError(f"config key {key}: {value!r} is not a safe name; use {SAFE_NAME_RULE}")


def check_config(config: dict, cores: int | None = None, cuda_available=None) -> None:
    """Raise ConfigError naming the first key that cannot run. `cores` is Snakemake's --cores
    (None where unknown); `cuda_available` a callable, torch.cuda.is_available by default."""
    import numpy as np

    _check_finite(config)
    for index, entry in enumerate(config["tasks"]):
        _check_name(entry["name"], f"tasks[{index}].name")
        _check_name(task_label(entry), f"tasks[{index}].label")
    for index, entry in enumerate(config["models"]):
        _check_name(entry["name"], f"models[{index}].name")
        _check_name(model_label(entry), f"models[{index}].label")
    labels = [model_label(entry) for entry in config["models"]]
    _unique([task_label(entry) for entry in config["tasks"]], "tasks")
    _unique(labels, "models")
    input_sizes = {label: set() for label in labels}  # per model label, of the tasks it trains on
    for entry in config["tasks"]:
        name, label = entry["name"], task_label(entry)
        unknown = sorted(set(entry.get("models", [])) - set(labels))
        if unknown:
            raise ConfigError(f"config key tasks[{label}].models: {unknown} not among the config's models; "
                              f"allowed: {labels}")
        if name not in tasks.names():
            raise ConfigError(f"config key tasks: {tasks._registry.unknown(name)}")
        drawn = {}  # (seq_len, probe_step, sample) by gap: two gaps that give the same task are a gap ignored
        for gap in entry["gaps"]:
            where = f"config key tasks[{label}] (gap {gap})"
            task = _built(tasks, "task", name, where, where, entry["params"], gap,
                          not_options={"gap": "the entry's gaps list sets it (tasks: [{name: ..., gaps: [...]}])"})
            check_task_declares(task, where)
            sample = check_task_sample(task, where)
            for other, (seq_len, probe_step, other_sample) in drawn.items():
                if (seq_len, probe_step) == (task.seq_len, task.probe_step) and sample.keys() == other_sample.keys() \
                        and all(np.array_equal(sample[key], other_sample[key]) for key in sample):
                    raise _user_code_error(f"config key tasks[{label}].gaps", "task", task,
                                           f"gaps {other} and {gap} give the same task (seq_len {seq_len}, the step "
                                           "scored and the sample from one seed): its seq_len, sample or scored "
                                           "step must use the gap")
            drawn[gap] = (task.seq_len, task.probe_step, sample)
            for model in task_models(config, entry):
                input_sizes[model].add(task.input_size)
    for entry in config["models"]:
        name, label = entry["name"], model_label(entry)
        if name not in models.names():
            raise ConfigError(f"config key models: {models._registry.unknown(name)}")
        if "batch_first" in entry["options"]:
            raise ConfigError(f"config key models[{label}].options.batch_first: the pipeline always feeds "
                              "(batch, time, features) tensors; remove this option")
        for input_size in sorted(input_sizes[label]) or [2]:
            model = _built(models, "model", name, f"config key models[{label}]", f"config key models[{label}].options",
                           entry["options"], input_size, model_hidden_size(config, entry), not_options={
                               "hidden_size": "give it as a key of the model entry ({name: ..., hidden_size: "
                                              "...}) or as the grid's hidden_size",
                               "input_size": "each task sets its models' input size"})
            check_model_runs(model, f"config key models[{label}]")
    # clip arm and optimiser names are enums of the schema; only the pairing is checked here
    for arm in config["clip"]["arms"]:
        if arm != "none" and arm not in config["clip"]["thresholds"]:
            raise ConfigError(f"config key clip.thresholds.{arm}: missing threshold θ0 for clip arm {arm!r}")
    gaps = {task_label(entry): entry["gaps"] for entry in config["tasks"]}
    for task, gap in config["figures"]["decay_gap"].items():
        if task not in gaps:
            raise ConfigError(f"config key figures.decay_gap.{task}: {task!r} is not a task label of this config; "
                              f"its tasks: {list(gaps)}")
        if gap not in gaps[task]:
            raise ConfigError(
                f"config key figures.decay_gap.{task}: {gap} is not a gap of task {task!r} in this config"
            )
    _check_settings_take_effect(config, cores, cuda_available)


# Pre-flight runs of user code: a task or model that breaks its contract is named, with its file
# and what was expected, before any job, not by a torch error deep inside a training job.
SAMPLE = 2  # the batch a model runs in the pre-flight checks
STEPS = 3  # steps of the model's pre-flight input
# sequences a task draws there: enough that a class or a value most draws avoid (a label of -1
# half the time, an inf one sequence in eight) is seen; milliseconds a gap (at gap 10000: copy
# 0.11 s, delay 0.12 s, the other seven tasks 4-28 ms; the 2-core Intel VM at 8c9c220)
TASK_SAMPLE = 32


def _user_code_error(where: str, kind: str, instance, message: str, error: BaseException | None = None) -> ConfigError:
    """The refusal of a task or model: `where` in the config, the name and file, `message`; where
    it is about an `error` its code raised, the error and the line of its file it passed through last."""
    builder = type(instance)
    failed = "" if error is None else _failure(error, builder)
    return ConfigError(f"{where}: {kind} {builder.registry_name!r} ({source_file(builder)}): {message}{failed}")


def _failure(error: BaseException, builder) -> str:
    """": Type: message (in FILE, line N)" of an error user code raised: N the last line of the
    builder's file the error passed through."""
    return f": {type(error).__name__}: {error}{_raised_in(error, builder, innermost=False)}"


def _raised_in(error: BaseException, builder, innermost: bool = True) -> str:
    """" (raised in FILE, line N)" where `error` was raised in the builder's own file (a bug there,
    such as int("sixty-four"), or its own refusal of an option); "" where it came from elsewhere
    (the registry, the shared checks of tasks/_base.py), whose message names the option. With
    innermost=False, the last line of the builder's file the error passed through, wherever it
    was raised (a shape error inside torch, called from the model's update)."""
    source = source_path(builder)
    where = raised_in(error, source, innermost=innermost) if source else None
    said = "raised in" if innermost else "in"
    return f" ({said} {source_file(builder)}, line {where[1]})" if where else ""


def _built(package, kind: str, name: str, where: str, options_key: str, options: dict, *sizes,
           not_options: dict[str, str]):
    """`package.build(name, *sizes, **options)`. An option named like one of the sizes
    (not_options: {name: where it is set instead}) is refused as such. A ValueError (the
    registry's refusal of an unknown option or a value of the wrong kind, or the builder's of an
    option out of range) is about the config's options and names `options_key`, and the
    builder's file and line where it was raised there; any other failure is the builder's own
    code, named with its file and the options it was given."""
    for option in options:
        if option in not_options:
            raise ConfigError(f"{options_key}: {option} is not an option of {kind} {name!r}: {not_options[option]}")
    try:
        return package.build(name, *sizes, **options)
    except ValueError as error:
        raise ConfigError(f"{options_key}: {error}{_raised_in(error, package._registry.get(name))}") from None
    except Exception as error:  # noqa: BLE001 - user code: any failure is named with its file
        builder = package._registry.get(name)
        raise ConfigError(f"{where}: {kind} {name!r} ({source_file(builder)}) failed to build with options "
                          f"{options}{_failure(error, builder)}") from None


def check_task_declares(task, where: str) -> None:
    """`task` provides what every task declares (tasks/_base.py's Task) and what its datasets
    record (`describe()`, its params kept under their own names among them): seq_len,
    input_size and output_size integers >= 1, baseline a finite number > 0 (success is, unless a
    task says otherwise, a test loss below a fraction of it), chance_score a finite number; else a ConfigError naming the
    task and its file."""
    from gapbench.tasks._base import is_int

    def refuse(message, error=None):
        return _user_code_error(where, "task", task, message, error)

    def read(attribute):
        try:
            value = getattr(task, attribute)
            return value() if attribute == "params" else value
        except Exception as error:  # noqa: BLE001 - user code: any failure is named with its file
            unset = isinstance(error, NotImplementedError) or (
                isinstance(error, AttributeError) and error.name == attribute)  # not one raised inside it
            raise refuse(f"{attribute} is not defined (every task provides it: Task in tasks/_base.py)" if unset
                         else f"{attribute} failed", None if unset else error) from None

    for attribute in ("seq_len", "input_size", "output_size"):
        value = read(attribute)
        if not is_int(value) or value < 1:
            raise refuse(f"{attribute} must be an integer >= 1, got {value!r}")
    for attribute, lowest in (("baseline", 0.0), ("chance_score", None)):
        value = read(attribute)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or (lowest is not None and value <= lowest):
            wanted = "a finite number" + ("" if lowest is None else f" > {lowest:g}")
            raise refuse(f"{attribute} must be {wanted}, got {value!r}")
    read("metric")
    read("params")
    try:
        task.describe()
    except Exception as error:  # noqa: BLE001
        raise refuse("describe() failed", error) from None


def check_task_sample(task, where: str) -> dict:
    """`task` draws TASK_SAMPLE sequences of its declared shapes and dtypes (x: float32 (n,
    seq_len, input_size); y: n targets, of the kind its loss reads: for a LastStepClassification
    int64 (n,), for a LastStepRegression floats (n,); integer targets are classes in [0,
    output_size)), finite, and the same again from the same seed (a dataset is its seed's); and
    its loss, score and probe loss take them with a prediction of shape (n, seq_len,
    output_size) as training passes it, giving finite numbers; and other sequences from another
    seed (a fixed generator of its own would make the test set the training set); else a
    ConfigError naming the task and its file. Returns the sample."""
    import numpy as np
    import torch

    from gapbench.data import unreadable
    from gapbench.tasks._base import LastStepClassification, LastStepRegression

    def refuse(message, error=None):
        return _user_code_error(where, "task", task, message, error)

    def same(one, other) -> bool:
        return isinstance(other, dict) and other.keys() == one.keys() and all(
            np.array_equal(np.asarray(other[key]), np.asarray(value)) for key, value in one.items())

    def draw(seed=0):
        try:
            return task.sample(TASK_SAMPLE, np.random.default_rng(seed))
        except Exception as error:  # noqa: BLE001 - user code: any failure is named with its file
            raise refuse(f"sample({TASK_SAMPLE}, rng) failed", error) from None

    sample = draw()
    if not (isinstance(sample, dict) and all(isinstance(sample.get(key), np.ndarray) for key in ("x", "y"))):
        raise refuse(f"sample({TASK_SAMPLE}, rng) must return {{'x': array, 'y': array}}, got {type(sample).__name__} "
                     f"{sorted(sample) if isinstance(sample, dict) else ''}")
    x, y = sample["x"], sample["y"]
    expected = (TASK_SAMPLE, task.seq_len, task.input_size)
    if x.dtype != np.float32 or x.shape != expected:
        raise refuse(f"sample x must be float32 of shape (n, seq_len, input_size) = {expected}, "
                     f"got {x.dtype} of shape {x.shape}")
    if isinstance(task, LastStepClassification):
        kind = f"int64 of shape (n,) = ({TASK_SAMPLE},) (one class per sequence)"
        ok = y.dtype == np.int64 and y.shape == (TASK_SAMPLE,)
    elif isinstance(task, LastStepRegression):
        kind = f"floats of shape (n,) = ({TASK_SAMPLE},) (one target per sequence)"
        ok = y.dtype.kind == "f" and y.shape == (TASK_SAMPLE,)
    else:
        kind = f"integers or floats with n = {TASK_SAMPLE} rows"
        ok = y.dtype.kind in "iuf" and y.shape[:1] == (TASK_SAMPLE,)
    if not ok:
        raise refuse(f"sample y must be {kind}, got {y.dtype} of shape {y.shape}")
    if y.dtype.kind in "iu" and not ((y >= 0) & (y < task.output_size)).all():
        raise refuse(f"sample y holds classes {sorted(set(y.ravel().tolist()))}, expected classes in "
                     f"[0, output_size = {task.output_size})")
    problem = unreadable(task, sample)
    if problem:
        raise refuse(f"sample({TASK_SAMPLE}, rng) drew {problem} (a dataset must be finite, or the models trained on "
                     "it would be reported as diverged)")
    if not same(sample, draw()):
        raise refuse(f"sample({TASK_SAMPLE}, rng) drew another sample from the same seed: draw every random number "
                     "from the rng it is given (not np.random's functions or a new default_rng()), so that a "
                     "dataset is its seed's")
    # a generator of the task's own with a fixed seed passes the check above, but then every split
    # and every seed gets the same sequences: the test set would be the training set
    if same(sample, draw(1)):
        raise refuse(f"sample({TASK_SAMPLE}, rng) drew the same sequences from two different seeds, so its "
                     "training, validation and test sets would be one set: draw every random number from the rng "
                     "it is given (not a default_rng(42) of its own)")
    pred, target = torch.zeros(TASK_SAMPLE, task.seq_len, task.output_size), torch.from_numpy(y)
    checks = [("loss", lambda: task.loss(pred, target), ()), ("score", lambda: task.score(pred, target), ()),
              ("probe_loss", lambda: task.probe_loss(pred[:, task.probe_step], target), (TASK_SAMPLE,))]
    for method, call, shape in checks:
        try:
            value = call()
        except Exception as error:  # noqa: BLE001
            raise refuse(f"{method} failed on its own sample and a prediction of shape (n, seq_len, output_size) = "
                         f"{tuple(pred.shape)}", error) from None
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape or not torch.isfinite(value).all():
            got = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            raise refuse(f"{method} on its own sample must be a finite tensor of shape {shape}, got {got}")
    return sample


def check_model_runs(model, where: str) -> None:
    """`model` keeps its options under their own names (`options()`, which rebuilds it), and runs
    `step` and `forward` on a tiny input (batch SAMPLE, STEPS steps) with the contract's shapes
    (models/_base.py): step, from initial_state, -> (batch, state_size); forward -> (output
    (batch, time, hidden_size), h_n), the output being what training reads (h_n's form varies:
    the LSTM's is torch's (h, c)); float32 parameters and values, all finite; no parameter made
    while it runs (the optimiser, built before the first step, would never train it); the same
    in the float64 copy the probes take (model.double(), in eval mode: dropout off), where
    forward's output must be its `step` unrolled (training reads forward, the probes measure step: two maps would make every
    propagation number another network's); and the backward passes of training (through
    forward's output, by the weights) and of the probes (through step, by the state) run and
    give finite gradients: an in-place update breaks them, sqrt(s²) at s = 0 makes them NaN; and
    the probes' linearisation runs (torch.func's vmap and vjp refuse code that training runs).
    Else a ConfigError naming the model and its file."""
    import copy

    import torch

    def refuse(message, error=None):
        return _user_code_error(where, "model", model, message, error)

    try:
        model.options()
    except Exception as error:  # noqa: BLE001
        raise refuse("options() failed", error) from None
    for name, parameter in model.named_parameters():
        if parameter.dtype != torch.float32:
            raise refuse(f"parameter {name} is {parameter.dtype}: make every parameter float32 (torch's default; "
                         "training runs in float32, the probes in a float64 copy made by model.double())")
    made = {name for name, _ in model.named_parameters()}

    hidden, state_size = model.hidden_size, model.state_size
    shape = f"an input of shape (batch, time, input_size) = ({SAMPLE}, {STEPS}, {model.input_size})"

    def called(method, call, network):
        try:
            return call()
        except Exception as error:  # noqa: BLE001
            copied = " of the float64 copy the probes use (model.double().eval())" if network is not model else ""
            hint = ("; keep layers as attributes or in nn.ModuleList and weights as nn.Parameter, so that "
                    "model.double() converts them" if copied and isinstance(error, RuntimeError) else "")
            raise refuse(f"{method}{copied} failed on {shape}{hint}", error) from None

    def checked(what, value, expected, dtype):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
            found = f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            raise refuse(f"{what} must have shape {expected} (hidden_size {hidden}, state_size {state_size}) on "
                         f"{shape}, got {found}")
        if value.dtype != dtype:
            raise refuse(f"{what} is {value.dtype} on a {dtype} input: compute in the input's dtype")
        if not torch.isfinite(value).all():
            raise refuse(f"{what} is not finite on {shape}")
        return value

    def run(network, dtype):
        """forward's output and step's unroll of `network` on the pre-flight input in `dtype`."""
        with torch.random.fork_rng(), torch.no_grad():  # leaves the caller's random stream alone
            torch.manual_seed(0)
            x = torch.randn(SAMPLE, STEPS, network.input_size).to(dtype)
            checked("step", called("step", lambda: network.step(network.initial_state(SAMPLE, x), x[:, 0]), network),
                    (SAMPLE, state_size), dtype)
            # forward and the unroll start from the same seed: a random initial_state (drawn the
            # same way in both, as the base class's loop does) is then the same state in both
            torch.manual_seed(1)
            forward = called("forward", lambda: network(x), network)
            if not (isinstance(forward, tuple) and len(forward) == 2):
                raise refuse(f"forward must return (output, h_n) as torch.nn.RNN does, got {type(forward).__name__}")
            output = checked("forward output", forward[0], (SAMPLE, STEPS, hidden), dtype)
            torch.manual_seed(1)
            return x, output, called("unroll (step after step)", lambda: network.unroll(x)[0], network)

    x, _, _ = run(model, torch.float32)
    made_now = sorted({name for name, _ in model.named_parameters()} - made)
    if made_now:
        raise refuse(f"parameters {made_now} were made while the model ran: make every layer in __init__ (the "
                     "optimiser is built before the first step, and would never train them)")
    _, output, unrolled = run(copy.deepcopy(model).double().eval(), torch.float64)  # as the probes copy it
    difference = (output - unrolled).abs().max().item()
    if not difference <= 1e-8 * max(1.0, output.abs().max().item()):
        raise refuse(f"forward's output is not its step unrolled (observe(s_t) of step after step; max difference "
                     f"{difference:.3g} in float64 on {shape}): training reads forward and the probes step, so "
                     "they must compute one network")
    # what training differentiates (forward's output, by the weights) and what the probes do (step,
    # by a state that requires grad): an in-place update of the state breaks either
    with torch.random.fork_rng(), torch.no_grad():  # a leaf, as the probes' state is (a learned h0 is not)
        torch.manual_seed(0)
        state = called("initial_state", lambda: model.initial_state(SAMPLE, x), model).detach().requires_grad_()
    passes = {"forward's output, by the weights": (lambda: model(x)[0], lambda: [p.grad for p in model.parameters()]),
              "step, by the state from initial_state": (lambda: model.step(state, x[:, 0]), lambda: [state.grad])}
    for what, (call, gradients) in passes.items():
        with torch.random.fork_rng():  # leaves the caller's random stream alone
            torch.manual_seed(0)
            try:
                value = call()
                if value.requires_grad:  # a model with nothing to differentiate (esn's forward) has no graph
                    value.square().mean().backward()
            except Exception as error:  # noqa: BLE001
                raise refuse(f"backward through {what} failed on {shape}", error) from None
            try:
                if not all(torch.isfinite(g).all() for g in gradients() if g is not None):
                    raise refuse(f"the gradient of {what} is not finite on {shape} (e.g. sqrt or a norm of a "
                                 "state that is 0: the probes and training differentiate there)")
            finally:
                model.zero_grad(set_to_none=True)

    # what the probes do with step and observe (a vjp vmapped over cotangent rows, vmap(jacrev) of
    # observe) training never does: a model torch.func refuses would stop every training job at its first probe
    from gapbench.probes._linearisation import linearise_once
    try:
        with torch.random.fork_rng():  # a random initial_state leaves the caller's random stream alone
            torch.manual_seed(0)
            linearise_once(model, x)
    except Exception as error:  # noqa: BLE001
        raise refuse(f"the probes' linearisation (torch.func: a vjp through step vmapped over cotangent rows, and "
                     f"vmap(jacrev(observe))) failed on {shape}", error) from None


def _check_settings_take_effect(config: dict, cores, cuda_available) -> None:
    """A setting that cannot take effect is an error, not a silent substitution."""
    sizes, train = config["data"]["sizes"], config["train"]
    if train["batch_size"] > sizes["train"]:
        raise ConfigError(f"config key train.batch_size: {train['batch_size']} is larger than the train split "
                          f"(data.sizes.train = {sizes['train']}); every step would see only {sizes['train']}")
    if train["probe_batch"] > sizes["test"]:
        raise ConfigError(f"config key train.probe_batch: {train['probe_batch']} is larger than the test split "
                          f"(data.sizes.test = {sizes['test']})")
    if cores is not None and config["threads_per_job"] > cores:
        raise ConfigError(f"config key threads_per_job: {config['threads_per_job']} is more than --cores {cores}; "
                          "Snakemake would run each job on fewer threads than the run records")
    if train["cuda_graph"] and train["device"] != "cuda":
        raise ConfigError("config key train.cuda_graph: true needs train.device: cuda (a CUDA graph is a GPU's); "
                          f"train.device is {train['device']!r}")
    if train["device"] == "cuda":
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available
        if not cuda_available():
            raise ConfigError("config key train.device: 'cuda', but torch sees no CUDA device here; "
                              "allowed here: ['cpu']")


ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = ROOT / "config" / "default.yaml"


def prepare(config: dict, cores: int | None = None, cuda_available=None, schema=SCHEMA) -> dict:
    """Check a pipeline config and fill in its defaults, in place; return it. The one way a
    config is made ready, for the workflow (common.smk, on the config Snakemake merged) and
    for the commands that read one (`load_config`):
    the JSON schema with a one-line message, the schema's defaults filled in (Snakemake's
    `validate`), then `check_config`: names, numbers, registry entries, options, gaps,
    settings against cores and device — all before any job."""
    from snakemake.utils import validate

    check_one_checkout()
    try:  # every task and model file imported now: one that cannot be is named, not a traceback
        tasks.names(), models.names()
    except UnimportableFile as error:
        raise ConfigError(str(error)) from None
    check_schema(config, schema)
    validate(config, str(schema))
    check_config(config, cores=cores, cuda_available=cuda_available)
    return config


def check_one_checkout(package=None, *subpackages) -> None:
    """gapbench and its tasks and models come from one checkout (its tasks/ and models/ beside
    gapbench/ in a source tree, inside it where installed); else a ConfigError naming both. Two
    checkouts sharing one environment mix silently otherwise: the installed one's models run
    under the other's code, and a model added to the one run is "unknown"."""
    import gapbench

    package = Path((package or gapbench).__file__).resolve().parent
    for sub in subpackages or (tasks, models):
        folder = Path(sub.__file__).resolve().parent
        if folder.parent not in (package, package.parent):
            raise ConfigError(f"gapbench is imported from {package} but {sub.__name__} from {folder}: two checkouts "
                              "share this environment; run `pip install -e .` in the one you mean to run "
                              "(or run from the installed one)")


def jobs_environment(python: str | os.PathLike = sys.executable) -> dict[str, str]:
    """This process's environment with `python`'s folder first on PATH: the rules' jobs call the
    `python` on PATH, so Snakemake run in it trains with `python`'s environment (gapbench and its
    pins) whether or not that environment is activated."""
    return {**os.environ, "PATH": os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")])}


def load_config(path=None, cores: int | None = None, cuda_available=None) -> dict:
    """A pipeline config as Snakemake sees it: config/default.yaml, the file's keys over it
    (dicts merged, lists replaced, like --configfile; a list of files is merged in its order,
    like `--configfile A B`), prepared (`prepare`) for `cores`."""
    import yaml
    from snakemake.utils import update_config

    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    for file in [] if path is None else [path] if isinstance(path, (str, Path)) else path:
        update_config(config, yaml.safe_load(Path(file).read_text()))
    return prepare(config, cores=cores, cuda_available=cuda_available)
