"""The graph path (rnnkit.engine.graphs): the autograd loop recorded per shape and replayed.

On the CPU the path's bookkeeping runs with the module's "eager" stand-in for CUDA graphs,
whose replay reruns the recorded function and writes its results into the recorded outputs
(as a graph's replay rewrites them in place), so that a replay which read a stale buffer, a
backward through another call's activations or a missed re-replay gives wrong numbers here as
it would on the GPU. The oracle is the reference runner with the same weights (float64). The
tests named ``test_cuda_*`` run the real graphs on a GPU.
"""

from __future__ import annotations

import gc
import itertools
import weakref
from functools import partial

import pytest
import torch

from cell_zoo import CELLS
from rnnkit import Recurrent, engine
from rnnkit.cells import ConvLSTMCell, MUT1Cell, NASCell
from rnnkit.engine import graph_record, graphs

TOL = 1e-10
I, H, T, B = 3, 4, 6, 3
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def eager(monkeypatch):
    """The stand-in recorder, and no graphs left over from another test."""
    monkeypatch.setattr(graphs, "_BACKEND", "eager")
    graphs.clear()
    yield
    graphs.clear()


@pytest.fixture
def fresh():
    graphs.clear()
    yield
    graphs.clear()


def _pair(factory, layers=2, bidirectional=True, device="cpu", dtype=torch.float64):
    """(the layer on the graph path, the same weights on the reference runner)."""
    ours = Recurrent(factory, I, H, layers, bidirectional=bidirectional).to(device, dtype)
    ref = Recurrent(factory, I, H, layers, bidirectional=bidirectional).to(device, dtype)
    ref.load_state_dict(ours.state_dict())
    ours.engine, ref.engine = "graph", "reference"
    return ours, ref


def _h0(layer, batch, device="cpu", dtype=torch.float64):
    n = layer.num_layers * (2 if layer.bidirectional else 1)
    h0 = tuple(
        torch.randn(n, batch, *s, device=device, dtype=dtype, requires_grad=True)
        for s in layer.state_shapes
    )
    return h0 if len(h0) > 1 else h0[0]


def _results(layer, x, h0, seed=7, lengths=None):
    """Outputs, final states and the gradients of a random weighting of them with respect to
    the input, the initial state and every parameter."""
    out, h_n = layer(x, h0, lengths=lengths)
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    gen = torch.Generator().manual_seed(seed)

    def weights(t):
        return torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)

    loss = (out * weights(out)).sum() + sum((h * weights(h)).sum() for h in h_n)
    inputs = [x, *(h0 if isinstance(h0, tuple) else (h0,)), *layer.parameters()]
    return [out.detach(), *(h.detach() for h in h_n)], torch.autograd.grad(loss, inputs)


def _close(got, want, tol=TOL):
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        torch.testing.assert_close(g.cpu(), w.cpu(), rtol=tol, atol=tol)


def _check_calls(ours, ref, calls, batch=B, device="cpu", dtype=torch.float64, tol=TOL):
    for _ in range(calls):
        x = torch.randn(T, batch, I, device=device, dtype=dtype, requires_grad=True)
        h0 = _h0(ours, batch, device, dtype)
        got_out, got_grads = _results(ours, x, h0)
        want_out, want_grads = _results(ref, x, h0)
        _close(got_out, want_out, tol)
        _close(got_grads, want_grads, tol)


@pytest.mark.parametrize("name", list(CELLS))
def test_every_cell_equals_the_reference_call_after_call(eager, name):
    """Two layers, both directions: one capture per layer-direction, then replays of new data
    (each call's outputs, final states and gradients the reference's)."""
    ours, ref = _pair(CELLS[name])
    before = graphs.capture_count()
    _check_calls(ours, ref, calls=3)
    assert graphs.capture_count() - before == 4


