"""A long LSTM training call on oneDNN in chunks of steps (``rnnkit.engine.fused.chunk_steps``):
when it happens, and that it changes no value: outputs, final states and every gradient equal
the reference runner's (float64) and torch.nn.LSTM's one call (float32, to its rounding)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.cells import LSTMCell
from rnnkit.engine import fused

I, H, B, T = 3, 5, 4, 23
ROWS = 12  # rows (steps x batch) per chunk in these tests: T * B // ROWS = 7 chunks of 4 steps


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks at this file's sizes, float64 included; counts torch op calls by steps."""
    monkeypatch.setattr(fused, "CHUNK_ROWS", ROWS)
    monkeypatch.setattr(fused, "CHUNK_MIN_OUTPUT", 1)
    monkeypatch.setattr(fused, "CHUNK_DTYPES", (torch.float32, torch.float64))
    calls: list[int] = []
    real = fused._op

    def spy(cell, x, *args, **kwargs):
        calls.append(x.shape[0])
        return real(cell, x, *args, **kwargs)

    monkeypatch.setattr(fused, "_op", spy)
    return calls


def _run(layer, x, h0=None, **kw):
    """Outputs, final states and the gradients of a random projection of them with respect
    to x, h0 and every parameter."""
    out, (h, c) = layer(x, h0, **kw)
    gen = torch.Generator().manual_seed(3)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (out, h, c))
    inputs = [x, *(h0 or ()), *layer.parameters()]
    return [out, h, c, *torch.autograd.grad(loss, inputs)]


def _pair(layers: int, bi: bool, **extra):
    """(default layer, its twin on the reference engine), float64, the same weights."""
    layer = rnnkit.LSTM(I, H, num_layers=layers, bidirectional=bi, **extra).double()
    ref = rnnkit.LSTM(I, H, num_layers=layers, bidirectional=bi, **extra).double()
    ref.load_state_dict(layer.state_dict())
    ref.engine = "reference"
    return layer, ref


def _assert_close(got, want, tol):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("layers,bi", [(1, False), (1, True), (2, False), (2, True)])
@pytest.mark.parametrize("with_h0", [False, True])
def test_chunks_equal_reference(layers, bi, with_h0, small_chunks, stack_calls):
    """float64: every layer-direction runs as ceil(T / 4) = 6 calls of 4, 4, 4, 4, 4, 3 steps,
    the stack layer by layer; outputs, final states and every gradient equal the reference
    loop's."""
    torch.manual_seed(0)
    layer, ref = _pair(layers, bi)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    D = 2 if bi else 1
    h0 = None
    if with_h0:
        h0 = tuple(
            torch.randn(D * layers, B, H, dtype=torch.float64, requires_grad=True) for _ in range(2)
        )
    got = _run(layer, x, h0)
    assert small_chunks == [4, 4, 4, 4, 4, 3] * (D * layers)
    assert stack_calls == []
    small_chunks.clear()
    want = _run(ref, x, h0)
    assert small_chunks == []  # the reference never calls torch's op
    _assert_close(got, want, 1e-10)


@pytest.mark.skipif(not rnnkit.engine.native_available(), reason="needs the compiled loops")
def test_chunks_with_lengths_equal_reference(small_chunks, monkeypatch):
    """With lengths (more than FUSED_SEGMENT_LIMIT distinct ones) on the fused routes: the
    steps before the shortest sequence ends go to torch's op in chunks, the rest to the
    compiled loop; the results equal the reference's, zero past each length."""
    monkeypatch.setattr(fused, "LOOP_WITH_LENGTHS", False)  # (else "auto" takes the loop)
    torch.manual_seed(1)
    layer, ref = _pair(1, True)
    n = 12
    x = torch.randn(T, n, I, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12])
    assert fused.fused_route(layer.cells[0], x, lengths) == "head"
    got = _run(layer, x, lengths=lengths)
    # the head: 12 steps of 12 rows = 144 rows, 12 chunks of one step each, per direction
    assert small_chunks == [1] * 24
    want = _run(ref, x, lengths=lengths)
    _assert_close(got, want, 1e-10)
    assert got[0][lengths[-1] :, -1].abs().max() == 0


