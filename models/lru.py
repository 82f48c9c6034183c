"""The Linear Recurrent Unit: a diagonal complex linear recurrence with a parallel scan."""
from __future__ import annotations

import math

import torch
from torch import nn

from gapbench.engine import project_input
from gapbench.models import register
from gapbench.models._base import RecurrentModel

SCANS = ("sequential", "parallel")


def linear_scan(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """All x_t of x_t = decay ⊙ x_{t-1} + drive_t with x_{-1} = 0, along dim 1 of drive
    (batch, time, N); decay (N,) is the same at every step.

    Hillis–Steele scan, ceil(log2 T) levels: after the level with offset d, entry t holds
    Σ_{k<2d} decay^k ⊙ drive_{t-k}; the next level adds decay^(2d) ⊙ (entry t − 2d). With a
    time-invariant decay the associative operator (a_i, b_i)∘(a_j, b_j) = (a_i a_j,
    a_j b_i + b_j) needs no per-step products: its `a` at every level is decay^d, squared
    from level to level. Powers underflow to 0 for |decay| < 1, never overflow (|decay| ≤ 1),
    and the sum carries no cancellation a closed form decay^t Σ decay^-k drive_k would.
    Out of place at every level, so autograd differentiates it like any other function.
    """
    steps, power, offset = drive.shape[1], decay, 1
    while offset < steps:
        drive = torch.cat([drive[:, :offset], drive[:, offset:] + power * drive[:, :-offset]], dim=1)
        power, offset = power * power, 2 * offset
    return drive


@register("lru")
class LRU(RecurrentModel):
    """x_t = diag(λ) x_{t-1} + γ ⊙ (B u_t),  x_t ∈ ℂ^N,  N = hidden_size / 2,
    λ_j = exp(−exp(ν_j) + i·exp(θ_j)),  γ_j = exp(γlog_j).

    Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences",
    the recurrent layer of their Appendix A reference code (init_lru_parameters,
    forward_LRU), with its parametrisation and initialisation:
      ν, θ   ring initialisation: u1, u2 ~ U(0, 1),
             ν_log = log(−½·log(u1·(r_max² − r_min²) + r_min²))  ⇒  |λ|² ~ U(r_min², r_max²),
             i.e. λ uniform on the ring r_min ≤ |λ| ≤ r_max;  θ_log = log(max_phase·u2).
      γlog   its own trained parameter, initialised to log sqrt(1 − |λ_j|²) (the paper's
             normalisation, Eq. 7), then trained freely: the reference code does not
             recompute it from λ, nor stop its gradient.
      B      complex N × input_size, real and imaginary parts N(0, 1/(2·input_size)),
             stored as weight_ih = [Re B; Im B] (2N × input_size).
    Defaults are the reference code's: r_min = 0, r_max = 1, max_phase = 6.28. The
    paper's §3.3 advises r_min close to 1 (and a small max_phase) on long-range tasks;
    set r_min/r_max/max_phase to do so.

    One recurrent layer under gapbench's common linear readout: the state is the real
    vector [Re x, Im x] (state_size = hidden_size = 2N) and the readout sees all of it,
    so W_out·state expresses the paper's Re(C x) (C x = (C_re x_re − C_im x_im) + i(...)).
    The paper's skip term D u_t is dropped, since the readout sees only the state, and
    so are its MLP/GLU and residual stacking: this is the bare LRU recurrence.

    `step` is the real form: s ↦ [[Re λ, −Im λ], [Im λ, Re λ]] s + [Re, Im](γ ⊙ B u),
    whose Jacobian ∂s_t/∂s_{t-1} is the rotation-scaling blocks, eigenvalues λ_j, conj λ_j.
    `forward` runs the same recurrence on complex tensors, either as a sequential loop
    (scan="sequential") or as the log-depth scan `linear_scan` (scan="parallel").
    On one CPU thread (B=64, N=64) the loop was the faster of the two at T = 100 and
    1000, forward and backward, so it is the default; the scan does O(T log T) work in
    log T large kernels, the form that pays on a GPU.

    recurrent_weight() is None (the recurrence is linear, not φ(W_h h + ...) with a real
    W_h over the state); the probes use the Jacobian of `step`.
    """

    family = "diagonal"

    def __init__(self, input_size, hidden_size, *, r_min=0.0, r_max=1.0, max_phase=6.28,
                 scan="sequential", **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        if hidden_size < 2 or hidden_size % 2:  # N complex modes stored as 2N reals
            raise ValueError(f"hidden_size must be even and >= 2 for the LRU, got {hidden_size}")
        if not 0.0 <= r_min <= r_max <= 1.0:
            raise ValueError(f"need 0 <= r_min <= r_max <= 1, got r_min={r_min}, r_max={r_max}")
        if max_phase <= 0:
            raise ValueError(f"max_phase must be > 0, got {max_phase}")
        if scan not in SCANS:
            raise ValueError(f"unknown scan {scan!r}; allowed: {list(SCANS)}")
        self.modes = n = hidden_size // 2
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        self.scan = scan

        # float64 draws: float32's u1 can fall one step below 1, which puts |λ| at r_max = 1 within
        # rounding and γlog = log √(1 − |λ|²) near −∞
        u1 = torch.rand(n, dtype=torch.float64)
        u2 = torch.rand(n, dtype=torch.float64)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(max_phase * u2)
        modulus = torch.exp(-torch.exp(nu_log))
        gamma_log = torch.log(torch.sqrt(1.0 - modulus**2))
        dtype = torch.get_default_dtype()
        self.nu_log = nn.Parameter(nu_log.to(dtype))
        self.theta_log = nn.Parameter(theta_log.to(dtype))
        self.gamma_log = nn.Parameter(gamma_log.to(dtype))
        self.weight_ih = nn.Parameter(torch.randn(2 * n, input_size) / math.sqrt(2 * input_size))

    # ------------------------------------------------------------------ parameters
    def eigenvalues(self) -> torch.Tensor:
        """λ (N,), complex."""
        return torch.polar(torch.exp(-torch.exp(self.nu_log)), torch.exp(self.theta_log))

    def _lambda_real(self):
        modulus, phase = torch.exp(-torch.exp(self.nu_log)), torch.exp(self.theta_log)
        return modulus * torch.cos(phase), modulus * torch.sin(phase)

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """γ ⊙ (B x) in real form [Re, Im], (..., 2N)."""
        return project_input(x, self.weight_ih) * torch.exp(self.gamma_log).repeat(2)

    # ------------------------------------------------------------------ contract
    def step(self, state, x_t):
        lam_re, lam_im = self._lambda_real()
        re, im = state[..., : self.modes], state[..., self.modes:]
        drive_t = self.drive(x_t)
        return torch.cat([lam_re * re - lam_im * im, lam_im * re + lam_re * im], dim=-1) + drive_t

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        if not self.batch_first:
            x = x.transpose(0, 1)
        n = self.modes
        drive = self.drive(x)
        drive = torch.complex(drive[..., :n], drive[..., n:])  # (B, T, N)
        lam = self.eigenvalues().to(drive.dtype)
        if h0 is not None:  # x_0 = λ x_{-1} + drive_0: fold the initial state into the first drive
            h0 = h0.reshape(x.shape[0], self.state_size)
            start = lam * torch.complex(h0[:, :n], h0[:, n:]).to(drive.dtype)
            drive = torch.cat([drive[:, :1] + start.unsqueeze(1), drive[:, 1:]], dim=1)
        if self.scan == "parallel":
            states = linear_scan(lam, drive)
        else:
            state, states = torch.zeros_like(drive[:, 0]), []
            for drive_t in drive.unbind(1):  # unbind: one backward node, not T slices
                state = lam * state + drive_t
                states.append(state)
            states = torch.stack(states, 1)
        output = torch.cat([states.real, states.imag], dim=-1)
        if not self.batch_first:
            output = output.transpose(0, 1)
        h_n = output[:, -1] if self.batch_first else output[-1]
        return output, h_n.unsqueeze(0)
