"""The input projection of a plan with a turn (``engine/turn_input.py``): the first steps' rows
projected from the padded input where they lie, the later ones gathered. Values and gradients
equal the cell's own projection of the gathered rows (float64, to rounding), twice
differentiable; taken only for cells whose projection is affine, and not for a subclass that
projects its own way."""

from __future__ import annotations

import pytest
import torch
from torch.nn.functional import linear

from cell_zoo import CELLS
from rnnkit import engine
from rnnkit.cells import LSTMCell, MUT1Cell, MUT2Cell
from rnnkit.engine import native, packing, turn_input, weight_grad
from rnnkit.engine.packing import make_plan, pack
from rnnkit.engine.turn_input import (
    _TurnProjection,
    input_affine,
    turn_input_rows,
    turn_projection,
)

needs_native = pytest.mark.skipif(not native.available(), reason="no compiled library here")

I, H, T = 3, 4, 7
LENGTHS = [5, 3, 7, 3, 6]  # the shortest length 3: the turn at step 3


@pytest.mark.parametrize("name", list(CELLS))
def test_input_affine_is_the_projection(name):
    """Where a cell says its projection is affine, ``project_input`` is x·Wᵀ + b with the
    weight and bias it names (float64, every built-in cell); MUT1 and the literal MUT2 are not
    affine (a tanh or identity block) and say None."""
    torch.manual_seed(0)
    cell = CELLS[name](I if name not in ("mut1", "mut2") else H, H).double()
    x = torch.randn(9, cell.input_size, dtype=torch.float64)
    found = input_affine(cell)
    if isinstance(cell, MUT1Cell) or (isinstance(cell, MUT2Cell) and cell.literal):
        assert found is None
        return
    assert found is not None
    weight, bias = found
    assert torch.allclose(cell.project_input(x), linear(x, weight, bias), atol=1e-14, rtol=0)


class _ScaledInputLSTM(LSTMCell):
    """A user's cell that changes the projection but inherits ``input_affine``."""

    def project_input(self, x):
        return 2.0 * super().project_input(x)


def test_a_subclass_with_its_own_projection_is_not_affine():
    cell = _ScaledInputLSTM(I, H)
    assert cell.input_affine() is not None  # what it inherits says affine...
    assert input_affine(cell) is None  # ...but the engine does not trust it
    plain = LSTMCell(I, H)
    assert input_affine(plain) is not None
    plain.project_input = lambda x: 2.0 * LSTMCell.project_input(plain, x)  # on the instance
    assert input_affine(plain) is None


@needs_native
def test_a_projection_set_on_the_instance_is_the_one_that_runs():
    """A cell whose ``project_input`` is replaced on the instance runs that projection with
    lengths too (the turn's own products would bypass it): the outputs equal the reference
    loop's, which calls it."""
    torch.manual_seed(7)
    cell = LSTMCell(I, H).double()
    cell.project_input = lambda x: 2.0 * LSTMCell.project_input(cell, x)
    lens = torch.tensor(LENGTHS)
    x = torch.randn(T, lens.numel(), I, dtype=torch.float64)
    state = tuple(torch.zeros(lens.numel(), *s, dtype=torch.float64) for s in cell.state_shapes())
    with torch.no_grad():
        got, _ = engine.run(cell, x, state, lens, engine="native")
        want, _ = engine.run(cell, x, state, lens, engine="reference")
    assert (got - want).abs().max().item() <= 1e-12


