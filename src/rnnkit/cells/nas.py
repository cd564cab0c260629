"""The recurrent cell found by neural architecture search (Zoph & Le 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, linear


class NASCell(RecurrentCell):
    r"""The NAS cell of Zoph & Le 2017 (Penn Treebank search), as TensorFlow's former
    ``contrib.rnn.NASCell`` defined it.

    Eight branches combine the input and the previous output, ``weight_ih`` (8H, I) and
    ``weight_hh`` (8H, H) packed in branch order 0..7, with optional biases (8H each):

    .. math::
        x_k &= W_{ik} x_t + b_{ik}, \quad m_k = W_{hk} h_{t-1} + b_{hk}, \quad k = 0..7 \\
        l_0 &= \sigma(x_0 + m_0), \; l_1 = \mathrm{relu}(x_1 + m_1),
        \; l_2 = \sigma(x_2 + m_2), \; l_3 = \mathrm{relu}(x_3 \odot m_3) \\
        l_4 &= \tanh(x_4 + m_4), \; l_5 = \sigma(x_5 + m_5),
        \; l_6 = \tanh(x_6 + m_6), \; l_7 = \sigma(x_7 + m_7) \\
        p_0 &= \tanh(l_0 \odot l_1), \; p_1 = \tanh(l_2 + l_3),
        \; p_2 = \tanh(l_4 \odot l_5), \; p_3 = \sigma(l_6 + l_7) \\
        c_t &= \tanh(p_0 + c_{t-1}) \odot p_1 \qquad \text{(the memory-cell injection)} \\
        h_t &= \tanh(c_t \odot \tanh(p_2 + p_3))

    Lecture -> code: a^<t> = ``h``; c^<t> = ``c``. The cell has no named gates; it is the
    lecture's "cells found by architecture search".

    Initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)). State: ``(h, c)``, both (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        self.bias = bool(bias)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(8 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(8 * H, H))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(8 * H))
            self.bias_hh = nn.Parameter(torch.empty(8 * H))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    @property
    def state_sizes(self) -> tuple[int | tuple[int, ...], ...]:
        return (self.hidden_size, self.hidden_size)

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self.bias_ih)  # (..., 8H)

    def input_affine(self) -> tuple[Tensor, Tensor | None]:
        return self.weight_ih, self.bias_ih

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        xs = gx.chunk(8, dim=1)
        ms = linear(h, self.weight_hh, self.bias_hh).chunk(8, dim=1)
        l0 = torch.sigmoid(xs[0] + ms[0])
        l1 = torch.relu(xs[1] + ms[1])
        l2 = torch.sigmoid(xs[2] + ms[2])
        l3 = torch.relu(xs[3] * ms[3])
        l4 = torch.tanh(xs[4] + ms[4])
        l5 = torch.sigmoid(xs[5] + ms[5])
        l6 = torch.tanh(xs[6] + ms[6])
        l7 = torch.sigmoid(xs[7] + ms[7])
        p0 = torch.tanh(l0 * l1)
        p1 = torch.tanh(l2 + l3)
        p2 = torch.tanh(l4 * l5)
        p3 = torch.sigmoid(l6 + l7)
        c = torch.tanh(p0 + c) * p1
        h = torch.tanh(c * torch.tanh(p2 + p3))
        return h, (h, c)
