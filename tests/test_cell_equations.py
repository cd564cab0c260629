"""Acceptance 6: cells without a torch counterpart equal their docstring's equations,
recomputed here gate by gate from named weight slices, and pass gradcheck in float64."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import layer_norm

from cell_zoo import CELLS
from rnnkit.cells import (
    GRUCell,
    LayerNormLSTMCell,
    LSTMCell,
    MGUCell,
    MUT1Cell,
    MUT2Cell,
    MUT3Cell,
    NASCell,
)

TOL = 1e-12
B = 3
sig, tanh, relu = torch.sigmoid, torch.tanh, torch.relu


def mv(W, v):
    """W v for a batch of row vectors v (B, n)."""
    return v @ W.T


def rows(W, k, H):
    """The k-th block of H rows of a packed matrix (or vector)."""
    return W[k * H : (k + 1) * H]


def _setup(cell_cls, I, H, **kw):
    cell = cell_cls(I, H, **kw).double()
    with torch.no_grad():  # move every parameter away from its initial values
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(B, I, dtype=torch.float64)
    state = tuple(torch.randn(B, *s, dtype=torch.float64) for s in cell.state_shapes())
    return cell, x, state


def _check(cell, x, state, expected_h, expected_state):
    h, new = cell(x, state)
    assert (h - expected_h).abs().max().item() <= TOL
    for a, b in zip(new, expected_state):
        assert (a - b).abs().max().item() <= TOL


def test_peephole_lstm_equations():
    H = 4
    cell, x, (h, c) = _setup(LSTMCell, 3, H, peephole=True)
    Wi, Wh, bi, bh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh

    def pre(k):
        return mv(rows(Wi, k, H), x) + rows(bi, k, H) + mv(rows(Wh, k, H), h) + rows(bh, k, H)

    i = sig(pre(0) + cell.weight_ci * c)
    f = sig(pre(1) + cell.weight_cf * c)
    g = tanh(pre(2))
    c_new = f * c + i * g
    o = sig(pre(3) + cell.weight_co * c_new)
    h_new = o * tanh(c_new)
    _check(cell, x, (h, c), h_new, (h_new, c_new))


def test_gru_reset_before_equations():
    H = 4
    cell, x, (h,) = _setup(GRUCell, 3, H, reset_after=False)
    Wi, Wh, bi, bh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    r = sig(mv(rows(Wi, 0, H), x) + rows(bi, 0, H) + mv(rows(Wh, 0, H), h) + rows(bh, 0, H))
    z = sig(mv(rows(Wi, 1, H), x) + rows(bi, 1, H) + mv(rows(Wh, 1, H), h) + rows(bh, 1, H))
    n = tanh(mv(rows(Wi, 2, H), x) + rows(bi, 2, H) + mv(rows(Wh, 2, H), r * h) + rows(bh, 2, H))
    h_new = (1 - z) * n + z * h
    _check(cell, x, (h,), h_new, (h_new,))


def test_reset_before_differs_from_reset_after():
    """The two GRU forms are different functions of the same weights."""
    cell, x, state = _setup(GRUCell, 3, 4, reset_after=False)
    other = GRUCell(3, 4, reset_after=True).double()
    other.load_state_dict(cell.state_dict())
    assert (cell(x, state)[0] - other(x, state)[0]).abs().max().item() > 1e-3


def test_mgu_equations():
    H = 4
    cell, x, (h,) = _setup(MGUCell, 3, H)
    Wi, Wh, bi, bh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    f = sig(mv(rows(Wi, 0, H), x) + rows(bi, 0, H) + mv(rows(Wh, 0, H), h) + rows(bh, 0, H))
    n = tanh(mv(rows(Wi, 1, H), x) + rows(bi, 1, H) + mv(rows(Wh, 1, H), f * h) + rows(bh, 1, H))
    h_new = (1 - f) * h + f * n
    _check(cell, x, (h,), h_new, (h_new,))


@pytest.mark.parametrize("I", [4, 3])  # literal form (I == H) and projected form
def test_mut1_equations(I):
    H = 4
    cell, x, (h,) = _setup(MUT1Cell, I, H)
    Wi, Wh, b = cell.weight_ih, cell.weight_hh, cell.bias
    assert cell.literal == (I == H)
    z = sig(mv(rows(Wi, 0, H), x) + rows(b, 0, H))
    r = sig(mv(rows(Wi, 1, H), x) + mv(rows(Wh, 0, H), h) + rows(b, 1, H))
    u = tanh(x) if I == H else tanh(mv(rows(Wi, 2, H), x))
    h_new = tanh(mv(rows(Wh, 1, H), r * h) + u + rows(b, 2, H)) * z + h * (1 - z)
    _check(cell, x, (h,), h_new, (h_new,))


@pytest.mark.parametrize("I", [4, 3])
def test_mut2_equations(I):
    H = 4
    cell, x, (h,) = _setup(MUT2Cell, I, H)
    Wi, Wh, b = cell.weight_ih, cell.weight_hh, cell.bias
    z = sig(mv(rows(Wi, 0, H), x) + mv(rows(Wh, 0, H), h) + rows(b, 0, H))
    v = x if I == H else mv(rows(Wi, 1, H), x)
    W_xh = rows(Wi, 1, H) if I == H else rows(Wi, 2, H)
    r = sig(v + mv(rows(Wh, 1, H), h) + rows(b, 1, H))
    h_new = tanh(mv(rows(Wh, 2, H), r * h) + mv(W_xh, x) + rows(b, 2, H)) * z + h * (1 - z)
    _check(cell, x, (h,), h_new, (h_new,))


def test_mut3_equations():
    H = 4
    cell, x, (h,) = _setup(MUT3Cell, 3, H)
    Wi, Wh, b = cell.weight_ih, cell.weight_hh, cell.bias
    z = sig(mv(rows(Wi, 0, H), x) + mv(rows(Wh, 0, H), tanh(h)) + rows(b, 0, H))
    r = sig(mv(rows(Wi, 1, H), x) + mv(rows(Wh, 1, H), h) + rows(b, 1, H))
    n = tanh(mv(rows(Wh, 2, H), r * h) + mv(rows(Wi, 2, H), x) + rows(b, 2, H))
    h_new = n * z + h * (1 - z)
    _check(cell, x, (h,), h_new, (h_new,))


def test_nas_equations():
    H = 4
    cell, x, (h, c) = _setup(NASCell, 3, H)
    Wi, Wh, bi, bh = cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh
    xs = [mv(rows(Wi, k, H), x) + rows(bi, k, H) for k in range(8)]
    ms = [mv(rows(Wh, k, H), h) + rows(bh, k, H) for k in range(8)]
    l0, l1 = sig(xs[0] + ms[0]), relu(xs[1] + ms[1])
    l2, l3 = sig(xs[2] + ms[2]), relu(xs[3] * ms[3])
    l4, l5 = tanh(xs[4] + ms[4]), sig(xs[5] + ms[5])
    l6, l7 = tanh(xs[6] + ms[6]), sig(xs[7] + ms[7])
    p0, p1, p2, p3 = tanh(l0 * l1), tanh(l2 + l3), tanh(l4 * l5), sig(l6 + l7)
    c_new = tanh(p0 + c) * p1
    h_new = tanh(c_new * tanh(p2 + p3))
    _check(cell, x, (h, c), h_new, (h_new, c_new))


def test_layernorm_lstm_equations():
    H = 4
    cell, x, (h, c) = _setup(LayerNormLSTMCell, 3, H)
    Wi, Wh = cell.weight_ih, cell.weight_hh
    g_w, g_b = cell.ln_gates_weight, cell.ln_gates_bias

    def ln(v, eps=1e-5):  # LN written out: biased variance over the features
        mean = v.mean(dim=1, keepdim=True)
        var = ((v - mean) ** 2).mean(dim=1, keepdim=True)
        return (v - mean) / torch.sqrt(var + eps)

    z = [
        rows(g_w, k, H) * ln(mv(rows(Wi, k, H), x) + mv(rows(Wh, k, H), h)) + rows(g_b, k, H)
        for k in range(4)
    ]
    c_new = sig(z[1]) * c + sig(z[0]) * tanh(z[2])
    h_new = sig(z[3]) * tanh(cell.ln_cell_weight * ln(c_new) + cell.ln_cell_bias)
    _check(cell, x, (h, c), h_new, (h_new, c_new))
    assert (layer_norm(c_new, (H,)) - ln(c_new)).abs().max().item() <= TOL


def test_layernorm_lstm_initial_forget_shift():
    cell = LayerNormLSTMCell(3, 4, forget_bias=1.0)
    expected = torch.zeros(16)
    expected[4:8] = 1.0
    assert torch.equal(cell.ln_gates_bias.detach(), expected)
    assert torch.equal(cell.ln_gates_weight.detach(), torch.ones(16))


GRADCHECK = [n for n in CELLS if n not in ("elman_relu",)]


@pytest.mark.parametrize("name", GRADCHECK)
def test_cell_gradcheck(name):
    cell = CELLS[name](3, 4).double()
    x = torch.randn(B, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    params = tuple(cell.parameters())
    names = [n for n, _ in cell.named_parameters()]

    def f(x, *rest):
        st, ps = rest[: len(state)], rest[len(state) :]
        out, new = torch.func.functional_call(cell, dict(zip(names, ps)), (x, st))
        return (out, *new)

    assert torch.autograd.gradcheck(f, (x, *state, *params), eps=1e-6, atol=1e-7)


def test_relu_elman_gradcheck_away_from_kink():
    cell = CELLS["elman_relu"](3, 4).double()
    with torch.no_grad():
        cell.bias_ih.fill_(2.0)  # keep every pre-activation clear of relu's kink at 0
    x = torch.randn(B, 3, dtype=torch.float64).mul(0.1).requires_grad_(True)
    h = torch.randn(B, 4, dtype=torch.float64).mul(0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, h: cell(x, (h,))[0], (x, h))
