"""Batches for Lightning that are deterministic, sharded across processes and resumable.

A loader is two functions:

* a *plan* ``plan(epoch) -> [[item, ...], ...]``: the global batches of one epoch, the same
  for every process and every run with the same seed (:func:`shuffled_batches`, or
  ``rnnkit.data.BucketBatchSampler.batches`` for batches of similar lengths);
* a *collate* ``collate([item, ...]) -> batch``: the tensors of one batch.

In a run over W processes, process r takes items ``r, r + W, r + 2W...`` of every global
batch, so W processes with equal shares see exactly the global batch one process would (the
DDP gradient average then equals the one-process gradient).

:class:`ResumableLoader` records how many batches of which epoch it has handed out and
implements ``state_dict`` / ``load_state_dict``, which Lightning saves into each checkpoint
and restores on resume: a resumed run continues mid-epoch with the very next batch. It also
has a ``__len__``, so Lightning fetches batches one at a time (no prefetching that would
count a batch not yet trained on).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

Plan = Callable[[int], Sequence[Sequence[Any]]]
Collate = Callable[[list[Any]], Any]


def shuffled_batches(
    n: int, batch_size: int, *, seed: int, shuffle: bool = True, drop_last: bool = True
) -> Plan:
    """A plan over items ``0..n-1``: each epoch a fresh permutation (``default_rng([seed,
    epoch])``) cut into batches of ``batch_size`` (the last, shorter one kept unless
    ``drop_last``)."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
    if drop_last and n < batch_size:
        raise ValueError(
            f"batch_size={batch_size} is larger than the {n} items available; lower "
            "trainer.batch_size"
        )

    def plan(epoch: int) -> list[list[int]]:
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last else n
        return [order[i : i + batch_size].tolist() for i in range(0, stop, batch_size)]

    return plan


class BatchLoader:
    """Iterate the batches of ``plan(epoch)``, this process's share of each, collated.

    Args:
        plan: ``epoch -> global batches`` (see the module docstring); every epoch must have
            the same number of batches.
        collate: ``items -> batch``.
        rank, world_size: this process and the number of processes.
    """

    def __init__(self, plan: Plan, collate: Collate, *, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.plan = plan
        self.collate = collate
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.position = 0  # batches of this epoch handed out so far
        first = plan(0)
        self._length = len(first)
        if self._length == 0:
            raise ValueError("the plan has no batches: the split is smaller than one batch")
        if world_size > 1 and any(len(b) % world_size for b in first):
            raise ValueError(
                f"every batch must split evenly over {world_size} processes; got sizes "
                f"{sorted({len(b) for b in first})}"
            )

    # Lightning inspects ``loader.sampler`` / ``loader.batch_sampler`` of anything that has a
    # sampler (to warn about shuffled evaluation loaders); batching is the plan's business here
    batch_sampler = None

    @property
    def sampler(self) -> BatchLoader:
        """Itself: Lightning calls ``loader.sampler.set_epoch(epoch)`` before each epoch."""
        return self

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[Any]:
        if self.position >= self._length:
            self.epoch, self.position = self.epoch + 1, 0
        epoch = self.epoch
        batches = self.plan(epoch)
        if len(batches) != self._length:
            raise ValueError(
                f"the plan gave {len(batches)} batches in epoch {epoch} but {self._length} "
                "in epoch 0; every epoch must have the same number"
            )
        for k in range(self.position, self._length):
            self.position = k + 1
            yield self.collate(list(batches[k])[self.rank :: self.world_size])


class ResumableLoader(BatchLoader):
    """A :class:`BatchLoader` whose position Lightning saves in checkpoints and restores."""

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
