"""The engine equals the reference loop: every cell, every path (fused, native, autograd), with
and without lengths, both directions; outputs, final states and every gradient in float64,
float32 within rounding, and gradcheck on the hand-written backward passes."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from cell_zoo import CELLS
from rnnkit import engine
from rnnkit.cells import ElmanCell, GRUCell, LayerNormLSTMCell, LSTMCell, NASCell
from rnnkit.engine import (
    kernel_base,
    native,
    native_memory,
    native_switches,
    packing,
    row_moves,
    sequence,
    weight_grad,
)
from rnnkit.engine.fused import fused_supports
from rnnkit.engine.kernels import kernel_for
from rnnkit.engine.packing import make_plan

TOL = 1e-10
I, H, T = 3, 4, 6
LENGTHS = [6, 2, 5, 1, 3]  # unsorted, one full, one of length 1

needs_native = pytest.mark.skipif(
    not engine.native_available(), reason="the compiled loops could not be built here"
)


def _paths(cell, x):
    paths = ["autograd"]
    if kernel_for(cell) is not None and engine.native_available():
        paths.append("native")
    if fused_supports(cell, x):
        paths.append("fused")
    return paths


def _run_with_grads(cell, x, state, lengths, reverse, path, checkpoint=None):
    out, final = engine.run(
        cell, x, state, lengths, reverse=reverse, engine=path, checkpoint=checkpoint
    )
    gen = torch.Generator().manual_seed(1)
    w_out = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.dtype)
    w_fin = [torch.randn(f.shape, generator=gen, dtype=torch.float64).to(f.dtype) for f in final]
    loss = (out * w_out).sum() + sum((f * w).sum() for f, w in zip(final, w_fin))
    grads = torch.autograd.grad(loss, [x, *state, *cell.parameters()])
    return out, final, grads


def _max_err(a, b):
    return max((u - v).abs().max().item() for u, v in zip(a, b))


CASES = [
    (name, lengths, reverse)
    for name in CELLS
    for lengths in (None, LENGTHS)
    for reverse in (False, True)
]


@pytest.mark.parametrize("name", ["elman_tanh", "gru", "lstm_peephole"])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_tiny_input_gathered_by_index_select_gives_the_same_values(name, reverse, monkeypatch):
    """Below NATIVE_GATHER_MAX elements the padded input goes to the packed rows through
    torch's index_select (the suite's conftest switches that off): the same outputs, final
    states, gradients and second derivatives as the engine's own gather, on every path."""
    # as on a real small layer: every row gathered into one product (the conftest splits)
    monkeypatch.setattr(packing, "SPLIT_MIN_ELEMENTS", 2**18)
    cell = CELLS[name](I, H).double()
    B = len(LENGTHS)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    lens = torch.tensor(LENGTHS)
    gathers = []
    own = row_moves._GatherEager.apply

    def spy(*args):
        gathers.append(args[0].shape)
        return own(*args)

    monkeypatch.setattr(row_moves._GatherEager, "apply", spy)
    for path in _paths(cell, x):
        monkeypatch.setattr(row_moves, "NATIVE_GATHER_MAX", 0)
        want = _run_with_grads(cell, x, state, lens, reverse, path)
        of_x = gathers.count((T * B, I))
        monkeypatch.setattr(row_moves, "NATIVE_GATHER_MAX", x.numel() + 1)
        got = _run_with_grads(cell, x, state, lens, reverse, path)
        # the input's gather no longer took the function (the larger ones still do)
        assert gathers.count((T * B, I)) == of_x, path
        assert (got[0] - want[0]).abs().max().item() <= TOL, path
        assert _max_err(got[1], want[1]) <= TOL and _max_err(got[2], want[2]) <= TOL, path
    assert (T * B, I) in gathers, "the engine's own gather of x never ran: the spy sees nothing"
    # second order through the index_select gather: a gradient penalty's gradient
    out, _ = engine.run(cell, x, state, lens, reverse=reverse, engine="native")
    (gx,) = torch.autograd.grad(out.square().sum(), [x], create_graph=True)
    (ggx,) = torch.autograd.grad(gx.square().sum(), [x])
    monkeypatch.setattr(row_moves, "NATIVE_GATHER_MAX", 0)
    out, _ = engine.run(cell, x, state, lens, reverse=reverse, engine="native")
    (gx0,) = torch.autograd.grad(out.square().sum(), [x], create_graph=True)
    (ggx0,) = torch.autograd.grad(gx0.square().sum(), [x])
    assert (gx - gx0).abs().max().item() <= TOL and (ggx - ggx0).abs().max().item() <= TOL


