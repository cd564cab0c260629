"""The encoder contract, the registry of encoder types, and the recurrent encoder.

Every model in :mod:`rnnkit.models` reads its input through an *encoder*: a module with

* ``forward(x, lengths=None) -> h``: ``x`` (B, T, I) float, ``lengths`` (B,) integers in
  [1, T] or ``None`` (all T steps valid), ``h`` (B, T, H_out). Outputs past a sequence's length
  are zero, and the outputs at valid steps do not depend on the padding;
* ``output_size``: H_out;
* ``causal``: ``True`` when output t depends on inputs 1..t only (what a language model needs).

A *stateful* encoder (what truncated BPTT and generation need) also has

* ``forward_with_state(x, state=None, lengths=None) -> (h, state)``: passing the returned state
  back in continues the sequences exactly;
* ``flat_state_size`` and ``state_from_vector(v)``: a state built from one (B, flat_state_size)
  vector, for models that condition the initial state;
* ``detach_state(state)``: the same state, cut from the autograd graph;
* ``select_state(state, index)``: the state of some sequences of the batch, in that order.

Encoder types are registered by name with their config dataclass and a builder
``build(config, input_size) -> encoder``. The config's dict form carries ``"type"``, so a saved
model rebuilds its encoder from JSON. ``"recurrent"`` is built in: any rnnkit cell through the
runner :class:`rnnkit.Recurrent`. Other packages register their own types (the TCN does so under
``"tcn"`` in ``rnnkit.tcn``, imported on first use).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, ClassVar

from torch import Tensor, nn

from ..cells import (
    ElmanCell,
    GRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MGUCell,
    MUT1Cell,
    MUT2Cell,
    MUT3Cell,
    NASCell,
    RecurrentCell,
)
from ..engine.checkpoint import check_checkpoint
from ..recurrent import MERGE_MODES, Recurrent
from .checks import check_bool, check_choice, check_float, check_int

#: Every rnnkit cell by the name a config uses.
CELLS: dict[str, Callable[[int, int], RecurrentCell]] = {
    "rnn": partial(ElmanCell, nonlinearity="tanh"),
    "rnn_relu": partial(ElmanCell, nonlinearity="relu"),
    "lstm": LSTMCell,
    "peephole_lstm": partial(LSTMCell, peephole=True),
    "layernorm_lstm": LayerNormLSTMCell,
    "gru": GRUCell,
    "gru_reset_before": partial(GRUCell, reset_after=False),
    "mgu": MGUCell,
    "mut1": MUT1Cell,
    "mut2": MUT2Cell,
    "mut3": MUT3Cell,
    "nas": NASCell,
}

State = Tensor | tuple[Tensor, ...]


def make_cell(name: str, input_size: int, hidden_size: int) -> RecurrentCell:
    """The rnnkit cell called ``name`` (a key of :data:`CELLS`) for one step of size I -> H."""
    check_choice("cell", name, tuple(CELLS))
    return CELLS[name](input_size, hidden_size)


# -- registry ----------------------------------------------------------------------------------
_ENCODERS: dict[str, tuple[type, Callable[[Any, int], nn.Module]]] = {}
# encoder types registered by a module imported on first use
_PLUGINS = {"tcn": "rnnkit.tcn", "cnn": "rnnkit.tasks.captioning"}


def register_encoder(name: str, config_class: type, build: Callable[[Any, int], nn.Module]) -> None:
    """Make encoder type ``name`` available to every model.

    ``config_class`` is a dataclass of JSON values with ``type: ClassVar[str] = name``;
    ``build(config, input_size)`` returns a module that follows the encoder contract.
    """
    if getattr(config_class, "type", None) != name:
        raise ValueError(
            f"config_class.type must equal the registered name {name!r}, "
            f"got {getattr(config_class, 'type', None)!r}"
        )
    _ENCODERS[name] = (config_class, build)


def import_plugin(module: str, what: str) -> None:
    """Import ``module``, which registers ``what`` when imported; ValueError if it cannot."""
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ValueError(f"{what} needs {module}: {err}") from None


def _lookup(name: object) -> tuple[type, Callable[[Any, int], nn.Module]]:
    if isinstance(name, str) and name not in _ENCODERS and name in _PLUGINS:
        import_plugin(_PLUGINS[name], f"encoder type {name!r}")
    if not isinstance(name, str) or name not in _ENCODERS:
        known = sorted(set(_ENCODERS) | set(_PLUGINS))
        raise ValueError(f"encoder type must be one of {known}; got {name!r}")
    return _ENCODERS[name]


def build_encoder(config: Any, input_size: int) -> nn.Module:
    """The encoder that ``config`` (a registered encoder config) describes, reading I features."""
    config_class, build = _lookup(getattr(config, "type", None))
    if not isinstance(config, config_class):
        raise TypeError(f"encoder config must be a {config_class.__name__}, got {type(config)}")
    return build(config, input_size)


def encoder_config_to_dict(config: Any) -> dict[str, Any]:
    """``{"type": name, **fields}``: the JSON form of an encoder config."""
    config_class, _ = _lookup(getattr(config, "type", None))
    if not isinstance(config, config_class):
        raise TypeError(f"encoder config must be a {config_class.__name__}, got {type(config)}")
    return {"type": config.type, **{f.name: getattr(config, f.name) for f in fields(config)}}


def encoder_config_from_dict(data: object) -> Any:
    """Rebuild an encoder config from its JSON form; unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise TypeError(f"encoder config must be a mapping, got {type(data).__name__}")
    config_class, _ = _lookup(data.get("type"))
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(data) - known - {"type"})
    if unknown:
        raise ValueError(
            f"unknown {config_class.__name__} key(s) {unknown}; expected keys among {sorted(known)}"
        )
    return config_class(**{k: v for k, v in data.items() if k != "type"})


