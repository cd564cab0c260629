"""Acceptance 7: bad input raises a clear error naming the argument, what was expected and
what came. One test per case."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit import Recurrent


@pytest.fixture
def lstm():
    return rnnkit.LSTM(3, 4, num_layers=2)


def test_wrong_number_of_dimensions(lstm):
    with pytest.raises(ValueError, match=r"x must be 3-D \(T, B, I\).*got 4-D"):
        lstm(torch.zeros(5, 2, 3, 1))


def test_wrong_number_of_dimensions_batch_first():
    layer = rnnkit.GRU(3, 4, batch_first=True)
    with pytest.raises(ValueError, match=r"\(B, T, I\).*got 1-D"):
        layer(torch.zeros(5))


def test_input_size_mismatch(lstm):
    with pytest.raises(ValueError, match=r"input_size=3.*got 7"):
        lstm(torch.zeros(5, 2, 7))


def test_cell_input_size_mismatch():
    cell = rnnkit.GRUCell(3, 4)
    with pytest.raises(ValueError, match=r"x_t must have input_size=3 features, got 5"):
        cell(torch.zeros(2, 5))


def test_h0_shape_mismatch(lstm):
    h0 = torch.zeros(2, 2, 4)
    c0 = torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match=r"h_0\[1\] must have shape \(2, 2, 4\).*got \(1, 2, 4\)"):
        lstm(torch.zeros(5, 2, 3), (h0, c0))


def test_h0_wrong_count(lstm):
    with pytest.raises(ValueError, match=r"h_0 must be a tuple of 2 tensor\(s\).*got 1"):
        lstm(torch.zeros(5, 2, 3), torch.zeros(2, 2, 4))


def test_lengths_wrong_shape(lstm):
    with pytest.raises(ValueError, match=r"lengths must have shape \(2,\).*got \(3,\)"):
        lstm(torch.zeros(5, 2, 3), lengths=torch.tensor([1, 2, 3]))


def test_lengths_non_integer(lstm):
    with pytest.raises(TypeError, match=r"lengths must have an integer dtype, got torch.float32"):
        lstm(torch.zeros(5, 2, 3), lengths=torch.tensor([1.0, 2.0]))


def test_lengths_below_one(lstm):
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\], got values from 0 to 2"):
        lstm(torch.zeros(5, 2, 3), lengths=torch.tensor([0, 2]))


def test_lengths_above_T(lstm):
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\], got values from 2 to 6"):
        lstm(torch.zeros(5, 2, 3), lengths=torch.tensor([6, 2]))


def test_unknown_merge_mode():
    with pytest.raises(ValueError, match=r"merge_mode must be one of .*'concat'.*got 'avg'"):
        rnnkit.GRU(3, 4, bidirectional=True, merge_mode="avg")


def test_unknown_nonlinearity():
    with pytest.raises(ValueError, match=r"nonlinearity must be one of 'tanh', 'relu'; got 'gelu'"):
        rnnkit.RNN(3, 4, nonlinearity="gelu")


def test_unknown_nonlinearity_cell():
    with pytest.raises(ValueError, match=r"nonlinearity must be one of .*got 'sigmoid'"):
        rnnkit.ElmanCell(3, 4, nonlinearity="sigmoid")


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_outside_unit_interval(p):
    with pytest.raises(ValueError, match=rf"dropout must be in \[0, 1\), got {p}"):
        rnnkit.LSTM(3, 4, num_layers=2, dropout=p)


def test_dropout_wrong_type():
    with pytest.raises(TypeError, match=r"dropout must be a float in \[0, 1\), got str"):
        rnnkit.LSTM(3, 4, dropout="0.1")


def test_hidden_size_not_positive():
    with pytest.raises(ValueError, match=r"hidden_size must be >= 1, got 0"):
        rnnkit.LSTMCell(3, 0)


def test_proj_size_too_large():
    with pytest.raises(ValueError, match=r"proj_size must be 0 or in \[1, hidden_size=4\), got 4"):
        rnnkit.LSTM(3, 4, proj_size=4)


def test_cell_factory_must_build_a_cell():
    with pytest.raises(TypeError, match=r"must return an rnnkit RecurrentCell, got Linear"):
        Recurrent(torch.nn.Linear, 3, 4)


def test_lengths_with_packed_sequence(lstm):
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.zeros(5, 2, 3), [5, 3])
    with pytest.raises(ValueError, match=r"lengths must be None when x is a PackedSequence"):
        lstm(packed, lengths=torch.tensor([5, 3]))


def test_cell_state_shape_mismatch():
    cell = rnnkit.LSTMCell(3, 4)
    with pytest.raises(ValueError, match=r"state\[1\] must have shape \(2, 4\), got \(2, 5\)"):
        cell(torch.zeros(2, 3), (torch.zeros(2, 4), torch.zeros(2, 5)))
