"""Acceptance 3 and 4: the runner with lengths equals each sequence alone, and equals a plain
Python loop over the cell; plus streaming, merge modes, residual connections and names."""

from __future__ import annotations

import pytest
import torch

import rnnkit
from cell_zoo import CELLS
from rnnkit import Recurrent
from rnnkit.loop import reverse_padded
from rnnkit.recurrent import MERGE_MODES

TOL = 1e-10
I, H, T = 3, 4, 6


def _layer(name, merge_mode="concat", bidirectional=False, num_layers=1, **kw):
    return Recurrent(
        CELLS[name],
        I,
        H,
        num_layers,
        bidirectional=bidirectional,
        merge_mode=merge_mode,
        **kw,
    ).double()


def _as_tuple(h):
    return h if isinstance(h, tuple) else (h,)


BATCH_CASES = [(name, False, "concat") for name in CELLS] + [
    (name, True, mode) for name in CELLS for mode in MERGE_MODES
]


@pytest.mark.parametrize("name,bidirectional,merge_mode", BATCH_CASES)
def test_padded_batch_equals_each_sequence_alone(name, bidirectional, merge_mode):
    layer = _layer(name, merge_mode, bidirectional, num_layers=2)
    lengths = torch.tensor([6, 2, 5, 1])
    B = len(lengths)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    out, h_n = layer(x, lengths=lengths)
    h_n = _as_tuple(h_n)
    w_out = torch.randn_like(out)
    w_h = [torch.randn_like(h) for h in h_n]
    loss = (out * w_out).sum() + sum((h * w).sum() for h, w in zip(h_n, w_h))
    params = list(layer.parameters())
    gx, *gp = torch.autograd.grad(loss, [x, *params])

    total = 0.0
    for b, n in enumerate(lengths.tolist()):
        xb = x[:n, b : b + 1].detach().requires_grad_(True)
        ob, hb = layer(xb)
        hb = _as_tuple(hb)
        # outputs inside the valid part equal, outputs past it are exactly zero
        assert (ob[:, 0] - out[:n, b]).abs().max().item() <= TOL
        assert out[n:, b].abs().max().item() == 0.0 if n < T else True
        for h_alone, h_batch in zip(hb, h_n):
            assert (h_alone[:, 0] - h_batch[:, b]).abs().max().item() <= TOL
        lb = (ob * w_out[:n, b : b + 1]).sum()
        lb = lb + sum((h * w[:, b : b + 1]).sum() for h, w in zip(hb, w_h))
        gxb = torch.autograd.grad(lb, [xb], retain_graph=True)[0]
        assert (gxb[:, 0] - gx[:n, b]).abs().max().item() <= TOL
        assert gx[n:, b].abs().max().item() == 0.0 if n < T else True
        total = total + lb
    gp_alone = torch.autograd.grad(total, params)
    for a, g in zip(gp_alone, gp):
        assert (a - g).abs().max().item() <= 1e-9


@pytest.mark.parametrize("name", list(CELLS))
def test_runner_equals_plain_loop_over_cell(name):
    layer = _layer(name)
    cell = layer.cells[0]
    B = 3
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0 = tuple(torch.randn(B, *shape, dtype=torch.float64) for shape in cell.state_shapes())
    out, h_n = layer(x, tuple(h.unsqueeze(0) for h in h0) if len(h0) > 1 else h0[0].unsqueeze(0))

    state, outs = h0, []
    for t in range(T):
        h, state = cell(x[t], state)
        outs.append(h)
    assert (out - torch.stack(outs)).abs().max().item() <= TOL
    for a, b in zip(_as_tuple(h_n), state):
        assert (a[0] - b).abs().max().item() <= TOL


