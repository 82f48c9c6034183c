"""Synthetic long-term-dependency tasks. `names()` lists them, `build(name, gap=...)` makes one.

Every task takes the dependency gap as its parameter, generates seeded data, and knows
its input/output sizes, loss, metric, scored positions and chance/memoryless baseline.
Add a task: one module here with a `Task` subclass decorated by `@register("name")`.
"""
from gapbench.registry import Registry

_registry = Registry(__name__, "task")
register = _registry.register
names = _registry.names
options = _registry.options
defaults = _registry.defaults


def build(name: str, gap: int, **params):
    """Build task `name` for dependency gap `gap`; params are its keyword-only options."""
    return _registry.build(name, gap, **params)
