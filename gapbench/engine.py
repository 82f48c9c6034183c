"""The recurrence engine: every elementwise RNN in gapbench runs through `recurrence`.

    a_t = W_h h_{t-1} + u_t,    h_t = φ(a_t),    u_t = W_in x_t + b (computed by the caller)

Forward and backpropagation through time are one hand-written loop each (a custom
autograd Function), instead of one autograd graph node per step:

    δ_t = g_t ⊙ φ'(a_t),   g_{t-1} = ∂L/∂h_{t-1}|_direct + δ_t W_h,
    ∂L/∂u_t = δ_t,         ∂L/∂W_h = Σ_t δ_tᵀ h_{t-1}  (one matrix product over all steps)

g_k = ∂L/∂h_k is the quantity whose norm shrinks or grows with the lag t − k: bounded by
(γ‖W_h‖₂)^(t-k), γ the bound on |φ'| (Bengio et al. 1994; Pascanu et al. 2013; docs/theory.md). The loops are the only place the recurrence
is written; models differ only in how they produce W_h and which φ they use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F


@dataclass(frozen=True)
class Activation:
    """An elementwise φ with its derivative written in terms of the output h = φ(a).

    Every activation gapbench uses has φ' expressible from φ(a) alone, so the engine
    stores only the hidden states, not the pre-activations.
    """

    function: Callable[[torch.Tensor], torch.Tensor]  # out of place, differentiable: for `step`
    forward_: Callable[[torch.Tensor], torch.Tensor]  # in place
    derivative_from_output: Callable[[torch.Tensor], torch.Tensor] | None
    # g ← g ⊙ φ'(a) in place, given h = φ(a) and a scratch buffer shaped like g: the
    # backward loop's per-step form, on one (batch, hidden) slice that stays in cache
    mul_derivative_: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None


def _tanh_mul_derivative_(g, h, scratch):
    torch.mul(h, h, out=scratch)
    g.addcmul_(g, scratch, value=-1.0)  # g − g h² = g (1 − h²)


def _relu_mul_derivative_(g, h, scratch):
    g.mul_(torch.gt(h, 0, out=scratch))  # scratch holds 1.0 where h > 0, else 0.0


ACTIVATIONS = {
    "tanh": Activation(torch.tanh, torch.tanh_, lambda h: 1.0 - h * h, _tanh_mul_derivative_),
    "relu": Activation(torch.relu, torch.relu_, lambda h: (h > 0).to(h.dtype), _relu_mul_derivative_),
    # identity: φ' = 1 everywhere, so the backward loop skips the multiplication
    "linear": Activation(lambda a: a, lambda a: a, None, None),
}


def activation(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; allowed: {sorted(ACTIVATIONS)}"
        ) from None


def _add_product_(weight_hh: torch.Tensor):
    """out += a @ b in place: one matrix product, or one per run where the weights carry a
    leading run dimension (E, H, H) and a, out are (E, B, H)."""
    return torch.Tensor.addmm_ if weight_hh.dim() == 2 else torch.Tensor.baddbmm_


class _Recurrence(torch.autograd.Function):
    """Time-major fused recurrence: u (T, B, H), h0 (B, H), weight_hh (H, H); or E independent
    runs at once (`batched_recurrence`): u (T, E, B, H), h0 (E, B, H), weight_hh (E, H, H), each
    step one batched product (baddbmm) instead of E.

    Both loops work in place on pre-split views (`unbind`) of one preallocated buffer,
    which first holds u (forward) or ∂L/∂h (backward) copied in bulk: a step costs one
    in-place matrix product (addmm_) and the activation or its derivative on one
    (batch, hidden) slice that stays in cache, forward and back.
    """

    @staticmethod
    def forward(ctx, u, weight_hh, h0, act_name, grad_norms):
        act = ACTIVATIONS[act_name]
        steps = u.shape[0]
        states = u.new_empty((steps + 1,) + tuple(h0.shape))
        states[0] = h0
        states[1:] = u  # one bulk copy (from any layout); each step then adds W_h h_{t-1} in place
        w_t = weight_hh.transpose(-1, -2)
        add_product_ = _add_product_(weight_hh)
        state = states.unbind(0)
        nonlinear = act.derivative_from_output is not None
        for t in range(steps):
            add_product_(state[t + 1], state[t], w_t)  # in place: no per-step copy of u_t
            if nonlinear:
                act.forward_(state[t + 1])
        ctx.act_name, ctx.grad_norms = act_name, grad_norms
        ctx.save_for_backward(states, weight_hh)
        return states[1:], states[steps].clone()

    @staticmethod
    def backward(ctx, grad_output, grad_hn):
        states, weight_hh = ctx.saved_tensors
        mul_derivative_ = ACTIVATIONS[ctx.act_name].mul_derivative_
        norms = ctx.grad_norms
        steps = states.shape[0] - 1
        if grad_output is None:  # only h_n is used by the loss
            grad_output = torch.zeros_like(states[1:])
        # delta[t] first holds the direct gradient ∂L/∂h_t (one bulk copy), then g_t = ∂L/∂h_t
        # once δ_{t+1} W_h has been added in place, then (in place) δ_t = g_t ⊙ φ'(a_t)
        delta = grad_output.clone(memory_format=torch.contiguous_format)  # time-major, writable
        if grad_hn is not None:
            delta[steps - 1] += grad_hn
        deltas, state = delta.unbind(0), states.unbind(0)
        scratch = torch.empty_like(states[0])
        add_product_ = _add_product_(weight_hh)
        for t in range(steps - 1, -1, -1):
            if norms is not None:
                norms[t] = torch.linalg.vector_norm(deltas[t])
            if mul_derivative_ is not None:
                mul_derivative_(deltas[t], state[t + 1], scratch)
            if t > 0:
                add_product_(deltas[t - 1], deltas[t], weight_hh)
        grad_h0 = deltas[0] @ weight_hh
        hidden = weight_hh.shape[-1]
        if weight_hh.dim() == 2:
            grad_weight = delta.reshape(-1, hidden).t() @ states[:-1].reshape(-1, hidden)
        else:  # per run: its (time·batch, hidden) rows
            runs = weight_hh.shape[0]
            grad_weight = torch.bmm(delta.transpose(0, 1).reshape(runs, -1, hidden).transpose(1, 2),
                                    states[:-1].transpose(0, 1).reshape(runs, -1, hidden))
        return delta, grad_weight, grad_h0, None, None


class _InputProjection(torch.autograd.Function):
    """F.linear(x, W_in, b), with ∂L/∂W_in computed as (xᵀ G)ᵀ instead of autograd's Gᵀ x.

    Both are the same sum over every (batch, time) row, Σ_n G[n, i] x[n, j]; autograd writes it
    as a [hidden, rows]·[rows, input] product, so that the result has W_in's layout, and a BLAS
    product whose result is only `input` (1 to 10) columns wide over rows = batch·T is a slow
    shape: vanilla at input 2, H = 128, batch 64, T = 2295 on a 2-core AMD EPYC, 44 µs per time
    step against 8 µs for [input, rows]·[rows, hidden], the product this function asks for
    (benchmarks/step_profile.py; docs/measurements/step_profile_cpu_b577d27.txt, _e023d57.txt).
    The forward pass is F.linear's own.
    """

    generate_vmap_rule = True  # the probes differentiate `step` under torch.func.vmap

    @staticmethod
    def forward(x, weight, bias):
        return F.linear(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.save_for_forward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            rows = grad.reshape(-1, grad.shape[-1])  # a copy where grad is a time-major view: only when used
            if ctx.needs_input_grad[1]:
                grad_weight = (x.reshape(-1, x.shape[-1]).t() @ rows).t()
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_bias = rows.sum(0)
        return grad_x, grad_weight, grad_bias

    @staticmethod
    def jvp(ctx, x_tangent, weight_tangent, bias_tangent):
        """Forward mode (the probes' tests take jacfwd of `step`): d(x Wᵀ + b) = dx Wᵀ + x dWᵀ + db."""
        x, weight = ctx.saved_tensors
        tangent = F.linear(torch.zeros_like(x) if x_tangent is None else x_tangent, weight, bias_tangent)
        return tangent if weight_tangent is None else tangent + F.linear(x, weight_tangent)


def project_input(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """u = x W_inᵀ + b over every step at once, x (..., input), weight (hidden, input): the
    input drive of a recurrence. Values are F.linear's; the gradient of W_in is computed in the
    shape a BLAS does fast for narrow inputs (`_InputProjection`)."""
    return _InputProjection.apply(x, weight, bias)


def recurrence(
    u: torch.Tensor,
    weight_hh: torch.Tensor,
    h0: torch.Tensor | None = None,
    activation_name: str = "tanh",
    batch_first: bool = True,
    grad_norms: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run h_t = φ(W_h h_{t-1} + u_t) over all steps; return (output, h_n) like torch.nn.RNN.

    u: (batch, time, hidden) if batch_first else (time, batch, hidden), the already
    projected inputs W_in x_t + b. h0: (batch, hidden) or (1, batch, hidden); zeros if
    None. Returns output with u's layout and h_n of shape (1, batch, hidden).

    grad_norms: an optional tensor of shape (time,); the backward pass fills entry k with
    ||∂L/∂h_k|| (Frobenius norm over the batch) as it goes, for one extra reduction a step.
    These are in the working dtype: float32 norms underflow near 1e-38 (1e-45 subnormal,
    zero where subnormals are flushed); `gapbench.probes` measures decay exactly in float64.
    """
    activation(activation_name)  # fail early with the allowed names
    u_tm = u.transpose(0, 1) if batch_first else u  # the engine copies it once, in any layout
    batch, hidden = u_tm.shape[1], u_tm.shape[2]
    if h0 is None:
        h0 = u_tm.new_zeros(batch, hidden)
    elif h0.dim() == 3:
        h0 = h0[0]
    output, h_n = _Recurrence.apply(u_tm, weight_hh, h0.to(u_tm.dtype), activation_name, grad_norms)
    if batch_first:
        output = output.transpose(0, 1)
    return output, h_n.unsqueeze(0)


def batched_recurrence(u: torch.Tensor, weight_hh: torch.Tensor, activation_name: str = "tanh") -> torch.Tensor:
    """E independent recurrences in one loop: u (E, batch, time, hidden) the projected inputs of
    each run, weight_hh (E, hidden, hidden) each run's W_h, h_0 = 0; returns every run's output
    (E, batch, time, hidden). Run e's output and gradients are those of
    `recurrence(u[e], weight_hh[e])`: the same loop, with each step's product batched over the
    runs (one kernel launch where E were), which is what a GPU needs; on the CPU the batched
    product computes each run's product as the single one does."""
    activation(activation_name)
    u_tm = u.permute(2, 0, 1, 3)  # (time, E, batch, hidden)
    h0 = u_tm.new_zeros(u_tm.shape[1:])
    output, _ = _Recurrence.apply(u_tm, weight_hh, h0, activation_name, None)
    return output.permute(1, 2, 0, 3)


def reference_recurrence(u, weight_hh, h0=None, activation_name="tanh", batch_first=True):
    """The same recurrence as a plain autograd loop: the correctness oracle for tests."""
    phi = ACTIVATIONS[activation_name].function
    u_tm = u.transpose(0, 1) if batch_first else u
    h = u_tm.new_zeros(u_tm.shape[1], u_tm.shape[2]) if h0 is None else h0.reshape(u_tm.shape[1:])
    outputs = []
    for t in range(u_tm.shape[0]):
        h = phi(h @ weight_hh.t() + u_tm[t])
        outputs.append(h)
    output = torch.stack(outputs, 1 if batch_first else 0)
    return output, h.unsqueeze(0)
