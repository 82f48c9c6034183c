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
the conformance test checks that it reproduces `forward` for every registered model. By
default both come from the model's update: `forward` loops over `step`, or over
`update(state, drive_t)` with the input drive `drive(x)` computed for all steps at once, so a
model without a fused kernel writes its update once and nothing else.
The state is real: a complex state (LRU) is stored as [real part, imaginary part]; a pair of
states (LSTM's (h, c), coRNN's (y, z)) is stored concatenated.
"""
from __future__ import annotations

import torch
from torch import nn

from gapbench.registry import declared_options, option_values


class RecurrentModel(nn.Module):
    """Base class of every model. It owns what every model has: the sizes, `batch_first`, the
    options (read back from the attributes a model keeps under each option's name) and
    `extra_repr`, and `forward`/`step` as loops over the model's update. A subclass states only
    what differs: its options, its weights, and either

      - `step(state, x_t)`, the state update itself: `forward` is then the loop over it, or
      - `drive(x)` and `update(state, drive_t, *constants)`: the part of the step that depends on
        the input alone, computed for every step at once (one batched product, hoisted out of
        the loop), and the recurrence given it; `constants()` gives what `update` needs that is
        the same at every step of a sequence (a matrix exponential, say), computed once per
        `forward`. `step(state, x_t) = update(state, drive(x_t), *constants())`.

    A model with a fused kernel (the elementwise engine, cuDNN, a parallel scan) overrides
    `forward` as well; `step` stays what the probes differentiate."""

    input_size: int
    hidden_size: int
    state_size: int
    batch_first: bool
    # what figures group and colour models by: elementwise, gated, reservoir,
    # orthogonal/unitary, diagonal, oscillator (or a new family of one's own)
    family: str = "other"
    # how gapbench.train fits it: "gradient" (the optimiser and clip arm of the config) or
    # "guessing" (random weight search, models/random_guess.py)
    trained_by: str = "gradient"
    # whether its training step can be captured as a CUDA graph (train.cuda_graph,
    # gapbench/graphed.py): False for a model whose forward or backward reads a value on the
    # host on a GPU (torch.linalg.matrix_exp does); such a model trains uncaptured on the device
    graph_capturable: bool = True

    def __init__(self, input_size: int, hidden_size: int, state_size: int | None = None, *, batch_first: bool = True):
        """Check and set the sizes every model has; state_size defaults to hidden_size.
        batch_first=False makes forward take and return time-major tensors, like torch.nn.RNN's
        (no option of a run: the pipeline always feeds batch-first tensors). A subclass takes it
        with `**kwargs` and hands it on: `super().__init__(input_size, hidden_size, **kwargs)`."""
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be >= 1, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.state_size = hidden_size if state_size is None else state_size
        self.batch_first = batch_first

    # ------------------------------------------------------------------ options and repr
    def options(self) -> dict:
        """The options this model was built with: the keyword-only arguments its class declares
        (`gapbench.registry.declared_options`), each read from the attribute the model keeps
        under the option's own name. `models.build(name, input_size, hidden_size,
        **model.options())` rebuilds the same model (the conformance test checks it)."""
        return option_values(self, declared_options(type(self)))

    def extra_repr(self) -> str:
        """The sizes, then every option with its value (defaults included), then batch_first
        where it is not the default: `LSTM(3, 6, state_size=12, forget_bias=1.0)`."""
        parts = [str(self.input_size), str(self.hidden_size)]
        if self.state_size != self.hidden_size:
            parts.append(f"state_size={self.state_size}")
        parts += [f"{name}={value!r}" for name, value in self.options().items()]
        if not self.batch_first:
            parts.append("batch_first=False")
        return ", ".join(parts)

    # ------------------------------------------------------------------ the state update
    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """The input's part of every step at once, (..., input_size) -> (..., drive size): by
        default x itself."""
        return x

    def constants(self) -> tuple:
        """What `update` needs that is the same at every step of a sequence, passed to it after
        drive_t: computed once per `forward` (and once per `step`). By default nothing."""
        return ()

    def update(self, state: torch.Tensor, drive_t: torch.Tensor, *constants) -> torch.Tensor:
        """s_t from s_{t-1} and drive_t = drive(x_t)[t] (and the `constants()`)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither step nor update")

    def step(self, state: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """s_t = F(s_{t-1}, x_t) on the flat state (batch, state_size): what the probes differentiate."""
        return self.update(state, self.drive(x_t), *self.constants())

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        """torch.nn.RNN's (output, h_n): the loop over `update` of the whole drive, or over `step`
        where the model states only that."""
        if type(self).update is RecurrentModel.update:
            return self.loop(self.step, x, h0)
        constants = self.constants()
        return self.loop(lambda state, drive_t: self.update(state, drive_t, *constants), self.drive(x), h0)

    @classmethod
    def batches_runs(cls, models: list[RecurrentModel]) -> bool:
        """Whether `forward_runs` computes these models' runs as one computation (then a batched
        training on a GPU backpropagates their summed losses once: gapbench.train.shares_computation);
        by default not."""
        return False

    @classmethod
    def forward_runs(cls, models: list[RecurrentModel], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The outputs of several independent models of this class (one per run of a batched
        training: gapbench.train.train_runs), each on its own input: by default one forward
        after another. A family that can compute its runs together (one batched kernel where
        there were E, what a GPU needs) overrides this; each run's result must stay the one
        its own forward gives (tests/test_batched.py)."""
        return [model(x)[0] for model, x in zip(models, xs)]

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        """The readout's view of the state; by default the first hidden_size entries."""
        return state[..., : self.hidden_size]

    def initial_state(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(batch, self.state_size)

    def recurrent_weight(self) -> torch.Tensor | None:
        """W_h for models of the form h_t = φ(W_h h_{t-1} + W_in x_t + b); None otherwise
        (the probes then write ρ(W_h) as missing, not as a number)."""
        return None

    # ------------------------------------------------------------------ the loops
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
        drive = drive if self.batch_first else drive.transpose(0, 1)
        batch = drive.shape[0]
        state = self.initial_state(batch, drive) if h0 is None else h0.reshape(batch, self.state_size).to(drive.dtype)
        states = self.iterate(update, drive, state)
        output = self.observe(states)
        return (output if self.batch_first else output.transpose(0, 1)), states[:, -1].unsqueeze(0)

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

    @staticmethod
    def batches_runs(nets: list[Net]) -> bool:
        """Whether these nets' recurrent models compute their runs as one (`RecurrentModel.batches_runs`)."""
        return type(nets[0].rnn).batches_runs([net.rnn for net in nets])

    @staticmethod
    def forward_runs(nets: list[Net], xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each net's prediction on its own input, the recurrent models computed together where
        their class can (`RecurrentModel.forward_runs`), each readout on its own."""
        outputs = type(nets[0].rnn).forward_runs([net.rnn for net in nets], xs)
        return [net.readout(output) for net, output in zip(nets, outputs)]
