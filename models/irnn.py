"""IRNN (Le, Jaitly & Hinton 2015): ReLU, with W_h initialised to the identity."""
from gapbench.models import register
from gapbench.models._elementwise import FreeRNN


@register("irnn")
class IRNN(FreeRNN):
    """ReLU with W_h initialised to the identity and biases 0 (Le, Jaitly & Hinton 2015). Their
    input weights are N(0, 0.001²): `input_std=0.001`; the default keeps torch.nn.RNN's
    U(−1/√H, 1/√H) of every elementwise model (FreeRNN), about 70 times their scale at H = 64."""

    default_activation, default_init = "relu", "identity"
