"""Acceptance 2: rnnkit.LSTM/GRU/RNN loaded from a torch layer's state dict equal it."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import rnnkit

TOL = 1e-10
I, H, P, T, B = 3, 5, 2, 6, 4

CASES = [
    (kind, layers, bi, bf, proj)
    for kind in ("lstm", "gru", "rnn_tanh", "rnn_relu")
    for layers, bi, bf in itertools.product((1, 3), (False, True), (False, True))
    for proj in ((0, P) if kind == "lstm" else (0,))
]


def _pair(kind, layers, bi, bf, proj):
    common = dict(num_layers=layers, bidirectional=bi, batch_first=bf)
    if kind == "lstm":
        return nn.LSTM(I, H, proj_size=proj, **common), rnnkit.LSTM(I, H, proj_size=proj, **common)
    if kind == "gru":
        return nn.GRU(I, H, **common), rnnkit.GRU(I, H, **common)
    nl = kind.split("_")[1]
    return nn.RNN(I, H, nonlinearity=nl, **common), rnnkit.RNN(I, H, nonlinearity=nl, **common)


def _state(kind, layers, bi, proj):
    D = 2 if bi else 1
    h = torch.randn(D * layers, B, proj or H, dtype=torch.float64, requires_grad=True)
    if kind != "lstm":
        return (h,)
    c = torch.randn(D * layers, B, H, dtype=torch.float64, requires_grad=True)
    return (h, c)


def _flat(out, h_n):
    return [out, *(h_n if isinstance(h_n, tuple) else (h_n,))]


@pytest.mark.parametrize("kind,layers,bi,bf,proj", CASES)
def test_layer_equals_torch(kind, layers, bi, bf, proj):
    theirs, ours = _pair(kind, layers, bi, bf, proj)
    theirs, ours = theirs.double(), ours.double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())

    x = torch.randn((B, T, I) if bf else (T, B, I), dtype=torch.float64, requires_grad=True)
    state = _state(kind, layers, bi, proj)
    h0 = state if kind == "lstm" else state[0]
    ya = _flat(*ours(x, h0))
    yb = _flat(*theirs(x, h0))
    for a, b in zip(ya, yb):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= TOL

    weights = [torch.randn_like(a) for a in ya]
    la = sum((a * w).sum() for a, w in zip(ya, weights))
    lb = sum((b * w).sum() for b, w in zip(yb, weights))
    names = list(theirs.state_dict())
    pa = [dict(ours.named_parameters())[k] for k in _our_names(ours, names)]
    pb = [dict(theirs.named_parameters())[k] for k in names]
    ga = torch.autograd.grad(la, [x, *state, *pa])
    gb = torch.autograd.grad(lb, [x, *state, *pb])
    for a, b in zip(ga, gb):
        assert (a - b).abs().max().item() <= TOL


def _our_names(layer, torch_names):
    """Map torch's flat names onto rnnkit's module paths (cells.<k>.<name>)."""
    D = layer.num_directions
    out = []
    for n in torch_names:
        base, _, rest = n.rpartition("_l")
        rev = rest.endswith("_reverse")
        index = int(rest.removesuffix("_reverse")) * D + int(rev)
        out.append(f"cells.{index}.{base}")
    return out


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_rnnkit_state_dict_loads_into_torch(kind):
    """The reverse direction: our weights drive torch's layer to the same outputs."""
    theirs, ours = _pair(kind, 2, True, False, 0)
    theirs, ours = theirs.double(), ours.double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    for a, b in zip(_flat(*ours(x)), _flat(*theirs(x))):
        assert (a - b).abs().max().item() <= TOL


def test_packed_sequence_matches_torch():
    theirs, ours = (
        nn.LSTM(I, H, 2, bidirectional=True).double(),
        rnnkit.LSTM(I, H, 2, bidirectional=True).double(),
    )
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 4, 1])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out_a, (h_a, c_a) = ours(packed)
    out_b, (h_b, c_b) = theirs(packed)
    assert isinstance(out_a, nn.utils.rnn.PackedSequence)
    assert torch.equal(out_a.batch_sizes, out_b.batch_sizes)
    assert torch.equal(out_a.sorted_indices, out_b.sorted_indices)
    for a, b in ((out_a.data, out_b.data), (h_a, h_b), (c_a, c_b)):
        assert (a - b).abs().max().item() <= TOL


def test_lengths_match_torch_packed_path():
    """rnnkit's ``lengths`` gives torch's packed results, padded with zeros."""
    theirs, ours = (
        nn.GRU(I, H, 2, bidirectional=True).double(),
        rnnkit.GRU(I, H, 2, bidirectional=True).double(),
    )
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, I, dtype=torch.float64)
    lengths = torch.tensor([3, 6, 1, 5])
    out_a, h_a = ours(x, lengths=lengths)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out_b, h_b = theirs(packed)
    out_b, _ = nn.utils.rnn.pad_packed_sequence(out_b, total_length=T)
    assert (out_a - out_b).abs().max().item() <= TOL
    assert (h_a - h_b).abs().max().item() <= TOL


def test_unbatched_input_matches_torch():
    theirs, ours = nn.LSTM(I, H).double(), rnnkit.LSTM(I, H).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, I, dtype=torch.float64)
    for a, b in zip(_flat(*ours(x)), _flat(*theirs(x))):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= TOL
