"""The compiled loops write their saved activations over the input projection and the gradient
over the saved activations (rnnkit.engine.kernel_base). Checked here: a second backward pass
through a retained graph (which must rerun the forward loop) gives the first one's gradients;
the in-place row loops at vector widths and on two threads equal the reference loop; and one
training step's peak memory is what the buffer count says."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cell_zoo import CELLS
from rnnkit import engine
from rnnkit.engine.kernel_base import saved_buffer
from rnnkit.engine.kernels import kernel_for

TOL = 1e-10
KERNEL_CELLS = [name for name in CELLS if kernel_for(CELLS[name](2, 3)) is not None]

needs_native = pytest.mark.skipif(
    not engine.native_available(), reason="the compiled loops could not be built here"
)


def _setup(name: str, I: int, H: int, lens: list[int] | None, T: int, seed: int = 0):
    torch.manual_seed(seed)
    cell = CELLS[name](I, H).double()
    B = len(lens) if lens is not None else 4
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    state = tuple(
        torch.randn(B, *s, dtype=torch.float64, requires_grad=True) for s in cell.state_shapes()
    )
    lengths = None if lens is None else torch.tensor(lens)
    return cell, x, state, lengths


def _loss(cell, x, state, lengths, reverse, path, checkpoint=None):
    out, final = engine.run(
        cell, x, state, lengths, reverse=reverse, engine=path, checkpoint=checkpoint
    )
    gen = torch.Generator().manual_seed(1)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for f in final:
        loss = loss + (f * torch.randn(f.shape, generator=gen, dtype=f.dtype)).sum()
    return loss


@needs_native
@pytest.mark.parametrize("checkpoint", [None, 2])
@pytest.mark.parametrize("lens,reverse", [(None, False), ([6, 2, 5, 1], True)])
@pytest.mark.parametrize("name", KERNEL_CELLS)
def test_second_backward_through_a_retained_graph_equals_the_first(name, lens, reverse, checkpoint):
    """The first backward pass writes dgx over the saved activations; the second one, through
    the same graph, reruns the forward loop and gets the same gradients, bit for bit, which
    equal the reference loop's."""
    cell, x, state, lengths = _setup(name, 3, 5, lens, 6)
    inputs = [x, *state, *cell.parameters()]
    loss = _loss(cell, x, state, lengths, reverse, "native", checkpoint)
    first = torch.autograd.grad(loss, inputs, retain_graph=True)
    second = torch.autograd.grad(loss, inputs, retain_graph=True)
    third = torch.autograd.grad(loss, inputs)
    for a, b, c in zip(first, second, third):
        assert torch.equal(a, b) and torch.equal(a, c)
    ref = torch.autograd.grad(_loss(cell, x, state, lengths, reverse, "reference"), inputs)
    assert max((a - r).abs().max().item() for a, r in zip(first, ref)) <= TOL


@needs_native
@pytest.mark.parametrize("name", ["lstm", "nas", "mgu"])
def test_backward_twice_accumulates_twice_the_gradient(name):
    """``loss.backward(retain_graph=True)`` twice leaves twice one pass's gradient in .grad."""
    cell, x, state, lengths = _setup(name, 3, 5, [4, 3, 1], 4)
    loss = _loss(cell, x, state, lengths, False, "native")
    loss.backward(retain_graph=True)
    once = [p.grad.clone() for p in cell.parameters()] + [x.grad.clone()]
    loss.backward()
    twice = [p.grad for p in cell.parameters()] + [x.grad]
    assert max((t - 2 * o).abs().max().item() for o, t in zip(once, twice)) <= TOL


@needs_native
@pytest.mark.parametrize("H", [37, 64])
@pytest.mark.parametrize("name", KERNEL_CELLS)
def test_in_place_loops_at_vector_widths_on_two_threads_equal_reference(name, H):
    """Widths with and without a remainder after the vector lanes, with enough rows that every
    step's pointwise loop is split over two threads (and a first and a last step that are not)."""
    lens = torch.randint(1, 6, (120,), generator=torch.Generator().manual_seed(2)).tolist()
    lens[0] = 5
    cell, x, state, lengths = _setup(name, 5, H, lens, 5)
    inputs = [x, *state, *cell.parameters()]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for reverse in (False, True):
            got = torch.autograd.grad(_loss(cell, x, state, lengths, reverse, "native"), inputs)
            ref = torch.autograd.grad(_loss(cell, x, state, lengths, reverse, "reference"), inputs)
            assert max((a - r).abs().max().item() for a, r in zip(got, ref)) <= 1e-9
    finally:
        torch.set_num_threads(threads)


