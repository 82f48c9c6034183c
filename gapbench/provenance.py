"""What made a result: the code version, the digest of the source that determines a run's
numbers (the run-cache key), and the library versions and machine."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent
# Everything in gapbench/ determines a run's numbers except this folder, whose modules only
# read finished results or plan a grid (tables, figures, paper tables, the literature judge,
# the cost estimate, the early-stopping replay): editing them cannot change a run, so they
# stay out of the run-cache key. A new module anywhere else is in it.
READS_RESULTS = PACKAGE_ROOT / "reports"


SOURCE_FILES = ("gapbench/*.py", "models/*.py", "tasks/*.py")  # git pathspecs ("*" also matches "/")


def code_version() -> str:
    """`git describe --always --dirty` of the source tree, with "-untracked" where a source file
    is in no commit (a model or task file just added: `--dirty` sees only tracked files); outside
    git, the package version, with "+g<hash>-copy" where the environment's GAPBENCH_COMMIT names
    the commit the tree was copied from (a GPU machine gets a copy without .git). The run's
    train_code_digest pins the code either way."""
    from gapbench import __version__

    def git(*args):
        return subprocess.run(["git", *args], cwd=PACKAGE_ROOT.parent, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        described = git("describe", "--always", "--dirty", "--abbrev=12")
        untracked = git("ls-files", "--others", "--exclude-standard", "--", *SOURCE_FILES)
        return f"{__version__}+g{described}" + ("-untracked" if untracked else "")
    except (OSError, subprocess.SubprocessError):
        copied_from = os.environ.get("GAPBENCH_COMMIT", "").strip()
        return f"{__version__}+g{copied_from}-copy" if copied_from else __version__


def _sources(package) -> list[Path]:
    """The .py files of an imported package that can change a run's numbers: all of them but
    READS_RESULTS, sorted."""
    root = Path(package.__file__).parent
    return [path for path in sorted(root.rglob("*.py")) if READS_RESULTS not in path.parents]


def _label(package, path: Path) -> str:
    """A file's name in a digest: its package and path inside it, so that the digest does not
    depend on where the checkout lies (a copy of the project hashes the same)."""
    return f"{package.__name__}/{path.relative_to(Path(package.__file__).parent).as_posix()}"


# Per-job code digests, for Snakemake and the run cache: a rule's `params` holds the digest of
# the code that determines its outputs, and Snakemake's params rerun trigger reruns exactly the
# jobs whose digest changed (it does not watch the Python modules a job imports); the run cache
# keys a run on its training job's digest (gapbench.job.run_key), so the two agree on what a run
# depends on. Editing one model reruns that model's jobs, not the grid.
# Digests are cached per process (a DAG asks once per job; a Snakemake process sees one state
# of the source).


@functools.lru_cache(maxsize=None)
def _file_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digest(files: set) -> str:
    """SHA-256 over (label, content digest) of each (package, path) in `files`, in label order."""
    import hashlib

    digest = hashlib.sha256()
    for label, path in sorted((_label(package, path), path) for package, path in files):
        digest.update(f"{label}\0{_file_digest(path)}\0".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)  # a DAG asks once per job: per (task, model) pair, many times per name
def _defining_files(package, name: str) -> frozenset:
    """The files that define registered `name` of `package` (gapbench.tasks or gapbench.models):
    the file of its class and of every base class inside the package (a subclass of another
    task inherits its code), every file inside the package those files import, and theirs in
    turn (a model's helpers: a sibling module, the submodules of a model that is a package),
    plus the package's shared files, those whose name starts with '_' (the base classes, the
    registry, helpers such as tasks/_sampling.py)."""
    root = Path(package.__file__).parent
    files = {path for path in root.glob("_*.py")}
    for klass in package._registry.get(name).__mro__:
        source = getattr(sys.modules.get(klass.__module__), "__file__", None)  # None: a built-in
        if source is not None and root in Path(source).parents:
            files.add(Path(source))
    unread = set(files)
    while unread:
        found = _imports_inside(unread.pop(), package.__name__, root) - files
        files |= found
        unread |= found
    return frozenset((package, path) for path in files)


@functools.lru_cache(maxsize=None)
def _imports_inside(path: Path, package_name: str, root: Path) -> frozenset[Path]:
    """The files under `root` (the folder of package `package_name`) of the modules that the
    module at `path` imports, read from its source (`import x`, `from x import y`, relative
    imports; y counts where it is a module), among the modules loaded."""
    import ast
    import importlib.util

    parts = path.relative_to(root).with_suffix("").parts
    module = ".".join((package_name, *(parts[:-1] if parts[-1] == "__init__" else parts)))
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            try:
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), here)
            except (ImportError, ValueError):  # beyond the top package: it did not import
                continue
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    sources = (getattr(sys.modules.get(name), "__file__", None) for name in names)
    return frozenset(Path(source) for source in sources if source is not None and root in Path(source).parents)


@functools.lru_cache(maxsize=None)
def data_code_digest(task: str) -> str:
    """Digest of the code that makes registered task `task`'s datasets: the task's defining files
    (`_defining_files`) and gapbench/data.py (the writer)."""
    import gapbench
    from gapbench import tasks

    return _digest(_defining_files(tasks, task) | {(gapbench, PACKAGE_ROOT / "data.py")})


@functools.lru_cache(maxsize=None)
def train_code_digest(task: str, model: str) -> str:
    """Digest of the code that determines a training job of registered task `task` and model
    `model`: the model's and the task's defining files (`_defining_files`) and gapbench's core,
    every .py file of gapbench/ outside READS_RESULTS (training, probes, engine, the job). It
    leaves out other tasks and models."""
    import gapbench
    from gapbench import models, tasks

    core = {(gapbench, path) for path in _sources(gapbench)}
    return _digest(_defining_files(models, model) | _defining_files(tasks, task) | core)


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
