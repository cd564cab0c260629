"""A TCN sized like a recurrent encoder, for models that build theirs from
(input_size, hidden_size, num_layers).

Every rnnkit encoder is called ``output, state = encoder(x, state=None, *, lengths=None)`` with
``x`` (B, T, I) and ``output`` (B, T, H), and exposes ``input_size`` and ``output_size``:
:class:`rnnkit.Recurrent` with ``batch_first=True`` and :class:`rnnkit.tcn.TCN` both do, so a
model written against one takes the other.
"""

from __future__ import annotations

from .layers import TCN


def tcn_encoder(
    input_size: int,
    hidden_size: int,
    num_layers: int = 4,
    *,
    kernel_size: int = 3,
    causal: bool = True,
    dropout: float = 0.0,
    norm: str | None = "weight",
    activation: str = "relu",
) -> TCN:
    """``num_layers`` residual blocks of width H = ``hidden_size`` with dilations 1, 2, 4, ...;
    receptive field 1 + 2·(k-1)·(2^L - 1)."""
    return TCN(
        input_size,
        [hidden_size] * num_layers,
        kernel_size,
        causal=causal,
        dropout=dropout,
        norm=norm,
        activation=activation,
    )
