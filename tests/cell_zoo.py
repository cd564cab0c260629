"""Every rnnkit cell as a factory ``(input_size, hidden_size) -> cell``, for parametrised tests."""

from __future__ import annotations

from functools import partial

from rnnkit.cells import (
    ElmanCell,
    GRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MGUCell,
    MUT1Cell,
    MUT2Cell,
    MUT3Cell,
    NASCell,
)

CELLS = {
    "elman_tanh": partial(ElmanCell, nonlinearity="tanh"),
    "elman_relu": partial(ElmanCell, nonlinearity="relu"),
    "lstm": LSTMCell,
    "lstm_peephole": partial(LSTMCell, peephole=True),
    "lstm_proj": partial(LSTMCell, proj_size=2),
    "layernorm_lstm": LayerNormLSTMCell,
    "gru": GRUCell,
    "gru_reset_before": partial(GRUCell, reset_after=False),
    "mgu": MGUCell,
    "mut1": MUT1Cell,
    "mut2": MUT2Cell,
    "mut3": MUT3Cell,
    "nas": NASCell,
}
