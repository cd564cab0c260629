"""LSTM cell: plain, peephole (Gers et al. 2002) and projected (Sak et al. 2014)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, linear


class LSTMCell(RecurrentCell):
    r"""Long short-term memory (Hochreiter & Schmidhuber 1997) with optional peepholes.

    Gate packing order in ``weight_ih`` (4H, I), ``weight_hh`` (4H, P or H), ``bias_ih`` and
    ``bias_hh`` (4H): **i, f, g, o**, as ``torch.nn.LSTM``.

    .. math::
        i &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi} + w_{ci} \odot c_{t-1}) \\
        f &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf} + w_{cf} \odot c_{t-1}) \\
        g &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        c_t &= f \odot c_{t-1} + i \odot g \\
        o &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho} + w_{co} \odot c_t) \\
        h_t &= o \odot \tanh(c_t) \qquad (\text{then } h_t \leftarrow W_{hr} h_t
               \text{ if } P > 0)

    The peephole terms (``w_ci``, ``w_cf``, ``w_co``, diagonal, each (H,)) exist only with
    ``peephole=True``; they follow Gers, Schraudolph & Schmidhuber 2002: the input and forget
    gates look at c_{t-1}, the output gate at the new c_t.

    Lecture -> code: a^<t> = ``h``; c^<t> = ``c``; c~^<t> = ``g``; update gate U = ``i``;
    forget gate F = ``f``; output gate O = ``o``. The lecture writes a^<t> = O * c^<t>; the
    standard cell (and this one) squashes the memory first: a^<t> = O * tanh(c^<t>).

    ``proj_size=P > 0`` adds ``weight_hr`` (P, H) exactly as ``torch.nn.LSTM(proj_size=P)``: the
    output and the recurrent state h are then P-dimensional, c stays H-dimensional.

    Initialisation: every parameter ~ U(-1/sqrt(H), 1/sqrt(H)) (torch's), then ``forget_bias``
    is added to the forget-gate slice of ``bias_ih`` (Jozefowicz et al. 2015 recommend 1.0;
    pass 0.0 for torch's exact initialisation; ignored when ``bias=False``).

    State: ``(h, c)`` with h (B, P or H) and c (B, H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        peephole: bool = False,
        proj_size: int = 0,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if isinstance(proj_size, bool) or not isinstance(proj_size, int):
            raise TypeError(f"proj_size must be an int, got {type(proj_size).__name__}")
        if proj_size < 0 or proj_size >= hidden_size and proj_size != 0:
            raise ValueError(
                f"proj_size must be 0 or in [1, hidden_size={hidden_size}), got {proj_size}"
            )
        self.bias = bool(bias)
        self.peephole = bool(peephole)
        self.proj_size = proj_size
        self.forget_bias = float(forget_bias)
        H, R = hidden_size, proj_size or hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, R))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * H))
            self.bias_hh = nn.Parameter(torch.empty(4 * H))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if proj_size:
            self.weight_hr = nn.Parameter(torch.empty(proj_size, H))
        else:
            self.register_parameter("weight_hr", None)
        if self.peephole:
            self.weight_ci = nn.Parameter(torch.empty(H))
            self.weight_cf = nn.Parameter(torch.empty(H))
            self.weight_co = nn.Parameter(torch.empty(H))
        else:
            self.register_parameter("weight_ci", None)
            self.register_parameter("weight_cf", None)
            self.register_parameter("weight_co", None)
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def state_sizes(self) -> tuple[int | tuple[int, ...], ...]:
        return (self.proj_size or self.hidden_size, self.hidden_size)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias and self.forget_bias:
            H = self.hidden_size
            with torch.no_grad():
                self.bias_ih[H : 2 * H] += self.forget_bias

    def project_input(self, x: Tensor) -> Tensor:
        return linear(x, self.weight_ih, self.bias_ih)  # (..., 4H)

    def input_affine(self) -> tuple[Tensor, Tensor | None]:
        return self.weight_ih, self.bias_ih

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state
        gates = gx + linear(h, self.weight_hh, self.bias_hh)  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)  # each (B, H)
        if self.peephole:
            i = i + self.weight_ci * c
            f = f + self.weight_cf * c
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if self.peephole:
            o = o + self.weight_co * c
        h = torch.sigmoid(o) * torch.tanh(c)
        if self.weight_hr is not None:
            h = linear(h, self.weight_hr, None)  # (B, P)
        return h, (h, c)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.peephole:
            s += ", peephole=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s + f", forget_bias={self.forget_bias}"
