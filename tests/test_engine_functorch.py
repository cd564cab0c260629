"""``torch.func`` transforms through the engine: per-sample gradients (vmap of grad) and
Jacobians (jacrev) of every cell, with lengths, equal the same quantities computed one sample
at a time by ordinary autograd on the reference loop."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, jacrev, vmap

from cell_zoo import CELLS
from rnnkit import Recurrent, engine
from rnnkit.cells import GRUCell, NASCell

TOL = 1e-12
I, H, T = 3, 4, 6
LENGTHS = torch.tensor([6, 3, 4])  # one sample = 3 sequences, one of them full


class _Layer(torch.nn.Module):
    """One layer-direction of ``cell`` through engine.run, as a module (for functional_call)."""

    def __init__(self, cell, reverse):
        super().__init__()
        self.cell, self.reverse = cell, reverse

    def forward(self, x, path):
        B = x.shape[1]
        state = tuple(torch.zeros(B, *s, dtype=x.dtype) + 0.1 for s in self.cell.state_shapes())
        return engine.run(self.cell, x, state, LENGTHS, reverse=self.reverse, engine=path)


def _loss(module, params, x, path):
    out, final = functional_call(module, params, (x, path))
    return out.tanh().sum() + sum((f * f).sum() for f in final)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", list(CELLS))
def test_per_sample_gradients_equal_one_sample_at_a_time(name, reverse):
    torch.manual_seed(0)
    module = _Layer(CELLS[name](I, H).double(), reverse)
    params = {k: v.detach() for k, v in module.named_parameters()}
    xs = torch.randn(4, T, len(LENGTHS), I, dtype=torch.float64)  # 4 samples
    got = vmap(grad(lambda p, x: _loss(module, p, x, None)), in_dims=(None, 0))(params, xs)
    for i in range(len(xs)):
        p = {k: v.clone().requires_grad_() for k, v in params.items()}
        ref = torch.autograd.grad(_loss(module, p, xs[i], "reference"), list(p.values()))
        for k, r in zip(p, ref):
            assert (got[k][i] - r).abs().max().item() <= TOL, k
        assert max(r.abs().max().item() for r in ref) > 1e-3


def test_per_sample_gradients_of_a_stacked_bidirectional_layer():
    torch.manual_seed(0)
    layer = Recurrent(NASCell, I, H, num_layers=2, bidirectional=True).double()
    params = {k: v.detach() for k, v in layer.named_parameters()}
    xs = torch.randn(3, T, len(LENGTHS), I, dtype=torch.float64)

    def loss(p, x):
        out, (h, c) = functional_call(layer, p, (x,), {"lengths": LENGTHS})
        return out.tanh().sum() + (h * c).sum()

    got = vmap(grad(loss), in_dims=(None, 0))(params, xs)
    layer.engine = "reference"
    for i in range(len(xs)):
        p = {k: v.clone().requires_grad_() for k, v in params.items()}
        ref = torch.autograd.grad(loss(p, xs[i]), list(p.values()))
        for k, r in zip(p, ref):
            assert (got[k][i] - r).abs().max().item() <= TOL, k


def test_jacrev_equals_the_autograd_jacobian():
    torch.manual_seed(0)
    layer = Recurrent(GRUCell, I, H, bidirectional=True).double()
    x = torch.randn(T, len(LENGTHS), I, dtype=torch.float64)

    def out(x):
        return layer(x, lengths=LENGTHS)[0]

    got = jacrev(out)(x)
    layer.engine = "reference"
    ref = torch.autograd.functional.jacobian(out, x)
    assert (got - ref).abs().max().item() <= TOL
    # the padding's outputs are zero, so their rows of the Jacobian are too
    assert got[4:, 1].abs().max().item() == 0.0


def test_forced_native_engine_inside_a_transform_is_refused():
    cell = GRUCell(I, H)
    module = _Layer(cell, False)
    params = {k: v.detach() for k, v in module.named_parameters()}
    x = torch.randn(T, len(LENGTHS), I)
    if not engine.native_available():
        pytest.skip("the compiled loops could not be built here")
    with pytest.raises(ValueError, match="torch.func transform"):
        grad(lambda p: _loss(module, p, x, "native"))(params)


def test_lengths_batched_by_vmap_are_refused():
    cell = GRUCell(I, H)
    x = torch.randn(2, T, 3, I)
    lengths = torch.tensor([[6, 3, 4], [5, 5, 2]])

    def run(x, lengths):
        return engine.run(cell, x, (torch.zeros(3, H),), lengths)[0]

    with pytest.raises(ValueError, match="lengths must be the same for every sample"):
        vmap(run)(x, lengths)
