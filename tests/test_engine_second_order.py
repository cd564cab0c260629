"""Second derivatives through the engine (``create_graph=True``): every path gives the
reference loop's Hessian-vector products, for every cell, with and without lengths, both
directions, with and without checkpointed segments; gradgradcheck on the compiled loops."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from cell_zoo import CELLS
from rnnkit import Recurrent, engine
from rnnkit.cells import GRUCell, LSTMCell, NASCell
from rnnkit.engine import fused
from rnnkit.engine.kernels import kernel_for
from test_engine import CASES, LENGTHS, _paths

TOL = 1e-10  # relative to each tensor's largest entry (second derivatives reach 1e4 here)
I, H, T = 3, 4, 6

needs_native = pytest.mark.skipif(
    not engine.native_available(), reason="the compiled loops could not be built here"
)


def _inputs(cell, seed=0):
    gen = torch.Generator().manual_seed(seed)
    B = len(LENGTHS)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64).requires_grad_()
    state = tuple(
        torch.randn(B, *s, generator=gen, dtype=torch.float64).requires_grad_()
        for s in cell.state_shapes()
    )
    return x, state


def _second_order(cell, x, state, lengths, reverse, path, checkpoint=None):
    """First derivatives of a loss with ``create_graph=True``, then the derivative of a
    non-linear function of them (so the Hessian itself is exercised, not only its action on
    a constant vector)."""
    out, final = engine.run(
        cell, x, state, lengths, reverse=reverse, engine=path, checkpoint=checkpoint
    )
    gen = torch.Generator().manual_seed(1)
    loss = (out.tanh() * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    loss = loss + sum(
        (f * f * torch.randn(f.shape, generator=gen, dtype=f.dtype)).sum() for f in final
    )
    wrt = [x, *state, *cell.parameters()]
    grads = torch.autograd.grad(loss, wrt, create_graph=True)
    v = [torch.randn(g.shape, generator=gen, dtype=g.dtype) for g in grads]
    scalar = sum((g * w).sum() + (g * g).sum() for g, w in zip(grads, v))
    second = torch.autograd.grad(scalar, wrt, allow_unused=True)
    second = [torch.zeros_like(t) if s is None else s for s, t in zip(second, wrt)]
    return [g.detach() for g in grads], second


def _max_err(got, ref):
    """Largest error of ``got`` against ``ref``, each tensor relative to its largest entry."""
    return max(
        ((g - r).abs().max() / r.abs().max().clamp(min=1.0)).item() for g, r in zip(got, ref)
    )


@pytest.mark.parametrize("name,lengths,reverse", CASES)
def test_second_derivatives_equal_reference(name, lengths, reverse):
    torch.manual_seed(0)
    cell = CELLS[name](I, H).double()
    x, state = _inputs(cell)
    lens = None if lengths is None else torch.tensor(lengths)
    ref_grads, ref_second = _second_order(cell, x, state, lens, reverse, "reference")
    assert max(s.abs().max().item() for s in ref_second) > 1e-3  # not a vanishing check
    for path in _paths(cell, x):
        grads, second = _second_order(cell, x, state, lens, reverse, path)
        assert _max_err(grads, ref_grads) <= TOL, path
        assert _max_err(second, ref_second) <= TOL, path


@pytest.mark.parametrize("name", ["lstm", "gru", "nas", "elman_tanh"])
@pytest.mark.parametrize("path", ["native", "autograd"])
def test_second_derivatives_through_checkpointed_segments(name, path):
    torch.manual_seed(0)
    cell = CELLS[name](I, H).double()
    if path == "native" and (kernel_for(cell) is None or not engine.native_available()):
        pytest.skip("the compiled loops could not be built here")
    x, state = _inputs(cell)
    lens = torch.tensor(LENGTHS)
    ref_grads, ref_second = _second_order(cell, x, state, lens, True, "reference")
    grads, second = _second_order(cell, x, state, lens, True, path, checkpoint=2)
    assert _max_err(grads, ref_grads) <= TOL
    assert _max_err(second, ref_second) <= TOL


@needs_native
def test_second_derivatives_of_the_split_lstm_route(monkeypatch):
    """A plain LSTM with many distinct lengths on the fused routes runs fused, then in the
    compiled loop: the Hessian-vector product crosses both."""
    monkeypatch.setattr(fused, "LOOP_WITH_LENGTHS", False)
    torch.manual_seed(0)
    cell = LSTMCell(I, H).double()
    B = 12
    x = torch.randn(T + 6, B, I, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(B, H, dtype=torch.float64, requires_grad=True) for _ in range(2))
    lens = torch.tensor([12, 11, 10, 9, 8, 7, 7, 6, 6, 6, 6, 6])
    ref = _second_order(cell, x, state, lens, False, "reference")
    got = _second_order(cell, x, state, lens, False, "auto")
    assert _max_err(got[0], ref[0]) <= TOL
    assert _max_err(got[1], ref[1]) <= TOL


@needs_native
@pytest.mark.parametrize("make", [GRUCell, NASCell, lambda i, h: LSTMCell(i, h, peephole=True)])
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]])
def test_native_gradgradcheck(make, lengths):
    """Finite differences of the first derivatives check the second-order backward pass,
    with respect to the input, the initial state and every parameter."""
    torch.manual_seed(0)
    cell = make(2, 3).double()
    assert kernel_for(cell) is not None
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(3, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    lens = None if lengths is None else torch.tensor(lengths)
    n_states = len(state)

    runner = _Runner(cell)

    def fn(x, *rest):
        states, ps = rest[:n_states], rest[n_states:]
        params = {f"cell.{n}": p for n, p in zip(names, ps)}
        out, final = functional_call(runner, params, (x, states, lens), strict=True)
        return (out, *final)

    assert torch.autograd.gradgradcheck(fn, (x, *state, *params), atol=1e-6)


class _Runner(torch.nn.Module):
    """One layer-direction through the compiled loop, as a module (for functional_call)."""

    def __init__(self, cell):
        super().__init__()
        self.cell = cell

    def forward(self, x, states, lengths):
        return engine.run(self.cell, x, states, lengths, engine="native")


@pytest.mark.parametrize("name", ["gru_reset_before", "lstm_peephole", "mut2", "layernorm_lstm"])
def test_second_derivatives_when_the_state_comes_from_the_same_cell(name):
    """Streaming without detaching: chunk 2 starts from chunk 1's final state, so its initial
    state depends on the very parameters chunk 2 is differentiated by; their gradient must
    count the path through the state once."""
    torch.manual_seed(0)
    cell = CELLS[name](I, H).double()
    x, state = _inputs(cell)
    lens = torch.tensor(LENGTHS)
    results = []
    for path in ("reference", *_paths(cell, x)):
        _, mid = engine.run(cell, x[:3], state, lens.clamp(max=3), engine=path)
        results.append(_second_order(cell, x[3:], mid, (lens - 3).clamp(min=1), False, path))
    for grads, second in results[1:]:
        assert _max_err(grads, results[0][0]) <= TOL
        assert _max_err(second, results[0][1]) <= TOL


def test_gradient_penalty_through_a_stacked_bidirectional_layer():
    """A gradient penalty (the norm of the input gradient, as in WGAN-GP) trains through a
    two-layer bidirectional GRU with lengths: the penalty's gradient equals the reference
    engine's."""
    from rnnkit import GRU

    torch.manual_seed(0)
    layer = GRU(I, H, num_layers=2, bidirectional=True, reset_after=False).double()
    x = torch.randn(T, len(LENGTHS), I, dtype=torch.float64, requires_grad=True)
    lens = torch.tensor(LENGTHS)
    found = []
    for name in ("reference", None):
        layer.engine = name
        out, _ = layer(x, lengths=lens)
        (gx,) = torch.autograd.grad(out.sin().sum(), x, create_graph=True)
        penalty = (gx.flatten(1).norm(dim=1) - 1).pow(2).sum()
        found.append(torch.autograd.grad(penalty, [x, *layer.parameters()]))
    assert _max_err(found[1], found[0]) <= TOL


@pytest.mark.parametrize("name", ["gru", "lstm_peephole", "mut1", "nas"])
def test_meta_learning_through_functional_call(name):
    """MAML: two inner gradient steps on parameters swapped in with functional_call, then the
    outer gradient through both. The second-order pass must use the parameters the forward
    pass ran with (the adapted ones, which the module no longer holds), not the module's."""
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name], I, H).double()
    x = torch.randn(T, len(LENGTHS), I, dtype=torch.float64)
    lens = torch.tensor(LENGTHS)
    results = []
    for path in ("reference", None):
        layer.engine = path
        params = dict(layer.named_parameters())

        def loss(p):
            out, _ = functional_call(layer, p, (x,), {"lengths": lens})
            return out.tanh().pow(2).sum()

        adapted = params
        for _ in range(2):
            grads = torch.autograd.grad(loss(adapted), list(adapted.values()), create_graph=True)
            adapted = {k: v - 0.1 * g for (k, v), g in zip(adapted.items(), grads)}
        results.append(torch.autograd.grad(loss(adapted), list(params.values())))
    assert _max_err(results[1], results[0]) <= TOL
    assert max(g.abs().max().item() for g in results[0]) > 1e-3
