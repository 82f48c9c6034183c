"""One linearisation per model kind: a float64 trajectory and how one step's Jacobian is applied.

Every probe but memory_capacity is written once against `Linearisation`; the two kinds differ
only in how J_l = ∂s_l/∂s_{l-1} (and ∂s_l/∂x_l) is formed and applied:

    Analytic  elementwise RNNs h_t = φ(W_h h_{t-1} + W_in x_t + b) (`is_elementwise`):
              J_l = D_l W_h,  ∂h_l/∂x_l = D_l W_in,  D_l = diag(φ'(a_l)) read off the states
              (φ' from the output h = φ(a)); one matrix product per step
    Generic   any RecurrentModel, from `step` and `observe` alone: reverse-mode automatic
              differentiation (torch.func.vjp, vmapped over the cotangent rows)

`linearisation(model, method)` picks the kind for a probe's `method` (METHODS: "auto" takes
the analytic one where it applies), `kind.first(x, probe, sequences)` the sequences the probe
uses (the kinds' defaults differ: `sequences`), and `with kind.along(model, x) as run:` gives
the linearisation along x. The generic kind's context is one thread with parametrizations
(an orthogonal or matrix-exponential W_h) computed once, not at every step and vjp; the
analytic kind sets nothing (its forward runs on one thread, and each probe puts its loops on
one thread itself), so what a probe computes outside its own `one_thread()` block keeps the
thread setting it always had on each path.

Index conventions: states[:, l] is s_{l+1} (the state after 0-based step l), previous[:, l] is
s_l; J_l is evaluated at step l's input; on the analytic path D_l = diag(φ'(a_l)) uses that
step's output and J_l = D_l W_h (the lecture's D_{l+1} W_hᵀ is the same Jacobian for its
h_{l+1} = tanh(W_hᵀ h_l + …): its W_h is our W_hᵀ, and its index l+1 our 0-based step l).
"""
from __future__ import annotations

import contextlib
import copy
import functools

import torch
from torch.nn.utils import parametrize

from gapbench.engine import activation as get_activation
from gapbench.models._elementwise import ElementwiseRNN
from gapbench.probes._numerics import one_thread

METHODS = ("auto", "analytic", "generic")

# How many of the probe batch's sequences the generic path uses where its default differs
# from the analytic path's (all for sensitivity, 8 for lyapunov): there a step costs a
# batched vjp of S rows per sequence through the whole step, not one S×S product.
GENERIC_SEQUENCES = {"sensitivity": 8, "lyapunov": 2}


def is_elementwise(model) -> bool:
    """Whether the analytic linearisation describes the model: an ElementwiseRNN whose state
    update is the shared h_t = φ(W_h h_{t-1} + W_in x_t + b), i.e. that overrides neither
    `step` nor `forward` (a leaky variant, say, is not), nor the input drive W_in x_t + b that
    both use (∂h_l/∂x_l = D_l W_in assumes it). The one place this rule is stated."""
    kept = ("step", "forward", "drive")
    return isinstance(model, ElementwiseRNN) and all(
        getattr(type(model), name, None) is getattr(ElementwiseRNN, name, None) for name in kept)


def require_model(model):
    """A TypeError unless the model is a gapbench RecurrentModel (what the generic path and
    memory_capacity use of it)."""
    missing = [name for name in ("step", "observe", "initial_state", "unroll")
               if not callable(getattr(model, name, None))]
    if missing or not hasattr(model, "state_size"):
        raise TypeError(
            f"{type(model).__name__} is not a gapbench RecurrentModel (it lacks "
            f"{', '.join(missing) or 'state_size'}): the probes differentiate step(state, x_t) and "
            "read observe(state); elementwise RNNs (recurrent_weight() = W_h) take the analytic path"
        )


