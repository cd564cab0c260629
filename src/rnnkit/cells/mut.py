"""MUT1, MUT2, MUT3: the three best cells of Jozefowicz, Zaremba & Sutskever (2015).

The paper's MUT1 feeds tanh(x_t) and MUT2 feeds x_t straight into a gate, which only type-checks
when the input and hidden sizes agree. rnnkit uses that *literal* form when
``input_size == hidden_size`` and otherwise replaces the bare x_t by a learned projection
W x_t (its rows sit in ``weight_ih``). ``cell.literal`` says which form a cell uses.

Parameters of every MUT cell: ``weight_ih`` (G_x·H, I), ``weight_hh`` (3H or 2H, H) and one
bias vector ``bias`` (3H), packed in the order given in each class docstring. The paper writes
h_{t+1} from h_t; the docstrings write h_t from h_{t-1} like every other rnnkit cell.
Lecture -> code: a^<t> = ``h``; the update gate U is ``z`` (it weighs the new candidate);
the relevance gate R is ``r``. Initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)).
State: ``(h,)``, h (B, H).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, linear


class _MUTBase(RecurrentCell):
    def __init__(self, input_size: int, hidden_size: int, n_input_rows: int, n_hh: int) -> None:
        super().__init__(input_size, hidden_size)
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(n_input_rows * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(n_hh * H, H))
        self.bias = nn.Parameter(torch.empty(3 * H))
        self.reset_parameters()

    @property
    def literal(self) -> bool:
        return self.input_size == self.hidden_size

    @staticmethod
    def _mix(n: Tensor, z: Tensor, h: Tensor) -> Tensor:
        return n * z + h * (1.0 - z)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, literal={self.literal}"


class MUT1Cell(_MUTBase):
    r"""MUT1.

    .. math::
        z &= \sigma(W_{xz} x_t + b_z) \\
        r &= \sigma(W_{xr} x_t + W_{hr} h_{t-1} + b_r) \\
        h_t &= \tanh(W_{hh} (r \odot h_{t-1}) + u(x_t) + b_h) \odot z + h_{t-1} \odot (1 - z)

    with u(x) = tanh(x) (literal, I = H) or u(x) = tanh(W_{xh} x) (I != H).

    Packing: ``weight_ih`` rows [z, r] (literal) or [z, r, xh]; ``weight_hh`` rows [r, hh];
    ``bias`` [z, r, h].
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        rows = 2 if input_size == hidden_size else 3
        super().__init__(input_size, hidden_size, rows, 2)

    def project_input(self, x: Tensor) -> Tensor:
        H = self.hidden_size
        if self.literal:  # [W_zr x + b_zr | tanh(x) + b_h] in one buffer
            from ..engine.projection import block_projection  # (the engine imports the cells)

            blocks = (("linear", 2 * H, 0), ("tanh", H))
            return block_projection(x, self.weight_ih, self.bias, blocks)
        gzr = linear(x, self.weight_ih[: 2 * H], self.bias[: 2 * H])  # (..., 2H)
        u = torch.tanh(linear(x, self.weight_ih[2 * H :], None))
        return torch.cat([gzr, u + self.bias[2 * H :]], dim=-1)  # (..., 3H)

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        H = self.hidden_size
        gx_z, gx_r, gx_h = gx.chunk(3, dim=1)
        z = torch.sigmoid(gx_z)
        r = torch.sigmoid(gx_r + linear(h, self.weight_hh[:H], None))
        n = torch.tanh(linear(r * h, self.weight_hh[H:], None) + gx_h)
        h = self._mix(n, z, h)
        return h, (h,)


class MUT2Cell(_MUTBase):
    r"""MUT2.

    .. math::
        z &= \sigma(W_{xz} x_t + W_{hz} h_{t-1} + b_z) \\
        r &= \sigma(v(x_t) + W_{hr} h_{t-1} + b_r) \\
        h_t &= \tanh(W_{hh} (r \odot h_{t-1}) + W_{xh} x_t + b_h) \odot z + h_{t-1} \odot (1 - z)

    with v(x) = x (literal, I = H) or v(x) = W_{xr} x (I != H).

    Packing: ``weight_ih`` rows [z, xh] (literal) or [z, xr, xh]; ``weight_hh`` rows
    [z, r, hh]; ``bias`` [z, r, h].
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        rows = 2 if input_size == hidden_size else 3
        super().__init__(input_size, hidden_size, rows, 3)

    def project_input(self, x: Tensor) -> Tensor:
        H = self.hidden_size
        if self.literal:  # [W_z x + b_z | x + b_r | W_xh x + b_h] in one buffer
            from ..engine.projection import block_projection  # (the engine imports the cells)

            blocks = (("linear", H, 0), ("identity", H), ("linear", H, H))
            return block_projection(x, self.weight_ih, self.bias, blocks)
        # weight_ih rows [z, xr, xh]: one product gives [W_z x | W_xr x | W_xh x]
        return linear(x, self.weight_ih, self.bias)  # (..., 3H)

    def input_affine(self) -> tuple[Tensor, Tensor | None] | None:
        return None if self.literal else (self.weight_ih, self.bias)

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        H = self.hidden_size
        gx_z, gx_r, gx_h = gx.chunk(3, dim=1)
        gh_z, gh_r = linear(h, self.weight_hh[: 2 * H], None).chunk(2, dim=1)
        z = torch.sigmoid(gx_z + gh_z)
        r = torch.sigmoid(gx_r + gh_r)
        n = torch.tanh(linear(r * h, self.weight_hh[2 * H :], None) + gx_h)
        h = self._mix(n, z, h)
        return h, (h,)


class MUT3Cell(_MUTBase):
    r"""MUT3.

    .. math::
        z &= \sigma(W_{xz} x_t + W_{hz} \tanh(h_{t-1}) + b_z) \\
        r &= \sigma(W_{xr} x_t + W_{hr} h_{t-1} + b_r) \\
        h_t &= \tanh(W_{hh} (r \odot h_{t-1}) + W_{xh} x_t + b_h) \odot z + h_{t-1} \odot (1 - z)

    Packing: ``weight_ih`` rows [z, r, xh]; ``weight_hh`` rows [z, r, hh]; ``bias`` [z, r, h].
    (MUT3 has no literal/projected distinction: every input term has its own matrix.)
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, 3, 3)

    @property
    def literal(self) -> bool:
        return True

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self.bias)  # (..., 3H)

    def input_affine(self) -> tuple[Tensor, Tensor | None]:
        return self.weight_ih, self.bias

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state
        H = self.hidden_size
        gx_z, gx_r, gx_h = gx.chunk(3, dim=1)
        z = torch.sigmoid(gx_z + linear(torch.tanh(h), self.weight_hh[:H], None))
        r = torch.sigmoid(gx_r + linear(h, self.weight_hh[H : 2 * H], None))
        n = torch.tanh(linear(r * h, self.weight_hh[2 * H :], None) + gx_h)
        h = self._mix(n, z, h)
        return h, (h,)
