"""PadCollate: exact batches, and what it produces runs through torch's RNNs unchanged."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_sequence, pad_packed_sequence

from rnnkit.data import PadCollate


def test_sequences_time_first_by_default():
    x, lengths = PadCollate()([[1, 2, 3], [4]])
    assert torch.equal(x, torch.tensor([[1, 4], [2, 0], [3, 0]]))  # (T, B)
    assert torch.equal(lengths, torch.tensor([3, 1]))


def test_pairs_with_labels_and_batch_first():
    (x, lengths), y = PadCollate(batch_first=True, padding_value=9)([([1, 2], 0), ([3], 1)])
    assert torch.equal(x, torch.tensor([[1, 2], [3, 9]]))
    assert torch.equal(lengths, torch.tensor([2, 1]))
    assert torch.equal(y, torch.tensor([0, 1]))


def test_sequence_targets_are_padded_like_the_inputs():
    batch = [([1, 2, 3], [2, 3, 4]), ([5], [6])]
    (x, lengths), y = PadCollate()(batch)
    assert torch.equal(y, torch.tensor([[2, 6], [3, -100], [4, -100]]))
    assert torch.equal(x, torch.tensor([[1, 5], [2, 0], [3, 0]]))


def test_packed_inputs_and_targets_line_up():
    batch = [([1, 2], [20, 30]), ([3, 4, 5], [40, 50, 60]), ([6], [70])]
    x, y = PadCollate(packed=True)(batch)
    assert isinstance(x, PackedSequence) and isinstance(y, PackedSequence)
    expected = pack_sequence([torch.tensor(s) for s, _ in batch], enforce_sorted=False)
    assert torch.equal(x.data, expected.data)
    assert torch.equal(x.batch_sizes, expected.batch_sizes)
    assert torch.equal(y.data, x.data * 10 + 10)  # every target sits next to its input
    padded, lengths = pad_packed_sequence(x, batch_first=True)
    assert torch.equal(lengths, torch.tensor([2, 3, 1]))  # original batch order kept


@pytest.mark.parametrize("packed", [False, True])
def test_runs_through_an_rnn_like_each_sequence_alone(packed):
    torch.manual_seed(0)
    rnn = torch.nn.LSTM(input_size=3, hidden_size=5).double()
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in (4, 2, 5)]
    inputs = PadCollate(packed=packed)(seqs)
    if packed:
        _, (h, _) = rnn(inputs)
    else:
        x, lengths = inputs  # (T, B, I)
        packed_x = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
        _, (h, _) = rnn(packed_x)
    for b, s in enumerate(seqs):
        _, (h_alone, _) = rnn(s[:, None])
        torch.testing.assert_close(h[:, b], h_alone[:, 0], rtol=0, atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="batch must be a non-empty list of items"):
        PadCollate()([])
    with pytest.raises(ValueError, match=r"batch\[1\] is an empty sequence"):
        PadCollate()([[1], []])
    with pytest.raises(ValueError, match=r"targets\[0\] must have the length of its input \(2"):
        PadCollate()([([1, 2], [1, 2, 3])])


@pytest.mark.parametrize("packed", [False, True])
def test_feeds_the_rnnkit_runner(packed):
    """(x, lengths) and the PackedSequence go straight into rnnkit's runner, and each final
    state equals that of the sequence run alone."""
    import rnnkit

    torch.manual_seed(1)
    layer = rnnkit.GRU(3, 4, bidirectional=True).double()
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in (2, 5, 3)]
    inputs = PadCollate(packed=packed)(seqs)
    _, h = layer(inputs) if packed else layer(inputs[0], lengths=inputs[1])
    for b, s in enumerate(seqs):
        _, h_alone = layer(s[:, None])
        torch.testing.assert_close(h[:, b], h_alone[:, 0], rtol=0, atol=1e-12)
