"""Captioned images composed from scikit-learn's 8x8 digits (the lecture's image captioning,
scaled down).

An image is a ``canvas`` x ``canvas`` square (36 by default) divided into a 3 x 3 grid of
cells; 2-4 digit images go into distinct cells, each shifted by 0 to (cell - 8) pixels inside
its cell, overlapping pixels combined by their maximum. The caption names the digits in
reading order (by row, then by column) and says how each stands to the next: "left of" when
the next is in the same row, "above" when it is in a lower row::

    a three left of a seven above a one left of an eight

so the caption is a function of the image, and an exact match is possible.

Digit images come from the split of the same name of
:func:`rnnkit.datasets.digits.load_digits_sequences`: no test image holds a digit image seen
in training. Image i of a split draws from ``numpy.random.SeedSequence([seed, split number,
i])``; nothing is downloaded or cached (composing 10,000 images takes about a second).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .digits import SPLITS, load_digits_sequences

GRID = 3
DIGIT = 8
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
WORDS = ("a", "an", *NUMBER_WORDS, "left", "of", "above")


@dataclass(frozen=True)
class CaptionedImages:
    """``images`` (N, S, S) float32 in [0, 1]; ``captions`` N strings; ``digits`` and ``cells``
    (N, 4) the digit and cell (row·3 + column) of each placed digit in reading order, -1 past
    the last; ``sources`` (N, 4) each digit image's index in its split, -1 past the last."""

    images: np.ndarray
    captions: list[str]
    digits: np.ndarray
    cells: np.ndarray
    sources: np.ndarray


def caption(digits: list[int], cells: list[int]) -> str:
    """The caption of digits placed in ``cells`` (row·3 + column), in any order."""
    if len(digits) != len(cells) or not digits:
        raise ValueError(
            f"digits and cells must be equally long and non-empty, got {digits} and {cells}"
        )
    if len(set(cells)) != len(cells) or not all(0 <= c < GRID * GRID for c in cells):
        raise ValueError(f"cells must be distinct ints in [0, {GRID * GRID}), got {cells}")
    if not all(0 <= d <= 9 for d in digits):
        raise ValueError(f"digits must lie in 0..9, got {digits}")
    order = sorted(range(len(cells)), key=lambda k: cells[k])
    words: list[str] = []
    for rank, k in enumerate(order):
        if rank:
            same_row = cells[k] // GRID == cells[order[rank - 1]] // GRID
            words += ["left", "of"] if same_row else ["above"]
        name = NUMBER_WORDS[digits[k]]
        words += ["an" if name == "eight" else "a", name]
    return " ".join(words)


def load_captioned_digits(
    split: str,
    n: int,
    *,
    seed: int = 0,
    canvas: int = 36,
    min_digits: int = 2,
    max_digits: int = 4,
) -> CaptionedImages:
    """The first ``n`` captioned images of ``split`` (module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if isinstance(canvas, bool) or not isinstance(canvas, int) or canvas < GRID * DIGIT:
        raise ValueError(f"canvas must be an int >= {GRID * DIGIT}, got {canvas!r}")
    if not 1 <= min_digits <= max_digits <= 4:
        raise ValueError(
            f"need 1 <= min_digits <= max_digits <= 4, got min_digits={min_digits}, "
            f"max_digits={max_digits}"
        )
    pool, labels = load_digits_sequences(split)  # (P, 8, 8) in [0, 1], (P,)
    cell = canvas // GRID
    images = np.zeros((n, canvas, canvas), dtype=np.float32)
    digits = np.full((n, 4), -1, dtype=np.int64)
    cells = np.full((n, 4), -1, dtype=np.int64)
    sources = np.full((n, 4), -1, dtype=np.int64)
    captions = []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), i]))
        k = int(rng.integers(min_digits, max_digits + 1))
        where = np.sort(rng.choice(GRID * GRID, size=k, replace=False))  # reading order
        picked = rng.integers(len(pool), size=k)
        for c, src in zip(where, picked):
            r0 = (c // GRID) * cell + int(rng.integers(0, cell - DIGIT + 1))
            c0 = (c % GRID) * cell + int(rng.integers(0, cell - DIGIT + 1))
            patch = images[i, r0 : r0 + DIGIT, c0 : c0 + DIGIT]
            np.maximum(patch, pool[src], out=patch)
        digits[i, :k], cells[i, :k], sources[i, :k] = labels[picked], where, picked
        captions.append(caption(labels[picked].tolist(), where.tolist()))
    return CaptionedImages(images, captions, digits, cells, sources)
