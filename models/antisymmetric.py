"""AntisymmetricRNN: forward Euler on an ODE whose Jacobian has (nearly) imaginary eigenvalues."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gapbench.engine import project_input
from gapbench.models import register
from gapbench.models._base import RecurrentModel


@register("antisymmetric")
class AntisymmetricRNN(RecurrentModel):
    """h_t = h_{t-1} + ε·tanh((W − Wᵀ − γI) h_{t-1} + V x_t + b).

    Chang, Chen, Haber & Chi 2019, "AntisymmetricRNN: a dynamical system view on
    recurrent neural networks" (ICLR), Eq. 12, the ungated model: W − Wᵀ is
    antisymmetric, so its eigenvalues iμ are purely imaginary, and the diffusion −γI moves
    them to real part −γ. That damps the forward-Euler step but does not make it contract:
    at a linear point the step multiplies a mode by |1 + ε(−γ + iμ)|, at most 1 only where
    εμ² ≤ γ(2 − εγ). At the defaults (ε = γ = 0.01, σ_w = 1, H = 64) max|μ| is about 2.6 and
    the step's spectral radius at h = 0 is 1.0002 (34–41% of the modes above 1; 5 seeds),
    a growth of about 1.25–1.3 over 1000 steps: marginal, not stable.

    Options: epsilon (the step size ε), gamma (the diffusion γ), sigma_w (W's init scale).
    The paper tunes them per task over ε ∈ {0.01, 0.1, 1}, σ_w ∈ {0, 1, 2, 4, 8, 16} and a
    grid of small γ (App. C); the defaults ε = 0.01, γ = 0.01, σ_w = 1 are points of
    those grids, not values the paper singles out.
    Initialisation (App. C): V ~ N(0, 1/input_size), W ~ N(0, σ_w²/hidden_size), b = 0.

    State = h (state_size = hidden_size); the readout sees all of it.
    recurrent_weight() is None: the update is h + ε·tanh(...), not φ(W_h h + ...);
    `recurrent_matrix()` gives W − Wᵀ − γI, and the probes use the Jacobian of `step`,
    ∂h_t/∂h_{t-1} = I + ε·diag(1 − tanh²(a_t))·(W − Wᵀ − γI).
    """

    family = "oscillator"

    def __init__(self, input_size, hidden_size, *, epsilon=0.01, gamma=0.01, sigma_w=1.0, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        self.epsilon, self.gamma, self.sigma_w = float(epsilon), float(gamma), float(sigma_w)
        self.weight_ih = nn.Parameter(torch.randn(hidden_size, input_size) / math.sqrt(input_size))
        self.weight_hh = nn.Parameter(torch.randn(hidden_size, hidden_size) * (self.sigma_w / math.sqrt(hidden_size)))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def recurrent_matrix(self) -> torch.Tensor:
        """W − Wᵀ − γI."""
        eye = torch.eye(self.hidden_size, dtype=self.weight_hh.dtype, device=self.weight_hh.device)
        return self.weight_hh - self.weight_hh.mT - self.gamma * eye

    def drive(self, x):
        return project_input(x, self.weight_ih, self.bias)

    def constants(self):
        return (self.recurrent_matrix(),)  # once per sequence in forward

    def update(self, h, u_t, matrix):
        return h + self.epsilon * torch.tanh(F.linear(h, matrix) + u_t)
