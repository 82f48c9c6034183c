"""The linear RNN: φ = identity, with a free, trained W_h."""
from gapbench.models import register
from gapbench.models._elementwise import FreeRNN


@register("linear")
class LinearRNN(FreeRNN):
    """φ = identity: J_l = W_h (D_l = I), so gradients scale exactly like powers of W_h."""

    default_activation = "linear"