def test_saved_buffer_reuses_only_a_projection_of_its_own():
    """A training pass writes over ``gx`` itself; a view of another tensor, or a pass that
    saves two steps only, gets a buffer of its own."""
    gx = torch.randn(6, 8)
    assert saved_buffer(gx, True, 6) is gx
    assert saved_buffer(gx, False, 4).shape == (4, 8)
    assert saved_buffer(gx, False, 4).data_ptr() != gx.data_ptr()
    view = torch.randn(6, 16)[:, :8]
    got = saved_buffer(view, True, 6)
    assert got.shape == (6, 8) and got.data_ptr() != view.data_ptr()
    whole_view = torch.randn(12, 8)[:6]  # contiguous, but a view of a larger tensor
    assert saved_buffer(whole_view, True, 6).data_ptr() != whole_view.data_ptr()


# One training step at T=100, B=64, I=H=256 in a fresh interpreter: the resident memory it adds
# at its peak, in blocks of the output's size (T·B·H float32, 6.25 MiB), the input and the
# output's gradient being there before. The loops are loaded on a small step first.
_CHILD = """
import json, sys
from pathlib import Path
import torch
from rnnkit import Recurrent
from rnnkit.cells import GRUCell, LayerNormLSTMCell, LSTMCell, NASCell

torch.set_num_threads(1)
cells = {"lstm": LSTMCell, "gru": GRUCell, "nas": NASCell, "layernorm_lstm": LayerNormLSTMCell}
T, B, H = 100, 64, 256


def step(layer, x, dy):
    y = layer(x)[0]
    torch.autograd.grad(y, [x, *layer.parameters()], dy)


def rss_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])


layer = Recurrent(cells[sys.argv[1]], H, H)
layer.engine = "native"
step(layer, torch.randn(3, 2, H, requires_grad=True), torch.randn(3, 2, H))
x, dy = torch.randn(T, B, H, requires_grad=True), torch.randn(T, B, H)
Path("/proc/self/clear_refs").write_text("5")
before = rss_kb("VmRSS")
step(layer, x, dy)
print(json.dumps((rss_kb("VmHWM") - before) * 1024 / (T * B * H * 4)))
"""

# blocks alive at the peak, from the buffers (G: the width of the input projection): the
# output y (1), the shared projection / saved activations / dgx block (G/H), the other saved
# per-row buffers, plus 2 blocks of slack (x's gradient, small buffers, the allocator). Writing
# to separate buffers needs G/H blocks more at each peak (measured before the change: LSTM 10.2,
# GRU 9.2, NAS 21.6, layer-norm LSTM 11.3; after: 6.4, 5.3, 11.5, 7.2).
_BOUND = {
    "lstm": 1 + 4 + 1 + 2,  # y, gates, c
    "gru": 1 + 3 + 1 + 2,  # y, gates, the candidate's recurrent part
    "nas": 1 + 8 + 2 + 2,  # y, branches, c, m_3
    "layernorm_lstm": 1 + 4 + 2 + 2,  # y, x̂, c, ĉ (and 5 scalars a row)
}


@needs_native
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("name", list(_BOUND))
def test_training_step_peak_memory_is_one_block_per_saved_buffer(name):
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, name], capture_output=True, text=True, check=True
    )
    blocks = json.loads(out.stdout.strip().splitlines()[-1])
    assert blocks <= _BOUND[name], f"{name}: {blocks:.1f} blocks"


@needs_native
def test_native_call_rejects_tensors_it_cannot_read():
    """The loops read raw pointers: a dtype without a kernel, a mix of dtypes or a strided
    tensor is refused by name before any pointer is handed over."""
    from rnnkit.engine import native
    from rnnkit.engine.kernel_base import geometry
    from rnnkit.engine.packing import make_plan

    plan = make_plan(2, 1, None, False)
    geo = geometry(plan, 4, True, (0,))
    # gx (N, H), W_hh = 0, b_hh = 0, h0 = 0, y (N, H), scratch: then y = tanh(gx)
    gx = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    good = [gx, torch.zeros(4, 4), torch.zeros(4), torch.zeros(1, 4)]
    good += [torch.zeros(2, 4), torch.zeros(1, 4)]
    with pytest.raises(ValueError, match="float32 or float64, got torch.float16"):
        native.call("elman", "forward", geo, [t.half() for t in good])
    with pytest.raises(ValueError, match="elman: every tensor must be contiguous torch.float32"):
        native.call("elman", "forward", geo, good[:3] + [good[3].double()] + good[4:])
    strided = torch.zeros(4, 8)[:, ::2]
    with pytest.raises(ValueError, match="every tensor must be contiguous"):
        native.call("elman", "forward", geo, good[:1] + [strided] + good[2:])
    native.call("elman", "forward", geo, good)  # the same call with readable tensors runs
    assert torch.allclose(good[4], torch.tanh(gx), atol=1e-6, rtol=0)


