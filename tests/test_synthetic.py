"""The long-range task generators: the exact structure Bai et al. specify, determinism, and the
baselines recomputed from generated data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from rnnkit.datasets.digits import load_digits_sequences
from rnnkit.tasks.moving_digits import bounce, moving_digits, render
from rnnkit.tasks.synthetic import (
    ADDING_BASELINE_MSE,
    adding_problem,
    copy_memory,
    copy_memory_baseline,
    digits_permutation,
    seq_digits,
)


@pytest.mark.parametrize("T", [2, 200])
def test_adding_problem_structure(T):
    x, y = adding_problem(3000, T, seed=5)
    assert x.shape == (3000, T, 2) and x.dtype == torch.float32 and y.shape == (3000,)
    values, marks = x[..., 0], x[..., 1]
    assert values.min() >= 0.0 and values.max() < 1.0
    assert set(marks.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(marks.sum(dim=1), torch.full((3000,), 2.0))  # exactly two distinct steps
    marked = values[marks.bool()].view(3000, 2)  # row-major: the two marked values of each row
    assert torch.equal(y, marked[:, 0] + marked[:, 1])
    if T == 200:  # markers fall anywhere, first and last step included
        assert marks[:, 0].sum() > 0 and marks[:, -1].sum() > 0


def test_adding_problem_pairs_are_uniform_and_baseline_is_one_sixth():
    x, y = adding_problem(60000, 4, seed=0)
    pairs = x[..., 1].nonzero()[:, 1].view(-1, 2)  # the two marked steps of each row, sorted
    counts = torch.zeros(4, 4)
    counts.index_put_((pairs[:, 0], pairs[:, 1]), torch.ones(len(pairs)), accumulate=True)
    expected = 60000 / 6  # 6 unordered pairs of 4 steps
    upper = counts[torch.triu(torch.ones(4, 4), 1).bool()]
    assert ((upper - expected).abs() < 5 * math.sqrt(expected)).all()
    assert abs(((y - 1.0) ** 2).mean().item() - ADDING_BASELINE_MSE) < 0.005


@pytest.mark.parametrize("blank_len", [1, 50])
def test_copy_memory_structure(blank_len):
    n, m = 500, 10
    x, y = copy_memory(n, blank_len, seed=3)
    L = blank_len + 2 * m
    assert x.shape == y.shape == (n, L) and x.dtype == y.dtype == torch.int64
    digits = x[:, :m]
    assert digits.min() == 1 and digits.max() == 8
    assert set(digits.unique().tolist()) == set(range(1, 9))
    assert (x[:, m : m + blank_len - 1] == 0).all()
    assert (x[:, m + blank_len - 1 :] == 9).all() and x.shape[1] - (m + blank_len - 1) == m + 1
    assert (y[:, : blank_len + m] == 0).all()
    assert torch.equal(y[:, blank_len + m :], digits)
    # the answer starts one step after the first delimiter
    assert ((x == 9).int().argmax(dim=1) == m + blank_len - 1).all()


def test_copy_memory_baseline_equals_memoryless_cross_entropy():
    T, m = 30, 10
    x, y = copy_memory(400, T, seed=0)
    logits = torch.full((400, T + 2 * m, 10), -1e9, dtype=torch.float64)
    logits[:, : T + m, 0] = 0.0  # certain of the blank
    logits[:, T + m :, 1:9] = 0.0  # uniform over the 8 digits
    ce = F.cross_entropy(logits.reshape(-1, 10), y.reshape(-1))
    assert abs(ce.item() - copy_memory_baseline(T)) < 1e-12
    assert copy_memory_baseline(1000) == pytest.approx(10 * math.log(8) / 1020)


def test_generators_are_deterministic_in_the_seed():
    a, b = adding_problem(50, 20, seed=1), adding_problem(50, 20, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], adding_problem(50, 20, seed=2)[0])
    c, d = copy_memory(50, 20, seed=1), copy_memory(50, 20, seed=1)
    assert torch.equal(c[0], d[0]) and torch.equal(c[1], d[1])
    assert not torch.equal(c[0], copy_memory(50, 20, seed=2)[0])
    # the global random state plays no part
    torch.manual_seed(123)
    e = adding_problem(50, 20, seed=1)
    assert torch.equal(a[0], e[0])


def test_seq_digits_reads_pixels_row_by_row_and_permutes_steps_consistently():
    images, labels = load_digits_sequences("test")
    x, y = seq_digits("test")
    assert x.shape == (270, 64, 1) and x.dtype == torch.float32
    assert np.array_equal(y.numpy(), labels)
    for i, r, c in [(0, 0, 0), (5, 3, 7), (269, 7, 2), (100, 4, 4)]:
        assert x[i, 8 * r + c, 0].item() == images[i, r, c]
    perm = digits_permutation(0)
    assert sorted(perm.tolist()) == list(range(64)) and not torch.equal(perm, torch.arange(64))
    xp, yp = seq_digits("test", permuted=True)
    assert torch.equal(xp, x[:, perm]) and torch.equal(yp, y)
    xt, _ = seq_digits("train", permuted=True)
    xt_plain, _ = seq_digits("train")
    assert torch.equal(xt, xt_plain[:, perm])  # the same order for every split
    assert not torch.equal(digits_permutation(1), perm)


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match=r"seq_len must be >= 2.*got 1"):
        adding_problem(4, 1, seed=0)
    with pytest.raises(TypeError, match=r"seed must be an int, got float"):
        copy_memory(4, 10, seed=0.5)
    with pytest.raises(ValueError, match=r"n must be >= 1, got 0"):
        copy_memory(0, 10, seed=0)
    with pytest.raises(ValueError, match=r"split must be one of"):
        seq_digits("dev")


# -- moving digits ------------------------------------------------------------------------------
def test_bounce_reflects_at_both_walls():
    path = bounce(np.array([1.0, 4.0]), np.array([-1.5, 0.75]), 8, limit=5.0)
    assert np.allclose(path[:, 0], [1.0, 0.5, 2.0, 3.5, 5.0, 3.5, 2.0, 0.5], rtol=0, atol=1e-12)
    assert np.allclose(path[:, 1], [4.0, 4.75, 4.5, 3.75, 3.0, 2.25, 1.5, 0.75], rtol=0, atol=1e-12)


def test_render_places_digits_and_takes_the_maximum_where_they_overlap():
    a = np.zeros((8, 8), dtype=np.float32)
    a[0, :] = 0.5
    b = np.zeros((8, 8), dtype=np.float32)
    b[:, 0] = 1.0
    b[0, 0] = 0.25
    frames = render(np.stack([a, b]), np.array([[[1, 2], [1, 2]], [[0, 0], [3, 4]]]), 12)
    assert frames.shape == (2, 12, 12)
    expect0 = np.zeros((12, 12), dtype=np.float32)
    expect0[1, 2:10] = 0.5
    expect0[1:9, 2] = 1.0
    expect0[1, 2] = 0.5  # max(0.5, 0.25)
    assert np.array_equal(frames[0], expect0)
    expect1 = np.zeros((12, 12), dtype=np.float32)
    expect1[0, 0:8] = 0.5
    expect1[3:11, 4] = 1.0
    expect1[3, 4] = 0.25
    assert np.array_equal(frames[1], expect1)


def test_moving_digit_is_one_test_image_translated_within_the_canvas():
    frames = moving_digits(6, seed=4, split="test", num_digits=1, seq_len=8, canvas=14).numpy()
    assert frames.shape == (6, 8, 1, 14, 14)
    images, _ = load_digits_sequences("test")
    for seq in frames[:, :, 0]:
        found = set()
        for frame in seq:
            hits = []
            for r in range(7):
                for c in range(7):
                    rest = frame.copy()
                    rest[r : r + 8, c : c + 8] = 0
                    if rest.any():
                        continue
                    crop = frame[r : r + 8, c : c + 8]
                    hits += [(k, r, c) for k in np.flatnonzero((images == crop).all(axis=(1, 2)))]
            assert hits, "every frame is one test image placed on the canvas"
            found.add(hits[0][0])
        assert len(found) == 1  # the same image throughout the sequence
    again = moving_digits(6, seed=4, split="test", num_digits=1, seq_len=8, canvas=14).numpy()
    assert np.array_equal(frames, again)
    other = moving_digits(6, seed=5, split="test", num_digits=1, seq_len=8, canvas=14)
    assert not np.array_equal(frames, other.numpy())


def test_moving_digits_rejects_a_canvas_smaller_than_a_digit():
    with pytest.raises(ValueError, match=r"canvas must be >= 8.*got 6"):
        moving_digits(2, seed=0, canvas=6)
