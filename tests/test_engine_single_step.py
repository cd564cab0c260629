"""One time step on the CPU (``rnnkit.engine.single_step``): which calls "auto" runs as torch's
one-step op, and that it changes no value. Outputs, final states and every gradient equal the
reference runner's (float64), and a sequence fed one step at a time gives the whole call's
outputs."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch.func import functional_call

import rnnkit
from rnnkit import Recurrent
from rnnkit.cells import ElmanCell, GRUCell, LSTMCell, NASCell
from rnnkit.engine import choose, fused, single_step
from rnnkit.engine.single_step import SINGLE_STEP_MAX, run_single_step

I, H, B = 3, 5, 4

TORCH_MATH = {
    "lstm": lambda **kw: rnnkit.LSTM(I, H, **kw),
    "gru": lambda **kw: rnnkit.GRU(I, H, **kw),
    "rnn_tanh": lambda **kw: rnnkit.RNN(I, H, **kw),
    "rnn_relu": lambda **kw: rnnkit.RNN(I, H, nonlinearity="relu", **kw),
}


def _twins(make, **kw):
    """(layer on "auto", the same weights on the reference engine), float64."""
    layer = make(**kw).double()
    ref = make(**kw).double()
    ref.load_state_dict(layer.state_dict())
    ref.engine = "reference"
    return layer, ref


def _states(layer, batch: int, gen: torch.Generator):
    """A random initial state for ``layer`` (one tensor, or a tuple for an LSTM)."""
    n = layer.num_layers * (2 if layer.bidirectional else 1)
    shapes = layer.state_shapes
    parts = tuple(torch.randn(n, batch, *s, generator=gen, dtype=torch.float64) for s in shapes)
    return parts if len(parts) > 1 else parts[0]


def _run(layer, x, h0):
    """Outputs, final states and the gradients of a random projection of them with respect to
    x, h0 and every parameter."""
    h0_parts = h0 if isinstance(h0, tuple) else (h0,)
    inputs = [x.requires_grad_(), *(h.requires_grad_() for h in h0_parts)]
    out, h_n = layer(x, h0)
    finals = h_n if isinstance(h_n, tuple) else (h_n,)
    gen = torch.Generator().manual_seed(7)
    loss = sum(
        (t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (out, *finals)
    )
    grads = torch.autograd.grad(loss, [*inputs, *layer.parameters()])
    return [out, *finals, *grads]


def _whole_and_streamed(layer, x):
    """(outputs, final state) of one call over ``x``, then the same fed one step at a time,
    each call from the state the one before returned."""
    with torch.no_grad():
        whole, whole_final = layer(x)
        state, outs = None, []
        for t in range(x.shape[0]):
            out, state = layer(x[t : t + 1], state)
            outs.append(out)
    return whole, whole_final, torch.cat(outs), state


def _assert_close(got, want, tol=1e-12):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", sorted(TORCH_MATH))
@pytest.mark.parametrize("bias", [True, False])
def test_one_step_equals_the_reference(kind, bias, monkeypatch):
    layer, ref = _twins(TORCH_MATH[kind], bias=bias, num_layers=2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, B, I, generator=gen, dtype=torch.float64)
    h0 = _states(layer, B, gen)
    taken: list[str] = []
    real = single_step.run_single_step

    def spy(cell, *args):
        taken.append(fused.fused_kind(cell))
        return real(cell, *args)

    monkeypatch.setitem(rnnkit.engine._PATHS, "step", spy)
    got = _run(layer, x.clone(), tuple(h.clone() for h in h0) if isinstance(h0, tuple) else h0)
    assert taken == [kind, kind]  # both layers took the one-step op
    want = _run(ref, x.clone(), tuple(h.clone() for h in h0) if isinstance(h0, tuple) else h0)
    _assert_close(got, want)


@pytest.mark.parametrize("kind", sorted(TORCH_MATH))
def test_streaming_one_step_at_a_time_equals_the_whole_sequence(kind):
    """Generation's pattern: the state of each call is passed to the next."""
    layer = TORCH_MATH[kind](num_layers=2).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(9, B, I, generator=gen, dtype=torch.float64)
    whole, whole_final, streamed_out, state = _whole_and_streamed(layer, x)
    torch.testing.assert_close(streamed_out, whole, rtol=1e-12, atol=1e-12)
    finals = whole_final if isinstance(whole_final, tuple) else (whole_final,)
    streamed = state if isinstance(state, tuple) else (state,)
    _assert_close(list(streamed), list(finals))