@pytest.mark.parametrize("name", ["lstm", "gru_reset_before", "nas", "mut2"])
def test_bidirectional_multilayer_equals_manual_composition(name):
    """Layer 2 reads [forward; backward] of layer 1; backward = forward on reversed input."""
    layer = _layer(name, "concat", bidirectional=True, num_layers=2)
    B = 2
    x = torch.randn(T, B, I, dtype=torch.float64)
    out, _ = layer(x)

    def run(cell, seq):
        state, outs = cell.init_state(B), []
        for t in range(seq.shape[0]):
            h, state = cell(seq[t], state)
            outs.append(h)
        return torch.stack(outs)

    c = layer.cells
    y1 = torch.cat([run(c[0], x), run(c[1], x.flip(0)).flip(0)], dim=-1)
    y2 = torch.cat([run(c[2], y1), run(c[3], y1.flip(0)).flip(0)], dim=-1)
    assert (out - y2).abs().max().item() <= TOL


@pytest.mark.parametrize("merge_mode", MERGE_MODES)
def test_merge_modes_combine_directions(merge_mode):
    layer = _layer("gru", merge_mode, bidirectional=True)
    concat = _layer("gru", "concat", bidirectional=True)
    concat.load_state_dict(layer.state_dict())
    x = torch.randn(T, 3, I, dtype=torch.float64)
    lengths = torch.tensor([6, 3, 4])
    fwd, bwd = concat(x, lengths=lengths)[0].split(H, dim=-1)
    expected = {"concat": torch.cat([fwd, bwd], -1), "sum": fwd + bwd, "mul": fwd * bwd}
    expected["ave"] = (fwd + bwd) / 2
    out, _ = layer(x, lengths=lengths)
    assert (out - expected[merge_mode]).abs().max().item() <= TOL


def test_residual_adds_layer_input_where_sizes_match():
    layer = Recurrent(rnnkit.GRUCell, H, H, 2, residual=True).double()
    plain = Recurrent(rnnkit.GRUCell, H, H, 2).double()
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(T, 2, H, dtype=torch.float64)

    def run(cell, seq):
        state, outs = cell.init_state(2), []
        for t in range(seq.shape[0]):
            h, state = cell(seq[t], state)
            outs.append(h)
        return torch.stack(outs)

    y1 = run(layer.cells[0], x) + x
    y2 = run(layer.cells[1], y1) + y1
    out, _ = layer(x)
    assert (out - y2).abs().max().item() <= TOL
    # sizes differ (I=3 -> H=4): the first layer has no skip, the second has one
    layer = Recurrent(rnnkit.GRUCell, I, H, 2, residual=True).double()
    x = torch.randn(T, 2, I, dtype=torch.float64)
    y1 = run(layer.cells[0], x)
    y2 = run(layer.cells[1], y1) + y1
    out, _ = layer(x)
    assert (out - y2).abs().max().item() <= TOL


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("engine_name", [None, "reference"])
def test_residual_with_lengths_keeps_the_outputs_past_each_length_zero(bidirectional, engine_name):
    """The first layer's skip adds the input, padding included; the outputs past each length
    are zero all the same, and the valid steps are the skip sums of the sequences alone."""
    torch.manual_seed(0)
    layer = Recurrent(
        rnnkit.GRUCell, H, H, 2, residual=True, bidirectional=bidirectional, merge_mode="sum"
    ).double()
    layer.engine = engine_name
    x = torch.randn(T, 3, H, dtype=torch.float64)  # the padding holds values too
    lengths = torch.tensor([T, 2, 4])
    out, _ = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        assert out[n:, b].abs().sum().item() == 0.0
        alone, _ = layer(x[:n, b : b + 1])
        assert (out[:n, b : b + 1] - alone).abs().max().item() <= TOL


