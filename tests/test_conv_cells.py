"""ConvLSTM and ConvGRU: equal to a step-by-step reference written from the docstring equations
with torch.nn.functional.conv{1,2,3}d (values and gradients), gradcheck, equal to the vector
cells at 1x1, and run by the one runner (layers, directions, lengths, initial state, streaming)."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call
from torch.nn import functional as F

from rnnkit import GRUCell, LSTMCell, Recurrent
from rnnkit.cells import ConvGRUCell, ConvLSTMCell
from rnnkit.loop import reverse_padded, run_cell

TOL = 1e-10
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
SPATIAL = {1: (7,), 2: (5, 4), 3: (3, 4, 3)}


# -- the oracle: the docstring equations, one gate at a time ------------------------------------
def ref_convlstm(p: dict, x, h, c, kernel, peephole=True):
    """x (T, B, C_in, *S); every gate is its own pair of convolutions with explicit padding."""
    conv = CONV[x.dim() - 3]
    pad = tuple((k - 1) // 2 for k in kernel)
    Wx = p["weight_ih"].chunk(4, 0)
    Wh = p["weight_hh"].chunk(4, 0)
    bx = p["bias_ih"].chunk(4, 0)
    bh = p["bias_hh"].chunk(4, 0)
    ys = []
    for X in x:

        def pre(k, X=X, h=h):
            return conv(X, Wx[k], bx[k], padding=pad) + conv(h, Wh[k], bh[k], padding=pad)

        i_pre, f_pre = pre(0), pre(1)
        if peephole:
            i_pre = i_pre + p["weight_ci"] * c
            f_pre = f_pre + p["weight_cf"] * c
        c = torch.sigmoid(f_pre) * c + torch.sigmoid(i_pre) * torch.tanh(pre(2))
        o_pre = pre(3) + (p["weight_co"] * c if peephole else 0.0)
        h = torch.sigmoid(o_pre) * torch.tanh(c)
        ys.append(h)
    return torch.stack(ys), h, c


def ref_convgru(p: dict, x, h, kernel, reset_after):
    conv = CONV[x.dim() - 3]
    pad = tuple((k - 1) // 2 for k in kernel)
    Wx = p["weight_ih"].chunk(3, 0)
    Wh = p["weight_hh"].chunk(3, 0)
    bx = p["bias_ih"].chunk(3, 0)
    bh = p["bias_hh"].chunk(3, 0)
    ys = []
    for X in x:
        r = torch.sigmoid(conv(X, Wx[0], bx[0], padding=pad) + conv(h, Wh[0], bh[0], padding=pad))
        z = torch.sigmoid(conv(X, Wx[1], bx[1], padding=pad) + conv(h, Wh[1], bh[1], padding=pad))
        if reset_after:
            hn = r * conv(h, Wh[2], bh[2], padding=pad)
        else:
            hn = conv(r * h, Wh[2], bh[2], padding=pad)
        n = torch.tanh(conv(X, Wx[2], bx[2], padding=pad) + hn)
        h = (1 - z) * n + z * h
        ys.append(h)
    return torch.stack(ys), h


def _grads(out, inputs):
    w = torch.randn_like(out)
    return torch.autograd.grad((out * w).sum(), inputs)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("peephole", [True, False])
def test_convlstm_equals_equations_values_and_gradients(ndim, peephole):
    S, T, B, Ci, Ch = SPATIAL[ndim], 3, 2, 2, 3
    kernel = (3, 5, 1)[:ndim] if ndim > 1 else (5,)
    cell = ConvLSTMCell(Ci, Ch, kernel, S, peephole=peephole).double()
    with torch.no_grad():  # peepholes and biases away from their initial values
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(T, B, Ci, *S, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, Ch, *S, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, Ch, *S, dtype=torch.float64, requires_grad=True)
    params = dict(cell.named_parameters())

    ys, (h, c) = run_cell(cell, x, (h0, c0))
    ys_ref, h_ref, c_ref = ref_convlstm(params, x, h0, c0, kernel, peephole)
    assert (ys - ys_ref).abs().max().item() <= TOL
    assert (c - c_ref).abs().max().item() <= TOL
    assert (h - h_ref).abs().max().item() <= TOL

    inputs = [x, h0, c0, *params.values()]
    torch.manual_seed(1)
    g = _grads(torch.cat([ys.flatten(), c.flatten()]), inputs)
    torch.manual_seed(1)
    g_ref = _grads(torch.cat([ys_ref.flatten(), c_ref.flatten()]), inputs)
    for a, b in zip(g, g_ref):
        assert (a - b).abs().max().item() <= TOL


@pytest.mark.parametrize("reset_after", [False, True])
@pytest.mark.parametrize("ndim", [1, 2])
def test_convgru_equals_equations_values_and_gradients(ndim, reset_after):
    S, T, B, Ci, Ch = SPATIAL[ndim], 3, 2, 2, 3
    kernel = (3,) * ndim
    cell = ConvGRUCell(Ci, Ch, 3, S, reset_after=reset_after).double()
    x = torch.randn(T, B, Ci, *S, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, Ch, *S, dtype=torch.float64, requires_grad=True)
    params = dict(cell.named_parameters())
    ys, (h,) = run_cell(cell, x, (h0,))
    ys_ref, h_ref = ref_convgru(params, x, h0, kernel, reset_after)
    assert (ys - ys_ref).abs().max().item() <= TOL
    assert (h - h_ref).abs().max().item() <= TOL
    inputs = [x, h0, *params.values()]
    torch.manual_seed(1)
    g = _grads(ys, inputs)
    torch.manual_seed(1)
    g_ref = _grads(ys_ref, inputs)
    for a, b in zip(g, g_ref):
        assert (a - b).abs().max().item() <= TOL


class _Sequence(torch.nn.Module):
    """The runner's time loop over one cell, as a module for ``functional_call``."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x, state):
        return run_cell(self.cell, x, state)


