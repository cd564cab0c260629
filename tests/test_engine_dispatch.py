"""Which path the engine takes, how a layer selects one, and that a whole layer (stacked,
bidirectional, with lengths) gives the reference runner's results on every path."""

from __future__ import annotations

from functools import partial

import pytest
import torch

import rnnkit
from cell_zoo import CELLS
from rnnkit import Recurrent, engine
from rnnkit.cells import ConvLSTMCell, ElmanCell, GRUCell, LSTMCell, MUT1Cell
from rnnkit.engine import fused, sequence
from rnnkit.engine.fused import FUSED_SEGMENT_LIMIT, HEAD_MIN_STEPS, fused_kind, fused_route

TOL = 1e-10
I, H, T = 3, 4, 6


def _grads(layer, x, h0, lengths):
    out, h_n = layer(x, h0, lengths=lengths)
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    gen = torch.Generator().manual_seed(7)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    loss = loss + sum((h * torch.randn(h.shape, generator=gen, dtype=h.dtype)).sum() for h in h_n)
    inputs = [x, *(h0 if isinstance(h0, tuple) else (h0,)), *layer.parameters()]
    return [out, *h_n], torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("name", list(CELLS))
def test_bidirectional_stacked_layer_equals_reference(name):
    layer = Recurrent(CELLS[name], I, H, 2, bidirectional=True).double()
    B = 4
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    shapes = layer.state_shapes
    h0 = tuple(torch.randn(4, B, *s, dtype=torch.float64, requires_grad=True) for s in shapes)
    h0 = h0 if len(h0) > 1 else h0[0]
    lengths = torch.tensor([6, 1, 4, 3])
    values, grads = _grads(layer, x, h0, lengths)
    layer.engine = "reference"
    ref_values, ref_grads = _grads(layer, x, h0, lengths)
    for a, b in zip(values, ref_values):
        assert (a - b).abs().max().item() <= TOL
    for a, b in zip(grads, ref_grads):
        assert (a - b).abs().max().item() <= TOL


