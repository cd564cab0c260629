"""Input projections written block by block into one buffer (``engine/projection.py``): values
and gradients equal the composed torch ops (a tensor a block, then a concatenation), in
float64 to rounding and twice differentiable; the fast form runs where it can and the composed
one under ``torch.func``; bad layouts and arguments are refused by name."""

from __future__ import annotations

import pytest
import torch

from rnnkit.cells import MUT1Cell, MUT2Cell
from rnnkit.engine import native, native_memory
from rnnkit.engine.projection import block_projection, composed_projection

needs_native = pytest.mark.skipif(not native.available(), reason="no compiled library here")

I = 6
LAYOUTS = {
    "mut1": ((("linear", 2 * I, 0), ("tanh", I)), 2 * I),
    "mut2": ((("linear", I, 0), ("identity", I), ("linear", I, I)), 2 * I),
    "mixed": ((("tanh", I), ("linear", 5, 0), ("identity", I), ("tanh", I), ("linear", 3, 5)), 8),
}


def _params(layout: str, dtype, seed: int = 0):
    blocks, rows = LAYOUTS[layout]
    gen = torch.Generator().manual_seed(seed)
    G = sum(b[1] for b in blocks)
    weight = torch.randn(rows, I, generator=gen, dtype=dtype, requires_grad=True)
    bias = torch.randn(G, generator=gen, dtype=dtype, requires_grad=True)
    return blocks, weight, bias


def _grads(fn, x, weight, bias, seed: int = 1):
    out = fn(x, weight, bias)
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(out.shape, generator=gen, dtype=out.dtype)
    wanted = [t for t in (x, weight, bias) if t.requires_grad]
    return out, torch.autograd.grad((out * w).sum(), wanted)


@needs_native
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("shape", [(40,), (7, 5)], ids=["rows", "time-batch"])
def test_the_blocks_equal_the_composed_ops(layout, shape):
    blocks, weight, bias = _params(layout, torch.float64)
    x = torch.randn(*shape, I, dtype=torch.float64, requires_grad=True)
    out, grads = _grads(lambda *a: block_projection(*a, blocks), x, weight, bias)
    ref, ref_grads = _grads(lambda *a: composed_projection(*a, blocks), x, weight, bias)
    node = out.grad_fn if len(shape) == 1 else out.grad_fn.next_functions[0][0]  # past the view
    assert "BlockProjection" in type(node).__name__
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@needs_native
def test_float32_blocks_equal_the_composed_ops_to_rounding():
    blocks, weight, bias = _params("mut1", torch.float32)
    x = torch.randn(300, I, requires_grad=True)
    out, grads = _grads(lambda *a: block_projection(*a, blocks), x, weight, bias)
    ref, ref_grads = _grads(lambda *a: composed_projection(*a, blocks), x, weight, bias)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_native
