"""Independently recurrent neural network (Li et al. 2018): one recurrent weight per unit."""
from __future__ import annotations

import torch
from torch import nn

from gapbench.models import register
from gapbench.models._elementwise import ElementwiseRNN


@register("indrnn")
class IndRNN(ElementwiseRNN):
    """h_t = relu(W_in x_t + u ⊙ h_{t-1} + b), u a vector: W_h = diag(u).

    Li, Li, Cook, Zhu & Gao 2018, "Independently Recurrent Neural Network (IndRNN): Building
    a longer and deeper RNN" (CVPR). Each unit's gradient over T steps is a product of u_n and
    relu slopes (0 or 1), so its magnitude stays at most γ over T steps when |u_n| ≤ γ^(1/T) (section 3.1); for the
    adding problem the authors' code (IndRNN_Theano_Lasagne, adding/adding.py) uses γ = 2
    ("MAG"), T = the sequence length, initialises u ~ U(0, 2^(1/T)) in the first of its two
    layers and u ~ U(2^(−1/T), 2^(1/T)) in the last, the one read out (`U_lowbound`), and clips
    u to [-2^(1/T), 2^(1/T)] before every training step. gapbench's single layer starts as
    their first, U(0, bound).

    Here the bound is kept by the parametrisation instead of a clip that forward cannot do:
    u = bound · tanh(v), bound = gamma^(1/max_length), with v the trained parameter, so
    |u_n| < bound always, whatever optimizer the pipeline runs. v is initialised to
    atanh(u_0 / bound) with u_0 ~ U(0, bound), i.e. u starts U(0, bound) as the paper's first layer.
    Unlike the projected (clipped) gradient, ∂u/∂v = bound · (1 − (u/bound)²) shrinks as a unit
    approaches the bound, so it reaches the bound only asymptotically.

    Options: max_length (1000): T in the bound, the longest sequence the model should carry
    a gradient across (the paper's runs use the task's sequence length; 1000 is the longest
    gap of most tasks in config/paper.yaml); gamma (2.0): the largest gradient growth over T
    steps the bound allows (the authors' MAG = 2 for relu). W_in ~ U(-1/√H, 1/√H) and b = 0,
    like every elementwise model here (the authors' adding-problem code draws
    W_in ~ N(0, 0.001²) and also sets b = 0).

    State: h, state_size = hidden_size; observe(h) = h. recurrent_weight() = diag(u), so
    forward runs the fused engine and the probes see W_h = diag(u) exactly.
    """

    family = "diagonal"

    def __init__(self, input_size, hidden_size, *, max_length=1000, gamma=2.0, **kwargs):
        super().__init__(input_size, hidden_size, "relu", **kwargs)
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.max_length, self.gamma = int(max_length), float(gamma)
        self.bound = self.gamma ** (1.0 / self.max_length)
        initial = torch.rand(hidden_size)  # u_0 / bound ~ U(0, 1): below 1, so atanh is finite
        self.recurrent_raw = nn.Parameter(torch.atanh(initial))

    def recurrent_vector(self) -> torch.Tensor:
        """u = bound · tanh(v): the per-unit recurrent weights, |u_n| < gamma^(1/max_length)."""
        return self.bound * torch.tanh(self.recurrent_raw)

    def recurrent_weight(self) -> torch.Tensor:
        return torch.diag(self.recurrent_vector())
