"""Batches for recurrent models: padding, length bucketing, stream chunking, collation."""

from .bucketing import BucketBatchSampler, padding_cost
from .collate import PadCollate
from .padding import PaddedBatch, pad_batch
from .streams import StreamChunks, StreamWindow, chunk_stream, concat_windows, detach_state

__all__ = [
    "BucketBatchSampler",
    "PadCollate",
    "PaddedBatch",
    "StreamChunks",
    "StreamWindow",
    "chunk_stream",
    "concat_windows",
    "detach_state",
    "pad_batch",
    "padding_cost",
]