def test_auto_picks_fused_native_autograd(monkeypatch):
    x = torch.randn(HEAD_MIN_STEPS, 2, I)
    native = "native" if engine.native_available() else "autograd"
    fused_or_loop = "native" if engine.native_available() else "fused"
    assert engine.choose(LSTMCell(I, H), x, None) == "fused"
    assert engine.choose(LSTMCell(I, 512), x[:, :1], None) == "fused"
    assert engine.choose(LSTMCell(I, H, proj_size=2), x, None) == "fused"
    # fewer steps than the fused kernel's weight preparation pays for: the compiled loop
    # (a projected LSTM has none, so it stays on the fused kernel)
    short = x[: HEAD_MIN_STEPS - 1]
    assert engine.choose(LSTMCell(I, H), short, None) == fused_or_loop
    assert engine.choose(LSTMCell(I, H), short[:2], torch.tensor([2, 1])) == fused_or_loop
    # one step of a small batch: torch's one-step op (engine.single_step)
    assert engine.choose(LSTMCell(I, H), short[:1], torch.tensor([1, 1])) == "step"
    assert engine.choose(LSTMCell(I, H, proj_size=2), short, None) == "fused"
    assert engine.choose(LSTMCell(I, H, peephole=True), x, None) == native
    # GRU and Elman: the compiled loop, else torch's op for their math
    assert engine.choose(GRUCell(I, H), x, None) == fused_or_loop
    assert engine.choose(ElmanCell(I, H), x, None) == fused_or_loop
    # no compiled loop for half: torch's own GRU kernel has the math, else the autograd loop
    assert engine.choose(GRUCell(I, H), x.half(), None) == "fused"
    assert engine.choose(GRUCell(I, H, reset_after=False), x.half(), None) == "autograd"
    conv = ConvLSTMCell(I, H, 3, (5,))
    assert engine.choose(conv, torch.randn(T, 2, I, 5), None) == "autograd"
    few = torch.tensor([6, 6, 3, 3])
    many = torch.arange(1, engine.FUSED_SEGMENT_LIMIT + 2)
    long_head = many + HEAD_MIN_STEPS
    T_long = int(long_head.max())

    def batch(lengths):  # an input whose (T, B) fits the lengths
        return torch.randn(T_long, lengths.numel(), I)

    # with lengths on the CPU: the compiled loop where it runs (fused.LOOP_WITH_LENGTHS)
    for lengths in (few, many, long_head):
        assert engine.choose(LSTMCell(I, H), batch(lengths), lengths) == fused_or_loop
    # a forward-only pass: the loop up to LOOP_INFERENCE_MAX_BATCH rows, the fused routes above
    wide = fused.LOOP_INFERENCE_MAX_BATCH + 1
    lengths = torch.arange(wide) % 5 + HEAD_MIN_STEPS
    with torch.no_grad():
        assert engine.choose(LSTMCell(I, H), batch(lengths), lengths) == "fused"
        assert engine.choose(LSTMCell(I, H), batch(many), many) == fused_or_loop
    assert engine.choose(LSTMCell(I, H), batch(lengths), lengths) == fused_or_loop
    # a projected LSTM has no compiled loop: one fused call per segment
    assert fused_route(LSTMCell(I, H, proj_size=2), batch(long_head), long_head) == "segments"
    # every sequence full length: one fused call, as without lengths
    assert engine.choose(LSTMCell(I, H), batch(few)[:, :2], torch.tensor([T_long] * 2)) == "fused"
    # without LOOP_WITH_LENGTHS: with many distinct lengths the fused kernel for the steps every
    # row runs and the compiled loop after them, all in the loop when the shortest is short;
    # with few, one fused call per run of equal rows
    monkeypatch.setattr(fused, "LOOP_WITH_LENGTHS", False)
    assert engine.choose(LSTMCell(I, H), batch(few), few) == "fused"
    assert engine.choose(LSTMCell(I, H), batch(many), many) == fused_or_loop
    assert engine.choose(LSTMCell(I, H), batch(long_head), long_head) == "fused"
    assert fused_route(LSTMCell(I, H), batch(few), few) == "segments"
    expected = "head" if engine.native_available() else "segments"
    assert fused_route(LSTMCell(I, H), batch(long_head), long_head) == expected


def test_auto_off_the_cpu_sends_torch_math_cells_to_the_fused_kernels():
    """Off the CPU (no compiled loops there) the cells with torch.nn's math go to torch's fused
    ops (cuDNN on a GPU), the others to the autograd loop; "meta" stands in for the device."""
    x = torch.empty(T, 2, I, device="meta")
    for cell in (LSTMCell(I, H), GRUCell(I, H), ElmanCell(I, H), ElmanCell(I, H, "relu")):
        assert engine.choose(cell.to("meta"), x, None) == "fused", cell
    for cell in (LSTMCell(I, H, peephole=True), GRUCell(I, H, reset_after=False), MUT1Cell(I, H)):
        assert engine.choose(cell.to("meta"), x, None) == "autograd", cell


def test_fused_kinds():
    assert fused_kind(LSTMCell(I, H, proj_size=2)) == "lstm"
    assert fused_kind(GRUCell(I, H)) == "gru"
    assert fused_kind(ElmanCell(I, H, "relu")) == "rnn_relu"
    assert fused_kind(ElmanCell(I, H)) == "rnn_tanh"
    for cell in (LSTMCell(I, H, peephole=True), GRUCell(I, H, reset_after=False), MUT1Cell(I, H)):
        assert fused_kind(cell) is None


