"""expRNN: an orthogonal recurrence W = exp(A − Aᵀ) with the modReLU nonlinearity."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gapbench.engine import project_input
from gapbench.models import register
from gapbench.models._base import RecurrentModel

INITS = ("henaff", "cayley")


def modrelu(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """modReLU (Arjovsky et al. 2016) on real numbers: sign(z)·relu(|z| + b)."""
    return torch.sign(z) * F.relu(torch.abs(z) + bias)


def skew_blocks(angles: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size) matrix whose strict upper triangle holds `angles` at (2k, 2k+1) and
    is zero elsewhere: A − Aᵀ is then block-diagonal with blocks [[0, θ_k], [−θ_k, 0]],
    and exp(A − Aᵀ) rotates each pair of units (2k, 2k+1) by the angle θ_k
    (expRNN's `create_diag_`; an odd size leaves the last unit with eigenvalue 1)."""
    superdiagonal = angles.new_zeros(size - 1)
    superdiagonal[::2] = angles
    return torch.diag(superdiagonal, diagonal=1)


@register("exprnn")
class ExpRNN(RecurrentModel):
    """h_t = modrelu(W h_{t-1} + T x_t, b),  W = exp(A − Aᵀ) ∈ SO(H),
    modrelu(z, b)_i = sign(z_i)·relu(|z_i| + b_i).

    Lezcano-Casado & Martínez-Rubio 2019, "Cheap orthogonal constraints in neural
    networks" (expRNN; github.com/lezcano/expRNN), with the nonlinearity and the
    orthogonal recurrence of Arjovsky et al. 2016. The trained parameter is A: only its
    strict upper triangle is used (A_u − A_uᵀ is skew-symmetric), and W is the matrix
    exponential of it, so W stays exactly orthogonal under any optimiser (to rounding).

    Initialisation, as in the expRNN repository (initialization.py, exprnn.py):
      A      block-diagonal skew, one 2×2 block [[0, θ_k], [−θ_k, 0]] per pair of units:
             init="henaff" (Henaff et al. 2016): θ_k ~ U(−π, π);
             init="cayley" (Helfrich et al. 2018, as expRNN writes it):
                 u_k ~ U(0, π/2), θ_k = −sqrt((1 − cos u_k)/(1 + cos u_k)) = −tan(u_k/2).
      T      Kaiming/He normal (nonlinearity="relu"): N(0, 2/input_size); no input bias.
      b      modReLU bias U(−0.01, 0.01).
    expRNN multiplies row vectors (h ↦ h·B), i.e. it uses Bᵀ = exp(−(A − Aᵀ)); here the
    recurrence is W h with W = exp(A − Aᵀ). The two differ by the sign of every angle,
    which for both inits is the same distribution of models up to flipping the sign of
    one unit per pair (modReLU is odd, T's init symmetric), so the choice is immaterial.
    expRNN trains A with its own (smaller) learning rate; gapbench trains all
    parameters with one optimiser.

    State = h (state_size = hidden_size); the readout sees all of it.
    recurrent_weight() is None: modReLU is elementwise, h = φ_b(W h + T x) with
    φ_b'(a) = 1[|a| + b > 0], but its φ is not one of the engine's activations (it
    depends on the trained b), so the probes take ∂h_t/∂h_{t-1} = diag(1[h_t ≠ 0]) W from
    the generic Jacobian of `step`. `recurrent_matrix()` gives W itself.
    """

    family = "orthogonal/unitary"
    # torch.linalg.matrix_exp on CUDA copies a norm to the host (forward and backward): no CUDA graph
    graph_capturable = False

    def __init__(self, input_size, hidden_size, *, init="henaff", **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; allowed: {list(INITS)}")
        self.init = init

        pairs = hidden_size // 2
        if init == "henaff":
            angles = torch.empty(pairs).uniform_(-math.pi, math.pi)
        else:
            u = torch.empty(pairs).uniform_(0.0, math.pi / 2.0)
            angles = -torch.sqrt((1.0 - torch.cos(u)) / (1.0 + torch.cos(u)))
        self.log_recurrent = nn.Parameter(skew_blocks(angles, hidden_size))
        self.weight_ih = nn.Parameter(nn.init.kaiming_normal_(torch.empty(hidden_size, input_size), nonlinearity="relu"))
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-0.01, 0.01))

    def recurrent_matrix(self) -> torch.Tensor:
        """W = exp(A_u − A_uᵀ), A_u the strict upper triangle of the parameter A."""
        upper = self.log_recurrent.triu(1)
        return torch.linalg.matrix_exp(upper - upper.mT)

    def drive(self, x):
        return project_input(x, self.weight_ih)

    def constants(self):
        return (self.recurrent_matrix(),)  # one matrix exponential per sequence, not per step

    def update(self, h, u_t, weight):
        return modrelu(F.linear(h, weight) + u_t, self.bias)