def test_bidirectional_and_batch_first_and_unbatched_one_step():
    layer, ref = _twins(TORCH_MATH["lstm"], bidirectional=True, batch_first=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(B, 1, I, generator=gen, dtype=torch.float64)
    h0 = _states(layer, B, gen)
    got = _run(layer, x.clone(), tuple(h.clone() for h in h0))
    want = _run(ref, x.clone(), tuple(h.clone() for h in h0))
    _assert_close(got, want)
    # unbatched (T, I) with a state of (D·L, H)
    x1 = torch.randn(1, I, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        out, (h, c) = layer(x1)
        out_ref, (h_ref, c_ref) = ref(x1)
    _assert_close([out, h, c], [out_ref, h_ref, c_ref])


def test_lengths_of_one_step():
    layer, ref = _twins(TORCH_MATH["gru"])
    x = torch.randn(1, B, I, dtype=torch.float64)
    lengths = torch.ones(B, dtype=torch.int64)
    with torch.no_grad():
        out, h = layer(x, lengths=lengths)
        out_ref, h_ref = ref(x, lengths=lengths)
    _assert_close([out, h], [out_ref, h_ref])


@pytest.mark.skipif(not rnnkit.engine.native_available(), reason="no compiled loop here")
def test_which_calls_take_one_step():
    x = torch.randn(1, B, I)
    for kind, make in TORCH_MATH.items():
        assert choose(make().cells[0], x, None) == "step", kind
    # more than one step, or a large batch: the sequence paths
    assert choose(rnnkit.GRU(I, H).cells[0], torch.randn(2, B, I), None) == "native"
    wide = SINGLE_STEP_MAX // H + 1
    assert choose(rnnkit.GRU(I, H).cells[0], torch.randn(1, wide, I), None) == "native"
    assert choose(rnnkit.GRU(I, H).cells[0], torch.randn(1, wide - 1, I), None) == "step"
    # cells without a torch one-step op: the compiled loop; the projected LSTM: torch's LSTM op
    others = [
        LSTMCell(I, H, peephole=True),
        LSTMCell(I, H, proj_size=2),
        GRUCell(I, H, reset_after=False),
        NASCell(I, H),
    ]
    for cell, path in zip(others, ["native", "fused", "native", "native"]):
        assert choose(cell, x, None) == path, cell
    # a float64 step of the same sizes, and a step off the default dtype: still one step
    assert choose(rnnkit.RNN(I, H).double().cells[0], x.double(), None) == "step"


@pytest.mark.skipif(not rnnkit.engine.native_available(), reason="needs the compiled loops")
def test_explicit_engine_is_not_the_one_step_op(monkeypatch):
    layer = rnnkit.LSTM(I, H)
    layer.engine = "native"
    monkeypatch.setitem(rnnkit.engine._PATHS, "step", None)  # would fail if taken
    out, _ = layer(torch.randn(1, B, I))
    ref = rnnkit.LSTM(I, H)
    ref.load_state_dict(layer.state_dict())
    ref.engine = "reference"
    x = torch.randn(1, B, I)
    torch.testing.assert_close(layer(x)[0], ref(x)[0])


def test_functional_call_swaps_the_weights():
    layer = rnnkit.LSTM(I, H).double()
    other = rnnkit.LSTM(I, H).double()
    ref = rnnkit.LSTM(I, H).double()
    ref.load_state_dict(other.state_dict())
    ref.engine = "reference"
    x = torch.randn(1, B, I, dtype=torch.float64)
    with torch.no_grad():
        got, _ = functional_call(layer, dict(other.named_parameters()), (x,))
        want, _ = ref(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        partial(LSTMCell, peephole=True),
        partial(LSTMCell, proj_size=2),
        partial(GRUCell, reset_after=False),
        NASCell,
        ElmanCell,
    ],
)
def test_the_generic_step_equals_the_reference(make):
    """Called directly, the one step runs any cell through its own step."""
    layer, ref = _twins(lambda: Recurrent(make, I, H))
    cell = layer.cells[0]
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(1, B, I, generator=gen, dtype=torch.float64)
    state = tuple(
        torch.randn(B, *s, generator=gen, dtype=torch.float64) for s in cell.state_shapes()
    )
    out, final = run_single_step(cell, x, state)
    h0 = tuple(s.unsqueeze(0) for s in state)
    with torch.no_grad():
        out_ref, final_ref = ref(x, h0 if len(h0) > 1 else h0[0])
    final_ref = final_ref if isinstance(final_ref, tuple) else (final_ref,)
    _assert_close([out, *final], [out_ref, *(f[0] for f in final_ref)])


def test_gradcheck_one_step():
    layer = rnnkit.GRU(2, 3).double()
    x = torch.randn(1, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    assert choose(layer.cells[0], x, None) == "step"
    assert torch.autograd.gradcheck(lambda x, h: layer(x, h)[0], (x, h0))


def test_more_than_one_step_is_refused():
    cell = GRUCell(I, H)
    with pytest.raises(
        ValueError, match=r"x must hold one time step \(1, B, \.\.\.\), got shape \(2, 4, 3\)"
    ):
        run_single_step(cell, torch.randn(2, B, I), (torch.zeros(B, H),))


@pytest.mark.skipif(not rnnkit.engine.native_available(), reason="no compiled loop here")
@pytest.mark.parametrize("kind", sorted(TORCH_MATH))
def test_the_compiled_loop_streams_bit_for_bit(kind):
    """engine="native" runs one-step chunks and the whole call in the same loop (recurrent.md):
    bit for bit where the BLAS rounds a row of the input projection the same whatever the
    number of rows (it need not: MKL on an AVX-512 CPU picks its kernel by the row count), and
    to float32 rounding everywhere."""
    layer = TORCH_MATH[kind](num_layers=2)
    layer.engine = "native"
    T = 6
    x = torch.randn(T, B, I, generator=torch.Generator().manual_seed(5))
    whole, _, streamed_out, _ = _whole_and_streamed(layer, x)
    torch.testing.assert_close(streamed_out, whole, rtol=1e-6, atol=1e-6)
    G = layer.cells[0].weight_ih.shape[0]
    if all(_blas_rows_alike(T, B, k, G) for k in (I, H)):
        assert torch.equal(streamed_out, whole)


def _blas_rows_alike(T: int, B: int, k: int, n: int) -> bool:
    """Whether this machine's BLAS gives an (T·B, k) · (k, n) product's rows bit for bit as T
    products of B rows do (random data)."""
    gen = torch.Generator().manual_seed(11)
    a, w = torch.randn(T * B, k, generator=gen), torch.randn(n, k, generator=gen)
    rows = torch.cat([torch.nn.functional.linear(part, w) for part in a.split(B)])
    return torch.equal(torch.nn.functional.linear(a, w), rows)
