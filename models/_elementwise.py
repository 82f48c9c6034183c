"""The shared body of every model of the form h_t = φ(W_h h_{t-1} + W_in x_t + b)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from gapbench.engine import activation as get_activation
from gapbench.engine import batched_recurrence, project_input, recurrence
from gapbench.models._base import RecurrentModel

INITS = ("uniform", "normal", "orthogonal", "identity")


def init_recurrent_(weight: torch.Tensor, init: str, gain: float) -> torch.Tensor:
    """Fill a square W_h in place. `uniform` is torch.nn.RNN's U(-1/√H, 1/√H) (ρ ≈ 0.58),
    `normal` is N(0, 1/H) (ρ ≈ 1, circular law), `orthogonal` a random orthogonal matrix,
    `identity` the identity (Le et al. 2015); every one is then multiplied by `gain`."""
    hidden = weight.shape[0]
    if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain):
        raise ValueError(f"init_gain must be a finite number, got {gain!r}")
    with torch.no_grad():
        if init == "uniform":
            bound = 1.0 / math.sqrt(hidden)
            weight.uniform_(-bound, bound)
        elif init == "normal":
            weight.normal_(0.0, 1.0 / math.sqrt(hidden))
        elif init == "orthogonal":
            nn.init.orthogonal_(weight)
        elif init == "identity":
            weight.copy_(torch.eye(hidden))
        else:
            raise ValueError(f"unknown init {init!r}; allowed: {list(INITS)}")
        weight.mul_(gain)
    return weight


class ElementwiseRNN(RecurrentModel):
    """h_t = φ(W_h h_{t-1} + W_in x_t + b); subclasses say how W_h is made (`recurrent_weight()`).

    The input projection is one batched product over all steps; the recurrence itself
    runs in `gapbench.engine.recurrence`, the one loop every elementwise model shares.
    The state is h itself (state_size = hidden_size), and the probes use the analytic
    Jacobian J_l = diag(φ'(a_l)) W_h instead of differentiating `step` (as long as a
    subclass keeps this class's `step` and `forward`).
    """

    family = "elementwise"

    def __init__(self, input_size: int, hidden_size: int, activation: str, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        self.phi = get_activation(activation)
        self.activation = activation
        bound = 1.0 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def recurrent_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        return project_input(x, self.weight_ih, self.bias)

    def step(self, state, x_t):
        return self.phi.function(F.linear(state, self.recurrent_weight()) + self.drive(x_t))

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        return recurrence(self.drive(x), self.recurrent_weight(), h0, self.activation, self.batch_first)

    @classmethod
    def batches_runs(cls, models) -> bool:
        """Several runs of this class's own forward and drive, with one activation, go through
        one batched recurrence."""
        return (len(models) > 1 and len({model.activation for model in models}) == 1
                and all(type(model).forward is ElementwiseRNN.forward and type(model).drive is ElementwiseRNN.drive
                        and model.batch_first for model in models))

    @classmethod
    def forward_runs(cls, models, xs):
        """Several runs' recurrences as one (gapbench.engine.batched_recurrence: each step one
        batched product over the runs) where `batches_runs` and every input has the same shape;
        else one forward after another."""
        if not cls.batches_runs(models) or len({x.shape for x in xs}) != 1:
            return super().forward_runs(models, xs)
        drives = torch.stack([model.drive(x) for model, x in zip(models, xs)])
        weights = torch.stack([model.recurrent_weight() for model in models])
        return list(batched_recurrence(drives, weights, models[0].activation).unbind(0))


class FreeRNN(ElementwiseRNN):
    """h_t = φ(W_h h_{t-1} + W_in x_t + b) with W_h a trained parameter, drawn by `init`
    (`init_recurrent_`) and scaled by `init_gain`; `activation` and `init` default to the
    subclass's `default_activation` and `default_init` (vanilla, linear, irnn, random_guess).
    W_in is torch.nn.RNN's U(−1/√H, 1/√H) unless `input_std` is set: then N(0, input_std²)
    (Le, Jaitly & Hinton 2015 draw the IRNN's input weights with standard deviation 0.001)."""

    default_activation, default_init = "tanh", "uniform"

    def __init__(self, input_size, hidden_size, *, activation=None, init=None, init_gain=1.0, input_std=None,
                 **kwargs):
        super().__init__(input_size, hidden_size, activation or self.default_activation, **kwargs)
        if input_std is not None and (isinstance(input_std, bool) or not isinstance(input_std, (int, float))
                                      or not 0 < input_std < math.inf):  # NaN fails the comparison too
            raise ValueError(f"input_std must be a positive number (or None: U(-1/sqrt(H), 1/sqrt(H))), "
                             f"got {input_std!r}")
        self.input_std = None if input_std is None else float(input_std)
        self.init, self.init_gain = init or self.default_init, init_gain
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        init_recurrent_(self.weight_hh, self.init, init_gain)
        if self.input_std is not None:  # drawn last: W_h is the draw it is without the option
            with torch.no_grad():
                self.weight_ih.normal_(0.0, self.input_std)

    def recurrent_weight(self):
        return self.weight_hh
