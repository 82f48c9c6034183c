"""Pre-flight checks of user code, before any job: every configured task draws a small sample
checked against what it declares, every configured model runs forward, `step` and the probes'
linearisation on a tiny input, and a failure names the task or model, its file and what was expected; a name registered
twice names both files. The bad classes are defined here and registered under new names for one
test each (never written into tasks/ or models/)."""
import contextlib
import sys

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, SMOKE
from gapbench import models, tasks
from gapbench.config import ConfigError, load_config
from gapbench.models import RecurrentModel
from gapbench.tasks._base import LastStepClassification, LastStepRegression

HERE = "tests/test_preflight.py"  # the file every refusal below must name


@contextlib.contextmanager
def registered(package, name, builder):
    """`builder` registered in `package` under `name` for the duration of the block only."""
    package.register(name)(builder)
    try:
        yield
    finally:
        package._registry._builders.pop(name)


def smoke_with(tmp_path, tasks_=None, models_=None):
    """The smoke config with its tasks and/or models replaced, written to a file; its path."""
    config = yaml.safe_load(SMOKE.read_text())
    if tasks_ is not None:
        config["tasks"] = tasks_
    if models_ is not None:  # every task entry then trains these models
        config["models"] = models_
        for entry in config["tasks"]:
            entry.pop("models", None)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    return configfile


def passes(tmp_path, tasks_=None, models_=None) -> None:
    load_config(smoke_with(tmp_path, tasks_, models_), cores=2, cuda_available=lambda: False)


def refusal(tmp_path, tasks_=None, models_=None) -> str:
    """The ConfigError message for the smoke config with its tasks and/or models replaced."""
    with pytest.raises(ConfigError) as refused:
        passes(tmp_path, tasks_, models_)
    return str(refused.value)


class Sign(LastStepClassification):
    """A correct task (the README's): the sign of the first input, after `gap` noisy steps."""

    input_size = 1

    def __init__(self, gap, *, noise=0.1):
        super().__init__(gap)
        self.noise, self.output_size = float(noise), 2

    @property
    def seq_len(self):
        return self.gap + 1

    def sample(self, n, rng):
        y = rng.integers(0, 2, size=n)
        x = (self.noise * rng.standard_normal((n, self.seq_len, 1))).astype(np.float32)
        x[:, 0, 0] = 2.0 * y - 1.0
        return {"x": x, "y": y.astype(np.int64)}


class WideInput(Sign):
    input_size = 5  # declares 5 input channels, draws 4: training's first matmul would fail

    def sample(self, n, rng):
        return {"x": np.zeros((n, self.seq_len, 4), np.float32), "y": np.zeros(n, np.int64)}


class ClassOutOfRange(Sign):
    def sample(self, n, rng):
        return {"x": np.zeros((n, self.seq_len, 1), np.float32), "y": np.full(n, 6, np.int64)}


class FloatLabels(Sign):
    def sample(self, n, rng):
        return {"x": np.zeros((n, self.seq_len, 1), np.float32), "y": np.zeros(n, np.float32)}


class MatrixTarget(LastStepRegression):
    input_size = 1

    @property
    def seq_len(self):
        return self.gap + 1

    @property
    def baseline(self):
        return 1.0

    def sample(self, n, rng):  # one target per step, not per sequence: the loss would broadcast
        return {"x": np.zeros((n, self.seq_len, 1), np.float32), "y": np.zeros((n, self.seq_len), np.float32)}


class NoLength(Sign):
    seq_len = Sign.__base__.seq_len  # the base's, which only raises NotImplementedError


class NoInputSize(LastStepClassification):
    def __init__(self, gap):
        super().__init__(gap)
        self.output_size = 2

    @property
    def seq_len(self):
        return self.gap + 1


class NoBaseline(MatrixTarget):  # a regression must say what its memoryless predictor scores
    baseline = LastStepRegression.baseline

    def sample(self, n, rng):
        return {"x": np.zeros((n, self.seq_len, 1), np.float32), "y": np.zeros(n, np.float32)}


