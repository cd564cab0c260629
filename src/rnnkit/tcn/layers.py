"""Temporal convolutional network (Bai, Kolter & Koltun 2018, "An Empirical Evaluation of
Generic Convolutional and Recurrent Networks for Sequence Modeling").

Shapes use the glossary of :mod:`rnnkit.cells.base` (B batch, T time, I input, H output
features) plus C the width of a block, k the kernel size, d a dilation and P = (k-1)·d the
context one convolution reads. Inside the network time is the last axis, (B, C, T), as torch's
convolutions want it; the public call is batch first, (B, T, I) -> (B, T, H).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from ..cells.base import check_choice, check_positive_int
from ..loop import check_lengths
from .streaming import TCNState, causal_window, check_state, last_window

NORMS = ("weight", "batch", "layer")
ACTIVATIONS = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "elu": F.elu,
    "silu": F.silu,
    "leaky_relu": F.leaky_relu,
}


class TemporalConv1d(nn.Conv1d):
    """A dilated convolution over time that is causal (reads steps t-P..t) or centred (reads
    t-P/2..t+P/2, zero padded). Its ``weight`` (C_out, C_in, k) and ``bias`` (C_out) are
    ``nn.Conv1d``'s, so torch's weight normalisation applies unchanged."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, dilation: int, causal: bool
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.causal = causal
        self.context = (kernel_size - 1) * dilation  # P

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        buffer: Tensor | None = None,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``x`` (B, C_in, T) -> (y (B, C_out, T), new buffer (B, C_in, P), or None if centred).

        Causal: ``buffer`` holds the P steps before ``x`` (zeros if None). Centred: ``mask``
        (B, 1, T) zeroes padded steps first, so they read as the zero padding past a sequence's
        end."""
        P = self.context
        if not self.causal:
            if mask is not None:
                x = x * mask
            x = F.pad(x, (P // 2, P // 2))
            return F.conv1d(x, self.weight, self.bias, dilation=self.dilation), None
        window = causal_window(x, buffer, P)  # (B, C_in, P + T)
        y = F.conv1d(window, self.weight, self.bias, dilation=self.dilation)  # (B, C_out, T)
        return y, last_window(window, P, lengths)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` over (B, C, T) whose training statistics count valid steps only.

    With ``mask`` None (or in eval mode) it is exactly ``nn.BatchNorm1d``. With ``mask``
    (B, 1, T) the mean and variance of each channel are taken over the steps where the mask is
    1, and the running estimates are updated from those, as if the valid steps were the batch.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        if mask is None or not self.training:
            return super().forward(x)
        n = mask.sum()
        mean = (x * mask).sum(dim=(0, 2)) / n  # (C,)
        var = ((x - mean[:, None]) ** 2 * mask).sum(dim=(0, 2)) / n  # biased, as torch's
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                if m is None:  # a cumulative average, as torch's momentum=None
                    m = 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean, m)
                self.running_var.lerp_(var * n / (n - 1).clamp(min=1), m)
        y = (x - mean[:, None]) / torch.sqrt(var[:, None] + self.eps)
        if self.affine:
            y = y * self.weight[:, None] + self.bias[:, None]
        return y


class TemporalBlock(nn.Module):
    r"""One residual block of Bai et al. (their Figure 1b):

    .. math::
        u &= \mathrm{drop}(\phi(\mathrm{norm}_1(\mathrm{conv}_1(x)))) \\
        v &= \mathrm{drop}(\phi(\mathrm{norm}_2(\mathrm{conv}_2(u)))) \\
        y &= \phi(v + \mathrm{res}(x)) \qquad (y = v \text{ without the residual})

    with conv_1, conv_2 dilated k-wide convolutions (C_in -> C, C -> C), phi the activation, and
    res the identity, or a 1x1 convolution ``downsample`` where C_in != C. ``norm="weight"``
    reparametrises both convolutions' weights (Salimans & Kingma 2016, as the paper);
    ``"batch"`` and ``"layer"`` add ``norm1``/``norm2`` after each convolution (layer norm over
    the channels of each step, which keeps the block causal and streamable).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        dilation: int,
        *,
        causal: bool,
        dropout: float,
        norm: str | None,
        activation: str,
        residual: bool,
    ) -> None:
        super().__init__()
        self.conv1 = TemporalConv1d(in_channels, channels, kernel_size, dilation, causal)
        self.conv2 = TemporalConv1d(channels, channels, kernel_size, dilation, causal)
        if norm == "weight":
            weight_norm(self.conv1)
            weight_norm(self.conv2)
        self.norm1: nn.Module | None = None
        self.norm2: nn.Module | None = None
        if norm == "batch":
            self.norm1, self.norm2 = MaskedBatchNorm1d(channels), MaskedBatchNorm1d(channels)
        elif norm == "layer":
            self.norm1, self.norm2 = nn.LayerNorm(channels), nn.LayerNorm(channels)
        self.downsample = (
            nn.Conv1d(in_channels, channels, 1) if residual and in_channels != channels else None
        )
        self.residual = residual
        self.dropout = dropout
        self.activation = activation

    def _norm(self, norm: nn.Module | None, h: Tensor, mask: Tensor | None) -> Tensor:
        if norm is None:
            return h
        if isinstance(norm, nn.LayerNorm):
            return norm(h.transpose(1, 2)).transpose(1, 2)  # over C at each step
        return norm(h, mask)

    def forward(
        self,
        x: Tensor,
        buffers: tuple[Tensor | None, Tensor | None] = (None, None),
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor | None, Tensor | None]]:
        """``x`` (B, C_in, T) -> (y (B, C, T), the two convolutions' new buffers)."""
        phi = ACTIVATIONS[self.activation]
        drop = self.dropout if self.training else 0.0
        u, buf1 = self.conv1(x, buffers[0], lengths, mask)
        u = F.dropout(phi(self._norm(self.norm1, u, mask)), drop, self.training)
        v, buf2 = self.conv2(u, buffers[1], lengths, mask)
        v = F.dropout(phi(self._norm(self.norm2, v, mask)), drop, self.training)
        if not self.residual:
            return v, (buf1, buf2)
        res = x if self.downsample is None else self.downsample(x)
        return phi(v + res), (buf1, buf2)


