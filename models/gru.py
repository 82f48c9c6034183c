"""Gated recurrent unit (Cho et al. 2014), as torch.nn.GRU computes it."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from gapbench.models import register
from gapbench.models._base import RecurrentModel


@register("gru")
class GRU(RecurrentModel):
    """One GRU layer, torch.nn.GRU's equations and weights (gate order r, z, n):

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)              reset gate
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)              update gate
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))   candidate
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Cho et al. 2014, "Learning phrase representations using RNN encoder-decoder for
    statistical machine translation". As in torch (and cuDNN), the reset gate multiplies
    W_hn h_{t-1} + b_hn, i.e. it is applied after the recurrent product (the "reset-after"
    form of the paper's first arXiv version, 1406.1078v1), not to h_{t-1} before it as in the
    published version (v3, Eq. 8); Keras names the two the same way.
    `forward` is torch.nn.GRU itself (cuDNN on a GPU); `step` writes the equations above with
    the same weights (`self.gru.weight_ih_l0`, ...), initialised like torch.nn.GRU,
    U(-1/√H, 1/√H) for every weight and bias.

    State: h, state_size = hidden_size; observe(h) = h. forward(x, h0) takes h0 of shape
    (1, batch, hidden) or (batch, hidden) and returns (output, h_n) like torch.nn.GRU.
    """

    family = "gated"

    def __init__(self, input_size, hidden_size, **kwargs):
        super().__init__(input_size, hidden_size, **kwargs)
        self.gru = nn.GRU(input_size, hidden_size, batch_first=self.batch_first)

    def step(self, state, x_t):
        gru = self.gru
        input_r, input_z, input_n = F.linear(x_t, gru.weight_ih_l0, gru.bias_ih_l0).chunk(3, dim=-1)
        hidden_r, hidden_z, hidden_n = F.linear(state, gru.weight_hh_l0, gru.bias_hh_l0).chunk(3, dim=-1)
        r = torch.sigmoid(input_r + hidden_r)
        z = torch.sigmoid(input_z + hidden_z)
        n = torch.tanh(input_n + r * hidden_n)
        return (1.0 - z) * n + z * state

    def forward(self, x, h0=None):
        if h0 is not None:
            batch = x.shape[0] if self.batch_first else x.shape[1]
            h0 = h0.reshape(1, batch, self.hidden_size).to(x.dtype)
        return self.gru(x, h0)
