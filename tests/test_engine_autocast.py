"""Mixed precision on the CPU: under ``torch.autocast("cpu")`` every recurrent layer and cell
runs its recurrence in its parameters' dtype with autocast off, so its results and gradients
equal the same call without autocast on the same input, while the layers around it still run
in bfloat16. (Before, torch's own LSTM kernel failed on CPUs without bfloat16 instructions, and
the other cells left the compiled loops for the autograd loop.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit
from cell_zoo import CELLS
from rnnkit import Recurrent
from rnnkit.engine.fused import HEAD_MIN_STEPS, fused_supports
from rnnkit.engine.sequence import native_supports

I, H, T = 3, 5, 7
LENGTHS = torch.tensor([7, 2, 5, 7])
B = len(LENGTHS)
BF16 = torch.bfloat16


def _autocast():
    return torch.autocast("cpu", dtype=BF16)


def _cases():
    """(cell, path) for every path that runs the cell in float32 on the CPU."""
    x = torch.zeros(T, B, I)
    for name in CELLS:
        cell = CELLS[name](I, H)
        for path in ("auto", "native", "fused", "autograd", "reference"):
            if path == "fused" and not fused_supports(cell, x):
                continue
            if path == "native" and not native_supports(cell, x):
                continue
            yield name, path


def _outputs_and_grads(layer, x, lengths, state=None, autocast=False, backward_inside=False):
    """Outputs, final states and the gradients of a fixed weighting of them w.r.t. x, the
    initial state and every parameter; the forward pass under autocast (bfloat16 on the CPU,
    float16 on the GPU) or not, the backward pass outside the autocast block (as torch
    recommends) or inside it."""
    kind = x.device.type
    dtype = BF16 if kind == "cpu" else torch.float16
    with torch.autocast(kind, dtype=dtype, enabled=autocast):
        out, final = layer(x, state, lengths=lengths)
        ys = [out, *final]
        g = torch.Generator().manual_seed(1)
        loss = sum((y.float() * torch.randn(y.shape, generator=g).to(x.device)).sum() for y in ys)
    wrt = [x, *(state or ()), *layer.parameters()]
    with torch.autocast(kind, dtype=dtype, enabled=autocast and backward_inside):
        return ys, torch.autograd.grad(loss, wrt)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("name,path", list(_cases()))
def test_layer_under_autocast_equals_the_float32_run(name, path, lengths):
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name], I, H, 2, bidirectional=True)
    layer.engine = path
    x = torch.randn(T, B, I, requires_grad=True)
    ys, grads = _outputs_and_grads(layer, x, lengths)
    ys_ac, grads_ac = _outputs_and_grads(layer, x, lengths, autocast=True)
    for a, b in zip(ys_ac, ys):
        assert a.dtype == torch.float32
        assert torch.equal(a, b)
    for a, b in zip(grads_ac, grads):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["lstm", "gru", "nas"])
def test_bfloat16_input_and_state_are_cast_to_the_parameters_dtype(name):
    """What an autocast layer before it hands over (bfloat16) runs as its float32 value; the
    gradient flows back to the bfloat16 input in bfloat16."""
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name], I, H, bidirectional=True)
    x16 = torch.randn(T, B, I).to(BF16).requires_grad_()
    s16 = tuple(
        torch.randn(2, B, *s).to(BF16).requires_grad_() for s in layer.cells[0].state_shapes()
    )
    x32 = x16.detach().float().requires_grad_()
    s32 = tuple(s.detach().float().requires_grad_() for s in s16)
    ys, grads = _outputs_and_grads(layer, x32, LENGTHS, s32)
    ys_ac, grads_ac = _outputs_and_grads(layer, x16, LENGTHS, s16, autocast=True)
    for a, b in zip(ys_ac, ys):
        assert torch.equal(a, b)
    for k, (a, b) in enumerate(zip(grads_ac, grads)):
        if k < 1 + len(s16):  # the input and the initial states: their own dtype
            assert a.dtype == BF16
            b = b.to(BF16)
        assert torch.equal(a, b)


def test_lstm_under_autocast_equals_torch_lstm_in_float32():
    """rnnkit.LSTM runs torch's fused kernel; under CPU autocast torch's own LSTM asks oneDNN
    for a bfloat16 kernel (which needs bfloat16 instructions); rnnkit's runs it in float32.
    (A sequence long enough for "auto" to take the fused kernel: the same op, the same bits.)"""
    torch.manual_seed(0)
    theirs = nn.LSTM(I, H, num_layers=2, bidirectional=True)
    ours = rnnkit.LSTM(I, H, num_layers=2, bidirectional=True)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(HEAD_MIN_STEPS + 3, B, I)
    want, (h, c) = theirs(x)
    with _autocast():
        got, (h_ac, c_ac) = ours(x)
    assert torch.equal(got, want) and torch.equal(h_ac, h) and torch.equal(c_ac, c)


def test_layers_around_still_run_in_bfloat16():
    """Only the recurrence leaves autocast: a head after it runs in bfloat16 on the float32
    output, as autocast runs any linear layer."""
    torch.manual_seed(0)
    embed, layer, head = nn.Linear(I, I), Recurrent(CELLS["gru"], I, H), nn.Linear(H, 2)
    x = torch.randn(T, B, I)
    with _autocast():
        e = embed(x)
        out, _ = layer(e, lengths=LENGTHS)
        logits = head(out)
    assert e.dtype == BF16 and out.dtype == torch.float32 and logits.dtype == BF16
    want, _ = layer(e.float(), lengths=LENGTHS)
    assert torch.equal(out, want)
    with _autocast():
        assert torch.equal(logits, head(want))


def test_checkpointed_layer_under_autocast_equals_the_float32_run():
    torch.manual_seed(0)
    layer = Recurrent(CELLS["nas"], I, H, 2, bidirectional=True)
    layer.checkpoint = 3
    x = torch.randn(T, B, I, requires_grad=True)
    ys, grads = _outputs_and_grads(layer, x, LENGTHS)
    ys_ac, grads_ac = _outputs_and_grads(layer, x, LENGTHS, autocast=True)
    for a, b in zip([*ys_ac, *grads_ac], [*ys, *grads]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", list(CELLS))
def test_one_cell_step_under_autocast_equals_the_float32_step(name):
    """A cell called one step at a time (decoders, generation) does as the layers do."""
    torch.manual_seed(0)
    cell = CELLS[name](I, H)
    x16 = torch.randn(B, I).to(BF16)
    s16 = tuple(torch.randn(B, *s).to(BF16) for s in cell.state_shapes())
    h, state = cell(x16.float(), tuple(s.float() for s in s16))
    with _autocast():
        h_ac, state_ac = cell(x16, s16)
    assert h_ac.dtype == torch.float32
    for a, b in zip([h_ac, *state_ac], [h, *state]):
        assert torch.equal(a, b)


def test_training_with_bf16_mixed_precision(tmp_path):
    """``trainer.precision=bf16-mixed`` trains an LSTM model on the CPU (it failed in torch's
    LSTM kernel before): the same first losses as the float32 run up to bfloat16 rounding in
    the layers around the recurrence, and float32 weights saved."""
    from safetensors.torch import load_file

    from rnnkit.training.run import train

    tiny = {"trainer.max_steps": "2", "trainer.val_every_n_steps": "2",
            "trainer.checkpoint_every_n_steps": "2", "trainer.progress_bar": "false",
            "trainer.logger": "none", "trainer.accelerator": "cpu",
            "model.encoder.hidden_size": "8", "model.encoder.cell": "lstm"}  # fmt: skip
    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        run = tmp_path / precision
        train("digits", {**tiny, "trainer.precision": precision}, run_dir=run, echo=False)
        rows = [r.split(",") for r in (run / "history.csv").read_text().split()[1:]]
        losses[precision] = torch.tensor([float(r[2]) for r in rows])
        weights = load_file(run / "model" / "model.safetensors")
        assert {w.dtype for w in weights.values()} == {torch.float32}
    torch.testing.assert_close(losses["bf16-mixed"], losses["32-true"], rtol=5e-3, atol=0)


@pytest.mark.parametrize("name,path", list(_cases()))
def test_backward_inside_the_autocast_block(name, path):
    """torch recommends a backward pass outside autocast; called inside, it runs (no dtype
    clash in the compiled loops' float32 buffers) and gives the float32 gradients up to the
    bfloat16 rounding of the products autograd runs under autocast there (the input
    projection's, and every step's on the autograd paths): within 3 % of each gradient's
    largest entry, where bfloat16's unit roundoff is 0.4 %."""
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name], I, H, 2, bidirectional=True)
    layer.engine = path
    x = torch.randn(T, B, I, requires_grad=True)
    _, grads = _outputs_and_grads(layer, x, LENGTHS)
    _, grads_ac = _outputs_and_grads(layer, x, LENGTHS, autocast=True, backward_inside=True)
    for a, b in zip(grads_ac, grads):
        assert a.dtype == torch.float32
        assert (a - b).abs().max().item() <= 3e-2 * b.abs().max().item()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(CELLS))
