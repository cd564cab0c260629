"""A batch whose sequences all have one length L runs as the batch without lengths over its
first L steps (``rnnkit.layer_routes.UNIFORM_LENGTHS``): the same outputs, final states and
gradients as the sorted path and as the reference loop, zero past L, and the padding never
read."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit.recurrent as recurrent_module
from cell_zoo import CELLS
from layer_steps import training_step
from rnnkit import Recurrent, engine, layer_routes
from rnnkit.engine import packing

TOL = 1e-10
I, H, T, B = 3, 4, 7, 5


def _layer(name: str, **kw) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(CELLS[name], I, H, **kw).double()


def _run(layer: Recurrent, x, h0, lengths):
    """Outputs, final states and the gradients of x, h_0 and every parameter."""
    return training_step(layer, x, h0, lengths)[:3]


def _inputs(layer: Recurrent, L: int):
    """x (T, B, I) whose padding past ``L`` is NaN (never to be read), and h_0."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=g)
    x[L:] = float("nan")
    x.requires_grad_(True)
    rows = layer.num_layers * layer.num_directions
    cell = layer.cell_at(0)
    h0 = tuple(
        torch.randn(rows, B, *shape, dtype=torch.float64, generator=g).requires_grad_(True)
        for shape in cell.state_shapes()
    )
    return x, h0


def _close(a, b) -> bool:
    return all((p - q).abs().max().item() <= TOL for p, q in zip(a, b))


@pytest.fixture(autouse=True)
def small_layers(monkeypatch):
    """The rule as for a small layer: the suite's conftest makes every layer split off its
    first steps' rows (as large layers do), where a uniform batch keeps the sorted path."""
    monkeypatch.setattr(packing, "SPLIT_MIN_ELEMENTS", 2**18)


@pytest.fixture
def runs(monkeypatch):
    """The layers' calls of the engine as (steps, whether lengths came along)."""
    seen = []
    run = engine.run

    def spy(cell, x, state, lengths=None, **kw):
        seen.append((x.shape[0], lengths is not None))
        return run(cell, x, state, lengths, **kw)

    monkeypatch.setattr(recurrent_module._engine, "run", spy)
    return seen


CASES = [(name, {}) for name in ("elman_tanh", "gru", "lstm_peephole", "nas")] + [
    ("gru_reset_before", {"bidirectional": True}),
    ("mut1", {"num_layers": 2, "residual": True}),
    ("layernorm_lstm", {"num_layers": 2, "bidirectional": True, "merge_mode": "sum"}),
]


@pytest.mark.parametrize("name,kw", CASES)
@pytest.mark.parametrize("L", [4, T])
def test_one_length_runs_without_lengths_and_matches_both_paths(name, kw, L, runs, monkeypatch):
    layer = _layer(name, **kw)
    layer.engine = "native" if name != "lstm_peephole" else None
    x, h0 = _inputs(layer, L)
    lengths = torch.full((B,), L)
    out, h_n, grads = _run(layer, x, h0, lengths)
    # every layer-direction ran L steps, without lengths
    assert runs and all(call == (L, False) for call in runs)
    # zero past the length, in the outputs and in the input's gradient; no NaN anywhere
    assert torch.equal(out[L:], torch.zeros_like(out[L:]))
    assert torch.equal(grads[0][L:], torch.zeros_like(grads[0][L:]))
    assert all(bool(torch.isfinite(g).all()) for g in grads)
    # the reference loop, masking every step, on an input whose padding is finite
    clean = x.detach().nan_to_num(0.0).requires_grad_(True)
    layer.engine = "reference"
    ref_out, ref_h, ref_grads = _run(layer, clean, h0, lengths)
    assert _close([out, *h_n], [ref_out, *ref_h])
    assert _close(grads[1:], ref_grads[1:]) and _close(grads[:1], ref_grads[:1])
    # the sorted, shrinking-batch path (the rule switched off): the same values
    monkeypatch.setattr(layer_routes, "UNIFORM_LENGTHS", False)
    layer.engine = None
    runs.clear()
    sorted_out, sorted_h, sorted_grads = _run(layer, x, h0, lengths)
    assert (L, False) not in runs  # (stacks and bidirectional layers run outside engine.run)
    assert _close([out, *h_n], [sorted_out, *sorted_h])
    assert _close(grads, sorted_grads)


