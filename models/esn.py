"""Echo state network (Jaeger 2001): a fixed random reservoir; only the readout learns."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from gapbench.engine import activation as get_activation
from gapbench.engine import recurrence
from gapbench.models import register
from gapbench.models._base import RecurrentModel


@register("esn")
class EchoStateNetwork(RecurrentModel):
    """Leaky-integrator echo state network (Jaeger 2001, GMD Report 148; Lukoševičius 2012, eqs. 2–3):

        x̃_t = φ(W_in u_t + W h_{t-1} + b),    φ = tanh (or the identity: `activation="linear"`)
        h_t = (1 − α) h_{t-1} + α x̃_t,        α = leak_rate

    W_in, b and W are drawn once from torch's global RNG (torch.manual_seed makes the
    reservoir reproducible) and stored as buffers, not parameters: they move with
    .to()/.double() and are saved in the state_dict, but no optimizer sees them. The model
    has no trainable parameters at all. Only the common linear readout that models.Net adds
    is trained, by the pipeline's own gradient optimizer on the task loss, like every other
    model's parameters: one budget and one loss for every model. (The classical ESN readout
    is a closed-form ridge regression; that minimises squared error and does not apply to
    the cross-entropy classification tasks, so it is not used.)

    Options, with Lukoševičius 2012 ("A practical guide to applying echo state networks",
    Neural Networks: Tricks of the Trade) as the source of each default:

    spectral_radius (0.9): W is rescaled so that max |eig(W)| equals it exactly (§3.2.5; a
        value below 1 is the usual starting point; for tanh it is neither sufficient nor necessary
        for the echo state property, which σ_max(W) < 1 guarantees).
    density (1.0): the fraction of nonzero entries of W; the nonzero values are U(-1, 1)
        before rescaling. Dense by default: §3.2.2 says sparsity "does not affect the
        performance much" and serves speed through sparse matrix products, which this
        implementation (dense products on CPU or GPU) does not use; and at the benchmark's
        small reservoirs (8 units in the smoke grid, 64 by default) a 10% dense W has empty
        rows and columns and can be nilpotent (spectral radius 0, which cannot be rescaled).
        Any density in (0, 1] may be chosen.
    input_scaling (1.0): W_in ~ U(-input_scaling, input_scaling), dense (§3.2.4).
    bias_scaling (1.0): b ~ U(-bias_scaling, bias_scaling): the input weights of the constant
        input 1 (Lukoševičius writes W_in [1; u]), scaled separately as §3.2.4 advises; 0
        removes the bias (e.g. for a linear reservoir in Jaeger's memory-capacity setting).
    leak_rate (1.0): α ∈ (0, 1] (§3.2.6); α = 1 is Jaeger's 2001 non-leaky ESN. With α < 1 and
        φ = identity the update is h_t = ((1 − α)I + αW) h_{t-1} + ..., whose eigenvalues are
        (1 − α) + α·λ_i for the eigenvalues λ_i of W; its spectral radius max_i |(1 − α) + α·λ_i|
        is at most (1 − α) + α·spectral_radius, with equality only when W has the real positive
        eigenvalue λ = spectral_radius (a leading eigenvalue that is negative or complex gives less).
    activation ("tanh"): "tanh" or "linear" (Jaeger's short-term memory capacity bound MC ≤ N
        holds for any reservoir; a linear one can reach it: Jaeger 2001, GMD Report 152).

    State: h, state_size = hidden_size (the number of reservoir units); observe(h) = h.
    recurrent_weight(): W when leak_rate = 1, since the model is then h_t = φ(W h_{t-1} +
    W_in u_t + b); None when leak_rate < 1, because h_t then also has the direct (1 − α) h_{t-1}
    term and is not of that form. With leak_rate = 1 `forward` runs the fused engine
    (gapbench.engine.recurrence); otherwise a plain loop of the same update as `step`.
    forward(x, h0) takes h0 of shape (1, batch, hidden) or (batch, hidden) and returns
    (output, h_n) like torch.nn.RNN.
    """

    family = "reservoir"

    def __init__(self, input_size, hidden_size, *, spectral_radius=0.9, density=1.0, input_scaling=1.0,
                 bias_scaling=1.0, leak_rate=1.0, activation="tanh", **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        if activation not in ("tanh", "linear"):
            raise ValueError(f"unknown activation {activation!r} for the ESN; allowed: ['linear', 'tanh']")
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must be in (0, 1], got {density}")
        if not 0.0 < leak_rate <= 1.0:
            raise ValueError(f"leak_rate must be in (0, 1], got {leak_rate}")
        if spectral_radius < 0 or input_scaling < 0 or bias_scaling < 0:
            raise ValueError("spectral_radius, input_scaling and bias_scaling must be >= 0")
        self.spectral_radius, self.density = float(spectral_radius), float(density)
        self.input_scaling, self.bias_scaling = float(input_scaling), float(bias_scaling)
        self.leak_rate, self.activation = float(leak_rate), activation
        self.phi = get_activation(activation)

        # drawn in float64 on the CPU from the global generator, then stored in the default dtype
        dtype = torch.get_default_dtype()
        weight_ih = (2.0 * torch.rand(hidden_size, input_size, dtype=torch.float64) - 1.0) * self.input_scaling
        bias = (2.0 * torch.rand(hidden_size, dtype=torch.float64) - 1.0) * self.bias_scaling
        weight_hh = 2.0 * torch.rand(hidden_size, hidden_size, dtype=torch.float64) - 1.0
        if self.density < 1.0:
            weight_hh = weight_hh * (torch.rand(hidden_size, hidden_size, dtype=torch.float64) < self.density)
        radius = torch.linalg.eigvals(weight_hh).abs().max().item()
        if self.spectral_radius > 0.0:
            if radius == 0.0:
                raise ValueError(
                    f"the random reservoir (hidden_size {hidden_size}, density {density}) has spectral "
                    "radius 0 and cannot be rescaled: raise density or hidden_size"
                )
            weight_hh = weight_hh * (self.spectral_radius / radius)
        else:
            weight_hh = torch.zeros_like(weight_hh)
        self.register_buffer("weight_ih", weight_ih.to(dtype))
        self.register_buffer("bias", bias.to(dtype))
        self.register_buffer("weight_hh", weight_hh.to(dtype))

    def recurrent_weight(self):
        return self.weight_hh if self.leak_rate == 1.0 else None

    def drive(self, x):
        """The projected input W_in u_t + b."""
        return F.linear(x, self.weight_ih, self.bias)

    def update(self, h, drive_t):
        new = self.phi.function(F.linear(h, self.weight_hh) + drive_t)
        if self.leak_rate == 1.0:
            return new
        return (1.0 - self.leak_rate) * h + self.leak_rate * new

    def forward(self, x, h0=None):
        if self.leak_rate == 1.0:  # h_t = φ(W h_{t-1} + drive_t): the fused engine
            return recurrence(self.drive(x), self.weight_hh, h0, self.activation, self.batch_first)
        return super().forward(x, h0)
