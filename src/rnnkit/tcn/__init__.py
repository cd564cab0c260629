"""Temporal convolutional networks (Bai et al. 2018): layers, streaming buffers, encoder."""

from .encoder import tcn_encoder
from .layers import TCN, MaskedBatchNorm1d, TemporalBlock, TemporalConv1d, receptive_field
from .streaming import TCNState

__all__ = [
    "TCN",
    "TCNState",
    "TemporalBlock",
    "TemporalConv1d",
    "MaskedBatchNorm1d",
    "receptive_field",
    "tcn_encoder",
]