class NoSample(NoInputSize):  # a method left unwritten, not only a property
    input_size = 1


class OptionRenamed(Sign):
    def __init__(self, gap, *, noise=0.1):
        super().__init__(gap)
        del self.noise
        self.sigma = float(noise)  # params() reads self.noise: what every dataset records


class SignedLabels(Sign):
    def sample(self, n, rng):  # the classes as signs: most of a two-sequence sample could be +1 only
        sample = super().sample(n, rng)
        return {**sample, "y": 2 * sample["y"] - 1}


class RareInfinity(Sign):
    def sample(self, n, rng):  # one sequence in eight scaled by 1/0
        sample = super().sample(n, rng)
        sample["x"][::8, 0, 0] = np.inf
        return sample


class Unseeded(Sign):
    def sample(self, n, rng):  # a generator of its own: the dataset is no longer its seed's
        return super().sample(n, np.random.default_rng())


class FixedSeed(Sign):
    def sample(self, n, rng):  # a generator of its own, seeded: every split and seed the same sequences
        return super().sample(n, np.random.default_rng(42))


TASK_CASES = [
    ("no seq_len", NoLength, ["seq_len is not defined (every task provides it: Task in tasks/_base.py)"]),
    ("no input_size", NoInputSize, ["input_size is not defined"]),
    ("a regression without a baseline", NoBaseline, ["baseline is not defined"]),
    ("no sample method", NoSample, ["sample(32, rng) failed: NotImplementedError: NoSample does not define "
                                    "sample(n, rng) (every task provides it: Task in tasks/_base.py)"]),
    ("an option kept under another name", OptionRenamed,
     ["params failed: AttributeError: OptionRenamed keeps no attribute for its option 'noise': set self.noise in "
      "__init__"]),

    ("wrong x shape", WideInput, ["sample x must be float32 of shape (n, seq_len, input_size) = (32, 4, 5)",
                                  "got float32 of shape (32, 4, 4)"]),
    ("class out of range", ClassOutOfRange, ["classes [6]", "[0, output_size = 2)"]),
    ("float labels for a classification", FloatLabels, ["y must be int64 of shape (n,) = (32,)", "got float32"]),
    ("a target per step for a last-step regression", MatrixTarget,
     ["y must be floats of shape (n,) = (32,)", "got float32 of shape (32, 4)"]),
    ("labels -1 and +1", SignedLabels, ["classes [-1, 1]", "[0, output_size = 2)"]),
    ("an inf in one sequence of eight", RareInfinity,
     ["sample(32, rng) drew non-finite values in x", "reported as diverged"]),
    ("draws from an unseeded generator", Unseeded,
     ["sample(32, rng) drew another sample from the same seed", "not np.random's functions or a new default_rng()"]),
    ("draws from a generator of its own with a fixed seed", FixedSeed,
     ["sample(32, rng) drew the same sequences from two different seeds", "training, validation and test sets",
      "not a default_rng(42) of its own"]),
]


@pytest.mark.parametrize("label, builder, expected", TASK_CASES, ids=[case[0] for case in TASK_CASES])
def test_a_task_breaking_its_declared_shapes_is_refused_naming_its_file(tmp_path, label, builder, expected):
    with registered(tasks, "preflight_task", builder):
        message = refusal(tmp_path, tasks_=[{"name": "preflight_task", "gaps": [3]}])
    for fragment in ["tasks[preflight_task] (gap 3)", "task 'preflight_task'", f"({HERE})", *expected]:
        assert fragment in message, f"{label}: {fragment!r} not in\n{message}"
    assert "\n" not in message


