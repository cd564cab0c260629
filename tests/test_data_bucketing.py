"""BucketBatchSampler: every index once per epoch, exact batches, less padding on real text."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rnnkit.data import BucketBatchSampler, padding_cost
from rnnkit.text import word_tokens
from rnnkit.word2vec import gensim_test_file


def test_exact_batches_without_shuffling():
    lengths = [5, 1, 3, 8, 2, 9, 4]
    s = BucketBatchSampler(lengths, batch_size=2, bucket_batches=2, shuffle=False)
    # windows of 4 indices: [0, 1, 2, 3] sorted by length -> 1, 2, 0, 3; then [4, 5, 6] -> 4, 6, 5
    assert s.batches(0) == [[1, 2], [0, 3], [4, 6], [5]]
    assert len(s) == 4
    s = BucketBatchSampler(lengths, batch_size=2, bucket_batches=2, shuffle=False, drop_last=True)
    assert s.batches(0) == [[1, 2], [0, 3], [4, 6]]
    assert len(s) == 3


CASES = [(103, 8, 4, False), (64, 8, 1, False), (50, 7, 3, True), (5, 10, 2, False)]


@pytest.mark.parametrize(("n", "batch", "k", "drop"), CASES)
def test_every_index_exactly_once_per_epoch(n, batch, k, drop):
    lengths = np.random.default_rng(1).integers(1, 40, size=n)
    s = BucketBatchSampler(lengths, batch_size=batch, bucket_batches=k, drop_last=drop, seed=5)
    epochs = [list(s) for _ in range(3)]
    for batches in epochs:
        assert len(batches) == len(s)
        seen = sorted(i for b in batches for i in b)
        if drop:
            assert all(len(b) == batch for b in batches)
            assert (
                len(seen)
                == len(set(seen))
                == (n // (batch * k)) * batch * k + ((n % (batch * k)) // batch * batch)
            )
        else:
            assert seen == list(range(n))
    if n > batch:
        assert epochs[0] != epochs[1]  # a new order each epoch
    assert s.batches(1) == epochs[1]  # and reproducible from (seed, epoch)


def test_batches_are_sorted_within_windows():
    lengths = np.random.default_rng(2).integers(1, 100, size=400)
    s = BucketBatchSampler(lengths, batch_size=10, bucket_batches=40, seed=0)  # one window
    batches = s.batches(0)
    ranges = sorted((lengths[b].min(), lengths[b].max()) for b in batches)
    # with a single window the batches tile the sorted lengths: no overlap between batches
    assert all(hi <= next_lo for (_, hi), (next_lo, _) in zip(ranges, ranges[1:]))


def test_padding_cost_exact():
    cost = padding_cost([3, 1, 4, 4], [[0, 1], [2, 3]])
    assert cost == {"tokens": 12, "padded": 14, "padding": 2, "padding_fraction": 2 / 14}


def lee_sentences():
    text = gensim_test_file("lee_background.cor").read_text(encoding="utf-8")
    return [word_tokens(s) for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def test_bucketing_reduces_padding_on_a_real_corpus():
    lengths = np.array([len(s) for s in lee_sentences()])
    assert lengths.size > 2000
    random_batches = BucketBatchSampler(lengths, batch_size=32, bucket_batches=1, seed=0)
    bucketed = BucketBatchSampler(lengths, batch_size=32, bucket_batches=50, seed=0)
    waste_random = padding_cost(lengths, random_batches.batches(0))["padding_fraction"]
    waste_bucketed = padding_cost(lengths, bucketed.batches(0))["padding_fraction"]
    assert waste_random > 0.3
    assert waste_bucketed < waste_random / 5


def test_errors():
    with pytest.raises(ValueError, match="lengths must be a non-empty 1-D sequence"):
        BucketBatchSampler([], batch_size=2)
    with pytest.raises(TypeError, match="lengths must hold integers, got dtype float64"):
        BucketBatchSampler([1.0, 2.0], batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        BucketBatchSampler([1, 2], batch_size=0)
    with pytest.raises(ValueError, match="lengths must be >= 0, got -1"):
        BucketBatchSampler([1, -1], batch_size=1)
