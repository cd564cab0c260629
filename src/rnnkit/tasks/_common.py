"""Pieces several tasks share: loaders over in-memory arrays, batched prediction."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..training.loader import BatchLoader, ResumableLoader, shuffled_batches
from ..training.modules import LabelledBatch


def array_loaders(
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    seed: int,
    rank: int,
    world_size: int,
    train: bool,
    lengths: Tensor | None = None,
) -> BatchLoader:
    """Batches of ``(x[i], lengths[i], y[i])`` rows: shuffled, full, resumable and sharded
    for training; in order, all rows, on every process for evaluation."""
    n = x.shape[0]

    def collate(idx: list[int]) -> LabelledBatch:
        i = torch.as_tensor(idx, dtype=torch.int64)
        return LabelledBatch(x[i], None if lengths is None else lengths[i], y[i])

    if train:
        plan = shuffled_batches(n, batch_size, seed=seed)
        return ResumableLoader(plan, collate, rank=rank, world_size=world_size)
    plan = shuffled_batches(n, batch_size, seed=seed, shuffle=False, drop_last=False)
    return BatchLoader(plan, collate)


def predict_in_batches(
    fn: Callable[[Tensor], Tensor], x: Tensor, *, batch_size: int = 256
) -> Tensor:
    """``fn`` applied to ``x`` in slices of ``batch_size`` rows, concatenated (no grad)."""
    with torch.no_grad():
        return torch.cat([fn(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def majority_accuracy(train_labels: np.ndarray, test_labels: np.ndarray) -> float:
    """Accuracy on ``test_labels`` of always answering the most frequent training label."""
    majority = np.bincount(train_labels).argmax()
    return float(np.mean(test_labels == majority))


def eval_mode(model: nn.Module) -> nn.Module:
    return model.eval()
