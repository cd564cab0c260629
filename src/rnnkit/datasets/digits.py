"""scikit-learn's 8x8 handwritten digits, read row by row as sequences of 8 steps.

``sklearn.datasets.load_digits`` ships 1,797 images (UCI optical digits, 16 gray levels) inside
the package; nothing is downloaded, so nothing is cached. The array's sha256 is checked so that
a changed copy cannot silently alter results.

Each image becomes a sequence of T = 8 rows with I = 8 pixel features scaled to [0, 1]. The
split is a fixed permutation (``numpy.random.default_rng(1797)``): 1,257 train, 270
validation, 270 test.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ._cache import ChecksumError
from ._deps import require

SHA256 = "f6d9e39f37dc45d327f6db33428ee58970ccceabb2535a5c179de35886b70443"
SPLIT_SEED = 1797
SPLITS = ("train", "valid", "test")
N_TRAIN, N_VALID = 1257, 270


def load_digits_sequences(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of one split: x (N, T=8, I=8) float32 in [0, 1], y (N,) int64 in 0..9."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    datasets = require("sklearn.datasets", package="scikit-learn", needed_for="the digits dataset")
    bunch = datasets.load_digits()
    images = np.ascontiguousarray(bunch.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    if digest != SHA256:
        raise ChecksumError(f"sklearn digits: expected sha256 {SHA256}, got {digest}")
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    lo, hi = {
        "train": (0, N_TRAIN),
        "valid": (N_TRAIN, N_TRAIN + N_VALID),
        "test": (N_TRAIN + N_VALID, len(labels)),
    }[split]
    idx = order[lo:hi]
    return (images[idx] / 16.0).astype(np.float32), labels[idx]