@pytest.mark.parametrize("name,lengths,reverse", CASES)
def test_every_path_equals_reference(name, lengths, reverse):
    cell = CELLS[name](I, H).double()
    B = len(LENGTHS)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    lens = None if lengths is None else torch.tensor(lengths)
    ref_out, ref_final, ref_grads = _run_with_grads(cell, x, state, lens, reverse, "reference")
    for path in _paths(cell, x):
        out, final, grads = _run_with_grads(cell, x, state, lens, reverse, path)
        assert (out - ref_out).abs().max().item() <= TOL, path
        assert _max_err(final, ref_final) <= TOL, path
        assert _max_err(grads, ref_grads) <= TOL, path
        # without autograd (the native loop keeps only two steps of activations)
        with torch.no_grad():
            out_ng, final_ng = engine.run(cell, x, state, lens, reverse=reverse, engine=path)
        assert (out_ng - ref_out).abs().max().item() <= TOL, path
        assert _max_err(final_ng, ref_final) <= TOL, path
    if lens is not None:  # padding is exactly zero, as the reference's
        for b, n in enumerate(lengths):
            assert ref_out[n:, b].abs().max().item() == 0.0 if n < T else True


@needs_native
@pytest.mark.parametrize("name", list(CELLS))
def test_native_float32_matches_float64_reference(name):
    """The float32 loops are separate compiled code: they agree with the float64 reference
    to float32 rounding."""
    torch.manual_seed(3)
    cell64 = CELLS[name](I, H).double()
    if kernel_for(cell64) is None:
        pytest.skip("no compiled loop for this cell")
    cell32 = CELLS[name](I, H)
    cell32.load_state_dict({k: v.float() for k, v in cell64.state_dict().items()})
    B = len(LENGTHS)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell64.state_shapes()
    )
    lens = torch.tensor(LENGTHS)
    ref = _run_with_grads(cell64, x, state, lens, True, "reference")
    x32 = x.detach().float().requires_grad_()
    s32 = tuple(s.detach().float().requires_grad_() for s in state)
    got = _run_with_grads(cell32, x32, s32, lens, True, "native")
    assert (got[0].double() - ref[0]).abs().max().item() <= 1e-5
    assert _max_err([f.double() for f in got[1]], ref[1]) <= 1e-5
    assert _max_err([g.double() for g in got[2]], ref[2]) <= 1e-4