# -- the recurrent encoder ---------------------------------------------------------------------
@dataclass
class RecurrentEncoderConfig:
    """Any rnnkit cell through the runner (arguments as :class:`rnnkit.Recurrent`).

    ``cell`` is a key of :data:`CELLS`: "rnn", "rnn_relu", "lstm", "peephole_lstm",
    "layernorm_lstm", "gru", "gru_reset_before", "mgu", "mut1", "mut2", "mut3" or "nas".
    ``checkpoint``: None, or K to recompute the activations in K-step segments in the backward
    pass (less memory for long sequences, 25-30 % more training time; ``Recurrent``'s
    attribute of that name).
    """

    type: ClassVar[str] = "recurrent"

    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    merge_mode: str = "concat"
    dropout: float = 0.0
    residual: bool = False
    checkpoint: int | None = None

    def __post_init__(self) -> None:
        check_choice("encoder.cell", self.cell, tuple(CELLS))
        check_int("encoder.hidden_size", self.hidden_size, low=1)
        check_int("encoder.num_layers", self.num_layers, low=1)
        check_bool("encoder.bidirectional", self.bidirectional)
        check_choice("encoder.merge_mode", self.merge_mode, MERGE_MODES)
        self.dropout = check_float(
            "encoder.dropout", self.dropout, low=0.0, high=1.0, high_open=True
        )
        check_bool("encoder.residual", self.residual)
        check_checkpoint(self.checkpoint, "encoder.checkpoint")


class RecurrentEncoder(nn.Module):
    """The encoder contract (module docstring) over :class:`rnnkit.Recurrent`, batch first.

    The state is the runner's ``h_0``/``h_n``: one tensor (D·L, B, S) for single-state cells,
    a tuple ``(h, c)`` of them for LSTM-like cells.
    """

    def __init__(self, config: RecurrentEncoderConfig, input_size: int) -> None:
        super().__init__()
        check_int("input_size", input_size, low=1)
        self.config = config
        self.rnn = Recurrent(
            CELLS[config.cell],
            input_size,
            config.hidden_size,
            config.num_layers,
            bidirectional=config.bidirectional,
            merge_mode=config.merge_mode,
            dropout=config.dropout,
            residual=config.residual,
            batch_first=True,
        )
        self.rnn.checkpoint = config.checkpoint
        self.input_size = input_size
        self.output_size: int = self.rnn.output_size
        self.causal: bool = not config.bidirectional
        n = self.rnn.num_layers * self.rnn.num_directions
        self._state_sizes = [n * shape[0] for shape in self.rnn.state_shapes]

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, I), lengths (B,) -> (B, T, H_out)."""
        return self.forward_with_state(x, None, lengths)[0]

    def forward_with_state(
        self, x: Tensor, state: State | None = None, lengths: Tensor | None = None
    ) -> tuple[Tensor, State]:
        """(B, T, I) from ``state`` (zeros if None) -> ((B, T, H_out), final state)."""
        if not isinstance(x, Tensor) or x.dim() != 3:
            raise ValueError(
                f"x must be a 3-D tensor (B, T, I={self.input_size}), got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        out, h_n = self.rnn(x, state, lengths=lengths)
        return out, h_n

    @property
    def flat_state_size(self) -> int:
        """Numbers in one sequence's state, over every layer, direction and state tensor."""
        return sum(self._state_sizes)

    def state_from_vector(self, v: Tensor) -> State:
        """Split (B, flat_state_size) into the runner's state layout."""
        if v.dim() != 2 or v.shape[1] != self.flat_state_size:
            raise ValueError(f"v must have shape (B, {self.flat_state_size}), got {tuple(v.shape)}")
        n = self.rnn.num_layers * self.rnn.num_directions
        parts = []
        for chunk, shape in zip(v.split(self._state_sizes, dim=1), self.rnn.state_shapes):
            # (B, n*S) -> (n, B, S): layer-direction major, as the runner's h_0
            parts.append(chunk.reshape(v.shape[0], n, shape[0]).transpose(0, 1).contiguous())
        return parts[0] if len(parts) == 1 else tuple(parts)

    @staticmethod
    def detach_state(state: State) -> State:
        """The same state, cut from the autograd graph (the truncation of truncated BPTT)."""
        if isinstance(state, Tensor):
            return state.detach()
        return tuple(s.detach() for s in state)

    @staticmethod
    def select_state(state: State, index: Tensor) -> State:
        """The state of the sequences ``index`` (B',) of the batch, in that order."""
        if isinstance(state, Tensor):
            return state.index_select(1, index)
        return tuple(s.index_select(1, index) for s in state)


register_encoder("recurrent", RecurrentEncoderConfig, RecurrentEncoder)

__all__ = [
    "CELLS",
    "RecurrentEncoder",
    "RecurrentEncoderConfig",
    "build_encoder",
    "encoder_config_from_dict",
    "encoder_config_to_dict",
    "make_cell",
    "register_encoder",
]
