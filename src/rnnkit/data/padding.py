"""Many sequences of different lengths -> one padded tensor (the lecture's "padding to equal
length").

Shapes: B sequences, T = the longest (or ``max_len``), each step a scalar id or a feature
vector of size I.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

_SIDES = ("post", "pre")


class PaddedBatch(NamedTuple):
    """``padded`` (B, T[, I]); ``lengths`` (B,) int64; ``mask`` (B, T) bool, True on real steps."""

    padded: Tensor
    lengths: Tensor
    mask: Tensor


def as_tensor_sequence(label: str, seq: object) -> Tensor:
    """One sequence (list, NumPy array or tensor) as a tensor of shape (T[, I]).

    ``label`` names the argument in error messages (e.g. ``"sequences[3]"``).
    """
    if isinstance(seq, Tensor):
        t = seq
    elif isinstance(seq, (np.ndarray, list, tuple, range)):
        array = np.asarray(seq)
        if array.size == 0 and array.ndim == 1:
            array = array.astype(np.int64)  # [] would otherwise be float64
        if array.dtype == object:
            raise TypeError(f"{label} must be numeric and rectangular, got {seq!r:.60}")
        t = torch.as_tensor(array)
    else:
        raise TypeError(f"{label} must be a list, NumPy array or tensor, got {type(seq).__name__}")
    if t.dim() == 0:
        raise ValueError(f"{label} must be a sequence (T,) or (T, I), got a scalar")
    return t


def pad_batch(
    sequences: Sequence[object],
    *,
    padding: str = "post",
    value: float = 0,
    max_len: int | None = None,
    truncating: str = "post",
    dtype: torch.dtype | None = None,
) -> PaddedBatch:
    """Pad B sequences of shape (T_b,) or (T_b, I) to one tensor (B, T[, I]), batch first.

    Args:
        sequences: the sequences (lists, NumPy arrays or tensors); feature sizes must agree.
        padding: "post" puts the padding after each sequence, "pre" before it. rnnkit's
            runner expects "post" (valid steps first, as ``lengths`` describes).
        value: the padding value (0 is ``<pad>`` in a :class:`rnnkit.text.Vocab`).
        max_len: T; sequences longer than this are cut. Default: the longest sequence.
        truncating: which end a cut removes: "post" keeps the first ``max_len`` steps,
            "pre" keeps the last ``max_len``.
        dtype: the result's dtype (default: the sequences' common dtype).

    Returns:
        :class:`PaddedBatch` (padded, lengths after truncation, mask).
    """
    if padding not in _SIDES:
        raise ValueError(f"padding must be one of {_SIDES}, got {padding!r}")
    if truncating not in _SIDES:
        raise ValueError(f"truncating must be one of {_SIDES}, got {truncating!r}")
    if isinstance(sequences, (str, Tensor)) or not isinstance(sequences, Sequence):
        raise TypeError(f"sequences must be a list of sequences, got {type(sequences).__name__}")
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence, got an empty list")
    seqs = [as_tensor_sequence(f"sequences[{k}]", s) for k, s in enumerate(sequences)]
    feature_shapes = {tuple(s.shape[1:]) for s in seqs if s.shape[0] > 0} or {
        tuple(seqs[0].shape[1:])
    }
    if len(feature_shapes) > 1:
        raise ValueError(f"sequences must share their feature shape, got {sorted(feature_shapes)}")
    (features,) = feature_shapes
    if max_len is None:
        T = max(s.shape[0] for s in seqs)
    else:
        if isinstance(max_len, bool) or not isinstance(max_len, int):
            raise TypeError(f"max_len must be an int or None, got {type(max_len).__name__}")
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        T = max_len
    if dtype is None:
        dtype = seqs[0].dtype
        for s in seqs[1:]:
            dtype = torch.promote_types(dtype, s.dtype)
    B = len(seqs)
    padded = torch.full((B, T, *features), value, dtype=dtype)  # (B, T[, I])
    lengths = torch.empty(B, dtype=torch.int64)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, s in enumerate(seqs):
        if s.shape[0] > T:
            s = s[:T] if truncating == "post" else s[s.shape[0] - T :]
        n = s.shape[0]
        lengths[b] = n
        if n == 0:
            continue
        if padding == "post":
            padded[b, :n] = s.to(dtype)
            mask[b, :n] = True
        else:
            padded[b, T - n :] = s.to(dtype)
            mask[b, T - n :] = True
    return PaddedBatch(padded, lengths, mask)
