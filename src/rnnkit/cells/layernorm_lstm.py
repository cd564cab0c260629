"""LSTM with layer normalisation on the gate pre-activations and on the memory cell."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import RecurrentCell, State, linear


class LayerNormLSTMCell(RecurrentCell):
    r"""Layer-normalised LSTM (Ba, Kiros & Hinton 2016), in the "per-gate" variant.

    Gate packing order i, f, g, o as :class:`LSTMCell`. Each gate's pre-activation is
    normalised over its H features on its own, then scaled and shifted; the memory cell is
    normalised before the output squashing:

    .. math::
        z_k &= W_{ik} x_t + W_{hk} h_{t-1} \qquad k \in \{i, f, g, o\} \\
        \hat z_k &= \gamma_k \odot \mathrm{LN}(z_k) + \beta_k \\
        c_t &= \sigma(\hat z_f) \odot c_{t-1} + \sigma(\hat z_i) \odot \tanh(\hat z_g) \\
        h_t &= \sigma(\hat z_o) \odot \tanh(\gamma_c \odot \mathrm{LN}(c_t) + \beta_c)

    with LN(v) = (v - mean(v)) / sqrt(var(v) + eps) over the feature axis (biased variance).
    This is the variant of TensorFlow's ``LayerNormBasicLSTMCell``: the input and recurrent
    terms are summed before normalising (Ba et al. normalise them separately, which costs two
    more reductions per step for no reported gain). The shift β_k replaces the usual bias, so
    there is no ``bias_ih``/``bias_hh``; the stored c_t is the un-normalised one.

    Parameters: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``ln_gates_weight`` γ (4H),
    ``ln_gates_bias`` β (4H), ``ln_cell_weight`` γ_c (H), ``ln_cell_bias`` β_c (H).

    Lecture -> code as :class:`LSTMCell` (U = i, F = f, O = o, c~ = g).

    Initialisation: weights ~ U(-1/sqrt(H), 1/sqrt(H)), γ = 1, β = 0 except β_f =
    ``forget_bias``.

    State: ``(h, c)``, both (B, H).
    """

    def __init__(
        self, input_size: int, hidden_size: int, forget_bias: float = 1.0, eps: float = 1e-5
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.forget_bias = float(forget_bias)
        self.eps = float(eps)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H))
        self.ln_gates_weight = nn.Parameter(torch.empty(4 * H))
        self.ln_gates_bias = nn.Parameter(torch.empty(4 * H))
        self.ln_cell_weight = nn.Parameter(torch.empty(H))
        self.ln_cell_bias = nn.Parameter(torch.empty(H))
        self.reset_parameters()

    @property
    def state_sizes(self) -> tuple[int | tuple[int, ...], ...]:
        return (self.hidden_size, self.hidden_size)

    def reset_parameters(self) -> None:
        H = self.hidden_size
        bound = 1.0 / math.sqrt(H)
        with torch.no_grad():
            nn.init.uniform_(self.weight_ih, -bound, bound)
            nn.init.uniform_(self.weight_hh, -bound, bound)
            self.ln_gates_weight.fill_(1.0)
            self.ln_gates_bias.zero_()
            self.ln_gates_bias[H : 2 * H] = self.forget_bias
            self.ln_cell_weight.fill_(1.0)
            self.ln_cell_bias.zero_()

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, None)  # (..., 4H)

    def input_affine(self) -> tuple[Tensor, Tensor | None]:
        return self.weight_ih, None

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        B, H = h.shape[0], self.hidden_size
        z = (gx + linear(h, self.weight_hh, None)).view(B, 4, H)  # (B, 4, H)
        z = F.layer_norm(z, (H,), eps=self.eps).reshape(B, 4 * H)
        z = z * self.ln_gates_weight + self.ln_gates_bias  # (B, 4H)
        i, f, g, o = z.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        c_hat = F.layer_norm(c, (H,), self.ln_cell_weight, self.ln_cell_bias, self.eps)
        h = torch.sigmoid(o) * torch.tanh(c_hat)
        return h, (h, c)
