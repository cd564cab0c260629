"""A unidirectional stack with lengths on the compiled loops hands its packed rows from layer to
layer (rnnkit.engine.packed_stack): the same values as the layers one by one, checked against
the plain reference loop, and the stack only where nothing between the layers reads the padded
outputs."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnnkit.recurrent as recurrent_module
from cell_zoo import CELLS
from rnnkit import Recurrent, engine, layer_routes
from rnnkit.engine import packed_stack
from rnnkit.engine.kernels import kernel_for

pytestmark = pytest.mark.skipif(
    not engine.native_available(), reason="the compiled loops could not be built here"
)

I, H, T = 3, 5, 9
TOL = 1e-10
LENGTHS = torch.tensor([9, 2, 5, 9, 1, 7])
LOOP_CELLS = [name for name in CELLS if kernel_for(CELLS[name](I, H)) is not None]


def _spy(monkeypatch, name: str) -> list:
    """A list that grows by one at each call of ``rnnkit.recurrent.<name>``."""
    seen: list = []
    real = getattr(recurrent_module, name)

    def spy(*args):
        seen.append(1)
        return real(*args)

    monkeypatch.setattr(recurrent_module, name, spy)
    return seen


@pytest.fixture
def calls(monkeypatch):
    """How many times the layer took the packed stack."""
    return _spy(monkeypatch, "run_packed_stack")


def _layer(name: str, **kw) -> Recurrent:
    torch.manual_seed(0)
    return Recurrent(CELLS[name], I, H, num_layers=3, **kw).double()


def _inputs(layer: Recurrent, B: int = 6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=g, requires_grad=True)
    h0 = tuple(
        torch.randn(3, B, *s, dtype=torch.float64, generator=g, requires_grad=True)
        for s in layer.state_shapes
    )
    return x, h0


def _run(layer: Recurrent, x, h0, lengths, **kw):
    """Outputs, final states and the gradients of x, h_0 and every parameter for one upstream
    gradient of the outputs and final states."""
    out, h_n = layer(x, h0 if len(h0) > 1 else h0[0], lengths=lengths, **kw)
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    g = torch.Generator().manual_seed(2)
    dout = torch.randn(out.shape, dtype=out.dtype, generator=g)
    dh = [torch.randn(h.shape, dtype=h.dtype, generator=g) for h in h_n]
    loss = (out * dout).sum() + sum((h * d).sum() for h, d in zip(h_n, dh))
    wrt = [x, *h0, *layer.parameters()]
    grads = torch.autograd.grad(loss, wrt)
    return out.detach(), [h.detach() for h in h_n], grads


def _max_err(a, b) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a, b))


@pytest.mark.parametrize("name", LOOP_CELLS)
def test_stack_equals_layer_by_layer_and_the_reference(name, calls, monkeypatch):
    layer = _layer(name)
    x, h0 = _inputs(layer)
    got = _run(layer, x, h0, LENGTHS)
    assert len(calls) == 1
    monkeypatch.setattr(packed_stack, "PACKED_STACK", False)
    apart = _run(layer, x, h0, LENGTHS)
    assert len(calls) == 1  # the layers one by one
    layer.engine = "reference"
    ref = _run(layer, x, h0, LENGTHS)
    for other in (apart, ref):
        assert (got[0] - other[0]).abs().max().item() <= TOL
        assert _max_err(got[1], other[1]) <= TOL
        assert _max_err(got[2], other[2]) <= TOL
    # the outputs past each length are zero
    for b, n in enumerate(LENGTHS.tolist()):
        assert got[0][n:, b].abs().max().item() == 0.0 if n < T else True


def test_every_length_t_and_native_engine(calls, monkeypatch):
    """Lengths that are all T (no packing) under engine="native" take the stack too."""
    monkeypatch.setattr(layer_routes, "UNIFORM_LENGTHS", False)  # (else: no lengths at all)
    layer = _layer("gru")
    layer.engine = "native"
    x, h0 = _inputs(layer)
    full = torch.full((6,), T)
    got = _run(layer, x, h0, full)
    assert len(calls) == 1
    without = _run(layer, x, h0, None)
    assert len(calls) == 1
    assert (got[0] - without[0]).abs().max().item() <= TOL
    assert _max_err(got[2], without[2]) <= TOL
    # with the uniform-length rule on, the same lengths run the batch without lengths: the
    # very same call, so the same bits, and no stack
    monkeypatch.setattr(layer_routes, "UNIFORM_LENGTHS", True)
    again = _run(layer, x, h0, full)
    assert len(calls) == 1
    assert torch.equal(again[0], without[0])
    assert all(torch.equal(a, b) for a, b in zip(again[2], without[2]))


def test_batch_first_and_packed_sequence_input(calls):
    layer = _layer("elman_tanh", batch_first=True)
    x, h0 = _inputs(layer)
    xb = x.transpose(0, 1)
    out, h_n = layer(xb, h0[0], lengths=LENGTHS)
    assert len(calls) == 1
    layer.engine = "reference"
    ref, h_ref = layer(xb, h0[0], lengths=LENGTHS)
    assert (out - ref).abs().max().item() <= TOL
    assert (h_n - h_ref).abs().max().item() <= TOL
    layer.engine = None
    layer.batch_first = False
    packed = pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    out_p, h_p = layer(packed, h0[0])
    assert len(calls) == 2
    expected = pack_padded_sequence(ref, LENGTHS, batch_first=True, enforce_sorted=False)
    assert (out_p.data - expected.data).abs().max().item() <= TOL
    assert (h_p - h_ref).abs().max().item() <= TOL


def test_dropout_in_eval_takes_the_stack(calls):
    layer = _layer("gru", dropout=0.5).eval()
    x, h0 = _inputs(layer)
    with torch.no_grad():
        out, _ = layer(x, h0[0], lengths=LENGTHS)
        assert len(calls) == 1
        layer.engine = "reference"
        ref, _ = layer(x, h0[0], lengths=LENGTHS)
    assert (out - ref).abs().max().item() <= TOL


@pytest.mark.parametrize(
    "setup",
    [
        dict(bidirectional=True),
        dict(num_layers=1),
        dict(engine="reference"),
        dict(engine="autograd"),
        dict(checkpoint=4),
        dict(lengths=None),
    ],
    ids=lambda d: next(iter(d)),
)
def test_layers_apart_where_something_reads_the_padded_outputs(setup, calls):
    kw = dict(setup)
    lengths = kw.pop("lengths", LENGTHS)
    engine_name = kw.pop("engine", None)
    steps = kw.pop("checkpoint", None)
    layers = kw.pop("num_layers", 3)
    torch.manual_seed(0)
    layer = Recurrent(CELLS["gru"], H, H, num_layers=layers, **kw).double()
    layer.engine, layer.checkpoint = engine_name, steps
    x = torch.randn(T, 6, H, dtype=torch.float64)
    out, _ = layer(x, lengths=lengths)
    assert calls == []
    layer.engine, layer.checkpoint = "reference", None
    ref, _ = layer(x, lengths=lengths)
    assert (out - ref).abs().max().item() <= TOL


def test_a_cell_off_the_loops_keeps_the_layers_apart(calls):
    """A layer with a projected LSTM (no compiled loop) in the stack: no packed stack."""
    torch.manual_seed(0)
    layer = Recurrent(CELLS["lstm_proj"], I, H, num_layers=2).double()
    x, _ = _inputs(layer)
    layer(x, lengths=LENGTHS)
    assert calls == []


@pytest.mark.parametrize("name", ["gru", "lstm"])
def test_dropout_in_training_draws_the_same_masks(name, calls, monkeypatch):
    """Dropout between the layers in training: the packed stack draws its masks over the padded
    outputs from the same random stream as the layers one by one, so with the same seed the
    outputs, final states and gradients are the same bits."""
    layer = _layer(name, dropout=0.4)
    x, h0 = _inputs(layer)
    torch.manual_seed(7)
    got = _run(layer, x, h0, LENGTHS)
    assert len(calls) == 1
    monkeypatch.setattr(packed_stack, "PACKED_STACK", False)
    torch.manual_seed(7)
    apart = _run(layer, x, h0, LENGTHS)
    assert len(calls) == 1
    assert torch.equal(got[0], apart[0])
    assert all(torch.equal(a, b) for a, b in zip(got[1], apart[1]))
    assert all(torch.equal(a, b) for a, b in zip(got[2], apart[2]))
    # a different seed draws other masks: the dropout is really there
    torch.manual_seed(8)
    other = _run(layer, x, h0, LENGTHS)
    assert not torch.equal(got[0], other[0])


@pytest.mark.parametrize("name", ["elman_tanh", "gru", "lstm"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_residual_stack_equals_layer_by_layer_and_keeps_the_padding_zero(
    name, dropout, calls, monkeypatch
):
    """Residual connections (I = H: every layer, the first one included, adds its input) in the
    packed stack: the same bits as layer by layer, with and without dropout, the same values
    as the reference, and the outputs past each length zero although the input's padding is
    not."""
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name], H, H, num_layers=3, residual=True, dropout=dropout).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, 6, H, dtype=torch.float64, generator=g, requires_grad=True)
    h0 = tuple(
        torch.randn(3, 6, *s, dtype=torch.float64, generator=g, requires_grad=True)
        for s in layer.state_shapes
    )
    torch.manual_seed(3)
    got = _run(layer, x, h0, LENGTHS)
    assert len(calls) == 1
    for b, n in enumerate(LENGTHS.tolist()):
        assert got[0][n:, b].abs().sum().item() == 0.0
    monkeypatch.setattr(packed_stack, "PACKED_STACK", False)
    torch.manual_seed(3)
    apart = _run(layer, x, h0, LENGTHS)
    assert torch.equal(got[0], apart[0])
    assert all(torch.equal(a, b) for a, b in zip(got[1], apart[1]))
    assert all(torch.equal(a, b) for a, b in zip(got[2], apart[2]))
    if not dropout:
        layer.engine = "reference"
        ref = _run(layer, x, h0, LENGTHS)
        assert (got[0] - ref[0]).abs().max().item() <= TOL
        assert _max_err(got[2], ref[2]) <= TOL


# -- a bidirectional layer's two directions from one gather ----------------------------------


@pytest.fixture
def pair_calls(monkeypatch):
    """How many times a bidirectional layer took the shared gather."""
    return _spy(monkeypatch, "run_bidirectional_layer")


@pytest.mark.parametrize("name", ["elman_tanh", "gru", "lstm", "nas"])
@pytest.mark.parametrize("layers", [1, 2])
def test_bidirectional_shared_gather_equals_two_gathers(name, layers, pair_calls, monkeypatch):
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name], I, H, num_layers=layers, bidirectional=True).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, 6, I, dtype=torch.float64, generator=g, requires_grad=True)
    h0 = tuple(
        torch.randn(2 * layers, 6, *s, dtype=torch.float64, generator=g, requires_grad=True)
        for s in layer.state_shapes
    )
    got = _run(layer, x, h0, LENGTHS)
    assert len(pair_calls) == layers
    monkeypatch.setattr(packed_stack, "SHARED_GATHER", False)
    apart = _run(layer, x, h0, LENGTHS)
    assert len(pair_calls) == layers
    assert torch.equal(got[0], apart[0])
    assert all(torch.equal(a, b) for a, b in zip(got[1], apart[1]))
    assert all(torch.equal(a, b) for a, b in zip(got[2], apart[2]))
    layer.engine = "reference"
    ref = _run(layer, x, h0, LENGTHS)
    assert (got[0] - ref[0]).abs().max().item() <= TOL
    assert _max_err(got[1], ref[1]) <= TOL
    assert _max_err(got[2], ref[2]) <= TOL


@pytest.mark.parametrize("setup", [dict(checkpoint=4), dict(engine="reference"), dict()])
def test_bidirectional_shared_gather_only_on_the_loops_with_lengths(setup, pair_calls):
    torch.manual_seed(0)
    layer = Recurrent(CELLS["gru"], I, H, bidirectional=True).double()
    layer.engine, layer.checkpoint = setup.get("engine"), setup.get("checkpoint")
    x = torch.randn(T, 6, I, dtype=torch.float64)
    layer(x, lengths=None if not setup else LENGTHS)
    assert pair_calls == []


def test_gather_two_against_two_gathers_and_its_derivatives():
    """row_moves.gather_two: the two plans' packed rows, a backward that is the sum of the two
    scatters, and (create_graph) a differentiable one: gradcheck and gradgradcheck."""
    from rnnkit.engine.packing import _indices, make_plan
    from rnnkit.engine.row_moves import gather_rows, gather_two

    lengths = torch.tensor([4, 1, 3, 4, 2])
    T_, B = 4, 5
    maps = [_indices(make_plan(T_, B, lengths, rev), torch.device("cpu")) for rev in (False, True)]
    g = torch.Generator().manual_seed(0)
    flat = torch.randn(T_ * B, 3, dtype=torch.float64, generator=g, requires_grad=True)
    a, b = gather_two(flat, *maps)
    assert torch.equal(a, gather_rows(flat, *maps[0]))
    assert torch.equal(b, gather_rows(flat, *maps[1]))
    da, db = torch.randn_like(a), torch.randn_like(b)
    (got,) = torch.autograd.grad((a, b), flat, (da, db))
    expected = torch.zeros_like(flat)
    expected.index_add_(0, maps[0][0], da)
    expected.index_add_(0, maps[1][0], db)
    assert torch.equal(got, expected)

    def fn(t):
        first, second = gather_two(t, *maps)
        return first.sin().sum() + (second**2).sum()

    assert torch.autograd.gradcheck(fn, (flat,))
    assert torch.autograd.gradgradcheck(fn, (flat,))


def test_add_rows_against_index_add_and_its_checks():
    from rnnkit.engine import native_memory

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        src = torch.randn(300, 70, dtype=dtype, generator=g)
        at = torch.randperm(400, generator=g)[:300]
        out = torch.randn(400, 70, dtype=dtype, generator=g)
        expected = out.clone().index_add_(0, at, src)
        assert native_memory.add_rows(src, at, out) is out
        assert torch.equal(out, expected)
    with pytest.raises(ValueError, match=r"at must hold rows in \[0, 4\)"):
        native_memory.add_rows(torch.ones(2, 3), torch.tensor([0, 4]), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="out must hold rows like src's"):
        native_memory.add_rows(torch.ones(2, 3), torch.tensor([0, 1]), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="float32 or float64"):
        native_memory.add_rows(torch.ones(2, 3).half(), torch.tensor([0, 1]), torch.zeros(4, 3))
