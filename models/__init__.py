"""Recurrent model families. `names()` lists them, `build(...)` makes one.

Every model is a torch.nn.Module with torch.nn.RNN's interface:
`forward(x, h0=None) -> (output, h_n)`, x of shape (batch, time, features).
Add a model: one module here with a class decorated by `@register("name")`.
"""
from gapbench.registry import Registry

_registry = Registry(__name__, "model")
register = _registry.register
names = _registry.names


def build(name: str, input_size: int, hidden_size: int, **options):
    """Build model `name`; options are the keyword-only arguments of its class."""
    return _registry.build(name, input_size, hidden_size, **options)
