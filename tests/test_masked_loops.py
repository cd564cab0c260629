"""Small layers with lengths run masked (``masked.MASKED_MAX``): every step runs the whole
batch in its own order and the compiled loops freeze each row from its length on. Outputs,
final states and every gradient must equal the masked reference loop's (``loop.run_cell``)
and the sorted path's, whatever the input padding holds, in training, inference, second-order
and repeated backward passes."""

from __future__ import annotations

import pytest
import torch

import rnnkit.engine.sequence as sequence_module
from cell_zoo import CELLS
from layer_steps import training_step
from rnnkit import Recurrent
from rnnkit.engine import kernels, native, native_memory, native_switches
from rnnkit.engine import masked as masked_layout
from rnnkit.loop import reverse_padded, run_cell

needs_native = pytest.mark.skipif(not native.available(), reason="no compiled loop for this cell")

KERNEL_CELLS = [name for name in CELLS if name != "lstm_proj"]  # (no compiled loop for it)
I, H, T = 3, 4, 7
LENGTHS = [7, 3, 1, 7, 5, 2]  # the longest is T: the masked layout applies
B = len(LENGTHS)
TOL = 1e-10


@pytest.fixture
def masked(monkeypatch):
    """Small layers run masked (the suite's conftest switches it off), and a record of the
    plans the engine made: True for a masked one, False where the lengths did not qualify."""
    monkeypatch.setattr(masked_layout, "MASKED_MAX", 10**6)
    made = []
    make = sequence_module.make_masked_plan

    def spy(*args):
        plan = make(*args)
        made.append(plan is not None)
        return plan

    monkeypatch.setattr(sequence_module, "make_masked_plan", spy)
    return made


def _layer(name: str, dtype=torch.float64, **kw) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(CELLS[name], I, H, **kw).to(dtype)


def _inputs(layer: Recurrent, lengths, padding: float, dtype=torch.float64):
    """x (T, B, I) holding ``padding`` past each length, and initial states (one layer); B is
    the batch of ``lengths``."""
    B = len(lengths)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, dtype=dtype, generator=g)
    for b, n in enumerate(lengths.tolist()):
        x[n:, b] = padding
    x.requires_grad_(True)
    rows = layer.num_directions
    h0 = tuple(
        torch.randn(rows, B, *shape, dtype=dtype, generator=g).requires_grad_(True)
        for shape in layer.cell_at(0).state_shapes()
    )
    return x, h0


def _reference(layer: Recurrent, x, h0, lengths, weights):
    """The same step through the masked reference loop (each direction; the backward one on
    each sequence reversed within its length), on the input with its padding zeroed (the
    reference reads every step's input)."""
    valid = (torch.arange(x.shape[0]).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(-1)
    xr = x.detach().where(valid, 0.0).requires_grad_(True)
    states = [s.detach().requires_grad_(True) for s in h0]  # (D, B, ·) each
    outs, finals = [], []
    for d in range(layer.num_directions):
        state = tuple(s[d] for s in states)
        if d == 0:
            out, final = run_cell(layer.cell_at(0), xr, state, lengths)
        else:
            out, final = run_cell(layer.cell_at(0, 1), reverse_padded(xr, lengths), state, lengths)
            out = reverse_padded(out, lengths)
        outs.append(out)
        finals.append(final)
    out = torch.cat(outs, -1)
    finals = [torch.stack([f[k] for f in finals]) for k in range(len(states))]
    dout, dh = weights
    loss = (out * dout).sum() + sum((f * d).sum() for f, d in zip(finals, dh))
    grads = torch.autograd.grad(loss, [xr, *states, *layer.parameters()])
    return out.detach(), [f.detach() for f in finals], grads


def _assert_close(got, want, tol=TOL):
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= tol


@needs_native
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("padding", [0.0, float("nan")], ids=["zeros", "nan"])
@pytest.mark.parametrize("name", KERNEL_CELLS)
def test_masked_loop_equals_reference_and_sorted_path(
    name, padding, bidirectional, masked, monkeypatch
):
    """Every cell with a compiled loop, one direction or two: values and gradients against the
    reference loop and the sorted path (a bidirectional layer's shared gather), from random
    initial states (the backward direction starts each shorter sequence from its own); the
    padding, zero (read as it is) or NaN (zeroed in a copy), never shows, and the input's
    gradient is exactly zero there."""
    layer = _layer(name, bidirectional=bidirectional)
    lengths = torch.tensor(LENGTHS)
    x, h0 = _inputs(layer, lengths, padding)
    out, finals, grads, weights = training_step(layer, x, h0, lengths)
    assert masked == [True] * layer.num_directions
    ref_out, ref_finals, ref_grads = _reference(layer, x, h0, lengths, weights)
    _assert_close([out, *finals], [ref_out, *ref_finals])
    _assert_close(grads, ref_grads)
    assert all(not g.isnan().any() for g in grads)
    valid = torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)
    assert (grads[0][~valid] == 0).all() and (out[~valid] == 0).all()

    monkeypatch.setattr(masked_layout, "MASKED_MAX", 0)  # the sorted path, on the same batch
    s_out, s_finals, s_grads, _ = training_step(layer, x, h0, lengths)
    _assert_close([out, *finals, *grads], [s_out, *s_finals, *s_grads])


