"""The TCN as an encoder of :mod:`rnnkit.models`, registered there under the type ``"tcn"``.

:class:`TCNEncoder` follows the encoder contract written in :mod:`rnnkit.models.encoder`
(``forward(x, lengths) -> (B, T, H)``, ``output_size``, ``causal``, and, when causal, the
stateful half: ``forward_with_state``, ``flat_state_size``, ``state_from_vector``,
``detach_state``, ``select_state``), so every model that takes a recurrent encoder takes a TCN:
``encoder=TCNEncoderConfig(hidden_size=64, num_layers=6)``.

Its state is the TCN's streaming state: one buffer (B, C_in, (k-1)·d) per convolution, the last
inputs that convolution has seen (:mod:`rnnkit.tcn.streaming`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from ..models.checks import check_bool, check_choice, check_float, check_int
from ..models.encoder import register_encoder
from .layers import ACTIVATIONS, NORMS, TCN
from .streaming import TCNState


@dataclass
class TCNEncoderConfig:
    """``num_layers`` residual blocks of width ``hidden_size`` (arguments as :class:`TCN`).

    ``dilations`` None means 1, 2, 4, ...; the receptive field is 1 + 2·(k-1)·sum(dilations).
    ``norm`` is "weight", "batch", "layer" or None; ``causal=False`` needs an odd kernel.
    """

    type: ClassVar[str] = "tcn"

    hidden_size: int = 64
    num_layers: int = 4
    kernel_size: int = 3
    dilations: tuple[int, ...] | None = None
    causal: bool = True
    dropout: float = 0.0
    norm: str | None = "weight"
    activation: str = "relu"
    residual: bool = True

    def __post_init__(self) -> None:
        check_int("encoder.hidden_size", self.hidden_size, low=1)
        check_int("encoder.num_layers", self.num_layers, low=1)
        check_int("encoder.kernel_size", self.kernel_size, low=1)
        if self.dilations is not None:
            if not isinstance(self.dilations, (list, tuple)):
                raise TypeError(
                    f"encoder.dilations must be a list of ints or None, "
                    f"got {type(self.dilations).__name__}"
                )
            self.dilations = tuple(
                check_int(f"encoder.dilations[{i}]", d, low=1) for i, d in enumerate(self.dilations)
            )
            if len(self.dilations) != self.num_layers:
                raise ValueError(
                    f"encoder.dilations must have num_layers={self.num_layers} entries, "
                    f"got {len(self.dilations)}"
                )
        check_bool("encoder.causal", self.causal)
        if not self.causal and self.kernel_size % 2 == 0:
            raise ValueError(
                f"encoder.kernel_size must be odd when encoder.causal is False, "
                f"got {self.kernel_size}"
            )
        self.dropout = check_float(
            "encoder.dropout", self.dropout, low=0.0, high=1.0, high_open=True
        )
        if self.norm is not None:
            check_choice("encoder.norm", self.norm, NORMS)
        check_choice("encoder.activation", self.activation, tuple(ACTIVATIONS))
        check_bool("encoder.residual", self.residual)


class TCNEncoder(nn.Module):
    """The encoder contract over :class:`TCN` (module docstring)."""

    def __init__(self, config: TCNEncoderConfig, input_size: int) -> None:
        super().__init__()
        check_int("input_size", input_size, low=1)
        self.config = config
        self.tcn = TCN(
            input_size,
            [config.hidden_size] * config.num_layers,
            config.kernel_size,
            dilations=None if config.dilations is None else list(config.dilations),
            causal=config.causal,
            dropout=config.dropout,
            norm=config.norm,
            activation=config.activation,
            residual=config.residual,
        )
        self.input_size = input_size
        self.output_size: int = self.tcn.output_size
        self.causal: bool = config.causal
        self._state_sizes = [c * p for c, p in self.tcn.state_shapes()] if self.causal else []

    @property
    def receptive_field(self) -> int:
        return self.tcn.receptive_field

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, I), lengths (B,) -> (B, T, H_out)."""
        return self.tcn(x, lengths=lengths)[0]

    def forward_with_state(
        self, x: Tensor, state: TCNState | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, TCNState]:
        """(B, T, I) from ``state`` (zero buffers if None) -> ((B, T, H_out), new buffers)."""
        self._need_state("forward_with_state")
        out, new_state = self.tcn(x, state, lengths=lengths)
        return out, new_state  # type: ignore[return-value]

    @property
    def flat_state_size(self) -> int:
        """Numbers in one sequence's buffers, over every convolution."""
        self._need_state("flat_state_size")
        return sum(self._state_sizes)

    def state_from_vector(self, v: Tensor) -> TCNState:
        """Split (B, flat_state_size) into the buffers (B, C_in, P), in convolution order."""
        if v.dim() != 2 or v.shape[1] != self.flat_state_size:
            raise ValueError(f"v must have shape (B, {self.flat_state_size}), got {tuple(v.shape)}")
        chunks = v.split(self._state_sizes, dim=1)
        return tuple(
            chunk.reshape(v.shape[0], c, p)
            for chunk, (c, p) in zip(chunks, self.tcn.state_shapes())
        )

    @staticmethod
    def detach_state(state: TCNState) -> TCNState:
        """The same buffers, cut from the autograd graph."""
        return tuple(s.detach() for s in state)

    @staticmethod
    def select_state(state: TCNState, index: Tensor) -> TCNState:
        """The buffers of the sequences ``index`` (B',) of the batch, in that order."""
        return tuple(s.index_select(0, index) for s in state)

    def _need_state(self, what: str) -> None:
        if not self.causal:
            raise ValueError(
                f"{what} needs a causal TCN (encoder.causal=True): a centred TCN sees the "
                f"future, so it has no state to carry"
            )


register_encoder("tcn", TCNEncoderConfig, TCNEncoder)