@needs_native
def test_native_call_reads_a_gradient_whose_rows_lie_apart():
    """A backward loop's dy may be a column block of a wider matrix (rows contiguous, further
    apart than their width): the loop reads it in place and gives the same bits as from a
    contiguous copy. Any other tensor laid out that way, or a dy whose columns are strided, is
    refused."""
    from rnnkit.engine import native
    from rnnkit.engine.kernel_base import geometry
    from rnnkit.engine.packing import make_plan

    T, B, H = 3, 2, 4
    plan = make_plan(T, B, None, False)
    geo = geometry(plan, H, True, (0,))
    g = torch.Generator().manual_seed(0)
    W, h0 = 0.3 * torch.randn(H, H, generator=g), torch.randn(B, H, generator=g)
    y = torch.tanh(torch.randn(T * B, H, generator=g))
    wide = torch.randn(T * B, 2 * H, generator=g)  # each direction's half: rows 2H apart
    results = []
    for dy in (wide[:, H:], wide[:, H:].contiguous()):
        dh, dgx = torch.zeros(B, H), torch.empty(T * B, H)
        native.call("elman", "backward", geo, [W, h0, y, dy, dh, dgx], strided=dy)
        results.append((dh, dgx))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    # the last step's gradient of the pre-activation: dy · (1 - y²) (dh starts at zero)
    last = slice((T - 1) * B, T * B)
    expected = wide[last, H:] * (1 - y[last] ** 2)
    assert torch.allclose(results[0][1][last], expected, atol=1e-6, rtol=0)
    dy = wide[:, H:]
    with pytest.raises(ValueError, match="every tensor must be contiguous"):
        native.call("elman", "backward", geo, [W, h0, y, dy, torch.zeros(B, H), y.clone()])
    with pytest.raises(ValueError, match="every tensor must be contiguous"):
        columns = torch.randn(T * B, 2 * H)[:, ::2]
        native.call(
            "elman",
            "backward",
            geo,
            [W, h0, y, columns, torch.zeros(B, H), y.clone()],
            strided=columns,
        )


@needs_native
@pytest.mark.parametrize("with_lengths", [False, True])
def test_bidirectional_layer_reads_each_half_of_the_gradient_in_place(with_lengths, monkeypatch):
    """Each direction of a bidirectional layer gets a view of its half of the joined output
    gradient; the backward loops read it where it lies (no copy reaches them), and the
    gradients are the same bits as with a contiguous copy first (DY_IN_PLACE off)."""
    from rnnkit import GRU
    from rnnkit.engine import native, sequence

    torch.manual_seed(0)
    layer = GRU(3, 4, bidirectional=True).double()
    x = torch.randn(6, 5, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 4, 6, 1]) if with_lengths else None
    seen = []
    real = native.call

    def spy(kernel, direction, geometry, tensors, *args, **kwargs):
        if direction == "backward":
            seen.append(kwargs["strided"].is_contiguous())
        return real(kernel, direction, geometry, tensors, *args, **kwargs)

    monkeypatch.setattr(native, "call", spy)

    def grads():
        out, _ = layer(x, lengths=lengths)
        dout = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
        return torch.autograd.grad(out, [x, *layer.parameters()], dout)

    in_place = grads()
    assert seen == [False, False]  # both directions read their half where it lies
    monkeypatch.setattr(sequence, "DY_IN_PLACE", False)
    copied = grads()
    assert seen[2:] == [True, True]
    assert all(torch.equal(a, b) for a, b in zip(in_place, copied))
    layer.engine = "reference"
    ref = grads()
    assert max((a - b).abs().max().item() for a, b in zip(in_place, ref)) <= 1e-10
