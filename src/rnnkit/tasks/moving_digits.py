"""Moving digits: a small, deterministic Moving MNIST (Srivastava et al. 2015) for next-frame
prediction, made from scikit-learn's 8x8 digits.

Each sequence places ``num_digits`` digit images on a square canvas and moves each in a
straight line at a constant speed, bouncing off the edges; overlapping digits combine by the
pixel-wise maximum, as in Moving MNIST. Positions are real-valued; each frame draws a digit at
its position rounded to the nearest pixel. Training sequences use digits of the "train" split
of :func:`rnnkit.datasets.digits.load_digits_sequences`, test sequences those of "test", so
no digit image is shared between them.

Shapes: frames are (N, T, 1, S, S) float32 in [0, 1] (T time, one channel, S canvas side), the
layout :class:`rnnkit.Recurrent` takes for a 2-D convolutional cell with ``batch_first``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..cells.base import check_positive_int

DIGIT = 8  # side of a digit image


def bounce(start: np.ndarray, velocity: np.ndarray, steps: int, limit: float) -> np.ndarray:
    """Positions of a point moving at ``velocity`` from ``start`` inside [0, ``limit``] per
    axis, reflected at both walls (angle of incidence = angle of reflection).

    ``start``, ``velocity``: (D,). Returns (steps, D): row 0 is ``start``.
    """
    p = np.array(start, dtype=np.float64)
    v = np.array(velocity, dtype=np.float64)
    out = np.empty((steps, p.shape[0]))
    for t in range(steps):
        out[t] = p
        p = p + v
        low, high = p < 0, p > limit
        p = np.where(low, -p, np.where(high, 2 * limit - p, p))
        v = np.where(low | high, -v, v)
    return out


def render(digits: np.ndarray, corners: np.ndarray, canvas: int) -> np.ndarray:
    """Frames of ``digits`` (K, 8, 8) with top-left ``corners`` (T, K, 2) integer (row, col):
    (T, canvas, canvas), the pixel-wise maximum of the placed digits."""
    frames = np.zeros((corners.shape[0], canvas, canvas), dtype=np.float32)
    for t in range(corners.shape[0]):
        for k, (r, c) in enumerate(corners[t]):
            patch = frames[t, r : r + DIGIT, c : c + DIGIT]
            np.maximum(patch, digits[k], out=patch)
    return frames


def moving_digits(
    n: int,
    *,
    seed: int,
    split: str = "train",
    seq_len: int = 10,
    canvas: int = 18,
    num_digits: int = 2,
    speed: tuple[float, float] = (1.0, 2.0),
) -> Tensor:
    """``n`` sequences of moving digits, (n, seq_len, 1, canvas, canvas) float32 in [0, 1].

    Per digit: an image drawn uniformly from ``split``, a start corner uniform on the canvas,
    a direction uniform on the circle and a speed (pixels per frame) uniform in ``speed``.
    The same ``seed`` and arguments give the same frames on every machine (NumPy's PCG64).
    """
    check_positive_int("n", n)
    check_positive_int("seq_len", seq_len)
    check_positive_int("num_digits", num_digits)
    if check_positive_int("canvas", canvas) < DIGIT:
        raise ValueError(f"canvas must be >= {DIGIT} (the digits' side), got {canvas}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    from ..datasets.digits import load_digits_sequences

    images, _ = load_digits_sequences(split)  # (N, 8, 8) in [0, 1]
    rng = np.random.default_rng(seed)
    limit = float(canvas - DIGIT)
    out = np.empty((n, seq_len, 1, canvas, canvas), dtype=np.float32)
    for i in range(n):
        digits = images[rng.integers(len(images), size=num_digits)]  # (K, 8, 8)
        paths = []
        for _ in range(num_digits):
            start = rng.uniform(0.0, limit, size=2)
            angle = rng.uniform(0.0, 2 * np.pi)
            v = rng.uniform(*speed) * np.array([np.sin(angle), np.cos(angle)])
            paths.append(bounce(start, v, seq_len, limit))
        corners = np.rint(np.stack(paths, axis=1)).astype(np.int64)  # (T, K, 2)
        out[i, :, 0] = render(digits, corners, canvas)
    return torch.from_numpy(out)
