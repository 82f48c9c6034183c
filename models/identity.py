"""The lecture's "constant error propagation" model: φ = identity and W_h fixed to I."""
import torch

from gapbench.models import register
from gapbench.models._elementwise import ElementwiseRNN


@register("identity")
class IdentityRNN(ElementwiseRNN):
    """h_t = h_{t-1} + W_in x_t + b: J_l = I, so ||∂h_t/∂h_k|| = 1 for every lag,
    but every input is summed forever, so the state saturates with irrelevant inputs."""

    def __init__(self, input_size, hidden_size, **kwargs):
        super().__init__(input_size, hidden_size, "linear", **kwargs)
        self.register_buffer("weight_hh", torch.eye(hidden_size))

    def recurrent_weight(self):
        return self.weight_hh