@pytest.mark.parametrize(
    "factory",
    [
        partial(ConvLSTMCell, kernel_size=3, spatial_size=(3, 3)),
        partial(ConvGRUCell, kernel_size=(3, 1), spatial_size=(3, 2)),
        partial(ConvGRUCell, kernel_size=3, spatial_size=(4,), reset_after=True),
    ],
    ids=["convlstm2d", "convgru2d", "convgru1d_after"],
)
def test_gradcheck_float64(factory):
    cell = factory(1, 2).double()
    seq = _Sequence(cell)
    names = [n for n, _ in seq.named_parameters()]
    T, B = 2, 1
    x = torch.randn(T, B, *cell.input_shape, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    params = [p.detach().clone().requires_grad_(True) for p in seq.parameters()]

    n = len(state)

    def f(x, *rest):
        ys, final = functional_call(seq, dict(zip(names, rest[n:])), (x, rest[:n]), strict=True)
        return ys, *final

    assert gradcheck(f, (x, *state, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("peephole", [True, False])
def test_convlstm_1x1_equals_peephole_lstm(peephole):
    I, H, T, B = 3, 4, 5, 2
    conv = Recurrent(
        partial(ConvLSTMCell, kernel_size=1, spatial_size=(1, 1), peephole=peephole), I, H, 2
    ).double()
    vec = Recurrent(partial(LSTMCell, peephole=peephole), I, H, 2).double()
    with torch.no_grad():
        for cc, vc in zip(conv.cells, vec.cells):
            for name, p in vc.named_parameters():
                p.copy_(getattr(cc, name).reshape(p.shape))
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 3])
    out_v, (h_v, c_v) = vec(x, lengths=lengths)
    out_c, (h_c, c_c) = conv(x[..., None, None], lengths=lengths)
    assert (out_c[..., 0, 0] - out_v).abs().max().item() <= TOL
    assert (h_c[..., 0, 0] - h_v).abs().max().item() <= TOL
    assert (c_c[..., 0, 0] - c_v).abs().max().item() <= TOL
    torch.manual_seed(1)
    (gv,) = _grads(out_v, [x])
    torch.manual_seed(1)
    (gc,) = _grads(out_c[..., 0, 0], [x])
    assert (gv - gc).abs().max().item() <= TOL


@pytest.mark.parametrize("reset_after", [False, True])
def test_convgru_1x1_equals_gru(reset_after):
    I, H, T, B = 3, 4, 5, 2
    conv = Recurrent(
        partial(ConvGRUCell, kernel_size=1, spatial_size=(1,), reset_after=reset_after), I, H
    ).double()
    vec = Recurrent(partial(GRUCell, reset_after=reset_after), I, H).double()
    with torch.no_grad():
        for name, p in vec.cells[0].named_parameters():
            p.copy_(getattr(conv.cells[0], name).reshape(p.shape))
    x = torch.randn(T, B, I, dtype=torch.float64)
    out_v, h_v = vec(x)
    out_c, h_c = conv(x[..., None])
    assert (out_c[..., 0] - out_v).abs().max().item() <= TOL
    assert (h_c[..., 0] - h_v).abs().max().item() <= TOL


CONV_FACTORIES = {
    "convlstm": partial(ConvLSTMCell, kernel_size=3, spatial_size=(4, 3)),
    "convgru": partial(ConvGRUCell, kernel_size=3, spatial_size=(4, 3)),
}


@pytest.mark.parametrize("name", list(CONV_FACTORIES))
def test_padded_batch_with_initial_state_equals_each_sequence_alone(name):
    layer = Recurrent(CONV_FACTORIES[name], 2, 3, 2, bidirectional=True, batch_first=True).double()
    lengths = torch.tensor([4, 1, 3])
    B, T = len(lengths), 4
    x = torch.randn(B, T, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    h0 = tuple(torch.randn(4, B, *s, dtype=torch.float64) for s in layer.state_shapes)
    out, h_n = layer(x, h0, lengths=lengths)
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    w = torch.randn_like(out)
    (gx,) = torch.autograd.grad((out * w).sum(), [x])
    for b, n in enumerate(lengths.tolist()):
        xb = x[b : b + 1, :n].detach().requires_grad_(True)
        ob, hb = layer(xb, tuple(h[:, b : b + 1] for h in h0))
        hb = hb if isinstance(hb, tuple) else (hb,)
        assert (ob[0] - out[b, :n]).abs().max().item() <= TOL
        assert out[b, n:].abs().max().item() == 0.0 if n < T else True
        for a, c in zip(hb, h_n):
            assert (a[:, 0] - c[:, b]).abs().max().item() <= TOL
        (gb,) = torch.autograd.grad((ob * w[b : b + 1, :n]).sum(), [xb])
        assert (gb[0] - gx[b, :n]).abs().max().item() <= TOL
        assert gx[b, n:].abs().max().item() == 0.0 if n < T else True


def test_bidirectional_two_layers_equal_manual_composition_over_channels():
    """Directions are concatenated along channels; residual adds where channels agree."""
    layer = Recurrent(
        CONV_FACTORIES["convlstm"], 3, 3, 2, bidirectional=True, merge_mode="sum", residual=True
    ).double()
    lengths = torch.tensor([3, 5])
    x = torch.randn(5, 2, 3, 4, 3, dtype=torch.float64)
    out, _ = layer(x, lengths=lengths)
    inp = x
    for lay in range(2):
        B = x.shape[1]
        fwd, _ = run_cell(layer.cell_at(lay, 0), inp, layer.cell_at(lay, 0).init_state(B), lengths)
        rev_in = reverse_padded(inp, lengths)
        bwd, _ = run_cell(
            layer.cell_at(lay, 1), rev_in, layer.cell_at(lay, 1).init_state(B), lengths
        )
        inp = fwd + reverse_padded(bwd, lengths) + inp
    valid = (torch.arange(5)[:, None] < lengths[None]).double()[..., None, None, None]
    assert ((out - inp) * valid).abs().max().item() <= TOL

    concat = Recurrent(CONV_FACTORIES["convgru"], 2, 3, 2, bidirectional=True).double()
    assert concat.cell_at(1).input_size == 6
    x = torch.randn(4, 2, 2, 4, 3, dtype=torch.float64)
    out, _ = concat(x)
    B = 2
    f0, _ = run_cell(concat.cell_at(0, 0), x, concat.cell_at(0, 0).init_state(B))
    b0, _ = run_cell(concat.cell_at(0, 1), x.flip(0), concat.cell_at(0, 1).init_state(B))
    mid = torch.cat([f0, b0.flip(0)], dim=2)  # (T, B, 2C, H, W)
    f1, _ = run_cell(concat.cell_at(1, 0), mid, concat.cell_at(1, 0).init_state(B))
    b1, _ = run_cell(concat.cell_at(1, 1), mid.flip(0), concat.cell_at(1, 1).init_state(B))
    assert (out - torch.cat([f1, b1.flip(0)], dim=2)).abs().max().item() <= TOL


@pytest.mark.parametrize("name", list(CONV_FACTORIES))
def test_streaming_continues_exactly(name):
    layer = Recurrent(CONV_FACTORIES[name], 2, 3, 2).double()
    x = torch.randn(7, 2, 2, 4, 3, dtype=torch.float64)
    full, h_full = layer(x)
    a, h = layer(x[:3])
    b, h = layer(x[3:5], h)
    c, h = layer(x[5:], h)
    assert (torch.cat([a, b, c]) - full).abs().max().item() <= TOL
    for u, v in zip(
        h if isinstance(h, tuple) else (h,), h_full if isinstance(h, tuple) else (h_full,)
    ):
        assert (u - v).abs().max().item() <= TOL


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match=r"kernel_size must be odd.*got \(4, 3\)"):
        ConvLSTMCell(2, 3, (4, 3), (5, 5))
    with pytest.raises(ValueError, match=r"kernel_size must have 2 entries.*got \(3,\)"):
        ConvGRUCell(2, 3, (3,), (5, 5))
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a tuple"):
        ConvGRUCell(2, 3, 3.0, (5, 5))
    with pytest.raises(ValueError, match=r"spatial_size must hold 1 to 3 positive ints"):
        ConvLSTMCell(2, 3, 3, (2, 2, 2, 2))
    with pytest.raises(TypeError, match=r"spatial_size must be a tuple"):
        ConvLSTMCell(2, 3, 3, 5)
    cell = ConvLSTMCell(2, 3, 3, (5, 4))
    with pytest.raises(ValueError, match=r"x_t must be 4-D .*got shape \(2, 2, 5\)"):
        cell(torch.randn(2, 2, 5))
    with pytest.raises(ValueError, match=r"x_t must have per-sample shape .* = \(2, 5, 4\), got"):
        cell(torch.randn(2, 2, 4, 5))
    layer = Recurrent(partial(ConvLSTMCell, kernel_size=3, spatial_size=(5, 4)), 2, 3)
    with pytest.raises(ValueError, match=r"x must be 5-D \(T, B, \*\(2, 5, 4\)\).*got 4-D"):
        layer(torch.randn(3, 2, 5, 4))
    with pytest.raises(
        ValueError, match=r"per-step shape \(2, 5, 4\) after \(T, B\), got \(2, 4, 4\)"
    ):
        layer(torch.randn(3, 1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"h_0\[0\] must have shape \(1, 1, 3, 5, 4\)"):
        layer(torch.randn(3, 1, 2, 5, 4), (torch.zeros(1, 1, 3, 4, 5), torch.zeros(1, 1, 3, 5, 4)))
