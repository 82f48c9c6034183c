"""The shape of the package: no import circle, a results contract that depends on nothing, and
what determines a run's numbers separated by folder from what only reads results."""
import ast
from pathlib import Path

from conftest import ROOT

PACKAGES = {"gapbench": ROOT / "gapbench", "gapbench.models": ROOT / "models", "gapbench.tasks": ROOT / "tasks"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, name: str, modules) -> set[str]:
    """The gapbench modules `path` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in modules and target != name}
    return found


def _graph():
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_the_import_graph_finder_sees_known_edges():
    graph = _graph()
    assert "gapbench.results" in graph["gapbench.runstore"]
    assert "gapbench.models._base" in graph["gapbench.models._elementwise"]
    assert "gapbench.reports.tables" in graph["gapbench.reports.figures"]


def test_no_import_circle():
    """Module-level and function-level imports alike: a circle is a design smell even when a
    lazy import keeps it from failing."""
    graph, state, path = _graph(), {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            # a package's __init__ importing its own submodules (a registry discovering them) is not a circle
            if target.startswith(node + "."):
                continue
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_results_contract_depends_on_nothing():
    """gapbench.results imports only the standard library, so that anything can import it."""
    tree = ast.parse((ROOT / "gapbench" / "results.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module and node.level == 0}
    import sys

    assert imported and imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_core_never_imports_reports():
    """What determines a run's numbers (gapbench outside gapbench/reports/, the models and the
    tasks) never imports what only reads results: the run-cache key leaves reports/ out."""
    graph = _graph()
    core = [name for name in graph if not name.startswith("gapbench.reports") and name != "gapbench.cli"]
    offenders = {name: sorted(t for t in graph[name] if t.startswith("gapbench.reports")) for name in core}
    assert not {name: targets for name, targets in offenders.items() if targets}


def test_no_module_shadows_the_standard_library():
    """A module named like one of the standard library's (io, copy) is one `sys.path` entry away
    from shadowing it, and confuses every reader of an import line."""
    import sys

    names = {path.stem for folder in PACKAGES.values() for path in folder.rglob("*.py")} - {"__init__", "__main__"}
    assert names and not names & set(sys.stdlib_module_names)
