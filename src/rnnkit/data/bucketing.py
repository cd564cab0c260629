"""Batches of similar lengths (the lecture's "padding to equal length, with sorting").

Padding a random batch to its longest member wastes the steps between each sequence and that
maximum. Sorting the whole corpus by length removes the waste but makes every epoch's batches
the same. :class:`BucketBatchSampler` takes the middle road used by most sequence trainers:

1. shuffle the indices;
2. cut them into windows of ``bucket_batches * batch_size``;
3. sort each window by length and cut it into batches;
4. shuffle the order of all batches.

Every index appears in exactly one batch per epoch; batches hold sequences of nearby lengths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class BucketBatchSampler:
    """Yield lists of indices, each a batch of sequences of similar length.

    Args:
        lengths: the length of every sequence in the dataset (N,).
        batch_size: sequences per batch (the last batch of a window may be smaller).
        bucket_batches: k, the number of batches a sorting window spans. 1 is random batching;
            a window as large as the dataset is a global sort.
        shuffle: shuffle indices and batch order (False: sorted windows in dataset order).
        drop_last: drop batches smaller than ``batch_size``.
        seed: the epoch-``e`` order comes from ``numpy.random.default_rng([seed, e])``.

    The epoch counter starts at 0 and advances after each full pass; :meth:`set_epoch` sets it
    (as ``DistributedSampler`` does). Usable as ``DataLoader(ds, batch_sampler=sampler)``.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        bucket_batches: int = 50,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        lengths = np.asarray(lengths)
        if lengths.ndim != 1 or lengths.size == 0:
            raise ValueError(
                f"lengths must be a non-empty 1-D sequence, got shape {tuple(lengths.shape)}"
            )
        if lengths.dtype == np.bool_ or not np.issubdtype(lengths.dtype, np.integer):
            raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
        if int(lengths.min()) < 0:
            raise ValueError(f"lengths must be >= 0, got {int(lengths.min())}")
        self.lengths = lengths.astype(np.int64)
        self.batch_size = _check_positive("batch_size", batch_size)
        self.bucket_batches = _check_positive("bucket_batches", bucket_batches)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of epoch ``epoch`` (deterministic given ``seed``)."""
        rng = np.random.default_rng([self.seed, epoch])
        n = self.lengths.size
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        window = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, n, window):
            chunk = order[start : start + window]
            # stable sort: equal lengths keep their shuffled order
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            for b in range(0, chunk.size, self.batch_size):
                batch = chunk[b : b + self.batch_size]
                if self.drop_last and batch.size < self.batch_size:
                    continue
                batches.append(batch.tolist())
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches(self.epoch)
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        n = self.lengths.size
        window = self.batch_size * self.bucket_batches
        full, rest = divmod(n, window)
        per_window = self.bucket_batches
        if self.drop_last:
            return full * per_window + rest // self.batch_size
        return full * per_window + -(-rest // self.batch_size)


def padding_cost(lengths: Sequence[int] | np.ndarray, batches: Sequence[Sequence[int]]) -> dict:
    """Padding that ``batches`` need: each batch is padded to its longest sequence.

    Returns ``{"tokens": real steps, "padded": B*T summed over batches, "padding": the
    difference, "padding_fraction": padding / padded}``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    tokens = padded = 0
    for batch in batches:
        ls = lengths[np.asarray(batch, dtype=np.int64)]
        tokens += int(ls.sum())
        padded += int(ls.max()) * len(ls) if len(ls) else 0
    return {
        "tokens": tokens,
        "padded": padded,
        "padding": padded - tokens,
        "padding_fraction": (padded - tokens) / padded if padded else 0.0,
    }
