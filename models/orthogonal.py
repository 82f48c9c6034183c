"""RNN whose W_h stays orthogonal during training (Arjovsky et al. 2016; Lezcano-Casado 2019)."""
import torch
from torch import nn
from torch.nn.utils import parametrizations

from gapbench.models import register
from gapbench.models._elementwise import ElementwiseRNN


@register("orthogonal")
class OrthogonalRNN(ElementwiseRNN):
    """h_t = φ(Q h_{t-1} + W_in x_t + b), Q = B·exp(A − Aᵀ) orthogonal (B the random orthogonal
    initial matrix, A trained: torch's parametrisation with use_trivialization; `orthogonal_map:
    cayley` puts the Cayley map of A − Aᵀ in place of exp): ||J_l|| = 1 when φ is linear.

    `orthogonal_map` is any map torch.nn.utils.parametrizations.orthogonal accepts.
    """

    family = "orthogonal/unitary"
    # its orthogonal maps (matrix_exp; cayley's linalg.solve) read values on the host on CUDA: no CUDA graph
    graph_capturable = False

    def __init__(self, input_size, hidden_size, *, activation="linear", orthogonal_map="matrix_exp", **kwargs):
        super().__init__(input_size, hidden_size, activation, **kwargs)
        self.orthogonal_map = orthogonal_map
        holder = nn.Module()
        holder.weight = nn.Parameter(nn.init.orthogonal_(torch.empty(hidden_size, hidden_size)))
        self.recurrent = parametrizations.orthogonal(holder, "weight", orthogonal_map=orthogonal_map)

    def recurrent_weight(self):
        return self.recurrent.weight