def _setup(dtype=torch.float64, bias=True):
    gen = torch.Generator().manual_seed(2)
    lens = torch.tensor(LENGTHS)
    plan = make_plan(T, lens.numel(), lens, False, turn=True)
    assert plan.turn == 3
    x = torch.randn(T, lens.numel(), I, generator=gen, dtype=dtype, requires_grad=True)
    weight = torch.randn(5, I, generator=gen, dtype=dtype, requires_grad=True)
    b = torch.randn(5, generator=gen, dtype=dtype, requires_grad=True) if bias else None
    return plan, x, weight, b


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_turn_projection_equals_the_projection_of_the_gathered_rows(packed, bias):
    """Forwards and backwards, against ``linear`` of the packed rows: the gradients of the
    padded input (zero in the padding), the weight and the bias."""
    plan, x, weight, b = _setup(bias=bias)
    source = pack(x, plan) if packed else x.reshape(T * x.shape[1], I)
    got = _TurnProjection.apply(source, weight, b, plan, packed)
    want = linear(pack(x, plan), weight, b)
    assert (got - want).abs().max().item() <= 1e-12
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(want.shape, generator=gen, dtype=want.dtype)
    wanted = [t for t in (x, weight, b) if t is not None]
    g_got = torch.autograd.grad((got * w).sum(), wanted)
    g_want = torch.autograd.grad((want * w).sum(), wanted)
    for a, c in zip(g_got, g_want):
        assert (a - c).abs().max().item() <= 1e-12
    padding = plan.padding
    assert torch.equal(
        g_got[0].reshape(T * x.shape[1], I)[padding], torch.zeros(len(padding), I, dtype=x.dtype)
    )


@pytest.mark.parametrize("packed", [False, True])
def test_turn_projection_gradcheck_and_gradgradcheck(packed):
    plan, x, weight, b = _setup()

    def fn(x, weight, b):
        source = pack(x, plan) if packed else x.reshape(T * x.shape[1], I)
        return _TurnProjection.apply(source, weight, b, plan, packed)

    assert torch.autograd.gradcheck(fn, (x, weight, b))
    assert torch.autograd.gradgradcheck(fn, (x, weight, b))


def _projection_calls(monkeypatch) -> list:
    """Records each call of the turn projection (its ``packed`` argument) from now on."""
    calls = []
    real = turn_input._TurnProjection.apply

    def spy(*args):
        calls.append(args[-1])
        return real(*args)

    monkeypatch.setattr(turn_input._TurnProjection, "apply", spy)
    return calls


@needs_native
@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru", "mut1", "nas"])
def test_native_takes_the_turn_projection_where_affine_and_equals_reference(name, monkeypatch):
    """A layer's compiled loop with lengths projects on the turn for an affine projection (not
    for MUT1's), and its outputs, final states and gradients equal the reference loop's."""
    calls = _projection_calls(monkeypatch)
    torch.manual_seed(5)
    cell = CELLS[name](H if name == "mut1" else I, H).double()
    lens = torch.tensor(LENGTHS)
    x = torch.randn(T, lens.numel(), cell.input_size, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(lens.numel(), *s, dtype=torch.float64) for s in cell.state_shapes())
    results = {}
    for path in ("native", "reference"):
        out, final = engine.run(cell, x, state, lens, engine=path)
        loss = (out * out.detach().cos()).sum() + sum((f**2).sum() for f in final)
        results[path] = (out, final, torch.autograd.grad(loss, [x, *cell.parameters()]))
    assert calls == ([] if name == "mut1" else [False])
    (out, final, grads), (r_out, r_final, r_grads) = results["native"], results["reference"]
    assert (out - r_out).abs().max().item() <= 1e-10
    assert all((a - c).abs().max().item() <= 1e-10 for a, c in zip(final, r_final))
    assert all((a - c).abs().max().item() <= 1e-10 for a, c in zip(grads, r_grads))


@needs_native
def test_turn_projection_off_or_without_a_turn_is_not_taken(monkeypatch):
    cell = LSTMCell(I, H)
    lens = torch.tensor(LENGTHS)
    x = torch.randn(T, lens.numel(), I)
    plan = make_plan(T, lens.numel(), lens, False, turn=True)
    assert turn_projection(cell, x, plan) is not None
    assert turn_projection(cell, x, make_plan(T, lens.numel(), lens, True, turn=True)) is None
    assert turn_projection(cell, x, make_plan(T, lens.numel(), None, False, turn=True)) is None
    # the rows the loops get: the padded input with its projection, or the packed rows alone
    rows, gx = turn_input_rows(cell, x, plan)
    assert rows.shape == (T * lens.numel(), I) and gx is not None
    # (the LSTM's loops add its input bias with theirs: the projection here is x·W_ihᵀ alone)
    weight, bias = turn_input.folded_input_bias(cell)
    want = cell.project_input(pack(x, plan)) - bias
    torch.testing.assert_close(gx, want, rtol=1e-6, atol=1e-6)
    monkeypatch.setattr(turn_input, "TURN_INPUT", False)
    assert turn_projection(cell, x, plan) is None
    rows, gx = turn_input_rows(cell, x, plan)
    assert gx is None and torch.equal(rows, pack(x, plan))


