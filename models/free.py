"""RNNs with a free, trained recurrent matrix W_h: vanilla (tanh), linear and IRNN."""
from gapbench.models import register
from gapbench.models._elementwise import ElementwiseRNN, init_recurrent_

import torch
from torch import nn


class FreeRNN(ElementwiseRNN):
    """h_t = φ(W_h h_{t-1} + W_in x_t + b) with W_h a trained parameter."""

    default_activation, default_init = "tanh", "uniform"

    def __init__(self, input_size, hidden_size, *, activation=None, init=None, init_gain=1.0, batch_first=True):
        super().__init__(input_size, hidden_size, activation or self.default_activation, batch_first)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        init_recurrent_(self.weight_hh, init or self.default_init, init_gain)

    def recurrent_weight(self):
        return self.weight_hh


@register("vanilla")
class VanillaRNN(FreeRNN):
    """Elman RNN: tanh, W_h initialised like torch.nn.RNN (Bengio et al. 1994's setting)."""


@register("linear")
class LinearRNN(FreeRNN):
    """φ = identity: J_l = W_hᵀ, so gradients scale exactly like powers of W_h."""

    default_activation = "linear"


@register("irnn")
class IRNN(FreeRNN):
    """ReLU with W_h initialised to the identity (Le, Jaitly & Hinton 2015)."""

    default_activation, default_init = "relu", "identity"