def test_cuda_autocast_runs_every_cell_close_to_float32(name):
    """On the GPU autocast is torch's: cuDNN's float16 kernels for the torch-math cells, the
    autograd loop's steps under autocast for the others. Every cell runs, with lengths, both
    directions, and stays within float16 rounding of its float32 results; the parameters'
    gradients stay float32."""
    torch.manual_seed(0)
    layer = Recurrent(CELLS[name], I, H, 2, bidirectional=True).cuda()
    x = torch.randn(T, B, I, device="cuda", requires_grad=True)
    lengths = LENGTHS.cuda()
    ys, grads = _outputs_and_grads(layer, x, lengths)
    ys_ac, grads_ac = _outputs_and_grads(layer, x, lengths, autocast=True)
    for a, b in zip([*ys_ac, *grads_ac], [*ys, *grads]):
        assert (a.float() - b).abs().max().item() <= 3e-2 * b.abs().max().item()
    assert all(gr.dtype == torch.float32 for gr in grads_ac[1:])


def test_packed_sequence_under_autocast_equals_the_float32_run():
    """A PackedSequence (bfloat16 or float32) is cast as a padded input is."""
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    layer = rnnkit.LSTM(I, H, bidirectional=True)
    x16 = torch.randn(T, B, I).to(BF16)
    packed = pack_padded_sequence(x16, LENGTHS, enforce_sorted=False)
    want, (h, c) = layer(pack_padded_sequence(x16.float(), LENGTHS, enforce_sorted=False))
    with _autocast():
        got, (h_ac, c_ac) = layer(packed)
    assert got.data.dtype == torch.float32
    assert torch.equal(got.data, want.data) and torch.equal(h_ac, h) and torch.equal(c_ac, c)
