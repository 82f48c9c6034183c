"""Long short-term memory (Hochreiter & Schmidhuber 1997) with a forget gate (Gers et al. 2000)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gapbench.models import register
from gapbench.models._base import RecurrentModel


@register("lstm")
class LSTM(RecurrentModel):
    """One LSTM layer, torch.nn.LSTM's equations and weights (gate order i, f, g, o):

        i_t = σ(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)      input gate
        f_t = σ(W_if x_t + b_if + W_hf h_{t-1} + b_hf)      forget gate (Gers et al. 2000)
        g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)   cell input
        o_t = σ(W_io x_t + b_io + W_ho h_{t-1} + b_ho)      output gate
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                     the constant error carousel when f = 1, i = 0
        h_t = o_t ⊙ tanh(c_t)

    Hochreiter & Schmidhuber 1997 (no forget gate, i.e. f ≡ 1); the forget gate is Gers,
    Schmidhuber & Cummins 2000. `forward` is torch.nn.LSTM itself (cuDNN on a GPU); `step`
    writes the same equations with the same weights (`self.lstm.weight_ih_l0`, ...).

    State: s = [h, c], state_size = 2 · hidden_size; observe(s) = h (the readout sees h only).
    forward(x, h0) accepts h0 as torch.nn.LSTM does, a pair (h_0, c_0) of shape
    (1, batch, hidden) each, or as the flat state [h, c] of shape (batch, 2·hidden) or
    (1, batch, 2·hidden); it returns (output, (h_n, c_n)) like torch.nn.LSTM.

    forget_bias (default 1.0): initial bias of the forget gate. torch has two bias vectors,
    b_ih and b_hh, which only enter through their sum; the forget-gate slice of b_ih is set
    to `forget_bias` and that of b_hh to 0, so b_if + b_hf = forget_bias exactly (every other
    bias entry and every weight keep torch.nn.LSTM's U(-1/√H, 1/√H) initialisation). A bias of
    1 keeps the forget gate mostly open at the start of training (Gers et al. 2000;
    Jozefowicz, Zaremba & Sutskever 2015, "An empirical exploration of recurrent network
    architectures", who found it closes most of the gap between the LSTM and the GRU).
    It is an initialisation: training moves it like any other bias.
    """

    family = "gated"

    def __init__(self, input_size, hidden_size, *, forget_bias=1.0, **kwargs):
        super().__init__(input_size, hidden_size, 2 * hidden_size, **kwargs)
        self.forget_bias = float(forget_bias)
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=self.batch_first)
        forget = slice(hidden_size, 2 * hidden_size)
        with torch.no_grad():
            self.lstm.bias_ih_l0[forget] = self.forget_bias
            self.lstm.bias_hh_l0[forget] = 0.0

    def step(self, state, x_t):
        h, c = state[..., : self.hidden_size], state[..., self.hidden_size :]
        lstm = self.lstm
        gates = F.linear(x_t, lstm.weight_ih_l0, lstm.bias_ih_l0) + F.linear(h, lstm.weight_hh_l0, lstm.bias_hh_l0)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return torch.cat([h, c], dim=-1)

    def _initial_pair(self, h0, batch, like):
        """(h_0, c_0) of shape (1, batch, hidden) each from any accepted form of h0."""
        if h0 is None:
            zeros = like.new_zeros(1, batch, self.hidden_size)
            return zeros, zeros
        if isinstance(h0, (tuple, list)):
            h, c = h0
        elif h0.shape[-1] == self.state_size:
            h, c = h0[..., : self.hidden_size], h0[..., self.hidden_size :]
        else:
            raise ValueError(
                f"h0 must be a pair (h_0, c_0) or the flat state [h, c] with last dimension "
                f"{self.state_size}, got shape {tuple(h0.shape)}"
            )
        return (h.reshape(1, batch, self.hidden_size).to(like.dtype),
                c.reshape(1, batch, self.hidden_size).to(like.dtype))

    def forward(self, x, h0=None):
        batch = x.shape[0] if self.batch_first else x.shape[1]
        return self.lstm(x, self._initial_pair(h0, batch, x))
