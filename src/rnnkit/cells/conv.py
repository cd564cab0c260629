"""Convolutional recurrent cells: ConvLSTM (Shi et al. 2015) and ConvGRU (Ballas et al. 2016).

The state of a convolutional cell is an image (or a 1-D signal, or a volume): the matrix
products of the vector cells become convolutions and the state keeps the input's spatial shape
('same' padding). Shapes extend the glossary of :mod:`rnnkit.cells.base` with

    C channels (C_in of the input, C_h of the state; ``input_size`` and ``hidden_size``),
    S the spatial shape: (W,), (H, W) or (D, H, W), fixed at construction.

One step of the input is (B, C_in, *S); every state tensor is (B, C_h, *S), so
``state_sizes`` holds tuples (C_h, *S). These cells run through :class:`rnnkit.Recurrent`
like every other cell: sequences are (T, B, C_in, *S), or (B, T, C_in, *S) with
``batch_first``; layers, directions (concatenated along channels), lengths, initial states and
streaming work unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .base import RecurrentCell, State

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _check_spatial_size(spatial_size: object) -> tuple[int, ...]:
    if not isinstance(spatial_size, (tuple, list)) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in spatial_size
    ):
        raise TypeError(
            f"spatial_size must be a tuple of 1 to 3 ints ((W,), (H, W) or (D, H, W)), "
            f"got {spatial_size!r}"
        )
    if not 1 <= len(spatial_size) <= 3 or min(spatial_size) < 1:
        raise ValueError(
            f"spatial_size must hold 1 to 3 positive ints ((W,), (H, W) or (D, H, W)), "
            f"got {tuple(spatial_size)}"
        )
    return tuple(spatial_size)


def _check_kernel_size(kernel_size: object, ndim: int) -> tuple[int, ...]:
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        kernel_size = (kernel_size,) * ndim
    if not isinstance(kernel_size, (tuple, list)) or not all(
        isinstance(k, int) and not isinstance(k, bool) for k in kernel_size
    ):
        raise TypeError(
            f"kernel_size must be an int or a tuple of {ndim} ints, got {kernel_size!r}"
        )
    kernel_size = tuple(kernel_size)
    if len(kernel_size) != ndim:
        raise ValueError(
            f"kernel_size must have {ndim} entries (one per spatial dimension of "
            f"spatial_size), got {kernel_size}"
        )
    if any(k < 1 or k % 2 == 0 for k in kernel_size):
        raise ValueError(
            f"kernel_size must be odd and positive in every dimension ('same' padding keeps "
            f"the state's spatial shape only for odd kernels), got {kernel_size}"
        )
    return kernel_size


class _ConvCell(RecurrentCell):
    """What ConvLSTM and ConvGRU share: the two convolutions, shapes, checks, initialisation.

    ``weight_ih`` (G·C_h, C_in, *k), ``weight_hh`` (G·C_h, C_h, *k), ``bias_ih`` and ``bias_hh``
    (G·C_h) have torch's names; with a 1x1 kernel they are the vector cell's weights with
    singleton spatial axes appended.
    """

    num_gates: int

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        kernel_size: int | Sequence[int],
        spatial_size: Sequence[int],
        bias: bool,
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.spatial_size = _check_spatial_size(spatial_size)
        self.kernel_size = _check_kernel_size(kernel_size, len(self.spatial_size))
        self.padding = tuple((k - 1) // 2 for k in self.kernel_size)
        self.bias = bool(bias)
        self._conv = _CONV[len(self.spatial_size)]
        G, C = self.num_gates, hidden_size
        self.weight_ih = nn.Parameter(torch.empty(G * C, input_size, *self.kernel_size))
        self.weight_hh = nn.Parameter(torch.empty(G * C, C, *self.kernel_size))
        if self.bias:
            self.bias_ih = nn.Parameter(torch.empty(G * C))
            self.bias_hh = nn.Parameter(torch.empty(G * C))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)

    # -- sizes -------------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample shape of one input step: (C_in, *S)."""
        return (self.input_size, *self.spatial_size)

    @property
    def state_sizes(self) -> tuple[int | tuple[int, ...], ...]:
        return ((self.hidden_size, *self.spatial_size),)

    def check_input(self, x_t: Tensor) -> None:
        want = self.input_shape
        if x_t.dim() != 1 + len(want):
            raise ValueError(
                f"x_t must be {1 + len(want)}-D (B, C_in, *spatial) = (B, *{want}), "
                f"got shape {tuple(x_t.shape)}"
            )
        if tuple(x_t.shape[1:]) != want:
            raise ValueError(
                f"x_t must have per-sample shape (C_in, *spatial) = {want}, "
                f"got {tuple(x_t.shape[1:])}"
            )

    # -- math --------------------------------------------------------------------------------
    def conv(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """'same' convolution of ``x`` (N, C, *S) -> (N, C', *S)."""
        return self._conv(x, weight, bias, padding=self.padding)

    def project_input(self, x: Tensor) -> Tensor:
        """(..., C_in, *S) -> (..., G·C_h, *S): the input convolution for every leading index."""
        n = 1 + len(self.spatial_size)
        lead = x.shape[:-n]
        y = self.conv(x.reshape(-1, *x.shape[-n:]), self.weight_ih, self.bias_ih)  # (N, GC, *S)
        return y.reshape(*lead, *y.shape[1:])

    # -- initialisation ----------------------------------------------------------------------
    def reset_parameters(self) -> None:
        """Every parameter ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C_h·prod(k), the
        fan-in of the recurrent convolution (with a 1x1 kernel: torch's 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size * math.prod(self.kernel_size))
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, kernel_size={self.kernel_size}, "
            f"spatial_size={self.spatial_size}"
        )


class ConvLSTMCell(_ConvCell):
    r"""Convolutional LSTM (Shi et al. 2015, "Convolutional LSTM Network: A Machine Learning
    Approach for Precipitation Nowcasting"), with the paper's Hadamard peepholes.

    Gate packing order in ``weight_ih`` (4C_h, C_in, *k), ``weight_hh`` (4C_h, C_h, *k),
    ``bias_ih`` and ``bias_hh`` (4C_h): **i, f, g, o**, as ``torch.nn.LSTM``.

    .. math::
        i &= \sigma(W_{xi} * X_t + b_{xi} + W_{hi} * H_{t-1} + b_{hi} + W_{ci} \circ C_{t-1}) \\
        f &= \sigma(W_{xf} * X_t + b_{xf} + W_{hf} * H_{t-1} + b_{hf} + W_{cf} \circ C_{t-1}) \\
        g &= \tanh(W_{xg} * X_t + b_{xg} + W_{hg} * H_{t-1} + b_{hg}) \\
        C_t &= f \circ C_{t-1} + i \circ g \\
        o &= \sigma(W_{xo} * X_t + b_{xo} + W_{ho} * H_{t-1} + b_{ho} + W_{co} \circ C_t) \\
        H_t &= o \circ \tanh(C_t)

    ``*`` is a 'same' convolution (odd kernel, zero padding (k-1)/2) and ``\circ`` the
    Hadamard product. The peephole weights ``weight_ci``, ``weight_cf``, ``weight_co`` are
    (C_h, *S): one weight per channel *and* position, as in the paper (this is why the spatial
    size is fixed at construction); they exist only with ``peephole=True``. The input and
    forget gates look at C_{t-1}, the output gate at the new C_t.

    With a 1x1 spatial size and 1x1 kernels this is exactly :class:`rnnkit.LSTMCell` with
    ``peephole=True`` (same weights, spatial axes dropped).

    Lecture -> code: a^<t> = ``h``; c^<t> = ``c``; c~^<t> = ``g``; update gate U = ``i``;
    forget gate F = ``f``; output gate O = ``o``. The lecture's slide lets O peek at c^<t-1>;
    Shi et al. (and this cell) let it see the new c^<t>, and squash the memory:
    a^<t> = O * tanh(c^<t>).

    Args:
        input_size: C_in, channels of one input frame.
        hidden_size: C_h, channels of the state.
        kernel_size: odd int, or one odd int per spatial dimension; used by both convolutions.
        spatial_size: S, the frames' spatial shape, (W,), (H, W) or (D, H, W).
        bias: add ``bias_ih`` and ``bias_hh``.
        peephole: add the Hadamard peephole terms.
        forget_bias: added to the forget-gate slice of ``bias_ih`` after initialisation.

    Initialisation: every parameter ~ U(-1/sqrt(C_h·prod(k)), +), then ``forget_bias``.
    State: ``(h, c)``, both (B, C_h, *S).
    """

    num_gates = 4

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        kernel_size: int | Sequence[int],
        spatial_size: Sequence[int],
        bias: bool = True,
        peephole: bool = True,
        forget_bias: float = 1.0,
    ) -> None:
        super().__init__(input_size, hidden_size, kernel_size, spatial_size, bias)
        self.peephole = bool(peephole)
        self.forget_bias = float(forget_bias)
        shape = (hidden_size, *self.spatial_size)
        for name in ("weight_ci", "weight_cf", "weight_co"):
            if self.peephole:
                self.register_parameter(name, nn.Parameter(torch.empty(shape)))
            else:
                self.register_parameter(name, None)
        self.reset_parameters()

    @property
    def state_sizes(self) -> tuple[int | tuple[int, ...], ...]:
        shape = (self.hidden_size, *self.spatial_size)
        return (shape, shape)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias and self.forget_bias:
            C = self.hidden_size
            with torch.no_grad():
                self.bias_ih[C : 2 * C] += self.forget_bias

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = state  # each (B, C_h, *S)
        gates = gx + self.conv(h, self.weight_hh, self.bias_hh)  # (B, 4C_h, *S)
        i, f, g, o = gates.chunk(4, dim=1)  # each (B, C_h, *S)
        if self.peephole:
            i = i + self.weight_ci * c
            f = f + self.weight_cf * c
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        if self.peephole:
            o = o + self.weight_co * c
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", peephole={self.peephole}, forget_bias={self.forget_bias}"


class ConvGRUCell(_ConvCell):
    r"""Convolutional GRU (Ballas, Yao, Pal & Courville 2016, "Delving Deeper into
    Convolutional Networks for Learning Video Representations").

    Gate packing order in ``weight_ih`` (3C_h, C_in, *k), ``weight_hh`` (3C_h, C_h, *k),
    ``bias_ih``, ``bias_hh`` (3C_h): **r, z, n**, as ``torch.nn.GRU``.

    .. math::
        r &= \sigma(W_{xr} * X_t + b_{xr} + W_{hr} * H_{t-1} + b_{hr}) \\
        z &= \sigma(W_{xz} * X_t + b_{xz} + W_{hz} * H_{t-1} + b_{hz}) \\
        n &= \tanh(W_{xn} * X_t + b_{xn} + W_{hn} * (r \circ H_{t-1}) + b_{hn})
             &&\text{reset\_after=False (Ballas et al.; the default)} \\
        n &= \tanh(W_{xn} * X_t + b_{xn} + r \circ (W_{hn} * H_{t-1} + b_{hn}))
             &&\text{reset\_after=True (torch's GRU form)} \\
        H_t &= (1 - z) \circ n + z \circ H_{t-1}

    With a 1x1 spatial size and 1x1 kernels this is exactly :class:`rnnkit.GRUCell` with the
    same ``reset_after`` (same weights, spatial axes dropped).

    Lecture -> code: a^<t> = c^<t> = ``h``; c~^<t> = ``n``; relevance gate R = ``r``;
    update gate U = ``1 - z``; forget gate F = ``z``.

    Args: as :class:`ConvLSTMCell` (no peepholes, no forget bias), plus ``reset_after``.

    Initialisation: every parameter ~ U(-1/sqrt(C_h·prod(k)), +). State: ``(h,)``,
    h (B, C_h, *S).
    """

    num_gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        kernel_size: int | Sequence[int],
        spatial_size: Sequence[int],
        bias: bool = True,
        reset_after: bool = False,
    ) -> None:
        super().__init__(input_size, hidden_size, kernel_size, spatial_size, bias)
        self.reset_after = bool(reset_after)
        self.reset_parameters()

    def step(self, gx: Tensor, state: State) -> tuple[Tensor, State]:
        (h,) = state  # (B, C_h, *S)
        C = self.hidden_size
        gx_r, gx_z, gx_n = gx.chunk(3, dim=1)  # each (B, C_h, *S)
        if self.reset_after:
            gh_r, gh_z, gh_n = self.conv(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
            r = torch.sigmoid(gx_r + gh_r)
            z = torch.sigmoid(gx_z + gh_z)
            n = torch.tanh(gx_n + r * gh_n)
        else:
            b_rz = None if self.bias_hh is None else self.bias_hh[: 2 * C]
            b_n = None if self.bias_hh is None else self.bias_hh[2 * C :]
            gh_r, gh_z = self.conv(h, self.weight_hh[: 2 * C], b_rz).chunk(2, dim=1)
            r = torch.sigmoid(gx_r + gh_r)
            z = torch.sigmoid(gx_z + gh_z)
            n = torch.tanh(gx_n + self.conv(r * h, self.weight_hh[2 * C :], b_n))
        h = (1.0 - z) * n + z * h
        return h, (h,)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reset_after={self.reset_after}"
