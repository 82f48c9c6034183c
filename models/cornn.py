"""coRNN: a network of coupled, damped, driven nonlinear oscillators."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gapbench.engine import project_input
from gapbench.models import register
from gapbench.models._base import RecurrentModel


@register("cornn")
class CoRNN(RecurrentModel):
    """z_n = z_{n-1} + Δt·[tanh(W y_{n-1} + 𝒲 z_{n-1} + V u_n + b) − γ y_{n-1} − ε z_{n-1}],
    y_n = y_{n-1} + Δt·z_n.

    Rusch & Mishra 2021, "Coupled Oscillatory Recurrent Neural Network (coRNN): an accurate
    and (gradient) stable architecture for learning long time dependencies" (ICLR), the
    IMEX discretisation of y'' = tanh(W y + 𝒲 y' + V u + b) − γ y − ε y' as their code
    (github.com/tk-rusch/coRNN, coRNNCell) writes it: z first, with the damping −ε z taken
    at the old step (the paper's n̄ = n − 1 choice), then y from the new z.

    Options and defaults: dt = 0.06, gamma = 66, epsilon = 15, the repository's settings
    for the adding problem (adding/adding_task.py); their sMNIST settings are dt = 0.042,
    gamma = 2.7, epsilon = 4.7 (sMNIST/sMNIST_task.py).
    Initialisation as the repository's single nn.Linear(input + 2H, H) over [u, z, y]:
    V, 𝒲, W and b all U(−k, k), k = 1/sqrt(input_size + 2·hidden_size).

    State = [y, z] (state_size = 2·hidden_size); the readout sees y (observe = the first
    hidden_size entries), as in the paper, whose output layer reads y_N.
    forward returns h_n = the full final state [y, z] (1, batch, 2H) and takes h0 of the
    same shape, so a sequence can be continued exactly.
    recurrent_weight() is None: the update is not of the form φ(W_h s + W_in u + b).
    """

    family = "oscillator"

    def __init__(self, input_size, hidden_size, *, dt=0.06, gamma=66.0, epsilon=15.0, **kwargs):
        super().__init__(input_size, hidden_size, 2 * hidden_size, **kwargs)
        if dt <= 0:
            raise ValueError(f"dt must be > 0, got {dt}")
        self.dt, self.gamma, self.epsilon = float(dt), float(gamma), float(epsilon)
        bound = 1.0 / math.sqrt(input_size + 2 * hidden_size)

        def uniform(*shape):
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.weight_ih = uniform(hidden_size, input_size)   # V
        self.weight_hy = uniform(hidden_size, hidden_size)  # W, acts on y
        self.weight_hz = uniform(hidden_size, hidden_size)  # 𝒲, acts on z
        self.bias = uniform(hidden_size)                    # b

    def drive(self, x):
        return project_input(x, self.weight_ih, self.bias)

    def update(self, state, u_t):
        """One step from the input drive u_t = V u_n + b."""
        y, z = state[..., : self.hidden_size], state[..., self.hidden_size:]
        force = torch.tanh(F.linear(y, self.weight_hy) + F.linear(z, self.weight_hz) + u_t)
        z = z + self.dt * (force - self.gamma * y - self.epsilon * z)
        y = y + self.dt * z
        return torch.cat([y, z], dim=-1)
