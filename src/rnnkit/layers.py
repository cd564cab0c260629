"""torch-compatible layers: ``rnnkit.RNN``, ``rnnkit.LSTM``, ``rnnkit.GRU``.

Same constructor arguments, call signature, shapes and ``state_dict`` names as their torch.nn
namesakes, so a torch state dict loads unchanged, plus rnnkit's extras.
"""

from __future__ import annotations

from functools import partial

from .cells import ElmanCell, GRUCell, LSTMCell
from .cells.base import check_choice
from .recurrent import Recurrent


class RNN(Recurrent):
    """Elman RNN layer, as ``torch.nn.RNN``; extras: ``merge_mode``, ``residual``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        merge_mode: str = "concat",
        residual: bool = False,
    ) -> None:
        check_choice("nonlinearity", nonlinearity, ("tanh", "relu"))
        super().__init__(
            partial(ElmanCell, nonlinearity=nonlinearity, bias=bias),
            input_size,
            hidden_size,
            num_layers,
            bidirectional=bidirectional,
            merge_mode=merge_mode,
            dropout=dropout,
            residual=residual,
            batch_first=batch_first,
        )
        self.nonlinearity = nonlinearity
        self.bias = bias


class LSTM(Recurrent):
    """LSTM layer, as ``torch.nn.LSTM`` (``proj_size`` included); call returns
    ``output, (h_n, c_n)``.

    Extras: ``peephole`` (Gers et al. 2002), ``forget_bias`` (added to the forget-gate bias at
    initialisation; 1.0 by default, 0.0 reproduces torch's initialisation), ``merge_mode``,
    ``residual``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        *,
        peephole: bool = False,
        forget_bias: float = 1.0,
        merge_mode: str = "concat",
        residual: bool = False,
    ) -> None:
        super().__init__(
            partial(
                LSTMCell, bias=bias, peephole=peephole, proj_size=proj_size, forget_bias=forget_bias
            ),
            input_size,
            hidden_size,
            num_layers,
            bidirectional=bidirectional,
            merge_mode=merge_mode,
            dropout=dropout,
            residual=residual,
            batch_first=batch_first,
        )
        self.bias = bias
        self.proj_size = proj_size
        self.peephole = peephole


class GRU(Recurrent):
    """GRU layer, as ``torch.nn.GRU``; extras: ``reset_after`` (False = the lecture's and
    Cho et al.'s form, reset gate before the matrix product), ``merge_mode``, ``residual``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        reset_after: bool = True,
        merge_mode: str = "concat",
        residual: bool = False,
    ) -> None:
        super().__init__(
            partial(GRUCell, bias=bias, reset_after=reset_after),
            input_size,
            hidden_size,
            num_layers,
            bidirectional=bidirectional,
            merge_mode=merge_mode,
            dropout=dropout,
            residual=residual,
            batch_first=batch_first,
        )
        self.bias = bias
        self.reset_after = reset_after