@pytest.mark.parametrize("name", ["lstm", "lstm_proj", "gru", "nas", "layernorm_lstm"])
def test_streaming_continues_exactly(name):
    layer = _layer(name, num_layers=2)
    x = torch.randn(T, 3, I, dtype=torch.float64)
    full, h_full = layer(x)
    first, h = layer(x[:2])
    second, h = layer(x[2:], h)
    assert (torch.cat([first, second]) - full).abs().max().item() <= TOL
    for a, b in zip(_as_tuple(h), _as_tuple(h_full)):
        assert (a - b).abs().max().item() <= TOL


def test_reverse_padded_reverses_valid_part_only():
    x = torch.arange(1, 13, dtype=torch.float64).view(4, 3, 1)  # (T=4, B=3)
    lengths = torch.tensor([4, 2, 3])
    got = reverse_padded(x, lengths)[..., 0]
    expected = torch.tensor([[10.0, 5.0, 9.0], [7.0, 2.0, 6.0], [4.0, 8.0, 3.0], [1.0, 11.0, 12.0]])
    assert torch.equal(got, expected)
    assert torch.equal(reverse_padded(reverse_padded(x, lengths), lengths), x)


def test_generic_layer_uses_torch_style_names_and_round_trips():
    layer = Recurrent(rnnkit.MUT1Cell, I, H, 2, bidirectional=True)
    keys = list(layer.state_dict())
    assert keys == [
        f"{n}_l{layer_}{suffix}"
        for layer_ in range(2)
        for suffix in ("", "_reverse")
        for n in ("weight_ih", "weight_hh", "bias")
    ]
    other = Recurrent(rnnkit.MUT1Cell, I, H, 2, bidirectional=True)
    other.load_state_dict(layer.state_dict())
    for a, b in zip(layer.parameters(), other.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="weight_ih_l5"):
        other.load_state_dict({**layer.state_dict(), "weight_ih_l5": torch.zeros(1)})


def test_dropout_between_layers_only_in_training():
    layer = Recurrent(rnnkit.GRUCell, I, H, 2, dropout=0.5).double()
    x = torch.randn(T, 2, I, dtype=torch.float64)
    layer.eval()
    a, _ = layer(x)
    b, _ = layer(x)
    assert torch.equal(a, b)
    layer.train()
    torch.manual_seed(1)
    c, _ = layer(x)
    # the same mask drawn by hand between the two layers reproduces the training output
    first, second = _sub_layer(layer, 0), _sub_layer(layer, 1)  # built before seeding
    torch.manual_seed(1)
    y1, _ = first(x)
    y1 = torch.nn.functional.dropout(y1, 0.5, training=True)
    y2, _ = second(y1)
    assert (c - y2).abs().max().item() <= TOL
    assert not torch.equal(c, a)


def _sub_layer(layer, index):
    single = Recurrent(rnnkit.GRUCell, layer.cells[index].input_size, H, 1).double()
    single.cells[0].load_state_dict(layer.cells[index].state_dict())
    return single


def test_a_cell_with_its_own_initial_state_starts_from_it():
    """A layer without h_0 starts each cell from the cell's init_state, a learned one included
    (the built-in cells' zeros are made by the layer itself)."""

    class LearnedStart(rnnkit.cells.ElmanCell):
        def __init__(self, input_size, hidden_size):
            super().__init__(input_size, hidden_size)
            self.h_start = torch.nn.Parameter(torch.randn(hidden_size))

        def init_state(self, batch_size, device=None, dtype=None):
            return (self.h_start.to(dtype=dtype).expand(batch_size, -1),)

    layer = rnnkit.Recurrent(LearnedStart, 3, 4, num_layers=2).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    h_0 = torch.stack([c.h_start.expand(2, -1) for c in layer.cells])
    out, h_n = layer(x)
    want, want_h = layer(x, h_0)
    assert torch.equal(out, want) and torch.equal(h_n, want_h)
    zero_out, _ = layer(x, torch.zeros_like(h_0))
    assert not torch.allclose(out, zero_out)
    grad = torch.autograd.grad(out.sum(), layer.cells[0].h_start)[0]
    assert grad.abs().sum() > 0
