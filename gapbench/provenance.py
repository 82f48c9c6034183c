"""What made a result: the code version, the digest of the source that determines a run's
numbers (the run-cache key), and the library versions and machine."""
from __future__ import annotations

import functools
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


def code_version() -> str:
    """`git describe --always --dirty` of the source tree, or the package version outside git."""
    from gapbench import __version__

    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=PACKAGE_ROOT.parent, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return f"{__version__}+g{described}"
    except (OSError, subprocess.SubprocessError):
        return __version__


@functools.lru_cache(maxsize=1)  # a job trains several seeds: hash the source once per process
def source_digest() -> str:
    """SHA-256 over the source that makes a run: every .py file of gapbench outside
    READS_RESULTS, and of the tasks and models it loads (by relative path). The run cache keys on it, so
    that a change of that code, committed or not, makes earlier results unrestorable rather than
    silently reused."""
    import hashlib

    import gapbench
    from gapbench import models, tasks

    digest = hashlib.sha256()
    for package in (gapbench, tasks, models):
        root = Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            if READS_RESULTS in path.parents:
                continue
            digest.update(f"{package.__name__}/{path.relative_to(root).as_posix()}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


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