def test_chunks_of_segments_equal_reference(small_chunks, monkeypatch):
    """With few distinct lengths on the fused routes each run of equal active rows is a call
    of torch's op ("segments"), and a long one is cut into chunks like a whole sequence; the
    results equal the reference's."""
    monkeypatch.setattr(fused, "LOOP_WITH_LENGTHS", False)
    torch.manual_seed(4)
    layer, ref = _pair(2, True)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([23, 9, 23, 2])
    assert fused.fused_route(layer.cells[0], x, lengths) == "segments"
    got = _run(layer, x, lengths=lengths)
    # segments of 2 steps x 4 rows, 7 x 3 and 14 x 2: 8, 21 and 28 rows, so one, one and two
    # calls (28 // 12 = 2 chunks of 7 steps), per layer-direction
    assert small_chunks == [2, 7, 7, 7] * 4
    want = _run(ref, x, lengths=lengths)
    _assert_close(got, want, 1e-10)


def test_float32_chunks_match_torch_and_one_call_is_bitwise(small_chunks):
    """float32 on oneDNN: the chunks agree with torch.nn.LSTM's single call to float32
    rounding (the weight gradients are summed chunk by chunk); with CHUNK_ROWS = 0 the layer
    makes torch.nn.LSTM's own call and agrees bit for bit."""
    torch.manual_seed(2)
    theirs = nn.LSTM(I, H, 2, bidirectional=True)
    ours = rnnkit.LSTM(I, H, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(T, B, I, requires_grad=True)
    want = _run(theirs, x)
    got = _run(ours, x)
    assert len(small_chunks) == 6 * 4
    _assert_close(got, want, 1e-5)
    small_chunks.clear()
    fused.CHUNK_ROWS = 0  # (the fixture's monkeypatch restores it)
    got = _run(ours, x)
    assert small_chunks == [T]  # the whole stack in one call
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_no_chunks_without_a_training_pass(small_chunks):
    """Inference (no_grad, or nothing requiring a gradient) is one call: the chunks save only
    the backward pass's memory."""
    torch.manual_seed(3)
    layer = rnnkit.LSTM(I, H)
    x = torch.randn(T, B, I)
    with torch.no_grad():
        a, _ = layer(x)
    assert small_chunks == [T]
    layer.requires_grad_(False)
    b, _ = layer(x)
    assert small_chunks == [T, T]
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)  # (oneDNN's training mode)
    layer.requires_grad_(True)
    c, _ = layer(x)
    assert len(small_chunks) == 2 + 6
    torch.testing.assert_close(c, a, rtol=1e-6, atol=1e-6)


def _cells(**kw) -> tuple[LSTMCell, ...]:
    return (LSTMCell(I, H, **kw),)


def test_chunk_steps_rule():
    """The default rule: a float32 CPU training call of a plain LSTM whose T·B reaches
    2·CHUNK_ROWS and whose output T·B·H reaches CHUNK_MIN_OUTPUT, cut into T·B // CHUNK_ROWS
    chunks; one call otherwise."""
    rows, least = fused.CHUNK_ROWS, fused.CHUNK_MIN_OUTPUT
    big_h = least // (2 * rows) + 1  # T·B = 2·CHUNK_ROWS rows reach the output threshold
    cell = LSTMCell(2, big_h)
    T_ = 4 * rows // 64  # B = 64: T·B = 4·CHUNK_ROWS rows
    x = torch.empty(T_, 64, 2, requires_grad=True)
    assert fused.chunk_steps((cell,), x) == -(-T_ // 4)
    x_odd = torch.empty(T_ + 1, 64, 2, requires_grad=True)  # still 4 chunks, one shorter
    assert fused.chunk_steps((cell,), x_odd) == -(-(T_ + 1) // 4)
    with torch.no_grad():
        assert fused.chunk_steps((cell,), x) is None
    assert fused.chunk_steps((cell,), x.double()) is None  # torch's generic kernel
    short = torch.empty(2 * rows // 64 - 1, 64, 2, requires_grad=True)  # under 2·CHUNK_ROWS
    assert fused.chunk_steps((cell,), short) is None
    small = LSTMCell(2, max(1, least // (4 * rows) - 1))  # output under CHUNK_MIN_OUTPUT
    assert fused.chunk_steps((small,), x) is None
    assert fused.chunk_steps((LSTMCell(2, big_h, peephole=True),), x) is None
    assert fused.chunk_steps((LSTMCell(2, big_h, proj_size=3),), x) is None
    frozen = LSTMCell(2, big_h).requires_grad_(False)
    assert fused.chunk_steps((frozen,), x.detach()) is None  # nothing needs a gradient
    assert fused.chunk_steps((frozen,), x) == -(-T_ // 4)  # the input's gradient does