def test_a_task_whose_gap_changes_nothing_is_refused(tmp_path):
    class FixedLength(Sign):
        @property
        def seq_len(self):  # the gap forgotten: every gap of the grid would be one task
            return 6

    with registered(tasks, "preflight_task", FixedLength):
        message = refusal(tmp_path, tasks_=[{"name": "preflight_task", "gaps": [3, 4]}])
    for fragment in ["tasks[preflight_task].gaps", f"({HERE})", "gaps 3 and 4 give the same task (seq_len 6"]:
        assert fragment in message, message
    class MaskedAtFour(FixedLength):
        def sample(self, n, rng):  # one more array at gap 4: another task, though seq_len is the same
            sample = super().sample(n, rng)
            return {**sample, "mask": np.ones(n, np.float32)} if self.gap == 4 else sample

    class ScoredAtTheGap(FixedLength):
        @property
        def probe_step(self):  # one stream, scored at step `gap`: the gap changes what the loss reads
            return self.gap

    for builder in (Sign, MaskedAtFour, ScoredAtTheGap):  # at gaps it tells apart, or at one gap
        with registered(tasks, "preflight_task", builder):
            for gaps in ([3], [3, 4]):
                passes(tmp_path, tasks_=[{"name": "preflight_task", "gaps": gaps}])


def test_a_correct_task_passes(tmp_path):
    with registered(tasks, "preflight_task", Sign):
        passes(tmp_path, tasks_=[{"name": "preflight_task", "gaps": [3]}])