def test_only_the_gradients_asked_for_are_formed():
    """An input that needs no gradient (the data of a first layer) gets none, and the
    parameters' gradients are those of the composed ops."""
    blocks, weight, bias = _params("mut2", torch.float64)
    x = torch.randn(30, I, dtype=torch.float64)
    _, grads = _grads(lambda *a: block_projection(*a, blocks), x, weight, bias)
    _, ref = _grads(lambda *a: composed_projection(*a, blocks), x, weight, bias)
    assert len(grads) == 2
    for a, b in zip(grads, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@needs_native
def test_a_gradient_that_is_not_contiguous_is_read_right():
    blocks, weight, bias = _params("mut1", torch.float64)
    x = torch.randn(20, I, dtype=torch.float64, requires_grad=True)
    out = block_projection(x, weight, bias, blocks)
    g = torch.randn(out.shape[1], 20, dtype=torch.float64).t()  # column-major
    got = torch.autograd.grad(out, [x, weight, bias], g)
    ref = torch.autograd.grad(composed_projection(x, weight, bias, blocks), [x, weight, bias], g)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@needs_native
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_gradcheck_and_gradgradcheck(layout):
    blocks, weight, bias = _params(layout, torch.float64)
    x = torch.randn(5, I, dtype=torch.float64, requires_grad=True)

    def fn(x, weight, bias):
        return block_projection(x, weight, bias, blocks)

    assert torch.autograd.gradcheck(fn, (x, weight, bias))
    assert torch.autograd.gradgradcheck(fn, (x, weight, bias))


def test_torch_func_takes_the_composed_form():
    """Under torch.func.grad the composed ops run (a transform cannot see into the compiled
    library), with the same gradient as plain autograd."""
    blocks, weight, bias = _params("mut1", torch.float64)
    x = torch.randn(8, I, dtype=torch.float64)

    def loss(w):
        return block_projection(x, w, bias.detach(), blocks).pow(2).sum()

    got = torch.func.grad(loss)(weight.detach())
    (ref,) = torch.autograd.grad(loss(weight), [weight])
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", [MUT1Cell, MUT2Cell])
def test_the_mut_cells_project_as_their_equations_say(cell):
    """MUT1 with I = H: [W_zr x + b_zr | tanh(x) + b_h]; MUT2 with I = H: [W_z x + b_z | x +
    b_r | W_xh x + b_h]; with I != H, MUT2's projection is one product over its three row
    blocks."""
    torch.manual_seed(0)
    H = 4
    for size in (H, 3):
        c = cell(size, H).double()
        x = torch.randn(6, size, dtype=torch.float64)
        W, b = c.weight_ih, c.bias
        if cell is MUT1Cell and size == H:
            ref = torch.cat([x @ W[: 2 * H].T + b[: 2 * H], torch.tanh(x) + b[2 * H :]], -1)
        elif cell is MUT1Cell:
            u = torch.tanh(x @ W[2 * H :].T)
            ref = torch.cat([x @ W[: 2 * H].T + b[: 2 * H], u + b[2 * H :]], -1)
        elif size == H:
            ref = torch.cat([x @ W[:H].T + b[:H], x + b[H : 2 * H], x @ W[H:].T + b[2 * H :]], -1)
        else:
            ref = x @ W.T + b
        torch.testing.assert_close(c.project_input(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "blocks,message",
    [
        ((("linear", 4, 1), ("tanh", I)), "must take the weight's rows in order"),
        ((("linear", 4, 0), ("tanh", 5)), "a tanh block must be 6 wide, got 5"),
        ((("linear", 4, 0), ("relu", I)), "unknown block kind 'relu'"),
        ((("linear", 3, 0), ("tanh", I)), "cover 3 weight rows of 4"),
    ],
)
def test_bad_layouts_are_refused(blocks, message):
    x, weight = torch.randn(2, I), torch.randn(4, I)
    bias = torch.randn(sum(b[1] for b in blocks))
    with pytest.raises(ValueError, match=message):
        block_projection(x, weight, bias, blocks)


def test_a_bias_of_another_width_is_refused():
    with pytest.raises(
        ValueError, match=r"bias must have one entry a projected column, got \(9,\)"
    ):
        block_projection(
            torch.randn(2, I), torch.randn(4, I), torch.randn(9), (("linear", 4, 0), ("tanh", I))
        )


@needs_native
def test_the_block_routines_refuse_foreign_arguments():
    x, out, b = torch.randn(5, 3), torch.empty(5, 9), torch.randn(3)
    with pytest.raises(ValueError, match="act must be one of"):
        native_memory.block_fill("relu", x, b, out[:, :3])
    with pytest.raises(ValueError, match=r"dst must be \(5, 3\), got \(5, 4\)"):
        native_memory.block_fill("tanh", x, b, out[:, :4])
    with pytest.raises(
        ValueError, match="dst must be a 2-d torch.float32 CPU matrix with contiguous rows"
    ):
        native_memory.block_fill("tanh", x, b, torch.empty(3, 5).t())
    with pytest.raises(ValueError, match=r"bias must be a contiguous \(3,\) torch.float32 vector"):
        native_memory.block_fill("tanh", x, b.double(), out[:, :3])
    with pytest.raises(ValueError, match="run float32 or float64, got torch.int64"):
        native_memory.block_fill("identity", x.long(), b.long(), out.long()[:, :3])
    with pytest.raises(ValueError, match=r"grad must be \(5, 3\), got \(4, 3\)"):
        native_memory.block_grad("tanh", out[:4, :3], x)


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_block_routines_equal_torch_ops(dtype, threads):
    """Large enough to split over two threads: every row once, in its columns only."""
    kept = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(3)
        x = torch.randn(700, 64, generator=gen, dtype=dtype)
        b = torch.randn(64, generator=gen, dtype=dtype)
        out = torch.full((700, 3 * 64), 7.0, dtype=dtype)
        native_memory.block_fill("tanh", x, b, out[:, 64:128])
        torch.testing.assert_close(out[:, 64:128], torch.tanh(x) + b, rtol=1e-6, atol=1e-6)
        assert (out[:, :64] == 7.0).all() and (out[:, 128:] == 7.0).all()
        native_memory.block_fill("identity", x, b, out[:, 128:])
        assert torch.equal(out[:, 128:], x + b)
        g = torch.randn(700, 3 * 64, generator=gen, dtype=dtype)
        got = native_memory.block_grad("tanh", g[:, 64:128], x)
        torch.testing.assert_close(
            got, g[:, 64:128] * (1 - torch.tanh(x) ** 2), rtol=1e-6, atol=1e-6
        )
        assert torch.equal(native_memory.block_grad("identity", g[:, 128:], x), g[:, 128:])
    finally:
        torch.set_num_threads(kept)


@needs_native
def test_no_rows_and_strided_rows():
    """An empty batch projects to no rows and gives zero parameter gradients; an input whose
    rows lie apart in a wider tensor (a slice of its features) is read in place, with the
    gradient landing in that slice only."""
    blocks, weight, bias = _params("mut1", torch.float64)
    empty = torch.randn(0, I, dtype=torch.float64, requires_grad=True)
    out = block_projection(empty, weight, bias, blocks)
    assert out.shape == (0, 3 * I)
    grads = torch.autograd.grad(out.sum(), [empty, weight, bias])
    assert grads[0].shape == (0, I)
    assert grads[1].abs().max().item() == 0.0 and grads[2].abs().max().item() == 0.0
    wide = torch.randn(4, 3, I + 5, dtype=torch.float64, requires_grad=True)
    x = wide[:, :, 2 : 2 + I]
    out, got = _grads(lambda *a: block_projection(*a, blocks), x, weight, bias)
    ref, want = _grads(lambda *a: composed_projection(*a, blocks), x, weight, bias)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    full_got = torch.autograd.grad(block_projection(x, weight, bias, blocks).sum(), [wide])[0]
    assert full_got[:, :, :2].abs().max().item() == 0.0
    assert full_got[:, :, 2 + I :].abs().max().item() == 0.0
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
