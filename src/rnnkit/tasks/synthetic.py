"""The long-range benchmarks of Bai, Kolter & Koltun 2018 ("An Empirical Evaluation of Generic
Convolutional and Recurrent Networks for Sequence Modeling", section 5), generated
deterministically from a seed.

Every generator returns batch-first tensors (B, T, ·), the layout of :class:`rnnkit.tcn.TCN`
and of :class:`rnnkit.Recurrent` with ``batch_first=True``. The same ``seed`` gives the same
data on every machine (a CPU ``torch.Generator``).

* :func:`adding_problem`: T=200 and 600 in the paper; regression, MSE.
* :func:`copy_memory`: blank length T=500 and 1000 in the paper (sequences of T+20);
  per-step classification over 10 symbols, cross-entropy.
* :func:`seq_digits`: the paper's sequential (and permuted) MNIST, 784 pixel steps, here on
  scikit-learn's 8x8 digits: 64 pixel steps of one feature. A much smaller and shorter task than
  MNIST; results are not comparable with the paper's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..cells.base import check_positive_int

ADDING_BASELINE_MSE = 1.0 / 6.0
"""MSE of always predicting 1, the mean of the target: Var(u1 + u2) = 2/12 for u ~ U(0, 1)."""

COPY_BLANK = 0
COPY_DELIMITER = 9
COPY_SYMBOLS = 10  # tokens 0..9: blank, the digits 1..8 to remember, the delimiter 9


def _generator(seed: object) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


def adding_problem(n: int, seq_len: int, *, seed: int) -> tuple[Tensor, Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997; as Bai et al. generate it).

    Each input step has two features: a value drawn from U(0, 1) and a marker that is 1 at
    exactly two distinct steps, chosen uniformly anywhere in the sequence, and 0 elsewhere. The
    target is the sum of the two marked values. Predicting the mean (1) scores
    :data:`ADDING_BASELINE_MSE` = 1/6.

    Returns ``x`` (n, T, 2) float32 and ``y`` (n,) float32.
    """
    check_positive_int("n", n)
    if check_positive_int("seq_len", seq_len) < 2:
        raise ValueError(f"seq_len must be >= 2 (two marked steps), got {seq_len}")
    g = _generator(seed)
    values = torch.rand(n, seq_len, generator=g)  # (n, T)
    # a uniform pair of distinct steps: the second is drawn from the T-1 steps left
    first = torch.randint(seq_len, (n,), generator=g)
    second = torch.randint(seq_len - 1, (n,), generator=g)
    second = second + (second >= first).long()
    marks = torch.zeros(n, seq_len)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return torch.stack([values, marks], dim=2), y  # (n, T, 2), (n,)


def copy_memory(n: int, blank_len: int, *, seed: int, mem_len: int = 10) -> tuple[Tensor, Tensor]:
    """The copy memory task (Arjovsky et al. 2016; as Bai et al. generate it).

    Input, ``T + 2·mem_len`` tokens: ``mem_len`` digits drawn uniformly from 1..8, then
    ``blank_len - 1`` blanks (0), then ``mem_len + 1`` delimiters (9), the first of which
    says "now repeat". Target: blanks everywhere except the last ``mem_len`` steps, which hold
    the digits of the start. A model without memory scores :func:`copy_memory_baseline`.

    Returns ``x`` and ``y``, both (n, blank_len + 2·mem_len) int64 tokens in 0..9 (one-hot or
    embed ``x`` as the model needs; Bai et al. fed the raw value as one real feature).
    """
    check_positive_int("n", n)
    check_positive_int("blank_len", blank_len)
    check_positive_int("mem_len", mem_len)
    g = _generator(seed)
    digits = torch.randint(1, 9, (n, mem_len), generator=g)  # 1..8
    blanks = torch.full((n, blank_len - 1), COPY_BLANK)
    delimiters = torch.full((n, mem_len + 1), COPY_DELIMITER)
    x = torch.cat([digits, blanks, delimiters], dim=1)
    y = torch.cat([torch.full((n, blank_len + mem_len), COPY_BLANK), digits], dim=1)
    return x, y


def copy_memory_baseline(blank_len: int, mem_len: int = 10) -> float:
    """Per-step cross-entropy of a model that remembers nothing: certain of the blank for the
    first T + mem_len steps, uniform over the 8 digits for the last mem_len steps, which gives
    mem_len·ln 8 / (T + 2·mem_len) (Bai et al.'s baseline)."""
    return mem_len * math.log(8.0) / (blank_len + 2 * mem_len)


def seq_digits(split: str, *, permuted: bool = False, perm_seed: int = 0) -> tuple[Tensor, Tensor]:
    """Sequential digits: each 8x8 image of :func:`rnnkit.datasets.digits.load_digits_sequences`
    read pixel by pixel, row by row, as T = 64 steps of one feature in [0, 1]; with
    ``permuted``, the steps in one fixed random order (the same for every image and split,
    drawn from ``perm_seed``), as the paper's permuted MNIST.

    ``split``: "train" (1,257 images), "valid" (270) or "test" (270).
    Returns ``x`` (N, 64, 1) float32 and ``y`` (N,) int64 labels 0..9.
    """
    from ..datasets.digits import load_digits_sequences

    images, labels = load_digits_sequences(split)  # (N, 8, 8) rows as steps, (N,)
    x = torch.from_numpy(images).reshape(len(labels), 64, 1)  # (N, 64, 1), row-major pixels
    if permuted:
        x = x[:, digits_permutation(perm_seed)]
    return x, torch.from_numpy(labels)


def digits_permutation(seed: int = 0) -> Tensor:
    """The fixed order of the 64 pixel steps used by ``seq_digits(permuted=True)``."""
    return torch.randperm(64, generator=_generator(seed))