class Tanh(RecurrentModel):
    def __init__(self, input_size, hidden_size, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        self.weight = torch.nn.Linear(input_size + hidden_size, hidden_size)

    def step(self, state, x_t):
        return torch.tanh(self.weight(torch.cat([x_t, state], -1)))


class ForwardFails(Tanh):
    def forward(self, x, h0=None):
        return torch.nn.functional.linear(x, self.weight.weight)  # the input alone: wrong width


class SizesForgotten(Tanh):
    def __init__(self, input_size, hidden_size, **kwargs):
        RecurrentModel.__init__(self)  # the sizes not handed on


class InPlace(Tanh):
    def step(self, state, x_t):  # the state updated in place: fine without gradients, not with them
        return state.mul_(0.5).add_(torch.tanh(self.weight(torch.cat([x_t, state], -1))))


class Leaky(Tanh):
    def __init__(self, input_size, hidden_size, *, leak=0.5, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        self.rate = leak  # kept under another name than its option's


class ForwardOfAnotherNetwork(Tanh):
    def forward(self, x, h0=None):  # a fused forward that drifted from step: one more tanh
        output, h_n = super().forward(x, h0)
        return torch.tanh(output), h_n


class LayerMadeLate(Tanh):
    def step(self, state, x_t):  # made on first use: after the optimiser took the parameters
        if not hasattr(self, "late"):
            self.late = torch.nn.Linear(self.hidden_size, self.hidden_size)
        return self.late(super().step(state, x_t))


class DoubleDecay(Tanh):
    def __init__(self, input_size, hidden_size, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        self.decay = torch.nn.Parameter(torch.from_numpy(np.full(hidden_size, 0.9)))  # float64

    def step(self, state, x_t):
        return self.decay * super().step(state, x_t)


class LayersInAList(Tanh):
    def __init__(self, input_size, hidden_size, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        self.layers = [torch.nn.Linear(hidden_size, hidden_size)]  # not registered: .double() misses it

    def step(self, state, x_t):
        return self.layers[0](super().step(state, x_t))


class NormOfTheState(Tanh):
    def step(self, state, x_t):  # |s| as sqrt(s²): its derivative at s = 0 (the initial state) is 0/0
        return 0.5 * torch.sqrt(state * state) + super().step(state, x_t)


class StepReturnsTwo(Tanh):
    def step(self, state, x_t):
        new = super().step(state, x_t)
        return new, new


class OldStyleTanh(torch.autograd.Function):
    """tanh with its own backward, written without setup_context: autograd runs it, torch.func not."""

    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return a.tanh()

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * (1 - a.tanh() ** 2)


class CustomBackward(Tanh):
    def step(self, state, x_t):
        return OldStyleTanh.apply(self.weight(torch.cat([x_t, state], -1)))


class ObserveBranches(Tanh):
    def observe(self, state):  # an `if` on a value: training runs it, the probes' vmap cannot
        return state if state.sum() > -1e9 else -state


class PositionalOption(Tanh):
    def __init__(self, input_size, hidden_size, leak=0.5, **kwargs):  # no *: leak is no option
        super().__init__(input_size, hidden_size, **kwargs)
        self.leak = leak


MODEL_CASES = [
    ("forward fails", ForwardFails, ["forward failed on an input of shape (batch, time, input_size) = (2, 3, ",
                                     "RuntimeError",  # and the model's line it failed in (inside torch)
                                     f"(in {HERE}, line {ForwardFails.forward.__code__.co_firstlineno + 1})"]),
    ("the base class's sizes forgotten", SizesForgotten,
     ["failed to build with options {}: TypeError: RecurrentModel.__init__() missing 2 required positional"]),
    ("the state updated in place", InPlace,
     ["backward through", "failed on an input of shape (batch, time, input_size) = (2, 3, ", "in-place operation"]),
    ("an option kept under another name", Leaky,
     ["options() failed: AttributeError: Leaky keeps no attribute for its option 'leak': set self.leak in __init__"]),
    ("forward another network than step", ForwardOfAnotherNetwork,
     ["forward's output is not its step unrolled", "training reads forward and the probes step"]),
    ("a layer made on first use", LayerMadeLate, ["parameters ['late.bias', 'late.weight'] were made while the model "
                                                  "ran: make every layer in __init__"]),
    ("a float64 parameter", DoubleDecay, ["parameter decay is torch.float64: make every parameter float32"]),
    ("layers in a plain list", LayersInAList,
     ["step of the float64 copy the probes use (model.double().eval()) failed", "in nn.ModuleList", "RuntimeError"]),
    ("a NaN derivative at the initial state", NormOfTheState,
     ["the gradient of step, by the state from initial_state is not finite"]),
    ("an autograd.Function torch.func cannot run", CustomBackward,
     ["the probes' linearisation (torch.func", "must override the setup_context staticmethod"]),
    ("data-dependent control flow in observe", ObserveBranches,
     ["the probes' linearisation (torch.func", "data-dependent control flow",
      f"(in {HERE}, line {ObserveBranches.observe.__code__.co_firstlineno + 1})"]),
    ("step returns a tuple", StepReturnsTwo, ["step must have shape (2, 8) (hidden_size 8, state_size 8)",
                                              "got tuple"]),
]


@pytest.mark.parametrize("label, builder, expected", MODEL_CASES, ids=[case[0] for case in MODEL_CASES])
def test_a_model_that_fails_on_a_tiny_input_is_refused_naming_its_file(tmp_path, label, builder, expected):
    with registered(models, "preflight_model", builder):
        message = refusal(tmp_path, models_=[{"name": "preflight_model"}])
    for fragment in ["models[preflight_model]", "model 'preflight_model'", f"({HERE})", *expected]:
        assert fragment in message, f"{label}: {fragment!r} not in\n{message}"
    assert "\n" not in message


def test_a_value_error_from_a_bug_in_a_builder_names_its_line(tmp_path):
    """A ValueError is read as a refusal of the config's options (the key is named), and where it
    was raised in the builder's own file, its file and line are named too: a bug there (here
    int("sixty-four")) is found from the message. A shared check's refusal (tasks/_base.py) is the
    option's own message, without a line of the task's."""
    class BadInit(Tanh):
        def __init__(self, input_size, hidden_size, **kwargs):
            super().__init__(input_size, hidden_size, **kwargs)
            self.width = int("sixty-four")

    line = BadInit.__init__.__code__.co_firstlineno + 2
    with registered(models, "preflight_model", BadInit):
        message = refusal(tmp_path, models_=[{"name": "preflight_model"}])
    assert message.endswith(f"models[preflight_model].options: invalid literal for int() with base 10: 'sixty-four' "
                            f"(raised in {HERE}, line {line})"), message
    message = refusal(tmp_path, tasks_=[{"name": "latch", "gaps": [3], "params": {"classes": 1}}])
    assert "classes" in message and "raised in" not in message, message


def test_a_model_with_dropout_passes(tmp_path):
    """Training mode draws dropout masks, so forward and step unrolled differ there; the float64
    copy is compared in eval mode, as the probes take it."""
    class Dropping(Tanh):
        def __init__(self, input_size, hidden_size, **kwargs):
            super().__init__(input_size, hidden_size, **kwargs)
            self.dropout = torch.nn.Dropout(0.1)

        def step(self, state, x_t):
            return super().step(state, self.dropout(x_t))

    with registered(models, "preflight_model", Dropping):
        passes(tmp_path, models_=[{"name": "preflight_model"}])


def test_a_model_with_a_random_initial_state_passes(tmp_path):
    """forward and step unrolled are compared on the same random draws: a random initial state
    is one map started from a random point, not two maps (it was refused as one)."""
    class RandomStart(Tanh):
        def initial_state(self, batch, like):
            return 0.1 * torch.randn(batch, self.state_size, dtype=like.dtype)

    with registered(models, "preflight_model", RandomStart):
        passes(tmp_path, models_=[{"name": "preflight_model"}])


def test_an_option_taken_positionally_is_told_to_be_keyword_only(tmp_path):
    with registered(models, "preflight_model", PositionalOption):
        message = refusal(tmp_path, models_=[{"name": "preflight_model", "options": {"leak": 0.2}}])
    assert message == ("config key models[preflight_model].options: unknown option(s) ['leak'] for model "
                       f"'preflight_model'; allowed: [] ({HERE} takes ['leak'] as positional arguments: options "
                       "are the keyword-only arguments of __init__, after its *)"), message


def test_a_misspelt_option_is_named_with_the_file_and_the_option_meant(tmp_path):
    message = refusal(tmp_path, models_=[{"name": "vanilla", "options": {"activaton": "relu"}}])
    assert message == ("config key models[vanilla].options: unknown option(s) ['activaton'] for model 'vanilla'; "
                       "allowed: ['activation', 'init', 'init_gain', 'input_std'] (models/vanilla.py); did you mean "
                       "'activation' for 'activaton'?"), message


def test_a_model_whose_step_returns_the_wrong_shape_is_refused(tmp_path):
    class StepOneShort(Tanh):
        def forward(self, x, h0=None):
            return self.loop(super().step, x, h0)  # right: only step, what the probes use, is wrong

        def step(self, state, x_t):
            return super().step(state, x_t)[:, :-1]

    with registered(models, "preflight_model", StepOneShort):
        message = refusal(tmp_path, models_=[{"name": "preflight_model"}])
    for fragment in [f"({HERE})", "step must have shape (2, 8) (hidden_size 8, state_size 8)", "got shape (2, 7)"]:
        assert fragment in message, message


def test_a_name_registered_twice_names_both_files():
    with pytest.raises(ValueError) as refused:
        models.register("vanilla")(Tanh)
    assert str(refused.value) == (f"model 'vanilla' is registered twice: by models/vanilla.py and by {HERE}; "
                                  "rename one")
    assert models._registry.get("vanilla").__name__ != "Tanh"


@pytest.mark.parametrize("config", sorted(path.name for path in (ROOT / "config").glob("*.yaml")))
def test_every_shipped_config_passes_the_pre_flight_checks(config):
    load_config(ROOT / "config" / config, cores=2, cuda_available=lambda: True)


def test_an_option_missing_is_told_apart_from_one_whose_property_fails():
    """`registry.option_values`: a name the class never defines is the 'set self.X' message; a
    property of that name that fails raises its own error, not that misleading advice."""
    from gapbench.registry import option_values

    class Failing(Tanh):
        @property
        def leak(self):
            raise AttributeError("inner")

    model = Failing(1, 4)
    with pytest.raises(AttributeError, match="keeps no attribute for its option 'rate': set self.rate in __init__"):
        option_values(model, ["rate"])
    with pytest.raises(AttributeError, match="^inner$"):  # its own error, not nn.Module's "has no attribute"
        option_values(model, ["leak"])


def test_a_file_that_cannot_be_imported_is_named_where_it_failed(tmp_path, monkeypatch):
    """A registry imports every public module of its package; one that fails is named with its
    error, and at the innermost of the package's files in the traceback: a helper the model
    imports, where the mistake is, not the model file that imported it."""
    import importlib

    from gapbench.registry import UnimportableFile

    package = tmp_path / "brokenmodels"
    package.mkdir()
    (package / "__init__.py").write_text("from gapbench.registry import Registry\n_registry = Registry(__name__, 'model')\n")
    (package / "_helper.py").write_text("SCALE = 2\n\nOFFSET = undefined_name + 1\n")
    (package / "uses_helper.py").write_text("from brokenmodels._helper import SCALE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(UnimportableFile) as refused:
            importlib.import_module("brokenmodels")._registry.names()
    finally:
        for module in [m for m in sys.modules if m == "brokenmodels" or m.startswith("brokenmodels.")]:
            del sys.modules[module]
    assert str(refused.value) == (f"model file {package / '_helper.py'} (line 3) cannot be imported: NameError: "
                                  "name 'undefined_name' is not defined")


def test_a_name_nothing_registers_names_a_near_one_and_the_file_of_that_name(tmp_path, monkeypatch):
    """A model file whose class lacks its @register, or registers another spelling: the unknown
    name is answered with the near name and what the file of that name registers."""
    import importlib

    package = tmp_path / "somemodels"
    package.mkdir()
    (package / "__init__.py").write_text("from gapbench.registry import Registry\n_registry = Registry(__name__, 'model')\n"
                                         "register = _registry.register\n")
    (package / "leaky.py").write_text("from somemodels import register\n\n@register('Leaky')\nclass Leaky:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        registry = importlib.import_module("somemodels")._registry
        assert registry.unknown("leaky") == (
            f"unknown model 'leaky'; allowed: ['Leaky']; did you mean 'Leaky'?; {package / 'leaky.py'} registers "
            "['Leaky']: use that name")
        assert registry.unknown("transformer") == "unknown model 'transformer'; allowed: ['Leaky']"
        (package / "gated.py").write_text("class Gated:\n    pass\n")  # the decorator forgotten
        registry._discovered = False
        assert registry.unknown("gated") == (f"unknown model 'gated'; allowed: ['Leaky']; {package / 'gated.py'} "
                                             "registers nothing: its class needs @register('gated')")
    finally:
        for module in [m for m in sys.modules if m == "somemodels" or m.startswith("somemodels.")]:
            del sys.modules[module]
    assert models._registry.unknown("_elementwise").endswith("allowed: " + str(models.names()))  # shared code


def test_tasks_and_models_from_another_checkout_are_refused(tmp_path):
    """gapbench from one checkout and its models from another (two clones sharing one
    environment's editable install) is named before any job; one checkout passes, as installed
    (models inside the package) or as a source tree (models beside it)."""
    from types import SimpleNamespace

    from gapbench.config import check_one_checkout

    def module(path, name="gapbench.models"):
        path.parent.mkdir(parents=True, exist_ok=True)
        return SimpleNamespace(__file__=str(path), __name__=name)

    here, there = tmp_path / "clone", tmp_path / "main"
    gapbench = module(here / "gapbench" / "__init__.py", "gapbench")
    check_one_checkout(gapbench, module(here / "models" / "__init__.py"))  # a source tree
    check_one_checkout(gapbench, module(here / "gapbench" / "models" / "__init__.py"))  # installed
    with pytest.raises(ConfigError) as refused:
        check_one_checkout(gapbench, module(there / "models" / "__init__.py"))
    assert str(refused.value) == (f"gapbench is imported from {here / 'gapbench'} but gapbench.models from "
                                  f"{there / 'models'}: two checkouts share this environment; run `pip install -e .` "
                                  "in the one you mean to run (or run from the installed one)")
    check_one_checkout()  # this checkout
