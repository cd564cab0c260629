"""Recurrent cells: one time step each (the contract is in :mod:`rnnkit.cells.base`)."""

from .base import RecurrentCell, State
from .conv import ConvGRUCell, ConvLSTMCell
from .elman import ElmanCell
from .gru import GRUCell, MGUCell
from .layernorm_lstm import LayerNormLSTMCell
from .lstm import LSTMCell
from .mut import MUT1Cell, MUT2Cell, MUT3Cell
from .nas import NASCell

__all__ = [
    "RecurrentCell",
    "State",
    "ElmanCell",
    "LSTMCell",
    "LayerNormLSTMCell",
    "GRUCell",
    "MGUCell",
    "MUT1Cell",
    "MUT2Cell",
    "MUT3Cell",
    "NASCell",
    "ConvLSTMCell",
    "ConvGRUCell",
]