def test_default_engine_context_and_layer_attribute():
    assert engine.get_default() == "auto"
    layer = rnnkit.GRU(I, H).double()
    x = torch.randn(T, 2, I, dtype=torch.float64)
    with engine.use("reference"):
        assert engine.get_default() == "reference"
        ref, _ = layer(x)
    assert engine.get_default() == "auto"
    engine.set_default("autograd")
    try:
        auto, _ = layer(x)
    finally:
        engine.set_default("auto")
    assert (ref - auto).abs().max().item() <= TOL
    layer.engine = "no-such-engine"
    with pytest.raises(ValueError, match="engine must be one of 'auto', 'fused'"):
        layer(x)
    with pytest.raises(ValueError, match="engine must be one of"):
        engine.set_default("fast")


def test_forcing_a_path_that_cannot_run_the_cell_is_an_error():
    x = torch.randn(T, 2, I)
    with pytest.raises(ValueError, match="engine 'fused' runs the cells with torch.nn's math"):
        engine.run(MUT1Cell(I, H), x, (torch.zeros(2, H),), engine="fused")
    with pytest.raises(ValueError, match="engine 'native' cannot run LSTMCell"):
        cell = LSTMCell(I, H, proj_size=2)
        engine.run(cell, x, cell.init_state(2), engine="native")


def test_without_compiled_loops_auto_falls_back_to_autograd(monkeypatch):
    monkeypatch.setattr(sequence.native, "available", lambda: False)
    cell = partial(LSTMCell, peephole=True)(I, H).double()
    x = torch.randn(T, 3, I, dtype=torch.float64)
    assert engine.choose(cell, x, None) == "autograd"
    layer = Recurrent(partial(LSTMCell, peephole=True), I, H, bidirectional=True).double()
    lengths = torch.tensor([2, 6, 5])
    out, (h, c) = layer(x, lengths=lengths)
    layer.engine = "reference"
    ref, (h_ref, c_ref) = layer(x, lengths=lengths)
    assert (out - ref).abs().max().item() <= TOL
    assert (h - h_ref).abs().max().item() <= TOL
    assert (c - c_ref).abs().max().item() <= TOL


