"""The contract every model of gapbench meets, and the readout that turns one into a predictor.

A model is a torch.nn.Module with torch.nn.RNN's interface plus its state update:

    forward(x, h0=None) -> (output, h_n)     x: (batch, time, input_size), output: (batch, time, hidden_size)
    step(state, x_t) -> state                s_t = F(s_{t-1}, x_t) on a flat real state (batch, state_size)
    observe(state) -> (batch, hidden_size)   the part of the state the readout sees: output_t = observe(s_t)
    initial_state(batch, like) -> s_0        zeros unless the model says otherwise
    recurrent_weight() -> W_h or None        only models of the form h_t = φ(W_h h_{t-1} + W_in x_t + b)

`forward` is what training runs (the fused engine, cuDNN, a parallel scan: whatever is fast);
`step` is what the propagation probes differentiate (Jacobians ∂s_t/∂s_{t-1} and ∂s_t/∂x_t,
in float64). The two must describe the same map: `unroll` runs `step` over a sequence, and
the conformance test checks that it reproduces `forward` for every registered model.
The state is real: a complex state (LRU) is stored as [real part, imaginary part]; a pair of
states (LSTM's (h, c), coRNN's (y, z)) is stored concatenated.
"""
from __future__ import annotations

import torch
from torch import nn


class RecurrentModel(nn.Module):
    """Base class of every model: subclasses pass their sizes to `__init__` and implement
    `forward` and `step` (and `observe` when the readout sees part of the state)."""

    input_size: int
    hidden_size: int
    state_size: int
    # what figures group and colour models by: elementwise, gated, reservoir,
    # orthogonal/unitary, diagonal, oscillator (or a new family of one's own)
    family: str = "other"
    # how gapbench.train fits it: "gradient" (the optimiser and clip arm of the config) or
    # "guessing" (random weight search, models/random_guess.py)
    trained_by: str = "gradient"

    def __init__(self, input_size: int | None = None, hidden_size: int | None = None, state_size: int | None = None):
        """Check and set the sizes every model has; state_size defaults to hidden_size.
        (A model file written before this took the sizes calls `super().__init__()` and sets
        input_size, hidden_size and state_size itself: that still works.)"""
        super().__init__()
        if input_size is None and hidden_size is None:
            return
        if input_size is None or hidden_size is None or input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.state_size = hidden_size if state_size is None else state_size

    def step(self, state: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        """The readout's view of the state; by default the first hidden_size entries."""
        return state[..., : self.hidden_size]

    def initial_state(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(batch, self.state_size)

    def recurrent_weight(self) -> torch.Tensor | None:
        """W_h for models of the form h_t = φ(W_h h_{t-1} + W_in x_t + b); None otherwise
        (the probes then write ρ(W_h) as missing, not as a number)."""
        return None

    def iterate(self, update, drive: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """s_t = update(s_{t-1}, drive_t) for every step of a batch-first drive (batch, time, ·);
        returns every state (batch, time, state_size). The one step-by-step loop of the models
        that have no fused kernel (it unbinds the drive: indexing drive[:, t] step by step makes
        the backward pass quadratic in the length)."""
        states = []
        for drive_t in drive.unbind(1):
            state = update(state, drive_t)
            states.append(state)
        return torch.stack(states, 1)

    def loop(self, update, drive: torch.Tensor, h0: torch.Tensor | None = None):
        """torch.nn.RNN's (output, h_n) from `iterate`: drive in the model's layout (batch_first or
        not), h0 the full state as (1, batch, state_size) or (batch, state_size), zeros if None."""
        batch_first = getattr(self, "batch_first", True)
        drive = drive if batch_first else drive.transpose(0, 1)
        batch = drive.shape[0]
        state = self.initial_state(batch, drive) if h0 is None else h0.reshape(batch, self.state_size).to(drive.dtype)
        states = self.iterate(update, drive, state)
        output = self.observe(states)
        return (output if batch_first else output.transpose(0, 1)), states[:, -1].unsqueeze(0)

    def unroll(self, x: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(observed outputs (batch, time, hidden_size), full states (batch, time, state_size))
        from `step` alone, batch first: the reference the probes and the conformance test use."""
        state = self.initial_state(x.shape[0], x) if state is None else state
        states = self.iterate(self.step, x, state)
        return self.observe(states), states


class Net(nn.Module):
    """A recurrent model followed by a linear readout of its output at every step:
    pred_t = W_out · observe(s_t) + b_out, shape (batch, time, output_size)."""

    def __init__(self, rnn: RecurrentModel, output_size: int):
        super().__init__()
        self.rnn = rnn
        self.readout = nn.Linear(rnn.hidden_size, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(x)
        return self.readout(output)
