"""``torch.func`` transforms and forward-mode AD through the engine: per-sample gradients
(vmap of grad), Jacobians (jacrev) and Jacobian-vector products (forward_ad, torch.func.jvp)
of every cell, with lengths, equal the same quantities computed by ordinary reverse-mode
autograd on the reference loop."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import functional_call, grad, jacrev, jvp, vmap

from cell_zoo import CELLS
from rnnkit import Recurrent, engine
from rnnkit.cells import GRUCell, NASCell

# torch's forward_ad loads its jvp decompositions through torch.jit.script on first use, which
# warns about TorchScript's deprecation: torch's own warning, not rnnkit's
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)

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


def _module(kind, name, reverse):
    """A seeded float64 ``kind`` module around cell ``name``, and its parameters (detached)."""
    torch.manual_seed(0)
    module = kind(CELLS[name](I, H).double(), reverse)
    return module, {k: v.detach() for k, v in module.named_parameters()}


def _loss(module, params, x, path):
    out, final = functional_call(module, params, (x, path))
    return out.tanh().sum() + sum((f * f).sum() for f in final)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", list(CELLS))
def test_per_sample_gradients_equal_one_sample_at_a_time(name, reverse):
    module, params = _module(_Layer, name, reverse)
    xs = torch.randn(4, T, len(LENGTHS), I, dtype=torch.float64)  # 4 samples
    got = vmap(grad(lambda p, x: _loss(module, p, x, None)), in_dims=(None, 0))(params, xs)
    for i in range(len(xs)):
        p = {k: v.clone().requires_grad_() for k, v in params.items()}
        ref = torch.autograd.grad(_loss(module, p, xs[i], "reference"), list(p.values()))
        for k, r in zip(p, ref):
            assert (got[k][i] - r).abs().max().item() <= TOL, k
        assert max(r.abs().max().item() for r in ref) > 1e-3


@pytest.mark.parametrize("checkpoint", [None, 2])
def test_per_sample_gradients_of_a_stacked_bidirectional_layer(checkpoint):
    """With checkpoint=2 too: transforms do not support the saved-tensor hooks that
    recomputation uses, so inside one the segments are not recomputed, and the results hold."""
    torch.manual_seed(0)
    layer = Recurrent(NASCell, I, H, num_layers=2, bidirectional=True).double()
    layer.checkpoint = checkpoint
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


@pytest.mark.parametrize("bidirectional", [False, True])
def test_per_sample_gradients_with_a_length_per_sample(bidirectional):
    """DP-SGD's case: vmap maps over single sequences, each with its own length. No plan can
    serve them all, so the engine masks each sample (the reference loop) instead of sorting."""
    torch.manual_seed(0)
    layer = Recurrent(GRUCell, I, H, num_layers=2, bidirectional=bidirectional).double()
    params = {k: v.detach() for k, v in layer.named_parameters()}
    xs = torch.randn(5, T, 1, I, dtype=torch.float64)  # 5 samples of one sequence each
    lens = torch.tensor([[6], [2], [5], [1], [3]])

    def loss(p, x, lengths):
        out, h = functional_call(layer, p, (x,), {"lengths": lengths})
        return out.tanh().sum() + (h * h).sum()

    got = vmap(grad(loss), in_dims=(None, 0, 0))(params, xs, lens)
    for i in range(len(xs)):
        p = {k: v.clone().requires_grad_() for k, v in params.items()}
        ref = torch.autograd.grad(loss(p, xs[i], lens[i]), list(p.values()))
        for k, r in zip(p, ref):
            assert (got[k][i] - r).abs().max().item() <= TOL, k


def test_lengths_batched_by_vmap_need_a_masking_path():
    cell = GRUCell(I, H)
    x = torch.randn(2, T, 3, I)
    lengths = torch.tensor([[6, 3, 4], [5, 5, 2]])

    def run(x, lengths):
        return engine.run(cell, x, (torch.zeros(3, H),), lengths, engine="autograd")[0]

    with pytest.raises(ValueError, match="engine 'auto' or 'reference'"):
        vmap(run)(x, lengths)
    # out of range in one mapped sample: the layer's check sees every sample's lengths
    layer = Recurrent(GRUCell, I, H)
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=6\]"):
        vmap(lambda x, n: layer(x, lengths=n)[0])(x, torch.tensor([[6, 3, 4], [5, 7, 2]]))


def _jvp_reference(module, params, x, state, tangents):
    """(output, final states) and their JVP along ``tangents`` (for x, state, params) by
    reverse mode twice (torch.autograd.functional.jvp) on the reference loop."""
    names = list(params)

    def fn(x, *rest):
        st, ps = rest[: len(state)], rest[len(state) :]
        out, final = functional_call(module, dict(zip(names, ps)), (x, st, "reference"))
        return (out, *final)

    return torch.autograd.functional.jvp(fn, (x, *state, *params.values()), tangents)[1]


class _LayerFrom(_Layer):
    """Like _Layer, from a given initial state."""

    def forward(self, x, state, path):
        return engine.run(self.cell, x, state, LENGTHS, reverse=self.reverse, engine=path)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", list(CELLS))
def test_forward_mode_jvp_equals_reference(name, reverse):
    module, params = _module(_LayerFrom, name, reverse)
    B = len(LENGTHS)
    x = torch.randn(T, B, I, dtype=torch.float64)
    state = tuple(torch.randn(B, *s, dtype=torch.float64) for s in module.cell.state_shapes())
    primals = (x, *state, *params.values())
    tangents = tuple(torch.randn_like(t) for t in primals)
    ref = _jvp_reference(module, params, x, state, tangents)
    # forward_ad with dual tensors, the default engine
    with fwAD.dual_level():
        duals = [fwAD.make_dual(p, t) for p, t in zip(primals, tangents)]
        d_params = dict(zip(params, duals[1 + len(state) :]))
        out, final = functional_call(
            module, d_params, (duals[0], tuple(duals[1 : 1 + len(state)]), None)
        )
        got = [fwAD.unpack_dual(t).tangent for t in (out, *final)]
    for g, r in zip(got, ref):
        assert (g - r).abs().max().item() <= TOL

    # torch.func.jvp: a transform
    def fn(x, *rest):
        st, ps = rest[: len(state)], rest[len(state) :]
        out, final = functional_call(module, dict(zip(params, ps)), (x, st, None))
        return (out, *final)

    _, got = jvp(fn, primals, tangents)
    for g, r in zip(got, ref):
        assert (g - r).abs().max().item() <= TOL


def test_a_tangent_on_the_initial_state_alone():
    """Only the state is dual: the call must still leave the compiled loop."""
    torch.manual_seed(0)
    cell = NASCell(I, H).double()
    B = len(LENGTHS)
    x = torch.randn(T, B, I, dtype=torch.float64)
    state = tuple(torch.randn(B, H, dtype=torch.float64) for _ in range(2))
    tangent = tuple(torch.randn_like(s) for s in state)
    ref = torch.autograd.functional.jvp(
        lambda *s: engine.run(cell, x, s, LENGTHS, engine="reference")[0], state, tangent
    )[1]
    with fwAD.dual_level():
        dual = tuple(fwAD.make_dual(s, t) for s, t in zip(state, tangent))
        got = fwAD.unpack_dual(engine.run(cell, x, dual, LENGTHS)[0]).tangent
    assert (got - ref).abs().max().item() <= TOL


def test_forced_native_engine_under_forward_ad_is_refused():
    if not engine.native_available():
        pytest.skip("the compiled loops could not be built here")
    cell = GRUCell(I, H)
    x = torch.randn(T, 3, I)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x, torch.randn_like(x))
        with pytest.raises(ValueError, match="no forward-mode derivative"):
            engine.run(cell, dual, (torch.zeros(3, H),), engine="native")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_per_sample_gradients_and_gradient_penalty_equal_the_cpu_reference():
    """On a GPU, vmap(grad) takes the autograd loop, and a gradient penalty trains through a
    layer set to engine="autograd" (cuDNN has no double backward)."""
    torch.manual_seed(0)
    layer = Recurrent(GRUCell, I, H, bidirectional=True).double()
    params = {k: v.detach() for k, v in layer.named_parameters()}
    xs = torch.randn(3, T, len(LENGTHS), I, dtype=torch.float64)

    def loss(p, x, lengths):
        out, h = functional_call(layer, p, (x,), {"lengths": lengths})
        return out.tanh().sum() + (h * h).sum()

    layer.engine = "reference"
    ref = vmap(grad(loss), in_dims=(None, 0, None))(params, xs, LENGTHS)
    layer.engine = None
    layer.cuda()
    gpu = {k: v.detach() for k, v in layer.named_parameters()}
    got = vmap(grad(loss), in_dims=(None, 0, None))(gpu, xs.cuda(), LENGTHS.cuda())
    for k in ref:
        assert (got[k].cpu() - ref[k]).abs().max().item() <= 1e-10, k
    found = []
    for device, path in (("cpu", "reference"), ("cuda", "autograd")):
        layer.to(device)
        layer.engine = path
        x = xs[0].to(device).requires_grad_()
        out, _ = layer(x, lengths=LENGTHS.to(device))
        (gx,) = torch.autograd.grad(out.sin().sum(), x, create_graph=True)
        penalty = (gx.transpose(0, 1).flatten(1).norm(dim=1) - 1).pow(2).sum()
        found.append([g.cpu() for g in torch.autograd.grad(penalty, list(layer.parameters()))])
    for a, b in zip(*found):
        assert (a - b).abs().max().item() <= 1e-10
