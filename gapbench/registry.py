"""A name → builder registry shared by `tasks` and `models` (one mechanism for both)."""
from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import traceback
from pathlib import Path


class UnimportableFile(ImportError):
    """A task or model file that fails to import: named, with its error and line, in one line."""


class Registry:
    """Builders registered by name; modules of the owning package are imported on first use.

    Adding a task or model is one new module in the package that decorates its class
    with `@register("name")`: discovery imports every module whose name does not start
    with an underscore, so nothing else needs editing.
    """

    def __init__(self, package: str, kind: str):
        self._package = package
        self._kind = kind
        self._builders: dict[str, type] = {}
        self._discovered = False

    def register(self, name: str):
        def decorator(builder):
            if name in self._builders and self._builders[name] is not builder:
                raise ValueError(f"{self._kind} {name!r} is registered twice: by {source_file(self._builders[name])} "
                                 f"and by {source_file(builder)}; rename one")
            self._builders[name] = builder
            builder.registry_name = name
            return builder

        return decorator

    def _discover(self):
        if self._discovered:
            return
        package = importlib.import_module(self._package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                try:
                    importlib.import_module(f"{self._package}.{module.name}")
                except Exception as error:  # noqa: BLE001 - a user's file: any failure is named with it
                    # the file at fault: the innermost of the package's files in the traceback (a
                    # model's helper or submodule), else the module's own
                    where = raised_in(error, module.module_finder.path)
                    own = Path(module.module_finder.path) / module.name / "__init__.py" if module.ispkg else \
                        Path(module.module_finder.path) / f"{module.name}.py"
                    named = f"{_shown(where[0])} (line {where[1]})" if where else _shown(own)
                    raise UnimportableFile(f"{self._kind} file {named} cannot be imported: "
                                           f"{type(error).__name__}: {error}") from error
        self._discovered = True

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._builders)

    def get(self, name: str):
        self._discover()
        if name not in self._builders:
            raise ValueError(self.unknown(name))
        return self._builders[name]

    def unknown(self, name: str) -> str:
        """What to say of a name nothing registered: the registered names, a near one, and where a
        file of the package has that name, what it registers (a class without its @register)."""
        said = f"unknown {self._kind} {name!r}; allowed: {self.names()}"
        near = _nearest(name, self.names())
        if near:
            said += f"; did you mean {near!r}?"
        package = importlib.import_module(self._package)
        for folder in package.__path__ if not name.startswith("_") else []:  # _*.py: shared code, never a builder
            file = Path(folder) / f"{name}.py"
            if file.is_file():
                there = sorted(n for n, builder in self._builders.items() if builder.__module__ == f"{self._package}.{name}")
                said += (f"; {_shown(file)} registers {there}: use {'that name' if len(there) == 1 else 'one of them'}"
                         if there else f"; {_shown(file)} registers nothing: its class needs @register({name!r})")
        return said

    def options(self, name: str) -> list[str]:
        """The keyword options `name` accepts (what a config entry's `params`/`options` may set)."""
        return options_of(self.get(name))

    def defaults(self, name: str) -> dict:
        """Each keyword option of `name` with the value it takes when a config does not set it."""
        params = inspect.signature(self.get(name)).parameters
        return {option: params[option].default for option in declared_options(self.get(name))}

    def build(self, name: str, *args, **options):
        builder = self.get(name)
        allowed = options_of(builder)
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            parameters = inspect.signature(builder).parameters
            positional = [option for option in unknown if option in parameters and parameters[option].kind in
                          (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            near = {option: _nearest(option, allowed) for option in unknown}
            raise ValueError(
                f"unknown option(s) {unknown} for {self._kind} {name!r}; allowed: {allowed}" + (
                    f" ({source_file(builder)} takes {positional} as positional arguments: options are the "
                    "keyword-only arguments of __init__, after its *)" if positional else
                    f" ({source_file(builder)})") + "".join(
                    f"; did you mean {near[option]!r} for {option!r}?" for option in unknown if near[option])
            )
        defaults = {p.name: p.default for p in inspect.signature(builder).parameters.values()}
        options = {option: _checked(f"{self._kind} {name!r}: option {option}", value, defaults.get(option))
                   for option, value in options.items()}
        return builder(*args, **options)


def _nearest(word: str, choices) -> str | None:
    """The choice closest to a misspelt `word` (difflib's ratio, at least 0.6), or None."""
    import difflib

    near = difflib.get_close_matches(word, list(choices), n=1)
    return near[0] if near else None


def source_path(builder) -> Path | None:
    """The file that defines a registered class (or function); None where no file holds it (a
    built-in, exec)."""
    try:
        source = inspect.getsourcefile(builder)
    except TypeError:  # a built-in
        return None
    return None if source is None else Path(source)


def source_file(builder) -> str:
    """`source_path`, relative to the project's root where it lies inside it: what a message
    about user code names."""
    source = source_path(builder)
    return f"module {builder.__module__}" if source is None else _shown(source)


def _shown(path: Path) -> str:
    """`path` relative to the project's root where it lies inside it."""
    path, root = path.resolve(), Path(__file__).resolve().parent.parent
    return path.relative_to(root).as_posix() if root in path.parents else str(path)


def raised_in(error: BaseException, place, innermost: bool = False) -> tuple[Path, int] | None:
    """(file, line) of the innermost frame of `error`'s traceback in file `place`, or in a file
    under folder `place` (with `innermost`, only where that is the traceback's last frame: the
    error was raised there); None where no frame is (a SyntaxError never ran: its message has
    the file and line)."""
    place = Path(place).resolve()
    frames = list(traceback.walk_tb(error.__traceback__))
    for frame, line in reversed(frames[-1:] if innermost else frames):
        path = Path(frame.f_code.co_filename).resolve()
        if path == place or place in path.parents:
            return path, line
    return None


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _checked(what: str, value, default):
    """`value` if it is of the kind of value its option's default is: a number for a numeric
    default (an integer for an integer one; a whole float such as YAML's 4.0, which JSON Schema
    also counts as an integer, is handed on as the int 4, so the builder sees what it declared),
    a bool for a bool, a string for a string; else a ValueError. The builder checks ranges and
    allowed values. Options without a default, or defaulting to None, are not checked."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        ok, wanted = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, wanted = number and _finite(value) and float(value).is_integer(), "an integer"
        value = int(value) if ok else value
    elif isinstance(default, float):
        ok, wanted = number and _finite(value), "a finite number"
    elif isinstance(default, str):
        ok, wanted = isinstance(value, str), "a string"
    else:
        return value
    if not ok:
        raise ValueError(f"{what} must be {wanted} (default {default!r}), got {value!r}")
    return value


def option_values(instance, names) -> dict:
    """Each option of `names` as `instance` keeps it, under the option's own name (what rebuilds
    it); an AttributeError that says what to set where one is missing."""
    values, undefined = {}, object()
    for name in names:
        try:
            values[name] = getattr(instance, name)
        except AttributeError:
            # a property (or other class attribute) of that name that failed is its own error; only
            # a name the class does not define at all was never set
            defined = inspect.getattr_static(type(instance), name, undefined)
            if isinstance(defined, property) and defined.fget is not None:
                defined.fget(instance)  # raises the property's own error again: nn.Module's __getattr__
                # answers a property's AttributeError with its generic "has no attribute" instead
            if defined is not undefined:
                raise
            raise AttributeError(f"{type(instance).__name__} keeps no attribute for its option {name!r}: "
                                 f"set self.{name} in __init__") from None
    return values


def options_of(builder) -> list[str]:
    """Keyword options a builder accepts, sorted: see `declared_options`."""
    return sorted(declared_options(builder))


def declared_options(builder) -> list[str]:
    """Keyword options a builder accepts, in the order its signature declares them: its keyword-only
    parameters, less `batch_first` (RecurrentModel's own argument, which a model may still name: the
    pipeline always feeds (batch, time, features) tensors, so it is no option of a run). A class
    may set `__signature__` (tasks taking the shared sampling options do, see tasks/_sampling.py
    `Sampled`): that is what is read then."""
    params = inspect.signature(builder).parameters.values()
    return [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "batch_first"]
