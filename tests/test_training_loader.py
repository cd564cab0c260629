"""Deterministic, sharded, resumable batches: each checked against the batches one
uninterrupted process would see."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.training.loader import BatchLoader, ResumableLoader, shuffled_batches


def identity(items):
    return list(items)


def test_plan_is_a_seeded_permutation_cut_into_batches():
    plan = shuffled_batches(10, 4, seed=7)
    order = np.random.default_rng([7, 3]).permutation(10).tolist()
    assert plan(3) == [order[0:4], order[4:8]]  # drop_last: the 2 left over are dropped
    assert plan(3) == plan(3) and plan(3) != plan(4)
    keep = shuffled_batches(10, 4, seed=7, shuffle=False, drop_last=False)
    assert keep(0) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_shards_put_together_are_the_global_batch():
    plan = shuffled_batches(24, 6, seed=1)
    shards = [list(BatchLoader(plan, identity, rank=r, world_size=3)) for r in range(3)]
    for k, batch in enumerate(plan(0)):
        assert sorted(sum((s[k] for s in shards), [])) == sorted(batch)
        assert shards[1][k] == batch[1::3]


def test_epochs_follow_set_epoch_and_the_plan():
    plan = shuffled_batches(8, 2, seed=0)
    loader = BatchLoader(plan, identity)
    assert list(loader) == plan(0)
    loader.set_epoch(5)
    assert list(loader) == plan(5)
    assert list(loader) == plan(6)  # a finished epoch moves on by itself


@pytest.mark.parametrize("stop", [1, 3, 4])
def test_resume_mid_epoch_continues_with_the_next_batch(stop):
    plan = shuffled_batches(8, 2, seed=3)  # 4 batches per epoch
    uninterrupted = ResumableLoader(plan, identity)
    expected = list(uninterrupted) + list(uninterrupted)  # epochs 0 and 1

    first = ResumableLoader(plan, identity)
    it = iter(first)
    seen = [next(it) for _ in range(stop)]
    state = first.state_dict()  # what Lightning writes into a checkpoint

    resumed = ResumableLoader(plan, identity)
    resumed.load_state_dict(state)
    # Lightning sets the epoch it restored before iterating: the next one after a last batch
    for epoch in range(0 if stop < 4 else 1, 2):
        resumed.set_epoch(epoch)
        seen += list(resumed)
    assert seen == expected


def test_uneven_shards_and_empty_plans_are_refused():
    with pytest.raises(ValueError, match=r"every batch must split evenly over 4 processes"):
        BatchLoader(shuffled_batches(12, 6, seed=0), identity, rank=0, world_size=4)
    with pytest.raises(ValueError, match=r"batch_size=16 is larger than the 10 items available"):
        shuffled_batches(10, 16, seed=0)
    with pytest.raises(ValueError, match=r"rank must be in \[0, world_size=2\), got 2"):
        BatchLoader(shuffled_batches(4, 2, seed=0), identity, rank=2, world_size=2)
