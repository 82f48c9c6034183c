"""The Elman RNN: tanh, with a free, trained W_h initialised like torch.nn.RNN."""
from gapbench.models import register
from gapbench.models._elementwise import FreeRNN


@register("vanilla")
class VanillaRNN(FreeRNN):
    """Elman RNN: tanh, W_h initialised like torch.nn.RNN (Bengio et al. 1994's setting)."""