@needs_native
@pytest.mark.parametrize("name", ["elman_tanh", "gru"])
def test_a_small_layer_gathers_every_row_and_gets_the_same_results(name, monkeypatch):
    """The split products pay from ``SPLIT_MIN_ELEMENTS`` values in the first steps' rows: with
    the threshold at the fewer of the two splits' values both are taken, one above the larger
    neither is (every row gathered into one product), and both give the reference loop's
    outputs, final states and gradients."""
    lens = torch.tensor(LENGTHS)
    B = lens.numel()
    plan = make_plan(T, B, lens, False, turn=True)
    head_in, head_w = plan.turn * B * I, plan.off_list[plan.segments()[0][1]] * H
    monkeypatch.setattr(packing, "SPLIT_MIN_ELEMENTS", head_in)
    assert packing.split_pays(head_in, 1) and not packing.split_pays(head_in - 1, 1)
    torch.manual_seed(7)
    cell = CELLS[name](I, H).double()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(B, *s, dtype=torch.float64) for s in cell.state_shapes())
    views = []
    real_init = weight_grad.PreviousOutputs.__init__

    def spy_init(self, *args):
        real_init(self, *args)
        views.append(self.head)

    monkeypatch.setattr(weight_grad.PreviousOutputs, "__init__", spy_init)
    calls = _projection_calls(monkeypatch)
    results = {}
    for least in (min(head_in, head_w), max(head_in, head_w) + 1, None):
        if least is not None:
            monkeypatch.setattr(packing, "SPLIT_MIN_ELEMENTS", least)
        calls.clear(), views.clear()
        out, final = engine.run(cell, x, state, lens, engine="native" if least else "reference")
        loss = (out * out.detach().cos()).sum() + sum((f**2).sum() for f in final)
        results[least] = (out, *final, *torch.autograd.grad(loss, [x, *cell.parameters()]))
        if least is not None:
            split = least <= min(head_in, head_w)
            assert calls == ([False] if split else [])
            assert views == [plan.off_list[plan.segments()[0][1]] if split else 0]
    for least in (min(head_in, head_w), max(head_in, head_w) + 1):
        for a, b in zip(results[least], results[None]):
            assert (a - b).abs().max().item() <= 1e-10


@needs_native
@pytest.mark.parametrize("lens", [[5], [5, 5, 5], [1, 1], [7, 7, 1]])
@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru_reset_before", "nas", "mut1"])
def test_a_turn_with_no_rows_after_it_or_at_step_one(name, lens):
    """Equal lengths short of T (the turn is the last step: no row is sorted, the tail is
    empty), a single sequence, and a turn at step 1: the loops equal the reference loop in
    training (outputs, final states, every gradient) and in inference."""
    torch.manual_seed(6)
    cell = CELLS[name](H if name == "mut1" else I, H).double()
    lengths = torch.tensor(lens)
    B = lengths.numel()
    x = torch.randn(T, B, cell.input_size, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    results = {}
    for path in ("native", "reference"):
        out, final = engine.run(cell, x, state, lengths, engine=path)
        loss = (out * out.detach().sin()).sum() + sum((f * f.detach().cos()).sum() for f in final)
        grads = torch.autograd.grad(loss, [x, *state, *cell.parameters()])
        with torch.no_grad():
            out2, final2 = engine.run(cell, x, state, lengths, engine=path)
        results[path] = (out, *final, *grads, out2, *final2)
    for a, b in zip(results["native"], results["reference"]):
        assert (a - b).abs().max().item() <= 1e-10