def test_a_cell_without_a_kernel(eager):
    conv = partial(ConvLSTMCell, kernel_size=3, spatial_size=(4,))
    ours = Recurrent(conv, 2, 3, bidirectional=True).double()
    ref = Recurrent(conv, 2, 3, bidirectional=True).double()
    ref.load_state_dict(ours.state_dict())
    ours.engine, ref.engine = "graph", "reference"
    for lengths in (None, None, torch.tensor([6, 3, 5]), torch.tensor([2, 6, 4])):
        x = torch.randn(T, B, 2, 4, dtype=torch.float64, requires_grad=True)
        got, got_final = ours(x, lengths=lengths)
        want, want_final = ref(x, lengths=lengths)
        _close([got, *got_final], [want, *want_final])
        got_grads = torch.autograd.grad(got.square().sum(), [x, *ours.parameters()])
        want_grads = torch.autograd.grad(want.square().sum(), [x, *ref.parameters()])
        _close(got_grads, want_grads)


@pytest.mark.parametrize("order", ["last first", "first first"])
def test_two_forward_passes_before_their_backward_passes(eager, order):
    """Both calls share one shape's buffers: the backward of the call whose input the graphs
    no longer hold replays its forward pass again first."""
    ours, ref = _pair(MUT1Cell, layers=1, bidirectional=False)
    xs = [torch.randn(T, B, I, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    outs = [ours(x)[0] for x in xs]
    dout = torch.randn(T, B, H, dtype=torch.float64)
    order_ = [1, 0] if order == "last first" else [0, 1]
    for k in order_:
        got = torch.autograd.grad(outs[k], [xs[k], *ours.parameters()], dout)
        want = torch.autograd.grad(ref(xs[k])[0], [xs[k], *ref.parameters()], dout)
        _close(got, want)
    for out, x in zip(outs, xs):
        _close([out.detach()], [ref(x)[0].detach()])


def test_a_second_backward_pass_with_retain_graph(eager):
    ours, ref = _pair(NASCell, layers=1, bidirectional=False)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    loss = ours(x)[0].square().sum()
    first = torch.autograd.grad(loss, [x, *ours.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [x, *ours.parameters()])
    want = torch.autograd.grad(ref(x)[0].square().sum(), [x, *ref.parameters()])
    _close(first, want)
    _close(second, want)


def test_training_follows_the_optimizer_steps(eager):
    """The graphs read the parameters where they live: SGD steps in place give the same
    trajectory as the reference runner's."""
    ours, ref = _pair(MUT1Cell)
    opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (ours, ref)]
    gen = torch.Generator().manual_seed(3)
    for _ in range(4):
        x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
        for model, opt in zip((ours, ref), opts):
            opt.zero_grad()
            out, _ = model(x)
            out.square().mean().backward()
            opt.step()
    _close(list(ours.parameters()), list(ref.parameters()))


def test_auto_captures_a_shape_at_its_nth_call_and_keeps_a_few(eager, monkeypatch):
    """run_graphed as "auto" calls it: the first CAPTURE_AFTER - 1 calls of a shape run the
    loop, the next captures; at most CACHE_SIZE shapes per cell, the least recent dropped."""
    monkeypatch.setattr(graphs, "CAPTURE_AFTER", 2)
    monkeypatch.setattr(graphs, "CACHE_SIZE", 2)
    cell = MUT1Cell(I, H).double()
    ref = MUT1Cell(I, H).double()
    ref.load_state_dict(cell.state_dict())
    start = graphs.capture_count()

    def call(batch):
        x = torch.randn(T, batch, I, dtype=torch.float64, requires_grad=True)
        state = (torch.randn(batch, H, dtype=torch.float64),)
        got, final = graphs.run_graphed(cell, x, state, None, False)
        want, want_final = engine.run(ref, x, state, engine="reference")
        _close([got, *final], [want, *want_final])
        g = torch.autograd.grad(got.sum(), [x, *cell.parameters()])
        w = torch.autograd.grad(want.sum(), [x, *ref.parameters()])
        _close(g, w)
        return graphs.capture_count() - start

    assert [call(2), call(2), call(2)] == [0, 1, 1]
    assert [call(3), call(3), call(4), call(4)] == [1, 2, 2, 3]
    assert call(3) == 3  # still kept: B = 2 was the least recent
    assert [call(2), call(2)] == [3, 4]  # dropped: counted anew, then captured again
    assert len(graphs._cells[cell].entries) == 2


def test_a_cell_cycling_through_more_shapes_than_kept_stops_recording(eager, monkeypatch):
    """Each recording costs a few plain calls: once DROP_LIMIT recordings were dropped from a
    full cache, the cell keeps the loop, its graphs freed, its results unchanged."""
    monkeypatch.setattr(graphs, "CAPTURE_AFTER", 1)
    monkeypatch.setattr(graphs, "CACHE_SIZE", 2)
    monkeypatch.setattr(graphs, "DROP_LIMIT", 3)
    cell = MUT1Cell(I, H).double()
    start = graphs.capture_count()
    for batch in (2, 3, 4, 5):
        x = torch.randn(T, batch, I, dtype=torch.float64)
        graphs.run_graphed(cell, x, (torch.zeros(batch, H, dtype=torch.float64),), None, False)
    assert graphs.capture_count() - start == 4 and graphs._cells[cell].broken is None
    x = torch.randn(T, 6, I, dtype=torch.float64, requires_grad=True)
    state = (torch.zeros(6, H, dtype=torch.float64),)
    graphs.run_graphed(cell, x, state, None, False)  # the third drop
    assert "more shapes" in graphs._cells[cell].broken
    assert not graphs._cells[cell].entries
    got, _ = graphs.run_graphed(cell, x, state, None, False)
    want, _ = engine.run(cell, x, state, engine="reference")
    _close([got], [want])
    assert graphs.capture_count() - start == 5


def test_the_recordings_of_all_cells_share_one_memory_limit(eager, monkeypatch):
    """Each recording here reserves 50 bytes (a stand-in count of the allocator's), the limit
    is 120: a third recording drops the least recently replayed one, of whichever cell."""
    ticks = itertools.count(0, 50)
    monkeypatch.setattr(graphs, "_reserved", lambda device: next(ticks))
    monkeypatch.setattr(graphs, "MEMORY_LIMIT", 120)
    cells = [MUT1Cell(I, H).double() for _ in range(2)]
    ref = MUT1Cell(I, H).double()

    def call(k, batch):
        x = torch.randn(T, batch, I, dtype=torch.float64, requires_grad=True)
        state = (torch.zeros(batch, H, dtype=torch.float64),)
        got, _ = graphs.run_graphed(cells[k], x, state, None, False, force=True)
        ref.load_state_dict(cells[k].state_dict())
        _close([got], [engine.run(ref, x, state, engine="reference")[0]])

    def kept(k):
        return sorted(key[0][1] for key in graphs._cells[cells[k]].entries)

    call(0, 2)
    call(1, 2)
    assert graphs.memory_held() == 100
    call(0, 2)  # a replay: cell 0's recording is now the more recent
    call(1, 3)
    assert (kept(0), kept(1)) == ([2], [3]) and graphs.memory_held() == 100
    call(1, 2)
    assert (kept(0), kept(1)) == ([], [2, 3])
    assert graphs._cells[cells[0]].dropped == 1 and graphs._cells[cells[1]].dropped == 1


def test_a_deleted_cell_takes_its_recordings_with_it(eager):
    """The recordings are kept per cell in a weak map: nothing in them may hold the cell, or
    a model's graphs (and their memory) would outlive it."""
    ours, _ = _pair(MUT1Cell, layers=1, bidirectional=False)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    ours(x)[0].sum().backward()
    cell = weakref.ref(ours.cells[0])
    assert cell() in graphs._cells and graphs._cells[cell()].entries
    del ours
    gc.collect()
    assert cell() is None and not list(graphs._cells.keys())


def test_steps_bucket_is_the_grid():
    expected = {1: 8, 8: 8, 9: 16, 16: 16, 17: 24, 25: 32, 33: 48, 49: 64, 65: 96, 97: 128}
    expected.update({100: 128, 129: 184, 185: 256, 257: 368, 369: 512, 500: 512, 513: 728})
    assert {T: graphs.steps_bucket(T) for T in expected} == expected
    got = [graphs.steps_bucket(T) for T in range(1, 2000)]
    assert got == sorted(got) and all(T <= b < 1.5 * T + 8 for T, b in enumerate(got, 1))


def test_a_cell_called_with_many_lengths_records_buckets(eager):
    """More distinct T than CACHE_SIZE: the cell records T rounded up to the grid, as the
    masked loop; calls with and without lengths share a bucket's recording, and each call's
    outputs, final states and gradients are the reference's, also when an earlier, longer
    call of the same bucket left its steps in the buffers. A window of calls with one T
    turns the buckets off."""
    ours = Recurrent(MUT1Cell, I, H, bidirectional=True).double()
    ref = Recurrent(MUT1Cell, I, H, bidirectional=True).double()
    ref.load_state_dict(ours.state_dict())
    ours.engine, ref.engine = "graph", "reference"
    before = graphs.capture_count()
    gen = torch.Generator().manual_seed(11)
    for k, steps in enumerate([9, 12, 15, 18, 21, 23, 10, 17, 22, 23]):
        x = torch.randn(steps, B, I, dtype=torch.float64, requires_grad=True)
        h0 = _h0(ours, B)
        lengths = None if k % 3 == 0 else torch.randint(1, steps + 1, (B,), generator=gen)
        got_out, got_grads = _results(ours, x, h0, lengths=lengths)
        want_out, want_grads = _results(ref, x, h0, lengths=lengths)
        _close(got_out, want_out)
        _close(got_grads, want_grads)
    for cell in ours.cells:
        assert graphs._cells[cell].bucketed
        assert sorted(key[0][0] for key in graphs._cells[cell].entries) == [16, 24]
    # 4 exact shapes, then the buckets 24 and 16, for each direction
    assert graphs.capture_count() - before == 2 * (4 + 2)
    # one T for a whole window of calls: exact recordings again
    for _ in range(graphs.STEPS_WINDOW):
        x = torch.randn(7, B, I, dtype=torch.float64)
        with torch.no_grad():
            _close([ours(x)[0]], [ref(x)[0]])
    for cell in ours.cells:
        assert not graphs._cells[cell].bucketed
        assert [key[0][0] for key in graphs._cells[cell].entries] == [7]


@pytest.mark.parametrize("bucketed", [False, True])
def test_nan_padding_is_never_read(eager, bucketed):
    """With lengths, x past each length may hold anything (NaN here): the recording zeroes it
    before the input projection, whose weight's gradient would otherwise meet 0·NaN. The
    oracle is the reference on the same x with its padding zeroed."""
    ours, ref = _pair(MUT1Cell)
    if bucketed:
        for cell in ours.cells:
            graphs._cells.setdefault(cell, graphs._CellGraphs()).bucketed = True
    lengths = torch.tensor([6, 2, 4])
    valid = (torch.arange(T).unsqueeze(1) < lengths).unsqueeze(-1)
    for _ in range(2):
        x = torch.randn(T, B, I, dtype=torch.float64).masked_fill(~valid, float("nan"))
        x.requires_grad_(True)
        clean = x.detach().masked_fill(~valid, 0.0).requires_grad_(True)
        h0 = _h0(ours, B)
        got_out, got_grads = _results(ours, x, h0, lengths=lengths)
        want_out, want_grads = _results(ref, clean, h0, lengths=lengths)
        assert not any(g.isnan().any() for g in got_grads)
        _close(got_out, want_out)
        _close(got_grads, want_grads)


@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_gradcheck_through_the_replays(eager, lengths):
    """Finite differences against the replayed backward pass: every evaluation replays the
    same recording with perturbed inputs, backward after backward."""
    cell = MUT1Cell(2, 3).double()
    lens = None if lengths is None else torch.tensor(lengths)

    def run(x, h0):
        out, (h,) = engine.run(cell, x, (h0,), lens, reverse=True, engine="graph")
        return out, h

    x = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    before = graphs.capture_count()
    assert torch.autograd.gradcheck(run, (x, h0))
    assert graphs.capture_count() - before == 1


@pytest.mark.parametrize(
    "options",
    [
        {"merge_mode": "sum", "residual": True},
        {"batch_first": True},
        {"dropout": 0.3, "merge_mode": "ave"},
    ],
    ids=["sum-residual", "batch-first", "ave-dropout"],
)
@pytest.mark.parametrize("form", ["padded", "packed", "unbatched"])
def test_the_layer_around_the_graphs(eager, options, form):
    """The layer's own work around each layer-direction (merging, residual connections,
    dropout between the layers, the batch-first layout, a PackedSequence, an unbatched
    sequence) with the graphs inside it:
    outputs and every gradient against the reference runner, over two calls."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(1)
    ours = Recurrent(MUT1Cell, H, H, 2, bidirectional=True, **options).double()
    ref = Recurrent(MUT1Cell, H, H, 2, bidirectional=True, **options).double()
    ref.load_state_dict(ours.state_dict())
    ours.engine, ref.engine = "graph", "reference"
    first = options.get("batch_first", False)
    lengths = torch.tensor([6, 4, 3])
    for _ in range(2):
        shape = (T, H) if form == "unbatched" else ((B, T, H) if first else (T, B, H))
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)

        def run(layer, x=x):
            torch.manual_seed(5)  # (the same dropout masks between the layers for both)
            if form == "packed":
                packed = pack_padded_sequence(x, lengths, batch_first=first)
                out, _ = pad_packed_sequence(layer(packed)[0], batch_first=first)
            else:
                out = layer(x)[0]
            gen = torch.Generator().manual_seed(3)
            w = torch.randn(out.shape, generator=gen, dtype=out.dtype)
            return out, torch.autograd.grad((out * w).sum(), [x, *layer.parameters()])

        got, got_grads = run(ours)
        want, want_grads = run(ref)
        _close([got], [want])
        _close(got_grads, want_grads)


def test_inference_records_a_forward_graph_alone(eager):
    ours, ref = _pair(MUT1Cell)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(2):
            _close([ours(x)[0]], [ref(x)[0]])
    for graphs_ in graphs._cells.values():
        assert all(e.replay_backward is None for e in graphs_.entries.values())
    # a training call of the same shape is another recording
    _check_calls(ours, ref, calls=1)


def test_a_parameter_changed_before_the_backward_pass_is_an_error(eager):
    ours, _ = _pair(MUT1Cell, layers=1, bidirectional=False)
    out, _ = ours(torch.randn(T, B, I, dtype=torch.float64))
    with torch.no_grad():
        next(ours.parameters()).add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_second_derivatives_are_refused(eager):
    ours, _ = _pair(MUT1Cell, layers=1, bidirectional=False)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(ours(x)[0].square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()


def test_a_step_that_cannot_be_recorded_keeps_the_loop(eager, monkeypatch):
    def refuse(fn, pool):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graph_record, "record_eager", refuse)
    cell = MUT1Cell(I, H).double()
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    state = (torch.zeros(B, H, dtype=torch.float64),)
    want, _ = engine.run(cell, x, state, engine="reference")
    with pytest.raises(RuntimeError, match="not permitted"):
        graphs.run_graphed(cell, x, state, None, False, force=True)
    graphs.run_graphed(cell, x, state, None, False)  # first call: the loop
    with pytest.warns(RuntimeWarning, match="could not be recorded as a CUDA graph"):
        got, _ = graphs.run_graphed(cell, x, state, None, False)
    _close([got], [want])
    assert "not permitted" in graphs._cells[cell].broken


@pytest.mark.parametrize("name", list(CELLS))
def test_lengths_change_from_call_to_call_on_one_recording(eager, name):
    """With lengths the recording is the masked loop, the lengths an input like x: new
    lengths at every call, one recording per layer-direction, the reference's results."""
    ours, ref = _pair(CELLS[name])
    before = graphs.capture_count()
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
        h0 = _h0(ours, B)
        got_out, got_grads = _results(ours, x, h0, lengths=lengths)
        want_out, want_grads = _results(ref, x, h0, lengths=lengths)
        _close(got_out, want_out)
        _close(got_grads, want_grads)
    assert graphs.capture_count() - before == 4


def test_two_calls_with_other_lengths_before_their_backward_passes(eager):
    ours, ref = _pair(MUT1Cell, layers=1, bidirectional=True)
    xs = [torch.randn(T, B, I, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    lengths = [torch.tensor([6, 2, 4]), torch.tensor([3, 6, 1])]
    outs = [ours(x, lengths=n)[0] for x, n in zip(xs, lengths)]
    dout = torch.randn(T, B, 2 * H, dtype=torch.float64)
    for k in (0, 1):
        got = torch.autograd.grad(outs[k], [xs[k], *ours.parameters()], dout)
        want = torch.autograd.grad(
            ref(xs[k], lengths=lengths[k])[0], [xs[k], *ref.parameters()], dout
        )
        _close(got, want)


def test_forced_graphs_need_a_cuda_tensor(fresh):
    layer = Recurrent(MUT1Cell, I, H)
    layer.engine = "graph"
    with pytest.raises(ValueError, match=r"engine 'graph' cannot run MUT1Cell on a tensor on cpu"):
        layer(torch.randn(T, B, I))


def test_auto_keeps_the_loop_on_the_cpu(fresh):
    cell = MUT1Cell(I, H)
    x = torch.randn(T, B, I)
    assert not graphs.graphs_run(cell, x, (torch.zeros(B, H),))


def test_checkpointed_segments_on_forced_graphs(eager):
    """Segments of 4 steps under recomputation: a segment's backward reruns its forward pass
    on the graphs, which the other segment's calls have overwritten."""
    ours, ref = _pair(MUT1Cell, layers=1, bidirectional=True)
    ours.checkpoint = 4
    _check_calls(ours, ref, calls=2)


# -- the real graphs -------------------------------------------------------------------------
@CUDA
@pytest.mark.parametrize("name", list(CELLS))
def test_cuda_every_cell_equals_the_cpu_reference(fresh, name):
    ours, ref = _pair(CELLS[name], device="cuda")
    ref.cpu()
    before = graphs.capture_count()
    for _ in range(3):
        x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
        h0 = _h0(ref, B)
        x_gpu = x.detach().cuda().requires_grad_()
        h0_gpu = (
            tuple(h.detach().cuda().requires_grad_() for h in h0)
            if isinstance(h0, tuple)
            else h0.detach().cuda().requires_grad_()
        )
        got_out, got_grads = _results(ours, x_gpu, h0_gpu)
        want_out, want_grads = _results(ref, x, h0)
        _close(got_out, want_out, 1e-9)
        _close(got_grads, want_grads, 1e-9)
    assert graphs.capture_count() - before == 4


@CUDA
def test_cuda_auto_takes_graphs_from_the_second_call(fresh):
    ours, ref = _pair(MUT1Cell, device="cuda", dtype=torch.float32)
    ours.engine = None
    before = graphs.capture_count()
    _check_calls(ours, ref, calls=1, device="cuda", dtype=torch.float32, tol=1e-5)
    assert graphs.capture_count() == before
    _check_calls(ours, ref, calls=2, device="cuda", dtype=torch.float32, tol=1e-5)
    assert graphs.capture_count() - before == 4
    lstm = Recurrent(CELLS["lstm"], I, H).cuda()  # torch.nn's math: cuDNN, no graphs
    for _ in range(3):
        lstm(torch.randn(T, B, I, device="cuda"))
    assert graphs.capture_count() - before == 4


@CUDA
@pytest.mark.parametrize("order", ["last first", "first first"])
def test_cuda_two_forward_passes_and_retained_backward(fresh, order):
    ours, ref = _pair(NASCell, layers=1, bidirectional=False, device="cuda")
    xs = [
        torch.randn(T, B, I, device="cuda", dtype=torch.float64, requires_grad=True) for _ in "ab"
    ]
    outs = [ours(x)[0] for x in xs]
    dout = torch.randn(T, B, H, device="cuda", dtype=torch.float64)
    for k in [1, 0] if order == "last first" else [0, 1]:
        for _ in range(2):  # the second backward pass reruns the forward graph first
            got = torch.autograd.grad(outs[k], [xs[k], *ours.parameters()], dout, retain_graph=True)
            want = torch.autograd.grad(ref(xs[k])[0], [xs[k], *ref.parameters()], dout)
            _close(got, want, 1e-9)


@CUDA
def test_cuda_inference_and_training_trajectory(fresh):
    ours, ref = _pair(MUT1Cell, device="cuda", dtype=torch.float32)
    ref.engine = "autograd"
    with torch.no_grad():
        x = torch.randn(T, B, I, device="cuda")
        for _ in range(2):
            _close([ours(x)[0]], [ref(x)[0]], 1e-5)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (ours, ref)]
    for _ in range(5):
        x = torch.randn(T, B, I, device="cuda")
        for model, opt in zip((ours, ref), opts):
            opt.zero_grad()
            model(x)[0].square().mean().backward()
            opt.step()
    _close(list(ours.parameters()), list(ref.parameters()), 1e-4)


@CUDA
def test_cuda_lengths_on_one_recording_while_earlier_graphs_live(fresh):
    """ "auto" with new lengths at every call: the first call runs the sorted loop, and its
    graph (kept alive here, with the parameters' gradient nodes made on the default stream)
    lives on while the second records; every call's outputs and gradients, taken after all
    three ran, are the CPU reference's."""
    ours, ref = _pair(MUT1Cell, device="cuda")
    ours.engine = None
    ref.cpu()
    before = graphs.capture_count()
    gen = torch.Generator().manual_seed(5)
    calls = []
    for _ in range(3):
        lengths = torch.randint(1, T + 1, (B,), generator=gen)
        x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
        x_gpu = x.detach().cuda().requires_grad_()
        calls.append((x, x_gpu, lengths, ours(x_gpu, lengths=lengths.cuda())[0]))
    assert graphs.capture_count() - before == 4
    dout = torch.randn(T, B, 2 * H, dtype=torch.float64)
    for x, x_gpu, lengths, out in calls:
        want_out = ref(x, lengths=lengths)[0]
        _close([out.detach()], [want_out.detach()], 1e-9)
        got = torch.autograd.grad(out, [x_gpu, *ours.parameters()], dout.cuda())
        want = torch.autograd.grad(want_out, [x, *ref.parameters()], dout)
        _close(got, want, 1e-9)


def test_transforms_keep_the_traced_loop(eager):
    """Inside torch.func (here grad) the forced path refuses, and "auto" may not graph: a
    transform traces the loop's ops, which a replay does not run."""
    cell = MUT1Cell(I, H).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    state = (torch.zeros(B, H, dtype=torch.float64),)

    def forced(x_):
        return engine.run(cell, x_, state, engine="graph")[0].sum()

    with pytest.raises(ValueError, match="engine 'graph' cannot run MUT1Cell on a call inside"):
        torch.func.grad(forced)(x)
    seen = []

    def probe(x_):
        seen.append(graphs._transformed(cell, x_, state))
        return x_.square().sum()

    torch.func.grad(probe)(x)
    assert seen == [True] and not graphs._transformed(cell, x, state)


@CUDA
def test_cuda_buckets_and_nan_padding(fresh):
    """Many T: bucketed recordings on the GPU, NaN padding past the lengths, each call against
    the CPU reference on the same input with its padding zeroed."""
    ours, ref = _pair(MUT1Cell, device="cuda")
    ref.cpu()
    gen = torch.Generator().manual_seed(13)
    for k, steps in enumerate([9, 12, 15, 18, 21, 23, 10, 17, 22]):
        lengths = None if k % 3 == 0 else torch.randint(1, steps + 1, (B,), generator=gen)
        x = torch.randn(steps, B, I, dtype=torch.float64)
        if lengths is not None:
            valid = (torch.arange(steps).unsqueeze(1) < lengths).unsqueeze(-1)
            x = x.masked_fill(~valid, float("nan"))
            clean = x.masked_fill(~valid, 0.0)
        else:
            clean = x.clone()
        x_gpu = x.cuda().requires_grad_()
        clean.requires_grad_(True)
        h0 = _h0(ref, B)
        h0_gpu = h0.detach().cuda().requires_grad_()
        got_out, got_grads = _results(ours, x_gpu, h0_gpu, lengths=lengths)
        want_out, want_grads = _results(ref, clean, h0, lengths=lengths)
        _close(got_out, want_out, 1e-9)
        _close(got_grads, want_grads, 1e-9)
    assert all(graphs._cells[cell].bucketed for cell in ours.cells)


@CUDA
def test_cuda_memory_limit_keeps_the_newest(fresh, monkeypatch):
    """A limit below one recording: each new recording drops the others (of any cell), the
    allocator's count of it is positive, and the results stay the reference's."""
    monkeypatch.setattr(graphs, "MEMORY_LIMIT", 1)
    ours, ref = _pair(MUT1Cell, layers=1, bidirectional=True, device="cuda")
    _check_calls(ours, ref, calls=2, device="cuda")
    kept = [e for cell in ours.cells for e in graphs._cells[cell].entries.values()]
    assert len(kept) == 1 and kept[0].nbytes > 0
    assert graphs.memory_held("cuda") == kept[0].nbytes