def test_convolutional_cell_with_lengths_equals_reference():
    layer = Recurrent(
        partial(ConvLSTMCell, kernel_size=3, spatial_size=(4,)), 2, 3, bidirectional=True
    ).double()
    x = torch.randn(5, 3, 2, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    out, (h, c) = layer(x, lengths=lengths)
    gx = torch.autograd.grad(out.square().sum() + h.sum() + c.sum(), x)[0]
    layer.engine = "reference"
    ref, (h_ref, c_ref) = layer(x, lengths=lengths)
    gx_ref = torch.autograd.grad(ref.square().sum() + h_ref.sum() + c_ref.sum(), x)[0]
    for a, b in ((out, ref), (h, h_ref), (c, c_ref), (gx, gx_ref)):
        assert (a - b).abs().max().item() <= TOL


@pytest.mark.skipif(not engine.native_available(), reason="the compiled loops could not be built")
@pytest.mark.parametrize("name", ["lstm", "lstm_proj", "gru", "elman_tanh", "elman_relu"])
@pytest.mark.parametrize("reverse", [False, True])
def test_fused_head_then_compiled_loop_equals_reference(name, reverse, monkeypatch):
    """A torch-math cell with many distinct lengths and a long shortest sequence on the fused
    path: the first segment runs on the fused kernel, the rest in the compiled loop; outputs,
    final states and every gradient equal the reference (float64)."""
    monkeypatch.setattr(fused, "LOOP_WITH_LENGTHS", False)  # the route "fused" takes
    cell = CELLS[name](I, H).double()
    gen = torch.Generator().manual_seed(11)
    lengths = HEAD_MIN_STEPS + torch.randperm(12, generator=gen)[:10]  # 10 distinct, min >= 8
    T_long, B = int(lengths.max()) + 2, lengths.numel()
    x = torch.randn(T_long, B, I, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    # a projected LSTM has no compiled loop: one fused call per segment
    expected = "head" if sequence.native_supports(cell, x) else "segments"
    assert fused_route(cell, x, lengths) == expected
    results = {}
    for path in ("fused", "reference"):
        out, final = engine.run(cell, x, state, lengths, reverse=reverse, engine=path)
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
        loss = (out * w).sum() + sum((f * (1.5 - k)).sum() for k, f in enumerate(final))
        grads = torch.autograd.grad(loss, [x, *state, *cell.parameters()])
        results[path] = [out, *final, *grads]
    for a, b in zip(results["fused"], results["reference"]):
        assert (a - b).abs().max().item() <= TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["lstm", "gru", "elman_tanh", "mut1"])
def test_cuda_paths_equal_the_cpu_reference(name):
    """On a GPU, "auto" runs the torch-math cells on cuDNN and the others in the autograd loop;
    both give the CPU reference's outputs and gradients (float64, with lengths, both
    directions)."""
    layer = Recurrent(CELLS[name], I, H, bidirectional=True).double()
    x = torch.randn(T, 4, I, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 1, 4, 3])
    want = "autograd" if name == "mut1" else "fused"
    assert engine.choose(layer.cells[0].cuda(), x.cuda(), lengths) == want
    layer.cpu()
    layer.engine = "reference"
    out_ref, _ = layer(x, lengths=lengths)
    g_ref = torch.autograd.grad(out_ref.sum(), [x, *layer.parameters()])
    layer.engine = None
    layer.cuda()
    x_gpu = x.detach().cuda().requires_grad_()
    out, _ = layer(x_gpu, lengths=lengths.cuda())
    grads = torch.autograd.grad(out.sum(), [x_gpu, *layer.parameters()])
    assert (out.cpu() - out_ref).abs().max().item() <= 1e-8
    for a, b in zip(grads, g_ref):
        assert (a.cpu() - b).abs().max().item() <= 1e-8


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "autocast"])
@pytest.mark.parametrize("name", ["lstm", "gru", "nas"])
def test_torch_compile_runs_every_path(name, autocast):
    """torch.compile (Dynamo, eager backend) of a layer with lengths gives the eager results and
    gradients, also under CPU autocast (where the recurrence runs in float32); the compiled
    loops and the plan and lengths bookkeeping run eagerly (torch.compiler.disable), so Dynamo
    warns about nothing (before, about the functorch helpers that read the lengths)."""
    import warnings

    torch.manual_seed(0)
    layer = Recurrent(CELLS[name], I, H, 2, bidirectional=True)
    x = torch.randn(T, 3, I, requires_grad=True)
    lengths = torch.tensor([6, 2, 5])
    ref, _ = layer(x, lengths=lengths)
    g_ref = torch.autograd.grad(ref.sum(), [x, *layer.parameters()])
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, _ = compiled(x, lengths=lengths)
        grads = torch.autograd.grad(out.sum(), [x, *layer.parameters()])
    torch._dynamo.reset()
    assert [str(w.message) for w in caught] == []
    assert out.dtype == torch.float32
    assert (out - ref).abs().max().item() <= 1e-6
    for a, b in zip(grads, g_ref):
        # float32 rounding of sums (a gradient of about 10 differs by 2e-6 at most)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not engine.native_available(), reason="the compiled loops could not be built")
def test_fused_head_route_has_second_derivatives(monkeypatch):
    """The head route reads its first steps from the padded input as it is and joins the parts'
    outputs with its own autograd functions (engine.head); gradients of gradients through them
    equal the numerical ones."""
    monkeypatch.setattr(fused, "LOOP_WITH_LENGTHS", False)
    cell = CELLS["lstm"](1, 2).double()
    lengths = HEAD_MIN_STEPS + torch.arange(FUSED_SEGMENT_LIMIT + 1)  # 9 distinct, min 8
    B = lengths.numel()
    x = torch.randn(int(lengths.max()), B, 1, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.zeros(B, *s, dtype=torch.float64) for s in cell.state_shapes())
    assert fused_route(cell, x, lengths) == "head"

    def f(x):
        out, (h, c) = engine.run(cell, x, state, lengths, engine="fused")
        return out, h, c

    assert torch.autograd.gradgradcheck(f, (x,))
