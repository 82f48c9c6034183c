"""Recurrent model families. `names()` lists them, `build(...)` makes one, `Net` adds the readout.

Every model is a `RecurrentModel` (models/_base.py): torch.nn.RNN's interface
`forward(x, h0=None) -> (output, h_n)` with x of shape (batch, time, features), plus its
state update `step(state, x_t)`, from which the propagation probes work.
Add a model: one module here with a class decorated by `@register("name")`.
"""
from gapbench.models._base import Net, RecurrentModel
from gapbench.registry import Registry

_registry = Registry(__name__, "model")
register = _registry.register
names = _registry.names
options = _registry.options
defaults = _registry.defaults

__all__ = ["Net", "RecurrentModel", "build", "family", "names", "options", "register"]


def family(name: str) -> str:
    """The family a model belongs to (what figures group and colour by)."""
    return _registry.get(name).family


def build(name: str, input_size: int, hidden_size: int, **options):
    """Build model `name`; options are the keyword-only arguments of its class."""
    return _registry.build(name, input_size, hidden_size, **options)