def linearisation(model, method: str = "auto") -> type[Linearisation]:
    """The kind for `method` in METHODS: Analytic or Generic ('auto': analytic where it applies)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {list(METHODS)}")
    if method == "analytic" and not is_elementwise(model):
        raise TypeError(f"{type(model).__name__} is not an elementwise RNN: only method='generic' applies")
    if method == "auto":
        method = "analytic" if is_elementwise(model) else "generic"
    if method == "generic":
        require_model(model)
    return Analytic if method == "analytic" else Generic


def linearise_once(model, x) -> None:
    """What the probes ask of a model, once, along x (B, T, I): the linearisation kind the probes
    take for it, its float64 trajectory, step 0's pullback of a batch of cotangent rows (state
    and input), what the readout sees (observe's Jacobian on the generic path) and W_h. The
    pre-flight runs it (gapbench/config.py): torch.func refuses code that training runs without
    complaint, such as an autograd.Function without setup_context in step, or .item() or an `if`
    on a value in observe."""
    with linearisation(model).along(model, x) as run:
        rows = torch.ones(run.states.shape[0], 2, run.states.shape[-1], dtype=torch.float64)
        run.pullback(0, rows, inputs=True)
        _ = run.observed, run.recurrent_weight  # built on first use: vmap(jacrev(observe)); W_h or None


def float64_copy(model):
    """A float64 CPU copy in eval mode (no dropout in the map being measured); complex
    parameters (a diagonal complex recurrence) become complex128 (Module.double() leaves
    them as they are)."""
    model64 = copy.deepcopy(model).cpu().double().eval()
    return model64._apply(lambda t: t.to(torch.complex128) if t.is_complex() else t)


@torch.no_grad()
def float64_states(model, x):
    """(the float64 copy, its forward output under x): the model's own forward (its fast
    path), on one thread."""
    model64 = float64_copy(model)
    with one_thread():
        output, _ = model64(x.cpu().double())
    return model64, output


class Linearisation:
    """A model's float64 trajectory under x and its step Jacobians: what the probes use.

    model     the float64 CPU copy;   x (B, T, I) float64
    initial   s_0 (B, S);   states (B, T, S): states[:, l] = s_{l+1};   previous: s_l at [:, l]
    slopes    D as φ'(a) (B, T, S) on the analytic path, None on the generic one
    recurrent_weight   W_h, detached; None where the model has none
    observed  what the readout sees (`Observed`), or None: the whole state (the probes' observed
              columns then repeat the full ones)
    observe(s)                       the readout's input o = observe(s)
    pullback(l, c, inputs=False)     (c J_l,) or (c J_l, c ∂s_l/∂x_l) for cotangent rows c
                                     (B, S) or (B, R, S)
    jacobian(l)                      J_l (B, S, S)
    apply(l, Q)                      J_l Q for Q (B, S, k) or (S, k)
    sequences                        per-probe default number of sequences (None: all of x)
    """

    sequences: dict[str, int | None]
    slopes: torch.Tensor | None = None
    observed: Observed | None = None
    recurrent_weight: torch.Tensor | None

    model: torch.nn.Module
    x: torch.Tensor
    initial: torch.Tensor
    states: torch.Tensor

    @classmethod
    def first(cls, x, probe: str, sequences: int | None = None):
        """The first `sequences` sequences of x; None: this kind's default for `probe`."""
        return x[: cls.sequences[probe] if sequences is None else sequences]

    @classmethod
    @contextlib.contextmanager
    def along(cls, model, x):
        """The linearisation along x, valid inside the context."""
        yield cls(model, x)

    @functools.cached_property
    def previous(self) -> torch.Tensor:
        return torch.cat([self.initial.unsqueeze(1), self.states[:, :-1]], 1)

    def observe(self, state: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pullback(self, l: int, cotangent: torch.Tensor, inputs: bool = False) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def jacobian(self, l: int) -> torch.Tensor:
        raise NotImplementedError

    def apply(self, l: int, basis: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Analytic(Linearisation):
    """Elementwise RNNs: J_l = D_l W_h and ∂h_l/∂x_l = D_l W_in with D_l = diag(φ'(a_l)) from the
    states of the model's own forward. The readout sees the whole state (observed is None).
    Slopes are ones for the linear activation, so no probe needs a special case for it."""

    sequences = {"sensitivity": None, "lyapunov": 8}

    @torch.no_grad()
    def __init__(self, model, x):
        derivative = get_activation(model.activation).derivative_from_output
        self.x = x.cpu().double()
        self.model, self.states = float64_states(model, self.x)
        self.initial = torch.zeros_like(self.states[:, 0])  # forward's h_0
        self.recurrent_weight = self.model.recurrent_weight().detach()
        self.slopes = torch.ones_like(self.states) if derivative is None else derivative(self.states)
        self.weight_in = self.model.weight_ih.detach()

    def observe(self, state):
        return state

    def pullback(self, l, cotangent, inputs=False):
        """c D_l W_h (and c D_l W_in): the row-vector forms of J_lᵀ c, D_l shared by both."""
        slopes = self.slopes[:, l]
        scaled = cotangent * (slopes if cotangent.dim() == 2 else slopes.unsqueeze(1))
        if inputs:
            return scaled @ self.recurrent_weight, scaled @ self.weight_in
        return (scaled @ self.recurrent_weight,)

    def jacobian(self, l):
        return self.slopes[:, l].unsqueeze(-1) * self.recurrent_weight  # row i of W_h times φ'_i

    def apply(self, l, basis):
        return self.slopes[:, l].unsqueeze(-1) * (self.recurrent_weight @ basis)


class Generic(Linearisation):
    """Any RecurrentModel, from `step` and `observe`: the trajectory by `unroll`, Jacobians by
    torch.func.vjp. Reverse mode only, no jvp: every trained model has backward formulas, not
    all have forward-mode ones, and a full Jacobian from one batched vjp followed by J Q was
    measured cheaper than the k = S columns J Q by batched jvp up to S = 128 (GRU cell,
    8 sequences, per step: 1.1 against 1.5 ms at S = 64, 7.6 against 8.9 ms at S = 128; at
    S = 256 it is 10% dearer, 47 against 43 ms)."""

    sequences = GENERIC_SEQUENCES

    def __init__(self, model64, x, initial, states):
        self.model, self.x, self.initial, self.states = model64, x, initial, states

    @classmethod
    @contextlib.contextmanager
    def along(cls, model, x):
        """One thread, parametrizations cached, derivatives in the state (and input) only."""
        model64 = float64_copy(model).requires_grad_(False)
        x = x.detach().cpu().double()
        with one_thread(), parametrize.cached():
            with torch.no_grad():
                initial = model64.initial_state(x.shape[0], x)
                _, states = model64.unroll(x, initial)
            yield cls(model64, x, initial, states)

    @functools.cached_property
    def observed(self) -> Observed:
        return Observed(self.model, self.states)

    @functools.cached_property
    def recurrent_weight(self) -> torch.Tensor | None:
        with torch.no_grad():
            weight = self.model.recurrent_weight()
        return None if weight is None else weight.detach()

    def observe(self, state):
        return self.model.observe(state)

    def pullback(self, l, cotangent, inputs=False):
        """One vjp through step l, vmapped over the rows of a (B, R, S) cotangent. Sequences
        are independent rows of `step`, so the batched vjp is the per-sequence one."""
        x_l = self.x[:, l]
        if inputs:
            _, vjp = torch.func.vjp(self.model.step, self.previous[:, l], x_l)
        else:
            _, vjp = torch.func.vjp(lambda state: self.model.step(state, x_l), self.previous[:, l])
        if cotangent.dim() == 2:
            return vjp(cotangent)
        return torch.func.vmap(vjp, in_dims=1, out_dims=1)(cotangent)

    def jacobian(self, l):
        """The pullback of the identity rows."""
        batch, size = self.states.shape[0], self.states.shape[-1]
        identity = torch.eye(size, dtype=torch.float64).expand(batch, size, size)
        return self.pullback(l, identity)[0]

    def apply(self, l, basis):
        """J_l from one batched vjp, then J_l Q (see the class docstring for why not jvp)."""
        jacobian = self.jacobian(l)
        with torch.no_grad():
            return jacobian @ basis


class Observed:
    """What the readout sees of the state: O(s) = ∂observe(s)/∂s, (hidden, state).

    When observe selects coordinates (O is a fixed 0/1 selection matrix: h of an LSTM's
    [h, c], y of coRNN's [y, z], an elementwise RNN's whole state), `index` holds them;
    otherwise (a general, e.g. linear C s, observe) O is evaluated at each state.
    """

    def __init__(self, model64, states: torch.Tensor):
        def observe_one(state):
            return model64.observe(state.unsqueeze(0)).squeeze(0)

        self._jacobian = torch.func.vmap(torch.func.jacrev(observe_one))
        size = states.shape[-1]
        somewhere = torch.randn(size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        samples = self._jacobian(torch.stack([states[0, 0], states[0, -1], somewhere]))
        first = samples[0]
        selection = (bool((samples == first).all()) and bool(((first == 0) | (first == 1)).all())
                     and bool((first.sum(1) == 1).all()) and bool((first.sum(0) <= 1).all()))
        self.index = first.argmax(1) if selection else None

    def rows(self, states: torch.Tensor) -> torch.Tensor:
        """O at each state of a (B, S) batch: (B, hidden, S)."""
        return self._jacobian(states)

    def gradient_norm(self, g: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """||P g|| per row of g (B, S): P the orthogonal projector onto O's row space."""
        if self.index is not None:
            return g[:, self.index].norm(dim=1)
        _, singular, right = torch.linalg.svd(self.rows(states), full_matrices=False)
        keep = singular > singular[:, :1] * g.shape[-1] * torch.finfo(torch.float64).eps
        return ((right @ g.unsqueeze(-1)).squeeze(-1) * keep).norm(dim=1)
