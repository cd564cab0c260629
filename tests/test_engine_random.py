"""The engine against the reference runner on layers drawn at random: every cell, sizes that
cross the loops' lines (the masked layout, the split by hidden units, the own kernel's column
split, row blocks that end inside a panel), lengths or none, one to three layers, one or two
directions, given or zero initial states, biases or none, recomputation in segments. Outputs,
final states and the gradients of the input, the initial states and every parameter must
agree in float64 to 1e-9.

Each case is drawn from its own seed, so a failure names a configuration that reruns alone
(``pytest tests/test_engine_random.py -k "seed-17"``), and the draw is printed in the
assertion's message.
"""

from __future__ import annotations

import random

import pytest
import torch

from cell_zoo import CELLS
from rnnkit import Recurrent
from rnnkit.engine import masked, native

pytestmark = pytest.mark.skipif(not native.available(), reason="no compiled loops here")

# (the projected LSTM has no compiled loop: it takes the fused path, tested elsewhere)
NAMES = sorted(name for name in CELLS if name != "lstm_proj")
SEEDS = range(120)


def _draw(seed: int) -> dict:
    """One configuration, the same for the same seed."""
    rng = random.Random(seed)
    T, B = rng.choice([1, 2, 5, 13, 30]), rng.choice([1, 2, 3, 7, 16, 33])
    lengths = None
    if rng.random() < 0.7:
        lengths = [rng.randint(1, T) for _ in range(B)]
        if rng.random() < 0.5:  # a batch whose longest sequence runs all T steps
            lengths[rng.randrange(B)] = T
    return {
        "name": NAMES[seed % len(NAMES)],  # every cell, ten times over
        "I": rng.choice([3, 8, 17, 40]),
        "H": rng.choice([5, 16, 33, 64, 70]),
        "layers": rng.choice([1, 1, 2, 3]),
        "bidirectional": rng.random() < 0.5,
        "T": T,
        "B": B,
        "lengths": lengths,
        "bias": rng.random() < 0.8,
        # the layout of a batch with lengths: the kernels' own line, never masked, always
        "masked_max": rng.choice([None, None, 0, 10**9]),
        "checkpoint": rng.choice([None, None, None, 4]),
        "initial_state": rng.random() < 0.5,
    }


def _make(name: str, bias: bool):
    def make(i: int, h: int):
        if bias:
            return CELLS[name](i, h)
        try:
            return CELLS[name](i, h, bias=False)
        except TypeError:  # a cell with no such option (its biases are part of its math)
            return CELLS[name](i, h)

    return make


def _results(c: dict, seed: int, engine: str) -> list[torch.Tensor | None]:
    torch.manual_seed(seed)
    layer = Recurrent(
        _make(c["name"], c["bias"]),
        c["I"],
        c["H"],
        c["layers"],
        bidirectional=c["bidirectional"],
    ).double()
    layer.engine = engine
    if engine == "native" and c["checkpoint"]:
        layer.checkpoint = c["checkpoint"]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(c["T"], c["B"], c["I"], generator=gen, dtype=torch.float64)
    x.requires_grad_(True)
    lengths = None if c["lengths"] is None else torch.tensor(c["lengths"])
    states: tuple[torch.Tensor, ...] = ()
    if c["initial_state"]:
        with torch.no_grad():
            _, shapes = layer(x[:1].detach())
        shapes = shapes if isinstance(shapes, tuple) else (shapes,)
        states = tuple(
            torch.randn(s.shape, generator=gen, dtype=torch.float64).requires_grad_(True)
            for s in shapes
        )
    args = () if not states else (states if len(states) > 1 else states[0],)
    out, h_n = layer(x, *args, lengths=lengths)
    finals = h_n if isinstance(h_n, tuple) else (h_n,)
    loss = sum(
        (t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in (out, *finals)
    )
    inputs = [x, *states, *layer.parameters()]
    return [out, *finals, *torch.autograd.grad(loss, inputs, allow_unused=True)]


@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: f"seed-{s}")
def test_the_engine_agrees_with_the_reference_on_a_random_layer(seed, monkeypatch):
    c = _draw(seed)
    monkeypatch.setattr(masked, "MASKED_MAX", c["masked_max"])
    expected = _results(c, seed, "reference")
    got = _results(c, seed, "native")
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected)):
        assert (a is None) == (b is None), f"result {k} of {c}"
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=lambda m: f"{c}: {m}")


def test_the_draws_cover_what_they_are_for():
    """The seeds reach every cell and both sides of each switch of the draw."""
    draws = [_draw(seed) for seed in SEEDS]
    assert {c["name"] for c in draws} == set(NAMES)
    for key in ("bidirectional", "bias", "initial_state"):
        assert {c[key] for c in draws} == {False, True}
    assert {c["lengths"] is None for c in draws} == {False, True}
    assert {c["masked_max"] for c in draws} == {None, 0, 10**9}
    assert {c["checkpoint"] for c in draws} == {None, 4}
    assert {c["layers"] for c in draws} == {1, 2, 3}
