"""Recurrent model families. `names()` lists them, `build(...)` makes one, `Net` adds the readout.

Every model is a `RecurrentModel` (models/_base.py): torch.nn.RNN's interface
`forward(x, h0=None) -> (output, h_n)` with x of shape (batch, time, features), plus its
state update `step(state, x_t)`, from which the propagation probes work.
Add a model: one module here with a class decorated by `@register("name")`.
"""
import operator

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
    """Build model `name`; options are the keyword-only arguments of its class. The sizes are
    taken as Python integers: numpy integers (pandas' group keys, say) pass, which torch's own
    modules refuse; anything not an integer is refused here."""
    try:
        sizes = operator.index(input_size), operator.index(hidden_size)
    except TypeError:
        raise TypeError(f"model {name!r}: input_size and hidden_size must be integers, "
                        f"got {input_size!r}, {hidden_size!r}") from None
    return _registry.build(name, *sizes, **options)