def test_a_plain_lstm_on_the_cpu_keeps_the_compiled_loop_unless_every_length_is_t(runs):
    """Under "auto" a plain LSTM runs on oneDNN without lengths and in the compiled loop with
    them; neither is faster everywhere, so one length short of T keeps the loop. Another
    engine, or a length of T, drops the lengths."""
    layer = _layer("lstm")
    x, h0 = _inputs(layer, 4)
    x = x.detach().nan_to_num(0.0)
    layer(x, lengths=torch.full((B,), 4))
    layer(x, lengths=torch.full((B,), T))
    layer.engine = "native"
    layer(x, lengths=torch.full((B,), 4))
    assert runs == [(T, True), (T, False), (4, False)]


def test_a_large_layer_on_the_cpu_keeps_the_sorted_path_unless_every_length_is_t(runs, monkeypatch):
    """Where the sorted path reads a uniform batch's rows where they lie (split_pays), it does
    no layout work that the slice would spare, and writes its output in place: it stays."""
    monkeypatch.setattr(packing, "SPLIT_MIN_ELEMENTS", 4 * B * I)  # 4 steps' rows pay
    layer = _layer("gru")
    x, h0 = _inputs(layer, 4)
    x = x.detach().nan_to_num(0.0)
    layer(x, lengths=torch.full((B,), 3))  # 3·B·I values: below the line, sliced
    layer(x, lengths=torch.full((B,), 4))  # 4·B·I: sorted
    layer(x, lengths=torch.full((B,), T))
    assert runs == [(3, False), (T, True), (T, False)]


def test_lengths_that_differ_keep_the_sorted_path(runs):
    layer = _layer("gru")
    x, h0 = _inputs(layer, T)
    lengths = torch.full((B,), 4)
    lengths[2] = 5
    _run(layer, x, h0, lengths)
    assert runs == [(T, True)]


def test_batch_first_packed_and_unbatched_inputs(runs):
    layer = _layer("elman_tanh", batch_first=True)
    x, h0 = _inputs(layer, 4)
    xb = x.detach().transpose(0, 1)
    lengths = torch.full((B,), 4)
    out, h = layer(xb, h0[0].detach(), lengths=lengths)
    assert out.shape == (B, T, H) and runs == [(4, False)]
    layer.engine = "reference"
    ref, ref_h = layer(xb.nan_to_num(0.0), h0[0].detach(), lengths=lengths)
    assert (out - ref).abs().max().item() <= TOL and (h - ref_h).abs().max().item() <= TOL
    # a PackedSequence whose sequences are all 4 long: packed back with the same lengths
    layer.engine = None
    packed = pack_padded_sequence(xb, lengths, batch_first=True)
    got, got_h = layer(packed, h0[0].detach())
    assert torch.equal(got.batch_sizes, packed.batch_sizes)
    assert (got.data - ref.transpose(0, 1)[:4].reshape(-1, H)).abs().max().item() <= TOL
    assert (got_h - ref_h).abs().max().item() <= TOL
    # one unbatched sequence with its length
    layer.batch_first = False
    one, one_h = layer(x.detach()[:, 0], h0[0].detach()[:, 0], lengths=torch.tensor([4]))
    assert one.shape == (T, H) and torch.equal(one[4:], torch.zeros(T - 4, H))
    assert (one[:4] - ref[0, :4]).abs().max().item() <= TOL
    assert (one_h - ref_h[:, 0]).abs().max().item() <= TOL


def test_lengths_are_still_checked():
    layer = _layer("gru")
    x, _ = _inputs(layer, T)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=7\], got values from 8"):
        layer(x, lengths=torch.full((B,), T + 1))
    with pytest.raises(ValueError, match=r"lengths must have shape \(5,\)"):
        layer(x, lengths=torch.full((B + 1,), 3))
