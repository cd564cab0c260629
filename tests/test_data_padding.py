"""pad_batch on hand-written sequences: both sides, truncation, features, masks, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.data import pad_batch

SEQS = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]


def test_post_padding():
    x, lengths, mask = pad_batch(SEQS)
    assert torch.equal(x, torch.tensor([[1, 2, 3, 0, 0], [4, 0, 0, 0, 0], [5, 6, 7, 8, 9]]))
    assert torch.equal(lengths, torch.tensor([3, 1, 5]))
    assert torch.equal(mask, x != 0)


def test_pre_padding_with_a_value():
    x, lengths, mask = pad_batch(SEQS, padding="pre", value=-1)
    assert torch.equal(x, torch.tensor([[-1, -1, 1, 2, 3], [-1, -1, -1, -1, 4], [5, 6, 7, 8, 9]]))
    assert torch.equal(lengths, torch.tensor([3, 1, 5]))
    assert torch.equal(mask, x != -1)


@pytest.mark.parametrize(
    ("padding", "truncating", "expected"),
    [
        ("post", "post", [[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 7, 8]]),
        ("post", "pre", [[1, 2, 3, 0], [4, 0, 0, 0], [6, 7, 8, 9]]),
        ("pre", "post", [[0, 1, 2, 3], [0, 0, 0, 4], [5, 6, 7, 8]]),
        ("pre", "pre", [[0, 1, 2, 3], [0, 0, 0, 4], [6, 7, 8, 9]]),
    ],
)
def test_truncation(padding, truncating, expected):
    x, lengths, mask = pad_batch(SEQS, padding=padding, truncating=truncating, max_len=4)
    assert torch.equal(x, torch.tensor(expected))
    assert torch.equal(lengths, torch.tensor([3, 1, 4]))
    assert torch.equal(mask, torch.tensor(expected) != 0)


def test_max_len_longer_than_every_sequence():
    x, lengths, _ = pad_batch([[1], [2, 3]], max_len=4)
    assert torch.equal(x, torch.tensor([[1, 0, 0, 0], [2, 3, 0, 0]]))
    assert torch.equal(lengths, torch.tensor([1, 2]))


def test_feature_sequences_and_mixed_inputs():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = torch.tensor([[5.0, 6.0]], dtype=torch.float32)
    x, lengths, mask = pad_batch([a, b], padding="pre")
    expected = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [5.0, 6.0]]], dtype=torch.float64
    )
    assert x.dtype == torch.float64  # promoted from float64 and float32
    assert torch.equal(x, expected)
    assert torch.equal(lengths, torch.tensor([2, 1]))
    assert torch.equal(mask, torch.tensor([[True, True], [False, True]]))


def test_empty_sequence_is_all_padding():
    x, lengths, mask = pad_batch([[], [7, 8]])
    assert torch.equal(x, torch.tensor([[0, 0], [7, 8]]))
    assert lengths.tolist() == [0, 2]
    assert mask.tolist() == [[False, False], [True, True]]


def test_matches_torch_pad_sequence():
    rng = np.random.default_rng(0)
    seqs = [torch.as_tensor(rng.normal(size=(n, 3))) for n in (4, 1, 6, 2)]
    ours = pad_batch(seqs).padded
    theirs = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True)
    assert torch.equal(ours, theirs)


def test_errors():
    with pytest.raises(ValueError, match="padding must be one of"):
        pad_batch(SEQS, padding="middle")
    with pytest.raises(ValueError, match="truncating must be one of"):
        pad_batch(SEQS, truncating="both")
    with pytest.raises(ValueError, match="at least one sequence, got an empty list"):
        pad_batch([])
    with pytest.raises(ValueError, match=r"max_len must be >= 1, got 0"):
        pad_batch(SEQS, max_len=0)
    with pytest.raises(ValueError, match="share their feature shape"):
        pad_batch([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(TypeError, match=r"sequences\[1\] must be a list, NumPy array or tensor"):
        pad_batch([[1], "ab"])
    with pytest.raises(ValueError, match=r"sequences\[0\] must be a sequence .* got a scalar"):
        pad_batch([torch.tensor(3)])