@needs_native
@pytest.mark.parametrize("name", ["elman_tanh", "lstm_peephole", "layernorm_lstm", "nas", "mgu"])
def test_masked_inference_keeps_each_final_state(name, masked):
    """Without gradients the loops keep two alternating blocks of saved states; a frozen
    row's cell state must be carried into them, so that the final states are each row's own,
    as in training and in the reference."""
    layer = _layer(name)
    lengths = torch.tensor(LENGTHS)
    x, h0 = _inputs(layer, lengths, 0.0)
    with torch.no_grad():
        out, h_n = layer(x, h0 if len(h0) > 1 else h0[0], lengths=lengths)
        state = tuple(s[0] for s in h0)
        ref_out, ref_finals = run_cell(layer.cell_at(0), x, state, lengths)
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    assert masked == [True]
    _assert_close([out, *h_n], [ref_out, *(f.unsqueeze(0) for f in ref_finals)])


@needs_native
@pytest.mark.parametrize("name", ["elman_tanh", "gru", "lstm", "mut3"])
def test_masked_loop_in_float32(name, masked):
    layer = _layer(name, torch.float32)
    lengths = torch.tensor(LENGTHS)
    x, h0 = _inputs(layer, lengths, float("inf"), torch.float32)
    out, finals, grads, weights = training_step(layer, x, h0, lengths)
    assert masked == [True]
    double = _layer(name)
    ref = _reference(double, x.double(), [s.double() for s in h0], lengths, weights)
    _assert_close([out, *finals], [r.float() for r in [ref[0], *ref[1]]], 1e-5)
    _assert_close(grads, [g.float() for g in ref[2]], 1e-4)


@needs_native
def test_lengths_short_of_T_take_the_sorted_path(masked):
    """The masked layout runs all T steps, so a batch whose longest sequence is shorter takes
    the sorted path (which stops there), in both directions of a bidirectional layer (its
    shared gather). The results equal the reference's."""
    layer = _layer("gru")
    short = torch.tensor([6, 3, 1, 6, 5, 2])
    x, h0 = _inputs(layer, short, float("nan"))
    out, finals, grads, weights = training_step(layer, x, h0, short)
    assert masked == [False]
    ref_out, ref_finals, ref_grads = _reference(layer, x, h0, short, weights)
    _assert_close([out, *finals, *grads], [ref_out, *ref_finals, *ref_grads])

    masked.clear()
    both = _layer("gru", bidirectional=True)
    x, h0 = _inputs(both, short, float("nan"))
    out, finals, grads, weights = training_step(both, x, h0, short)
    assert masked == []
    ref_out, ref_finals, ref_grads = _reference(both, x, h0, short, weights)
    _assert_close([out, *finals, *grads], [ref_out, *ref_finals, *ref_grads])


@needs_native
def test_only_small_layers_run_masked(masked, monkeypatch):
    """``MASKED_MAX`` bounds B·numel(W_hh), one step's multiply-adds: a layer one over it
    takes the sorted path. By default each kernel sets its own bound."""
    layer = _layer("elman_tanh")
    macs = B * layer.cell_at(0).weight_hh.numel()
    monkeypatch.setattr(masked_layout, "MASKED_MAX", macs)
    lengths = torch.tensor(LENGTHS)
    x, _ = _inputs(layer, lengths, 0.0)
    layer(x, lengths=lengths)
    assert masked == [True]
    masked.clear()
    monkeypatch.setattr(masked_layout, "MASKED_MAX", macs - 1)
    layer(x, lengths=lengths)
    assert masked == []
    monkeypatch.setattr(masked_layout, "MASKED_MAX", None)  # the kernels' own bounds
    for name, runs in (("elman_tanh", True), ("nas", False)):
        masked.clear()
        _layer(name)(x, lengths=lengths)
        assert masked == ([True] if runs else [])
    # two directions share one gather when sorted: masked up to half the bound set, or by
    # default up to each kernel's bidirectional bound
    both = _layer("elman_tanh", bidirectional=True)
    monkeypatch.setattr(masked_layout, "MASKED_MAX", 2 * macs)
    masked.clear()
    both(x, lengths=lengths)
    assert masked == [True, True]
    monkeypatch.setattr(masked_layout, "MASKED_MAX", 2 * macs - 1)
    masked.clear()
    both(x, lengths=lengths)
    assert masked == []
    monkeypatch.setattr(masked_layout, "MASKED_MAX", None)
    monkeypatch.setattr(kernels.ElmanKernel, "masked_max", 10**9)
    for bound, runs in ((macs, True), (macs - 1, False)):
        monkeypatch.setattr(kernels.ElmanKernel, "masked_max_bidirectional", bound)
        masked.clear()
        both(x, lengths=lengths)
        assert masked == ([True, True] if runs else [])
        masked.clear()
        layer(x, lengths=lengths)  # one direction: its own bound
        assert masked == [True]


