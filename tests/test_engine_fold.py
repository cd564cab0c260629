"""The input projection's bias added in the compiled loops (``turn_input.folded_input_bias``):
for the cells whose kernel adds its own bias where the projection's output is read (Elman, the
LSTMs, the GRU, the reset-before family, NAS), the projection is x·W_ihᵀ alone and b_ih goes
to the loops with b_hh. Outputs, final states and every gradient equal the reference runner's in
float64, and the layer's without the fold to rounding in float32, with and without lengths, in
both directions; the two biases get equal gradients (the GRU's outside b_hn, NAS's outside
branch 3) in storages of their own."""

from __future__ import annotations

import pytest
import torch

from cell_zoo import CELLS
from rnnkit import Recurrent
from rnnkit.engine import native, sequence, turn_input

pytestmark = pytest.mark.skipif(not native.available(), reason="no compiled loops here")

FOLDED = (
    "elman_tanh",
    "elman_relu",
    "lstm",
    "lstm_peephole",
    "gru",
    "gru_reset_before",
    "mgu",
    "mut2",
    "mut3",
    "nas",
)
# MUT1, and MUT2 with I = H, project the input in column blocks (not one affine map); the
# layer-normalised LSTM has no b_hh and normalises what it adds
NOT_FOLDED = ("layernorm_lstm", "lstm_proj")

I, H, B, T = 4, 24, 5, 7


LENGTHS = (7, 3, 5, 1, 7)


def _results(name, lengths, fold, dtype, engine="native", bias=True):
    """(outputs, finals and every gradient; the parameters' gradients by name) of a
    bidirectional layer of cell ``name`` (built with ``bias=False`` when not ``bias``)."""
    kept = turn_input.FOLD_INPUT_BIAS
    turn_input.FOLD_INPUT_BIAS = fold
    try:
        torch.manual_seed(3)
        make = CELLS[name] if bias else lambda i, h: CELLS[name](i, h, bias=False)
        layer = Recurrent(make, I, H, 1, bidirectional=True).to(dtype)
        layer.engine = engine
        gen = torch.Generator().manual_seed(4)
        x = torch.randn(T, B, I, generator=gen, dtype=dtype, requires_grad=True)
        out, h_n = layer(x, lengths=lengths)
        finals = h_n if isinstance(h_n, tuple) else (h_n,)
        loss = sum(
            (t * torch.randn(t.shape, generator=gen, dtype=dtype)).sum() for t in (out, *finals)
        )
        named = dict(layer.named_parameters())
        grads = torch.autograd.grad(loss, [x, *named.values()])
        return [out, *finals, *grads], dict(zip(named, grads[1:]))
    finally:
        turn_input.FOLD_INPUT_BIAS = kept


@pytest.mark.parametrize("name", FOLDED)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_the_folded_bias_gives_the_same_results(name, with_lengths, monkeypatch):
    lengths = torch.tensor(LENGTHS) if with_lengths else None
    folds = []  # the loops' calls that took the input bias with theirs

    def counted(cell, kernel=None):
        found = turn_input.folded_input_bias(cell, kernel)
        folds.append(found is not None)
        return found

    monkeypatch.setattr(sequence, "folded_input_bias", counted)
    ref, _ = _results(name, lengths, True, torch.float64, engine="reference")
    folded, grads = _results(name, lengths, True, torch.float64)
    for a, b in zip(folded, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    plain, _ = _results(name, lengths, False, torch.float32)
    folds.clear()
    folded32, grads32 = _results(name, lengths, True, torch.float32)
    assert folds and all(folds)  # (both directions, forward and backward recomputation aside)
    for a, b in zip(folded32, plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # both biases of a layer-direction: Σ dgx over the rows, equal, in storages of their own
    # (the GRU's b_hn multiplies r, so only its r and u blocks meet b_ih's; NAS's branch 3
    # multiplies x_3 by m_3, so every block but that one)
    shared = {"gru": [slice(0, 2 * H)], "nas": [slice(0, 3 * H), slice(4 * H, None)]}
    for direction in (0, 1):
        ih, hh = f"cells.{direction}.bias_ih", f"cells.{direction}.bias_hh"
        if ih in grads32 and hh in grads32:
            for block in shared.get(name, [slice(None)]):
                assert torch.equal(grads32[ih][block], grads32[hh][block])
            assert grads32[ih].data_ptr() != grads32[hh].data_ptr()


@pytest.mark.parametrize("name", FOLDED)
def test_a_folding_cell_projects_without_its_bias(name):
    cell = CELLS[name](I, H)
    found = turn_input.folded_input_bias(cell)
    if name in ("mut2", "mut3"):  # one bias, [z, r, h], all in the projection until folded
        assert found is not None and found[1] is cell.bias
        return
    assert found is not None and found[0] is cell.weight_ih and found[1] is cell.bias_ih


@pytest.mark.parametrize("name", NOT_FOLDED)
def test_the_other_cells_keep_the_bias_in_the_projection(name):
    assert turn_input.folded_input_bias(CELLS[name](I, H)) is None


def test_no_fold_without_a_bias_or_when_switched_off(monkeypatch):
    assert turn_input.folded_input_bias(CELLS["lstm"](I, H, bias=False)) is None
    assert turn_input.folded_input_bias(CELLS["mut2"](I, H)) is not None  # I != H: affine
    assert turn_input.folded_input_bias(CELLS["mut2"](H, H)) is None  # I = H: column blocks
    assert turn_input.folded_input_bias(CELLS["mut1"](I, H)) is None  # (no affine projection)
    monkeypatch.setattr(turn_input, "FOLD_INPUT_BIAS", False)
    assert turn_input.folded_input_bias(CELLS["lstm"](I, H)) is None


# the folding cells that can be built with bias=False (the MUT cells' bias is part of their
# math): nothing to fold, and the loops add zero biases in its place
WITHOUT_BIAS = tuple(name for name in FOLDED if not name.startswith("mut"))


@pytest.mark.parametrize("name", WITHOUT_BIAS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_a_cell_without_biases_runs_the_loops_as_the_reference(name, with_lengths):
    lengths = torch.tensor(LENGTHS) if with_lengths else None
    assert turn_input.folded_input_bias(CELLS[name](I, H, bias=False)) is None
    ref, _ = _results(name, lengths, True, torch.float64, engine="reference", bias=False)
    got, grads = _results(name, lengths, True, torch.float64, bias=False)
    assert not any("bias" in k for k in grads)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
