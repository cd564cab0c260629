"""One-hot vectors and the compact index form the lecture contrasts them with.

A token of a V-entry vocabulary is either an index ``i`` in [0, V) (compact: one integer) or a
one-hot vector e_i of length V (a 1 at position i, zeros elsewhere; every pair of tokens is
orthogonal). ``one_hot(ids, V)[..., i] == (ids == i)`` and :func:`to_index` inverts it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike


def one_hot(ids: ArrayLike, num_classes: int, *, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Indices of any shape S -> one-hot array of shape S + (num_classes,)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    index = np.asarray(ids)
    if index.dtype == np.bool_ or not np.issubdtype(index.dtype, np.integer):
        raise TypeError(f"ids must hold integers, got dtype {index.dtype}")
    if index.size:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(f"ids must lie in [0, {num_classes - 1}], got {bad}")
    out = np.zeros(index.shape + (int(num_classes),), dtype=dtype)
    np.put_along_axis(out, index[..., None], 1, axis=-1)
    return out


def to_index(one_hot_array: ArrayLike) -> np.ndarray:
    """One-hot array of shape S + (V,) -> the compact int64 indices of shape S.

    Every vector must hold exactly one 1 and zeros elsewhere.
    """
    x = np.asarray(one_hot_array)
    if x.ndim < 1:
        raise ValueError("one_hot_array must have a last axis of length V, got a scalar")
    ones = x == 1
    valid = (ones | (x == 0)).all(axis=-1) & (ones.sum(axis=-1) == 1)
    if not valid.all():
        where = tuple(int(i) for i in np.argwhere(~valid)[0])
        raise ValueError(
            f"one_hot_array must hold exactly one 1 (and zeros) per vector, "
            f"got {x[where].tolist()} at index {where}"
        )
    return ones.argmax(axis=-1).astype(np.int64)
