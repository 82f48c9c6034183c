"""IRNN (Le, Jaitly & Hinton 2015): ReLU, with W_h initialised to the identity."""
from gapbench.models import register
from gapbench.models._elementwise import FreeRNN


@register("irnn")
class IRNN(FreeRNN):
    """ReLU with W_h initialised to the identity (Le, Jaitly & Hinton 2015)."""

    default_activation, default_init = "relu", "identity"
