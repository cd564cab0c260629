"""The vanilla (Elman) recurrent cell of the lecture."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, check_choice, linear

_NONLINEARITIES = ("tanh", "relu")


class ElmanCell(RecurrentCell):
    r"""The vanilla RNN step (Elman 1990), parameter layout as ``torch.nn.RNNCell``.

    .. math::
        a^{<t>} = g_a(W_{ax} x^{<t>} + b_{ih} + W_{aa} a^{<t-1>} + b_{hh})

    Lecture -> code: a^<t> = ``h``; W_ax = ``weight_ih`` (H, I); W_aa = ``weight_hh`` (H, H);
    b_a = ``bias_ih + bias_hh`` (two vectors, as in torch, so torch weights load unchanged);
    g_a = ``nonlinearity`` ("tanh" or "relu").

    State: ``(h,)`` with h (B, H). Initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        nonlinearity: str = "tanh",
        bias: bool = True,
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, _NONLINEARITIES)
        self.bias = bool(bias)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(H, H))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(H))
            self.bias_hh = nn.Parameter(torch.empty(H))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self.bias_ih)  # (..., H)

    def input_affine(self) -> tuple[Tensor, Tensor | None]:
        return self.weight_ih, self.bias_ih

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        pre = gx + linear(h, self.weight_hh, self.bias_hh)  # (B, H)
        h = torch.tanh(pre) if self.nonlinearity == "tanh" else torch.relu(pre)
        return h, (h,)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"