@needs_native
@pytest.mark.parametrize("name", list(CELLS))
def test_native_gradcheck(name):
    """Finite differences check the hand-written BPTT (inputs, initial state, parameters)."""
    cell = CELLS[name](2, 3).double()
    if kernel_for(cell) is None:
        pytest.skip("no compiled loop for this cell")
    B, steps = 3, 4
    params = list(cell.parameters())
    x = torch.randn(steps, B, 2, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    lens = torch.tensor([4, 2, 3])
    n_state = len(state)

    def f(x, *rest):  # gradcheck perturbs the parameters in place; the cell reads them
        out, final = engine.run(cell, x, rest[:n_state], lens, reverse=True, engine="native")
        return (out, *final)

    assert torch.autograd.gradcheck(f, (x, *state, *params), eps=1e-6, atol=1e-7)


@needs_native
@pytest.mark.parametrize(
    "make",
    [
        lambda: LSTMCell(5, 64, peephole=True),
        lambda: LayerNormLSTMCell(5, 64),
        lambda: NASCell(5, 64),
        lambda: GRUCell(5, 64),
        lambda: GRUCell(5, 64, reset_after=False),
        lambda: ElmanCell(5, 64, nonlinearity="relu"),
    ],
    ids=["peephole", "layernorm", "nas", "gru", "gru_reset_before", "elman_relu"],
)
def test_native_multithreaded_steps_equal_reference(make):
    """Large enough steps are split over two threads, with per-thread gradient sums."""
    _check_on_two_threads(make, torch.randint(1, 6, (48,)), T=5, reverse=False)


def _check_on_two_threads(make, lens: torch.Tensor, T: int, reverse: bool) -> None:
    """The native path on two threads equals the reference (outputs and gradients)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cell = make().double()
        B = lens.numel()
        x = torch.randn(T, B, 5, dtype=torch.float64, requires_grad=True)
        state = tuple(
            torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
        )
        ref = _run_with_grads(cell, x, state, lens, reverse, "reference")
        got = _run_with_grads(cell, x, state, lens, reverse, "native")
    finally:
        torch.set_num_threads(threads)
    assert (got[0] - ref[0]).abs().max().item() <= TOL
    assert _max_err(got[1], ref[1]) <= TOL
    assert _max_err(got[2], ref[2]) <= 1e-9


@needs_native
@pytest.mark.parametrize(
    "make",
    [lambda: LSTMCell(5, 160, peephole=True), lambda: GRUCell(5, 160), lambda: NASCell(5, 160)],
    ids=["peephole", "gru", "nas"],
)
def test_native_few_rows_split_products_over_threads(make):
    """With a few rows, the recurrent products are split over two threads by columns."""
    _check_on_two_threads(make, torch.tensor([4, 2, 3]), T=4, reverse=True)


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh", "rnn_relu"])
def test_fused_gru_and_elman_with_lengths_equal_torch_packed(kind):
    """GRU (reset after) and Elman on the fused path give torch.nn.GRU's / torch.nn.RNN's
    PackedSequence results with the same weights (float64), both directions."""
    if kind == "gru":
        torch_layer = torch.nn.GRU(I, H, bidirectional=True).double()
        make = GRUCell
    else:
        nonlinearity = kind.removeprefix("rnn_")
        torch_layer = torch.nn.RNN(I, H, nonlinearity=nonlinearity, bidirectional=True).double()
        make = partial(ElmanCell, nonlinearity=nonlinearity)
    B = len(LENGTHS)
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0 = torch.randn(2, B, H, dtype=torch.float64)
    lens = torch.tensor(LENGTHS)
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lens, enforce_sorted=False)
    ref, h_ref = torch_layer(packed, h0)
    ref, _ = torch.nn.utils.rnn.pad_packed_sequence(ref, total_length=T)
    for d, suffix in enumerate(("_l0", "_l0_reverse")):
        cell = make(I, H).double()
        weights = {
            k.removesuffix(suffix): v
            for k, v in torch_layer.state_dict().items()
            if k.endswith(suffix)
        }
        cell.load_state_dict(weights)
        out, (h_n,) = engine.run(cell, x, (h0[d],), lens, reverse=d == 1, engine="fused")
        assert (out - ref[..., d * H : (d + 1) * H]).abs().max().item() <= TOL
        assert (h_n - h_ref[d]).abs().max().item() <= TOL


def test_fused_lstm_with_lengths_equals_torch_packed():
    """The segmented fused path gives torch.nn.LSTM's PackedSequence results (float64)."""
    torch_lstm = torch.nn.LSTM(I, H, proj_size=2).double()
    cell = LSTMCell(I, H, proj_size=2).double()
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in torch_lstm.state_dict().items()})
    B = len(LENGTHS)
    x = torch.randn(T, B, I, dtype=torch.float64)
    h0, c0 = torch.randn(B, 2, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    lens = torch.tensor(LENGTHS)
    out, (h_n, c_n) = engine.run(cell, x, (h0, c0), lens, engine="fused")
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lens, enforce_sorted=False)
    ref, (h_ref, c_ref) = torch_lstm(packed, (h0.unsqueeze(0), c0.unsqueeze(0)))
    ref, _ = torch.nn.utils.rnn.pad_packed_sequence(ref, total_length=T)
    assert (out - ref).abs().max().item() <= TOL
    assert (h_n - h_ref[0]).abs().max().item() <= TOL
    assert (c_n - c_ref[0]).abs().max().item() <= TOL


