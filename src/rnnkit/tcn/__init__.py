"""Temporal convolutional networks (Bai et al. 2018): layers, streaming buffers, and the
encoder of :mod:`rnnkit.models` (importing this package registers the encoder type "tcn")."""

from .encoder import TCNEncoder, TCNEncoderConfig
from .layers import TCN, MaskedBatchNorm1d, TemporalBlock, TemporalConv1d, receptive_field
from .streaming import TCNState

__all__ = [
    "TCN",
    "TCNEncoder",
    "TCNEncoderConfig",
    "TCNState",
    "TemporalBlock",
    "TemporalConv1d",
    "MaskedBatchNorm1d",
    "receptive_field",
]
