"""Gated recurrent units: GRU in both published forms, and the minimal gated unit."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, linear


class GRUCell(RecurrentCell):
    r"""Gated recurrent unit (Cho et al. 2014), parameter layout as ``torch.nn.GRUCell``.

    Gate packing order in ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), ``bias_ih``,
    ``bias_hh`` (3H): **r, z, n**.

    .. math::
        r &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n &= \tanh(W_{in} x_t + b_{in} + r \odot (W_{hn} h_{t-1} + b_{hn}))
             &&\text{reset\_after=True (torch, cuDNN)} \\
        n &= \tanh(W_{in} x_t + b_{in} + W_{hn} (r \odot h_{t-1}) + b_{hn})
             &&\text{reset\_after=False (Cho et al., the lecture, Keras)} \\
        h_t &= (1 - z) \odot n + z \odot h_{t-1}

    ``reset_after=False`` applies the relevance gate to a^<t-1> *before* the matrix product,
    which is the lecture's c~^<t> = g_c(W_ca (R * a^<t-1>) + W_cx x^<t> + b_c); torch.nn has only
    the other form.

    Lecture -> code: a^<t> = c^<t> = ``h``; c~^<t> = ``n``; relevance gate R = ``r``;
    update gate U = ``1 - z`` (torch's z weighs the *old* state, the lecture's U the new one);
    forget gate F = 1 - U = ``z``.

    Initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)). State: ``(h,)``, h (B, H).
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, reset_after: bool = True
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.bias = bool(bias)
        self.reset_after = bool(reset_after)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(3 * H))
            self.bias_hh = nn.Parameter(torch.empty(3 * H))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self.bias_ih)  # (..., 3H)

    def input_affine(self) -> tuple[Tensor, Tensor | None]:
        return self.weight_ih, self.bias_ih

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        H = self.hidden_size
        gx_r, gx_z, gx_n = gx.chunk(3, dim=1)
        if self.reset_after:
            gh_r, gh_z, gh_n = linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
            r = torch.sigmoid(gx_r + gh_r)
            z = torch.sigmoid(gx_z + gh_z)
            n = torch.tanh(gx_n + r * gh_n)
        else:
            b_rz = None if self.bias_hh is None else self.bias_hh[: 2 * H]
            b_n = None if self.bias_hh is None else self.bias_hh[2 * H :]
            gh_r, gh_z = linear(h, self.weight_hh[: 2 * H], b_rz).chunk(2, dim=1)
            r = torch.sigmoid(gx_r + gh_r)
            z = torch.sigmoid(gx_z + gh_z)
            n = torch.tanh(gx_n + linear(r * h, self.weight_hh[2 * H :], b_n))
        h = (1.0 - z) * n + z * h
        return h, (h,)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, reset_after={self.reset_after}"


class MGUCell(RecurrentCell):
    r"""Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016): a GRU with one gate.

    Gate packing order in ``weight_ih`` (2H, I), ``weight_hh`` (2H, H), ``bias_ih``,
    ``bias_hh`` (2H): **f, n**.

    .. math::
        f &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        n &= \tanh(W_{in} x_t + b_{in} + W_{hn} (f \odot h_{t-1}) + b_{hn}) \\
        h_t &= (1 - f) \odot h_{t-1} + f \odot n

    Lecture -> code: forget gate F = ``f`` plays both the update gate (U = f) and the relevance
    gate (R = f); c~^<t> = ``n``; a^<t> = ``h``.

    Initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)). State: ``(h,)``, h (B, H).
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        self.bias = bool(bias)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(2 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(2 * H, H))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(2 * H))
            self.bias_hh = nn.Parameter(torch.empty(2 * H))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self.bias_ih)  # (..., 2H)

    def input_affine(self) -> tuple[Tensor, Tensor | None]:
        return self.weight_ih, self.bias_ih

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        H = self.hidden_size
        gx_f, gx_n = gx.chunk(2, dim=1)
        b_f = None if self.bias_hh is None else self.bias_hh[:H]
        b_n = None if self.bias_hh is None else self.bias_hh[H:]
        f = torch.sigmoid(gx_f + linear(h, self.weight_hh[:H], b_f))
        n = torch.tanh(gx_n + linear(f * h, self.weight_hh[H:], b_n))
        h = (1.0 - f) * h + f * n
        return h, (h,)
