"""Small batches read their lengths as a Python list (``packing.LIST_READ_MAX``), larger ones
and those inside ``torch.func`` transforms through NumPy. Both readings must agree on
everything they feed: the checked lengths, the shortest and longest, the errors, the plan and
so the layer's outputs and gradients."""

from __future__ import annotations

import pytest
import torch

import rnnkit.loop as loop_module
from rnnkit import GRU, Recurrent
from rnnkit.cells import LSTMCell
from rnnkit.engine import packing
from rnnkit.engine.packing import make_plan
from rnnkit.loop import checked_lengths, run_cell

T = 9
PLAN_FIELDS = ("n", "off", "index", "perm", "unperm", "last", "last_step", "padding", "source")


def _lengths(kind: str) -> torch.Tensor:
    base = torch.tensor([4, 9, 1, 9, 6, 2, 6], dtype=torch.int64)
    if kind == "int64":
        return base
    if kind == "strided":  # every other element of a longer tensor: not contiguous
        return torch.stack([base, base + 100]).t().reshape(-1)[::2]
    return base.to(getattr(torch, kind))


@pytest.fixture(params=[0, 256], ids=["numpy", "list"])
def reading(request, monkeypatch):
    monkeypatch.setattr(packing, "LIST_READ_MAX", request.param)
    return request.param


@pytest.mark.parametrize("kind", ["int64", "int32", "int16", "uint8", "strided"])
def test_both_readings_check_the_same(kind, monkeypatch):
    """The checked tensor (int64), its shortest and longest length, and every plan field are
    the same under both readings, whatever the integer dtype or layout of the lengths."""
    lengths = _lengths(kind)
    B = lengths.numel()
    got = {}
    for limit in (0, 256):
        monkeypatch.setattr(packing, "LIST_READ_MAX", limit)
        checked, lo, hi = checked_lengths(lengths, B, T, torch.device("cpu"))
        assert checked.dtype == torch.int64
        assert (lo, hi) == (int(lengths.min()), int(lengths.max())) == (1, 9)
        plans = [make_plan(T, B, lengths, reverse, turn=not reverse) for reverse in (False, True)]
        got[limit] = (checked, plans)
    (c0, p0), (c1, p1) = got[0], got[256]
    assert torch.equal(c0, c1) and c0.tolist() == [int(v) for v in lengths]
    for a, b in zip(p0, p1):
        assert a is not b  # two cache keys (bytes, tuple): each plan built from its own reading
        assert (a.steps, a.rows, a.turn, a.n_list, a.off_list) == (
            b.steps,
            b.rows,
            b.turn,
            b.n_list,
            b.off_list,
        )
        for name in PLAN_FIELDS:
            assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_an_int64_tensor_on_the_device_comes_back_as_it_is(reading):
    lengths = torch.tensor([3, 1, 2])
    assert checked_lengths(lengths, 3, 4, torch.device("cpu"))[0] is lengths
    narrow = lengths.int()
    assert checked_lengths(narrow, 3, 4, torch.device("cpu"))[0] is not narrow


@pytest.mark.parametrize(
    "values, message",
    [([0, 2], "got values from 0 to 2"), ([6, 2], "got values from 2 to 6")],
)
def test_both_readings_reject_the_same_lengths(reading, values, message):
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\], " + message):
        GRU(3, 4)(torch.zeros(5, 2, 3), lengths=torch.tensor(values))


def test_small_batches_never_reach_numpy(monkeypatch):
    """Up to ``LIST_READ_MAX`` rows the layer runs without NumPy's reading; one row more and
    it reads through NumPy again."""
    calls = []

    def spy(lengths):
        calls.append(lengths.numel())
        return reading(lengths)

    reading = packing.lengths_values
    monkeypatch.setattr(packing, "lengths_values", spy)
    monkeypatch.setattr(loop_module, "lengths_values", spy)
    monkeypatch.setattr(packing, "LIST_READ_MAX", 5)
    layer = GRU(3, 4)
    for B, expected in ((5, []), (6, [6, 6])):  # checked_lengths, then the plan's key
        calls.clear()
        lengths = torch.arange(B) % 4 + 2
        layer(torch.randn(T, B, 3), lengths=lengths)
        assert calls == expected


@pytest.mark.parametrize("bidirectional", [False, True])
def test_the_layer_equals_the_reference_under_both_readings(reading, bidirectional):
    """Outputs, final states and every gradient of a peephole LSTM with lengths against the
    masked reference loop (float64), input padding NaN (never read)."""
    torch.manual_seed(0)
    layer = Recurrent(
        lambda i, h: LSTMCell(i, h, peephole=True), 3, 4, bidirectional=bidirectional
    ).double()
    lengths = _lengths("int32")
    B = lengths.numel()
    x = torch.randn(T, B, 3, dtype=torch.float64)
    for b, n in enumerate(lengths.tolist()):
        x[n:, b] = float("nan")
    x.requires_grad_(True)
    out, (h, c) = layer(x, lengths=lengths)
    dout = torch.randn_like(out)
    loss = (out * dout).sum() + h.sum() + (2 * c).sum()
    grads = torch.autograd.grad(loss, [x, *layer.parameters()])

    valid = torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)
    xr = x.detach().where(valid.unsqueeze(-1), 0.0).requires_grad_(True)
    outs, hs, cs = [], [], []
    for d in range(layer.num_directions):
        cell = layer.cell_at(0, d)
        zero = torch.zeros(B, 4, dtype=torch.float64)
        xin = xr if d == 0 else loop_module.reverse_padded(xr, lengths)
        o, (hd, cd) = run_cell(cell, xin, (zero, zero), lengths.long())
        outs.append(o if d == 0 else loop_module.reverse_padded(o, lengths))
        hs.append(hd)
        cs.append(cd)
    ref = torch.cat(outs, -1)
    ref_loss = (ref * dout).sum() + torch.stack(hs).sum() + (2 * torch.stack(cs)).sum()
    ref_grads = torch.autograd.grad(ref_loss, [xr, *layer.parameters()])
    assert (out - ref).abs().max().item() < 1e-12
    assert (h - torch.stack(hs)).abs().max().item() < 1e-12
    assert (c - torch.stack(cs)).abs().max().item() < 1e-12
    for g, r in zip(grads, ref_grads):
        assert not torch.isnan(g).any()
        assert (g - r).abs().max().item() < 1e-10