def receptive_field(kernel_size: int, dilations: Sequence[int], convs_per_block: int = 2) -> int:
    """Steps of input one output step sees: R = 1 + convs_per_block·(k-1)·sum(d).

    Each convolution widens the window by (k-1)·d; a block has two convolutions of the same
    dilation. Causal: steps t-R+1..t. Centred: t-(R-1)/2..t+(R-1)/2."""
    return 1 + convs_per_block * (kernel_size - 1) * sum(dilations)


class TCN(nn.Module):
    """Temporal convolutional network: residual blocks of dilated convolutions (Bai et al. 2018).

    Args:
        input_size: I, features of each input step.
        channels: C of each block, e.g. ``[32, 32, 32]``; the output has H = channels[-1].
        kernel_size: k of every convolution; odd when ``causal=False``.
        dilations: d of each block; default 1, 2, 4, ... (2^i for block i).
        causal: output t sees steps <= t only (streamable). False: a centred window (sees the
            future too), for encoders of whole sequences.
        dropout: dropout after each convolution's activation (training only).
        norm: "weight" (weight normalisation, the paper's), "batch" (masked batch norm),
            "layer" (layer norm over channels) or None.
        activation: "relu" (the paper's), "tanh", "gelu", "elu", "silu" or "leaky_relu".
        residual: add each block's input (through a 1x1 convolution where widths differ).

    Call ``output, state = tcn(x, state=None, *, lengths=None)``, the runner's contract with
    ``batch_first=True``:

    * ``x``: (B, T, I). ``lengths``: (B,) integers in [1, T]; outputs past a sequence's length
      are zero and padded steps never reach a valid output (causal: by construction; centred:
      padded steps are zeroed before every convolution, as the zero padding past the end of a
      sequence run alone; batch norm counts valid steps only).
    * ``state`` (causal only): the tuple of buffers a previous call returned, one
      (B, C_in, (k-1)·d) per convolution; passing it back continues the sequences exactly, any
      number of steps at a time (see :mod:`rnnkit.tcn.streaming`). None starts afresh.
    * ``output``: (B, T, H); ``state``: the new buffers (None when ``causal=False``). With
      ``lengths`` each sequence's buffers end at its last valid step.

    Streaming equals the full run whenever the full run treats steps independently of the
    batch: always in eval mode; in training mode unless dropout or batch norm is on.

    Initialisation: torch's ``nn.Conv1d`` default for every convolution (Bai et al.'s reference
    code draws N(0, 0.01) but weight normalisation then recomputes the weight from its own copy,
    so torch's default is what it trains with too).
    """

    batch_first = True

    def __init__(
        self,
        input_size: int,
        channels: Sequence[int],
        kernel_size: int,
        dilations: Sequence[int] | None = None,
        causal: bool = True,
        dropout: float = 0.0,
        norm: str | None = "weight",
        activation: str = "relu",
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence):
            raise TypeError(f"channels must be a sequence of ints, got {type(channels).__name__}")
        if len(channels) == 0:
            raise ValueError("channels must name at least one block, got an empty sequence")
        self.channels = [check_positive_int(f"channels[{i}]", c) for i, c in enumerate(channels)]
        self.kernel_size = check_positive_int("kernel_size", kernel_size)
        if dilations is None:
            dilations = [2**i for i in range(len(self.channels))]
        if isinstance(dilations, (str, bytes)) or not isinstance(dilations, Sequence):
            raise TypeError(f"dilations must be a sequence of ints, got {type(dilations).__name__}")
        if len(dilations) != len(self.channels):
            raise ValueError(
                f"dilations must have one entry per block (len(channels)={len(self.channels)}), "
                f"got {len(dilations)}"
            )
        self.dilations = [check_positive_int(f"dilations[{i}]", d) for i, d in enumerate(dilations)]
        self.causal = bool(causal)
        if not self.causal and kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd when causal=False (a centred window needs (k-1)·d/2 "
                f"steps on each side), got {kernel_size}"
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a float in [0, 1), got {type(dropout).__name__}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if norm is not None:
            check_choice("norm", norm, NORMS)
        check_choice("activation", activation, tuple(ACTIVATIONS))
        self.norm, self.activation, self.residual = norm, activation, bool(residual)
        self.dropout = float(dropout)
        blocks = []
        c_in = self.input_size
        for c, d in zip(self.channels, self.dilations):
            block = TemporalBlock(
                c_in,
                c,
                self.kernel_size,
                d,
                causal=self.causal,
                dropout=self.dropout,
                norm=norm,
                activation=activation,
                residual=self.residual,
            )
            blocks.append(block)
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        self.output_size = self.channels[-1]

    @property
    def receptive_field(self) -> int:
        """R = 1 + 2·(k-1)·sum(d): the input steps one output step sees (two convolutions per
        block, each widening the window by (k-1)·d)."""
        return receptive_field(self.kernel_size, self.dilations)

    def _convs(self) -> list[TemporalConv1d]:
        return [conv for block in self.blocks for conv in (block.conv1, block.conv2)]

    def state_shapes(self) -> list[tuple[int, int]]:
        """(C_in, P) of each convolution's buffer, in the order of ``state``."""
        return [(conv.in_channels, conv.context) for conv in self._convs()]

    def init_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> TCNState:
        """All-zero buffers: the state before the first step (same as passing None)."""
        check_positive_int("batch_size", batch_size)
        if not self.causal:
            raise ValueError("init_state needs causal=True: a centred TCN cannot stream")
        ref = next(self.parameters())
        return tuple(
            torch.zeros(batch_size, c, p, device=device or ref.device, dtype=dtype or ref.dtype)
            for c, p in self.state_shapes()
        )

    def forward(
        self, x: Tensor, state: TCNState | None = None, *, lengths: Tensor | None = None
    ) -> tuple[Tensor, TCNState | None]:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a Tensor, got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"x must be 3-D (B, T, I), got {x.dim()}-D shape {tuple(x.shape)}")
        if x.shape[2] != self.input_size:
            raise ValueError(
                f"x must have input_size={self.input_size} features in its last dimension, "
                f"got {x.shape[2]}"
            )
        B, T = x.shape[0], x.shape[1]
        mask = None
        if lengths is not None:
            lengths = check_lengths(lengths, B, T, x.device)
            mask = (torch.arange(T, device=x.device) < lengths[:, None]).to(x.dtype)[:, None]
        if state is not None:
            if not self.causal:
                raise ValueError(
                    "state must be None when causal=False (a centred TCN cannot stream)"
                )
            state = check_state(state, self.state_shapes(), B)
        h = x.transpose(1, 2)  # (B, I, T)
        new_state: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            buffers = (None, None) if state is None else (state[2 * i], state[2 * i + 1])
            h, bufs = block(h, buffers, lengths, mask)  # (B, C_i, T)
            new_state.extend(b for b in bufs if b is not None)
        if mask is not None:
            h = h * mask
        return h.transpose(1, 2), (tuple(new_state) if self.causal else None)  # (B, T, H)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, channels={self.channels}, kernel_size={self.kernel_size}, "
            f"dilations={self.dilations}, causal={self.causal}, norm={self.norm!r}, "
            f"receptive_field={self.receptive_field}"
        )