@needs_native
@pytest.mark.parametrize("name", ["elman_tanh", "lstm_peephole", "gru_reset_before"])
def test_masked_loop_second_order_and_a_second_backward(name, masked):
    """gradcheck and gradgradcheck through the masked layout (the second order recomputes the
    masked steps with torch ops), and a second backward pass through the same graph
    (``retain_graph``: the loop runs forwards again) gives the first one's gradients."""
    layer = _layer(name)
    lengths = torch.tensor([4, 2, 4])
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 3, I, dtype=torch.float64, generator=g, requires_grad=True)
    params = list(layer.parameters())

    def f(x, *ps):
        out, h_n = torch.func.functional_call(
            layer,
            dict(zip([n for n, _ in layer.named_parameters()], ps)),
            (x,),
            {"lengths": lengths},
        )
        h_n = h_n if isinstance(h_n, tuple) else (h_n,)
        return (out, *h_n)

    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))
    assert masked and all(masked)

    out, _ = layer(x, lengths=lengths)
    w = torch.randn(out.shape, dtype=out.dtype, generator=g)
    first = torch.autograd.grad(out, [x, *params], w, retain_graph=True)
    second = torch.autograd.grad(out, [x, *params], w)
    _assert_close(first, second, 0.0)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rows_finite_against_isfinite(dtype):
    g = torch.Generator().manual_seed(4)
    src = torch.randn(40, 15, dtype=dtype, generator=g)
    at = torch.tensor([1, 7, 8, 30, 39])
    assert native_memory.rows_finite(src, at)
    for bad in (float("nan"), float("inf"), -float("inf")):
        for row, col in ((7, 0), (39, 14), (5, 6)):
            x = src.clone()
            x[row, col] = bad
            want = bool(torch.isfinite(x[at]).all())
            assert native_memory.rows_finite(x, at) == want
            assert want == (row not in at.tolist())
    assert native_memory.rows_finite(src, at[:0])


@needs_native
@pytest.mark.parametrize("name", ["elman_tanh", "lstm_peephole", "mut3"])
def test_masked_segments_of_a_checkpointed_layer(name, masked, monkeypatch):
    """``checkpoint=K`` runs each time segment with the lengths clipped to it; every segment
    whose longest clipped length is K runs masked, and the results equal the sorted path's."""
    layer = _layer(name)
    layer.checkpoint = 3
    lengths = torch.tensor(LENGTHS)
    x, h0 = _inputs(layer, lengths, float("nan"))
    out, finals, grads, _ = training_step(layer, x, h0, lengths)
    assert len(masked) >= 2 and all(masked)
    monkeypatch.setattr(masked_layout, "MASKED_MAX", 0)
    s_out, s_finals, s_grads, _ = training_step(layer, x, h0, lengths)
    _assert_close([out, *finals, *grads], [s_out, *s_finals, *s_grads])
    assert all(not g.isnan().any() for g in grads)


@needs_native
@pytest.mark.skipif(
    not native_switches.own_products(), reason="the loops' own kernel is not compiled in"
)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("name", KERNEL_CELLS)
def test_products_on_the_running_rows(name, bidirectional, masked, monkeypatch):
    """A batch wide enough for the loops' own kernel, whose rows freeze in steps: the recurrent
    products of the steps with enough frozen rows run on the running rows alone
    (``native_switches.live_rows``). Values and gradients equal the reference loop's, and equal
    exactly those of the products on every row (each row of the own kernel's product is summed
    alone), so every kernel reads only the running rows of what those products write."""
    lengths = torch.tensor([7, 1, 2, 3, 7, 4, 5, 6, 1, 2, 3, 7, 2, 5])  # B = 14, T·B = 98
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name], I, H, bidirectional=bidirectional).double()
    x, h0 = _inputs(layer, lengths, 0.0)
    assert native_switches.live_rows()
    before = native_switches.live_product_count()
    out, finals, grads, weights = training_step(layer, x, h0, lengths)
    assert native_switches.live_product_count() > before  # (the running rows' products ran)
    assert masked == [True] * layer.num_directions
    ref_out, ref_finals, ref_grads = _reference(layer, x, h0, lengths, weights)
    _assert_close([out, *finals], [ref_out, *ref_finals])
    _assert_close(grads, ref_grads)

    native_switches.set_live_rows(False)
    try:
        counted = native_switches.live_product_count()
        a_out, a_finals, a_grads, _ = training_step(layer, x, h0, lengths)
        assert native_switches.live_product_count() == counted
    finally:
        native_switches.set_live_rows(True)
    _assert_close([out, *finals, *grads], [a_out, *a_finals, *a_grads], 0.0)