@needs_native
@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("gathered", [True, False])
def test_native_many_distinct_lengths_equal_reference(name, reverse, gathered, monkeypatch):
    """Many runs of equal active rows: the recurrent weight gradient takes the
    gathered-previous-outputs product (more runs than GATHER_SEGMENTS), or two products per
    run on views (GATHER_SEGMENTS raised above the runs); both equal the reference."""
    cell = CELLS[name](I, H).double()
    if kernel_for(cell) is None:
        pytest.skip("no compiled loop for this cell")
    T_long = 14
    lens = torch.randperm(T_long - 1, generator=torch.Generator().manual_seed(5))[:11] + 2
    plan = make_plan(T_long, lens.numel(), lens, reverse)
    if not gathered:
        monkeypatch.setattr(weight_grad, "GATHER_SEGMENTS", len(plan.segments()))
    assert (len(plan.segments()) > weight_grad.GATHER_SEGMENTS) == gathered
    B = lens.numel()
    x = torch.randn(T_long, B, I, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    ref = _run_with_grads(cell, x, state, lens, reverse, "reference")
    got = _run_with_grads(cell, x, state, lens, reverse, "native")
    assert (got[0] - ref[0]).abs().max().item() <= TOL
    assert _max_err(got[1], ref[1]) <= TOL
    assert _max_err(got[2], ref[2]) <= TOL


@pytest.mark.parametrize("segments", [False, True])
@pytest.mark.parametrize("head_views", [True, False])
@pytest.mark.parametrize("reverse,turn", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("lens", [[5, 3, 7, 3, 6, 4], [1, 7, 2, 5, 7, 3], [6, 6, 2, 6, 6, 6]])
def test_recurrent_weight_grad_equals_sum_over_steps(
    lens, reverse, turn, head_views, segments, monkeypatch
):
    """Σ over packed rows of dzᵀ·h_prev, with the first run of full steps on views
    (``HEAD_VIEWS``) or every h_prev gathered, or two products per run of equal rows
    (``segments``), against the sum written step by step from the plan's index: h0 for step
    0, then the row of the same sequence one step earlier. The second batch has a sequence of
    length 1 (the first run is step 0 alone), the third a single shorter one; ``turn`` keeps
    the full steps in the batch's order."""
    monkeypatch.setattr(weight_grad, "HEAD_VIEWS", head_views)
    lengths = torch.tensor(lens)
    B, T_long = len(lens), 8
    plan = make_plan(T_long, B, lengths, reverse, turn=turn)
    assert (plan.turn > 0) == turn
    monkeypatch.setattr(weight_grad, "GATHER_SEGMENTS", len(plan.segments()) if segments else 1)
    row_at = {p: k for k, p in enumerate(plan.index.tolist())}  # flat position -> packed row
    step = -B if not reverse else B
    g = torch.Generator().manual_seed(3)
    h0 = torch.randn(B, 5, dtype=torch.float64, generator=g)
    y = torch.randn(plan.rows, 5, dtype=torch.float64, generator=g)
    dz = torch.randn(plan.rows, 7, dtype=torch.float64, generator=g)
    expected = torch.zeros(7, 5, dtype=torch.float64)
    for s in range(plan.steps):
        o = plan.off_list[s]
        for r in range(plan.n_list[s]):
            prev = h0[r] if s == 0 else y[row_at[int(plan.index[o + r]) + step]]
            expected += torch.outer(dz[o + r], prev)
    prev = weight_grad.PreviousOutputs(h0, y, plan)
    assert (prev.head > 0) == (head_views and not segments)
    got = prev.weight_grad(dz)
    assert (got - expected).abs().max().item() <= TOL
    # a second product of the same backward pass, into a given buffer
    out = torch.empty(3, 5, dtype=torch.float64)
    assert prev.weight_grad(dz[:, :3], out=out) is out
    assert (out - expected[:3]).abs().max().item() <= TOL


@pytest.mark.parametrize("turn", [False, True])
@pytest.mark.parametrize("lens", [[3, 7, 1, 7, 5, 2], [3, 7, 2, 7, 5, 2], [4, 7, 4, 7, 5, 4]])
def test_plan_places_every_row_once(lens, turn):
    """The packed layout against a direct construction: step s holds, longest sequence first,
    the s-th valid step (from the end when reversed) of every sequence longer than s; every
    valid position appears once and every other position is listed as padding. With ``turn``
    (forwards only), the steps every sequence runs hold the batch's rows in their own order."""
    lens = torch.tensor(lens)
    T, B = 8, lens.numel()
    for reverse in (False, True):
        plan = make_plan(T, B, lens, reverse, turn=turn)
        m = int(lens.min()) if turn and not reverse else 0
        assert plan.turn == m
        order = sorted(range(B), key=lambda b: -int(lens[b]))  # stable: ties keep their order
        expected = []
        for s in range(int(lens.max())):
            for b in (b for b in (range(B) if s < m else order) if lens[b] > s):
                t = int(lens[b]) - 1 - s if reverse else s
                expected.append(t * B + b)
        assert plan.index.tolist() == expected
        # last: the packed row of each (sorted) sequence's last valid step
        for j, b in enumerate(order):
            t = 0 if reverse else int(lens[b]) - 1
            assert plan.index[plan.last[j]].item() == t * B + b
        valid = set(expected)
        assert plan.padding.tolist() == [p for p in range(T * B) if p not in valid]
        assert [plan.source[p].item() for p in expected] == list(range(len(expected)))
        assert plan.perm.tolist() == order
        # previous: the packed row of the same sequence one step earlier
        seq_of = [p % B for p in expected]
        for k, prev in enumerate(plan.previous.tolist(), start=B):
            assert seq_of[prev] == seq_of[k]
            assert plan.index[prev] // B == plan.index[k] // B + (1 if reverse else -1)
        assert make_plan(T, B, lens.clone(), reverse, turn=turn) is plan  # cached by value


@needs_native
@pytest.mark.parametrize(
    "make", [lambda: GRUCell(5, 160), lambda: NASCell(5, 96)], ids=["gru", "nas"]
)
def test_native_products_threaded_by_the_blas_equal_reference(make):
    """With column splitting off, the BLAS threads every recurrent product itself; the results
    still equal the reference (the default splits products of up to 256 rows)."""
    native_switches.set_split_rows(0)
    try:
        _check_on_two_threads(make, torch.randint(1, 6, (40,)), T=5, reverse=True)
    finally:
        native_switches.set_split_rows(native.SPLIT_ROWS)


@needs_native
@pytest.mark.parametrize("rows", [-1, 2.5, True])
def test_set_split_rows_rejects_bad_values(rows):
    with pytest.raises(ValueError, match="rows must be an int >= 0"):
        native_switches.set_split_rows(rows)


# the shortest length (3) shared by two sequences, which end just before the turn
TIED = [5, 3, 7, 3, 6, 4]


@needs_native
@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("turn", [True, False])
def test_native_with_and_without_the_turn_equal_reference(name, turn, monkeypatch):
    """Forwards, the loops keep the steps every sequence runs in the batch's order and sort the
    rows at the turn (``packing.TURN``), or sort them from step 0: both equal the reference
    loop in float64, in training (outputs, final states, every gradient) and in inference,
    where the saved buffers are alternating blocks and the sequences that end just before the
    turn must keep their final state in a block of its own."""
    monkeypatch.setattr(packing, "TURN", turn)
    torch.manual_seed(4)
    cell = CELLS[name](I, H).double()
    if kernel_for(cell) is None:
        pytest.skip("no compiled loop for this cell")
    lens = torch.tensor(TIED)
    T_long, B = 8, lens.numel()
    plan = make_plan(T_long, B, lens, False, turn=True)
    assert plan.turn == (3 if turn else 0)
    x = torch.randn(T_long, B, I, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    ref = _run_with_grads(cell, x, state, lens, False, "reference")
    got = _run_with_grads(cell, x, state, lens, False, "native")
    for a, b in zip(got, ref):
        assert (
            _max_err(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,))
            <= TOL
        )
    with torch.no_grad():
        out, final = engine.run(cell, x, state, lens, engine="native")
    assert (out - ref[0]).abs().max().item() <= TOL
    assert _max_err(final, ref[1]) <= TOL


@needs_native
@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("reverse", [False, True])
def test_padded_outputs_equal_the_scattered_packed_outputs_bit_for_bit(name, reverse, monkeypatch):
    """With lengths the loops write their outputs into the padded layout and read the output
    gradient from it; the earlier form (packed outputs, then a scatter, and a gather of the
    gradient) does the same arithmetic, so float32 outputs, final states and every gradient
    agree bit for bit, and the padding is exactly zero."""
    torch.manual_seed(3)
    cell = CELLS[name](I, H)
    if kernel_for(cell) is None:
        pytest.skip("no compiled loop for this cell")
    lens = torch.tensor(LENGTHS)
    B = lens.numel()
    x = torch.randn(T, B, I, requires_grad=True)
    state = tuple(torch.randn(B, *s, requires_grad=True) for s in cell.state_shapes())
    runs = {}
    for padded in (True, False):
        monkeypatch.setattr(sequence, "PADDED_OUTPUT", padded)
        runs[padded] = _run_with_grads(cell, x, state, lens, reverse, "native")
        with torch.no_grad():
            runs[padded, "no grad"] = engine.run(
                cell, x, state, lens, reverse=reverse, engine="native"
            )
    (out, final, grads), (out0, final0, grads0) = runs[True], runs[False]
    assert torch.equal(out, out0)
    assert all(torch.equal(a, b) for a, b in zip(final, final0))
    assert all(torch.equal(a, b) for a, b in zip(grads, grads0))
    assert torch.equal(runs[True, "no grad"][0], out0.detach())
    valid = torch.arange(T)[:, None] < lens[None, :]  # (T, B)
    assert out[~valid].abs().max().item() == 0.0


@needs_native
def test_loops_refuse_output_rows_of_another_layout():
    """The row map is for a batch with lengths: an output buffer or an output gradient with
    neither the packed nor the padded row count is refused, naming it."""
    lens = torch.tensor(LENGTHS)
    plan = make_plan(T, lens.numel(), lens, False)
    with pytest.raises(ValueError, match=r"out must have T·B = 30 rows"):
        kernel_base.padded_rows(plan, torch.empty(29, H))
    with pytest.raises(ValueError, match=rf"dy must have the {plan.rows} packed rows .* got 7"):
        kernel_base.grad_rows(plan, torch.empty(7, H))
    full = make_plan(T, lens.numel(), None, False)
    with pytest.raises(ValueError, match="out must have"):
        kernel_base.padded_rows(full, torch.empty(T * lens.numel(), H))
    assert kernel_base.grad_rows(plan, torch.empty(plan.rows, H)) is None
    index, out = kernel_base.padded_rows(plan, torch.empty(T * lens.numel(), H))
    assert torch.equal(index, plan.index)
    geo = kernel_base.geometry(plan, H, False)
    tensors = [torch.zeros(plan.rows, H), torch.zeros(H, H), torch.zeros(H)]
    tensors += [torch.zeros(plan.B, H), torch.empty(plan.rows, H), torch.empty(plan.B, H)]
    with pytest.raises(ValueError, match="row map must be contiguous int64"):
        native.call("elman", "forward", geo, tensors, rows=(index.int(), out))
    with pytest.raises(ValueError, match="padded output must be contiguous torch.float32"):
        native.call("elman", "forward", geo, tensors, rows=(index, out.double()))


@needs_native
@pytest.mark.parametrize("dtype,width", [(torch.float64, 3), (torch.float32, 256)])
@pytest.mark.parametrize("threads", [1, 2])
def test_native_row_moves_equal_torch_ops(dtype, width, threads):
    """The compiled row copies against torch's ops on a real plan's maps: the gather
    (index_select), the scatter with the padding zeroed (index_select, then index_fill_) and
    the zero fill; 256 float32 features a row make enough bytes for the copies to split over
    two threads, each finding its first padding row by itself."""
    kept = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(7)
        lens = torch.randint(1, 41, (37,), generator=gen)
        plan = make_plan(40, 37, lens, True)
        index, source, padding = plan.index, plan.source, plan.padding
        flat = torch.randn(40 * 37, width, generator=gen, dtype=dtype)
        rows = torch.randn(plan.rows, width, generator=gen, dtype=dtype)
        out = torch.full((plan.rows, width), 9.0, dtype=dtype)
        taken = native_memory.take_rows(flat, index, out)
        assert torch.equal(taken, flat.index_select(0, index))
        placed = native_memory.place_rows(rows, source, padding, torch.full_like(flat, 9.0))
        assert torch.equal(placed, rows.index_select(0, source).index_fill_(0, padding, 0.0))
        zeroed = native_memory.zero_rows(flat.clone(), padding)
        assert torch.equal(zeroed, flat.clone().index_fill_(0, padding, 0.0))
        # the engine's trusted calls skip the checks and must give the same rows, also when
        # the scatter has no rows to place (every position is padding: all zeroed)
        out = torch.full((plan.rows, width), 9.0, dtype=dtype)
        assert torch.equal(native_memory.take_rows(flat, index, out, trusted=True), taken)
        trusted = native_memory.place_rows(
            rows, source, padding, torch.full_like(flat, 9.0), trusted=True
        )
        assert torch.equal(trusted, placed)
        every = torch.arange(flat.shape[0])
        none = native_memory.place_rows(
            rows[:0], every, every, torch.full_like(flat, 9.0), trusted=True
        )
        assert torch.equal(none, torch.zeros_like(flat))
        again = native_memory.zero_rows(flat.clone(), padding, trusted=True)
        assert torch.equal(again, zeroed)
    finally:
        torch.set_num_threads(kept)


@needs_native
def test_native_row_moves_refuse_foreign_arguments():
    src, index = torch.randn(5, 3), torch.tensor([4, 0, 2])
    with pytest.raises(ValueError, match="index must be a contiguous 1-d int64 tensor"):
        native_memory.take_rows(src, index.int(), torch.empty(3, 3))
    with pytest.raises(ValueError, match=r"out must hold 3 rows like src's, got \(3, 4\)"):
        native_memory.take_rows(src, index, torch.empty(3, 4))
    with pytest.raises(ValueError, match="out must hold 3 rows"):
        native_memory.take_rows(src, index, torch.empty(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="src must be a contiguous tensor on the CPU"):
        native_memory.take_rows(src.t(), index, torch.empty(3, 5))
    with pytest.raises(ValueError, match="padding must be a contiguous 1-d int64 tensor"):
        native_memory.place_rows(src, index, torch.tensor([1.0]), torch.empty(3, 3))
    with pytest.raises(ValueError, match="at must be a contiguous 1-d int64 tensor"):
        native_memory.zero_rows(src, index.view(3, 1))
    # rows out of range are refused before any memory is touched
    with pytest.raises(ValueError, match=r"index must hold rows in \[0, 5\), got \[0, 5\]"):
        native_memory.take_rows(src, torch.tensor([5, 0, 2]), torch.empty(3, 3))
    with pytest.raises(ValueError, match=r"source must hold rows in \[0, 5\), got \[-1, 2\]"):
        native_memory.place_rows(src, torch.tensor([-1, 2]), torch.tensor([0]), torch.empty(2, 3))
    with pytest.raises(ValueError, match=r"at must hold rows in \[0, 5\), got \[1, 9\]"):
        native_memory.zero_rows(src, torch.tensor([1, 9]))


@needs_native
@pytest.mark.parametrize("name", ["elman_tanh", "lstm_peephole", "gru"])
def test_native_row_moves_leave_every_value_as_it_was(name, monkeypatch):
    """The compiled row copies move the same bits as torch's ops: a training step with lengths,
    both directions, gives the same outputs, final states and gradients bit for bit."""
    torch.manual_seed(5)
    cell = CELLS[name](I, H)
    lens = torch.tensor(LENGTHS)
    B = lens.numel()
    x = torch.randn(T, B, I, requires_grad=True)
    state = tuple(torch.randn(B, *s, requires_grad=True) for s in cell.state_shapes())
    for reverse in (False, True):
        runs = []
        for fast in (True, False):
            monkeypatch.setattr(row_moves, "NATIVE_ROWS", fast)
            runs.append(_run_with_grads(cell, x, state, lens, reverse, "native"))
        for a, b in zip(runs[0], runs[1]):
            if isinstance(a, torch.Tensor):
                assert torch.equal(a, b)
            else:
                assert all(torch.equal(u, v) for u, v in zip(a, b))
