"""Acceptance 1: each cell with a torch counterpart equals it (copied weights), float64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnkit.cells import ElmanCell, GRUCell, LSTMCell

TOL = 1e-10


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors)


def _compare(ours, theirs, param_names, x, state_ours, state_theirs, step_ours, step_theirs):
    """Run one step of each, compare outputs and gradients of inputs, state and weights."""
    out_a = step_ours(x, state_ours)
    out_b = step_theirs(x, state_theirs)
    for a, b in zip(out_a, out_b):
        assert (a - b).abs().max().item() <= TOL
    w = [torch.randn_like(a) for a in out_a]
    loss_a = sum((a * wi).sum() for a, wi in zip(out_a, w))
    loss_b = sum((b * wi).sum() for b, wi in zip(out_b, w))
    pa = [dict(ours.named_parameters())[n] for n in param_names]
    pb = [dict(theirs.named_parameters())[n] for n in param_names]
    ga = _grads(loss_a, [x, *state_ours, *pa])
    gb = _grads(loss_b, [x, *state_theirs, *pb])
    for a, b in zip(ga, gb):
        assert (a - b).abs().max().item() <= TOL


def _inputs(B, I, shapes):
    x = torch.randn(B, I, dtype=torch.float64, requires_grad=True)
    states = [torch.randn(B, n, dtype=torch.float64, requires_grad=True) for n in shapes]
    return x, states


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_elman_equals_torch_rnncell(nonlinearity, bias):
    theirs = nn.RNNCell(3, 5, bias=bias, nonlinearity=nonlinearity).double()
    ours = ElmanCell(3, 5, nonlinearity=nonlinearity, bias=bias).double()
    ours.load_state_dict(theirs.state_dict())
    x, (h,) = _inputs(4, 3, [5])
    _compare(
        ours,
        theirs,
        [n for n, _ in theirs.named_parameters()],
        x,
        [h],
        [h],
        lambda x, s: (ours(x, (s[0],))[0],),
        lambda x, s: (theirs(x, s[0]),),
    )


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_equals_torch_lstmcell(bias):
    theirs = nn.LSTMCell(3, 5, bias=bias).double()
    ours = LSTMCell(3, 5, bias=bias).double()
    ours.load_state_dict(theirs.state_dict())
    x, (h, c) = _inputs(4, 3, [5, 5])

    def step_ours(x, s):
        out, (h1, c1) = ours(x, tuple(s))
        return out, c1

    def step_theirs(x, s):
        h1, c1 = theirs(x, tuple(s))
        return h1, c1

    names = [n for n, _ in theirs.named_parameters()]
    _compare(ours, theirs, names, x, [h, c], [h, c], step_ours, step_theirs)


def test_projected_lstm_equals_torch_lstm_proj_size():
    """torch has no projected LSTMCell: one step of nn.LSTM(proj_size=P) is the oracle."""
    theirs = nn.LSTM(3, 5, proj_size=2).double()
    ours = LSTMCell(3, 5, proj_size=2).double()
    ours.load_state_dict({k[: -len("_l0")]: v for k, v in theirs.state_dict().items()})
    x, (h, c) = _inputs(4, 3, [2, 5])

    def step_ours(x, s):
        out, (h1, c1) = ours(x, tuple(s))
        return out, c1

    def step_theirs(x, s):
        out, (h1, c1) = theirs(x.unsqueeze(0), (s[0].unsqueeze(0), s[1].unsqueeze(0)))
        return out[0], c1[0]

    mapping = {"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0"}
    mapping |= {"bias_ih": "bias_ih_l0", "bias_hh": "bias_hh_l0", "weight_hr": "weight_hr_l0"}
    out_a, out_b = step_ours(x, [h, c]), step_theirs(x, [h, c])
    for a, b in zip(out_a, out_b):
        assert (a - b).abs().max().item() <= TOL
    w = [torch.randn_like(a) for a in out_a]
    la = sum((a * wi).sum() for a, wi in zip(out_a, w))
    lb = sum((b * wi).sum() for b, wi in zip(out_b, w))
    pa = [dict(ours.named_parameters())[k] for k in mapping]
    pb = [dict(theirs.named_parameters())[v] for v in mapping.values()]
    for a, b in zip(_grads(la, [x, h, c, *pa]), _grads(lb, [x, h, c, *pb])):
        assert (a - b).abs().max().item() <= TOL


@pytest.mark.parametrize("bias", [True, False])
def test_gru_equals_torch_grucell(bias):
    theirs = nn.GRUCell(3, 5, bias=bias).double()
    ours = GRUCell(3, 5, bias=bias, reset_after=True).double()
    ours.load_state_dict(theirs.state_dict())
    x, (h,) = _inputs(4, 3, [5])
    _compare(
        ours,
        theirs,
        [n for n, _ in theirs.named_parameters()],
        x,
        [h],
        [h],
        lambda x, s: (ours(x, (s[0],))[0],),
        lambda x, s: (theirs(x, s[0]),),
    )


def test_forget_bias_is_added_to_forget_slice_only():
    torch.manual_seed(3)
    a = LSTMCell(3, 4, forget_bias=0.0)
    torch.manual_seed(3)
    b = LSTMCell(3, 4, forget_bias=1.5)
    diff = (b.bias_ih - a.bias_ih).detach()
    expected = torch.zeros(16)
    expected[4:8] = 1.5
    torch.testing.assert_close(diff, expected)
    torch.testing.assert_close(b.bias_hh, a.bias_hh)
