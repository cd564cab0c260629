"""Recomputation in time segments (``checkpoint=K``) gives the reference's outputs, final
states and gradients for every cell and path, with lengths that end inside, at and before the
segment boundaries, both directions; and it keeps a bounded amount of activations."""

from __future__ import annotations

import pytest
import torch

from cell_zoo import CELLS
from rnnkit import GRU, engine
from rnnkit.cells import ConvLSTMCell, NASCell
from rnnkit.engine.checkpoint import check_checkpoint
from test_engine import TOL, _max_err, _paths, _run_with_grads, needs_native

I, H, T, K = 3, 4, 7, 3  # segments [0, 3), [3, 6), [6, 7)
LENGTHS = {
    "none": None,
    # ends inside a segment, at a boundary (3, 6), length 1, one full
    "mixed": [7, 2, 6, 1, 3, 5],
    # nobody reaches the last segment: every row passes through it
    "short": [5, 2, 4, 1, 3, 4],
}


def _inputs(cell, B, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = getattr(cell, "input_shape", (cell.input_size,))
    x = torch.randn(T, B, *shape, generator=gen, dtype=torch.float64).requires_grad_()
    state = tuple(
        torch.randn(B, *s, generator=gen, dtype=torch.float64).requires_grad_()
        for s in cell.state_shapes()
    )
    return x, state


@pytest.mark.parametrize("lengths", list(LENGTHS))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", list(CELLS))
def test_checkpointed_equals_reference(name, reverse, lengths):
    cell = CELLS[name](I, H).double()
    lens = None if LENGTHS[lengths] is None else torch.tensor(LENGTHS[lengths])
    x, state = _inputs(cell, 6)
    ref = _run_with_grads(cell, x, state, lens, reverse, "reference", None)
    for path in ["reference", *_paths(cell, x)]:
        out, final, grads = _run_with_grads(cell, x, state, lens, reverse, path, K)
        assert (out - ref[0]).abs().max().item() <= TOL, path
        assert _max_err(final, ref[1]) <= TOL, path
        assert _max_err(grads, ref[2]) <= TOL, path


@pytest.mark.parametrize("reverse", [False, True])
def test_checkpointed_conv_cell(reverse):
    # a cell whose output is (C, *spatial): the pass-through segment must give that shape
    cell = ConvLSTMCell(2, 3, kernel_size=3, spatial_size=(4, 4), peephole=True).double()
    lens = torch.tensor(LENGTHS["short"][:3])
    x, state = _inputs(cell, 3)
    ref = _run_with_grads(cell, x, state, lens, reverse, "reference", None)
    out, final, grads = _run_with_grads(cell, x, state, lens, reverse, None, 2)
    assert (out - ref[0]).abs().max().item() <= TOL
    assert _max_err(final, ref[1]) <= TOL
    assert _max_err(grads, ref[2]) <= TOL


def test_layer_attribute_bidirectional_stack():
    torch.manual_seed(0)
    layer = GRU(I, H, num_layers=2, bidirectional=True).double()
    x = torch.randn(T, 6, I, dtype=torch.float64, requires_grad=True)
    lens = torch.tensor(LENGTHS["mixed"])
    w = torch.randn(T, 6, 2 * H, dtype=torch.float64)
    results = []
    for steps in (None, 2):
        layer.checkpoint = steps
        out, h_n = layer(x, lengths=lens)
        loss = (out * w).sum() + (h_n * h_n).sum()
        results.append((out, h_n, *torch.autograd.grad(loss, [x, *layer.parameters()])))
    assert _max_err(results[0], results[1]) <= TOL


def _saved_bytes(fn) -> int:
    """Bytes of tensors autograd saves for the backward pass while ``fn`` runs (outside any
    checkpointed segment: a segment's own saves are discarded and recomputed). Parameters are
    not counted: saving one keeps a reference to memory the model holds anyway."""
    total = 0

    def pack(t):
        nonlocal total
        if not isinstance(t, torch.nn.Parameter):
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize("path", ["native", "autograd"])
def test_checkpoint_saves_no_activations(path):
    if path == "native" and not engine.native_available():
        pytest.skip("the compiled loops could not be built here")
    cell = NASCell(8, 16)
    x = torch.randn(60, 4, 8, requires_grad=True)
    state = tuple(torch.zeros(4, 16) for _ in range(2))
    plain = _saved_bytes(lambda: engine.run(cell, x, state, engine=path))
    segmented = _saved_bytes(lambda: engine.run(cell, x, state, engine=path, checkpoint=10))
    # the plain run saves every step's branches (at least 8H floats per row and step)
    assert plain >= 60 * 4 * 8 * 16 * 4
    # segmented: each recomputed segment's inputs, the x slices (views of x: no new memory) and
    # the two state tensors where each of the first 5 segments starts; the last segment (the
    # first one differentiated) keeps what a plain 10-step run saves
    # (from a state that depends on the parameters, as the segment's does)
    mid = tuple(s.clone().requires_grad_() for s in state)
    last = _saved_bytes(lambda: engine.run(cell, x[50:], mid, engine=path))
    assert segmented == 50 * 4 * 8 * 4 + 5 * 2 * 4 * 16 * 4 + last
    assert last <= plain / 4


def test_without_grad_or_short_sequences_is_the_plain_run():
    cell = CELLS["gru"](I, H).double()
    x, state = _inputs(cell, 6)
    ref_out, ref_final = engine.run(cell, x, state)
    for steps in (T, 100):  # one segment only
        out, final = engine.run(cell, x, state, checkpoint=steps)
        assert (out - ref_out).abs().max().item() <= TOL
    with torch.no_grad():
        out, final = engine.run(cell, x, state, checkpoint=2)
    assert (out - ref_out).abs().max().item() <= TOL
    assert _max_err(final, ref_final) <= TOL


@needs_native
def test_gradcheck_native_checkpointed():
    cell = CELLS["lstm_peephole"](2, 3).double()
    lens = torch.tensor([5, 2, 4])
    x = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)

    def f(x, h0, c0):
        out, (h, c) = engine.run(
            cell, x, (h0, c0), lens, reverse=True, engine="native", checkpoint=2
        )
        return out, h, c

    assert torch.autograd.gradcheck(f, (x, h0, c0))


@pytest.mark.parametrize(
    "value,error", [(0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_checkpoint_values(value, error):
    with pytest.raises(error, match="checkpoint"):
        check_checkpoint(value)
    layer = GRU(I, H)
    layer.checkpoint = value
    with pytest.raises(error, match="checkpoint"):
        layer(torch.randn(T, 2, I))


def test_unknown_path_fails_before_running():
    cell = CELLS["mut1"](I, H)
    x = torch.randn(T, 2, I, requires_grad=True)
    with pytest.raises(ValueError, match="engine 'fused'"):
        engine.run(cell, x, (torch.zeros(2, H),), engine="fused", checkpoint=2)
