"""A whole stack in one call of torch's fused op: where a layer takes it, and that it gives the
reference runner's results (and torch.nn's, bit for bit, since it is torch.nn's own call)."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.autograd import forward_ad as fwAD

import rnnkit
from rnnkit.engine import fused
from rnnkit.engine.fused import HEAD_MIN_STEPS

TOL = 1e-10
I, H, P, B = 3, 5, 2, 4
T = HEAD_MIN_STEPS + 2  # long enough for the fused kernel (a shorter LSTM takes the loop)


def _layer(kind: str, layers: int, bi: bool, **extra) -> rnnkit.Recurrent:
    common = dict(num_layers=layers, bidirectional=bi, **extra)
    if kind.startswith("lstm"):
        proj = P if kind == "lstm_proj" else 0
        return rnnkit.LSTM(I, H, proj_size=proj, bias=kind != "lstm_nobias", **common)
    if kind == "gru":
        return rnnkit.GRU(I, H, **common)
    return rnnkit.RNN(I, H, nonlinearity=kind.split("_")[1], **common)


def _torch_twin(kind: str, ours: rnnkit.Recurrent) -> nn.Module:
    """torch.nn's layer with ``ours``'s weights (two bidirectional layers)."""
    if kind.startswith("lstm"):
        theirs = nn.LSTM(I, H, 2, bidirectional=True, proj_size=P if kind == "lstm_proj" else 0)
    elif kind == "gru":
        theirs = nn.GRU(I, H, 2, bidirectional=True)
    else:
        theirs = nn.RNN(I, H, 2, bidirectional=True, nonlinearity=kind.split("_")[1])
    theirs.load_state_dict(ours.state_dict())
    return theirs.to(dtype=next(ours.parameters()).dtype)


def _run(layer, x, h0, **kw):
    """Outputs, final states and the gradients of a random projection of them with respect
    to x, h0 and every parameter."""
    out, h_n = layer(x, h0, **kw)
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    gen = torch.Generator().manual_seed(3)
    loss = sum(
        (t * torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)).sum()
        for t in (out, *h_n)
    )
    states = () if h0 is None else h0 if isinstance(h0, tuple) else (h0,)
    inputs = [x, *states, *layer.parameters()]
    return [out, *h_n, *torch.autograd.grad(loss, inputs)]


def _random_h0(layer, layers: int, bi: bool):
    """A random float64 initial state for ``layer`` as torch's layers take it: (D·L, B, ·)
    each, a tuple for more than one."""
    n = layers * (2 if bi else 1)
    h0 = tuple(
        torch.randn(n, B, *s, dtype=torch.float64, requires_grad=True) for s in layer.state_shapes
    )
    return h0 if len(h0) > 1 else h0[0]


CASES = list(
    itertools.product(
        ("lstm", "lstm_proj", "lstm_nobias", "gru", "rnn_tanh", "rnn_relu"),
        (1, 3),  # layers
        (False, True),  # bidirectional
    )
)


@pytest.mark.parametrize("kind,layers,bi", CASES)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("with_h0", [False, True])
def test_one_call_equals_reference(kind, layers, bi, batch_first, with_h0, stack_calls):
    """float64: the one-call stack against the plain masked loop over each cell, outputs, final
    states and every gradient."""
    torch.manual_seed(0)
    layer = _layer(kind, layers, bi, batch_first=batch_first).double()
    ref = _layer(kind, layers, bi, batch_first=batch_first).double()
    ref.load_state_dict(layer.state_dict())
    # GRU and Elman take the compiled loops on the CPU under "auto": name the fused path
    layer.engine = "fused" if kind in ("gru", "rnn_tanh", "rnn_relu") else None
    ref.engine = "reference"
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    h0 = _random_h0(layer, layers, bi) if with_h0 else None
    got = _run(layer, x, h0)
    assert len(stack_calls) == 1
    want = _run(ref, x, h0)
    assert len(stack_calls) == 1  # the reference engine runs layer by layer
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_one_call_is_torch_nn_bit_for_bit(kind, stack_calls):
    """float32, two layers, both directions: the same op with the same weights as torch.nn's
    layer, so the same bits (before, each layer-direction was a call of its own)."""
    torch.manual_seed(1)
    ours = _layer(kind, 2, True)
    ours.engine = None if kind.startswith("lstm") else "fused"
    theirs = _torch_twin(kind, ours)
    x = torch.randn(T, B, I, requires_grad=True)
    for a, b in zip(_run(ours, x, None), _run(theirs, x, None)):
        assert torch.equal(a, b)
    assert len(stack_calls) == 1


# distinct lengths (torch sorts them the same way as rnnkit), the full T and 1 among them
LENGTHS = torch.tensor([4, T, 1, 7])


@pytest.fixture
def route_calls(monkeypatch):
    """Counts the layer-direction calls of the GPU's routes with lengths: an LSTM's
    variable-length op ("packed"), a GRU's or Elman's masked padded call ("masked")."""
    calls = {"packed": 0, "masked": 0}
    for route in calls:
        real = getattr(fused, "_" + route)

        def spy(*args, _real=real, _route=route):
            calls[_route] += 1
            return _real(*args)

        monkeypatch.setattr(fused, "_" + route, spy)
    return calls


@pytest.fixture
def gpu_routes(monkeypatch, route_calls):
    """On the CPU, take the routes the GPU takes with lengths (torch's same ops, on its CPU
    kernels); counts their calls as :func:`route_calls`."""
    monkeypatch.setattr(fused, "variable_length_op", lambda x: True)
    return route_calls


def _layer_and_reference(kind, layers, bi, **extra):
    """(layer, twin on the reference engine) in float64, the layer on the fused path."""
    layer = _layer(kind, layers, bi, **extra).double()
    ref = _layer(kind, layers, bi, **extra).double()
    ref.load_state_dict(layer.state_dict())
    layer.engine = None if kind.startswith("lstm") else "fused"
    ref.engine = "reference"
    return layer, ref


@pytest.mark.parametrize("kind,layers,bi", CASES)
@pytest.mark.parametrize("with_h0", [False, True])
def test_lengths_on_the_gpu_routes_equal_reference(
    kind, layers, bi, with_h0, gpu_routes, stack_calls
):
    """float64, lengths on the routes the GPU takes: outputs (zero past each length), final
    states at each sequence's last step (the backward direction within each valid part) and
    every gradient equal the masked reference loop's. An LSTM stack is one call of the
    variable-length op; a GRU or Elman stack one masked padded call per layer-direction."""
    torch.manual_seed(0)
    layer, ref = _layer_and_reference(kind, layers, bi)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = _random_h0(layer, layers, bi) if with_h0 else None
    got = _run(layer, x, h0, lengths=LENGTHS)
    if kind.startswith("lstm"):
        assert len(stack_calls) == 1 and gpu_routes == {"packed": 0, "masked": 0}
    else:
        assert not stack_calls and gpu_routes == {"packed": 0, "masked": layers * (1 + bi)}
    want = _run(ref, x, h0, lengths=LENGTHS)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu"])
def test_lengths_layer_by_layer_on_the_gpu_routes(kind, gpu_routes, stack_calls):
    """Where an LSTM stack cannot be one call (residual connections, summed directions), each
    layer-direction makes one call of the variable-length op; the results still equal the
    reference's."""
    torch.manual_seed(0)
    layer, ref = _layer_and_reference(kind, 2, True, residual=True, merge_mode="sum")
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    got = _run(layer, x, None, lengths=LENGTHS)
    route = "packed" if kind.startswith("lstm") else "masked"
    assert not stack_calls and gpu_routes[route] == 4
    for a, b in zip(got, _run(ref, x, None, lengths=LENGTHS)):
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)


def _torch_packed(theirs: nn.Module, x: torch.Tensor, lengths: torch.Tensor):
    """torch.nn's layer on a PackedSequence of ``x`` (T, B, I): padded outputs, final states
    and the gradients of the same random projection as :func:`_run`."""
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, h_n = theirs(packed)
    out = nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])[0]
    h_n = h_n if isinstance(h_n, tuple) else (h_n,)
    gen = torch.Generator().manual_seed(3)
    loss = sum(
        (t * torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device)).sum()
        for t in (out, *h_n)
    )
    return [out, *h_n, *torch.autograd.grad(loss, [x, *theirs.parameters()])]


@pytest.mark.parametrize("kind", ["lstm", "lstm_proj"])
def test_lstm_lengths_in_one_call_are_torch_nn_packed_bit_for_bit(kind, gpu_routes, stack_calls):
    """float32, two bidirectional layers with lengths, and the same again from a
    PackedSequence: the call torch.nn's layer makes for a PackedSequence, so its bits."""
    torch.manual_seed(1)
    ours = _layer(kind, 2, True)
    theirs = _torch_twin(kind, ours)
    x = torch.randn(T, B, I, requires_grad=True)
    want = _torch_packed(theirs, x, LENGTHS)
    for a, b in zip(_run(ours, x, None, lengths=LENGTHS), want):
        assert torch.equal(a, b)
    packed = nn.utils.rnn.pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    out, h_n = ours(packed)
    assert torch.equal(out.data, theirs(packed)[0].data)
    assert torch.equal(out.unsorted_indices, packed.unsorted_indices)
    assert len(stack_calls) == 2


@pytest.mark.parametrize("kind", ["gru", "rnn_tanh"])
def test_masked_lengths_match_torch_nn_packed(kind, gpu_routes):
    """float64, a GRU and an Elman stack with lengths on the masked route against torch.nn's
    layer on a PackedSequence, and from a PackedSequence: the same values."""
    torch.manual_seed(1)
    ours = _layer(kind, 2, True).double()
    ours.engine = "fused"
    theirs = _torch_twin(kind, ours)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    for a, b in zip(_run(ours, x, None, lengths=LENGTHS), _torch_packed(theirs, x, LENGTHS)):
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)
    packed = nn.utils.rnn.pack_padded_sequence(x, LENGTHS, enforce_sorted=False)
    torch.testing.assert_close(ours(packed)[0].data, theirs(packed)[0].data, rtol=TOL, atol=TOL)
    assert gpu_routes["masked"] == 8


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gpu_routes_take_batch_first_and_packed_input_with_h0(kind, gpu_routes):
    """The GPU's routes with lengths from a batch-first tensor and from a PackedSequence, with
    an initial state: the reference's outputs, final states and gradients (float64)."""
    torch.manual_seed(5)
    layer, ref = _layer_and_reference(kind, 2, True, batch_first=True)
    x = torch.randn(B, T, I, dtype=torch.float64, requires_grad=True)
    h0 = _random_h0(layer, 2, True)
    for a, b in zip(_run(layer, x, h0, lengths=LENGTHS), _run(ref, x, h0, lengths=LENGTHS)):
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)
    packed = nn.utils.rnn.pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    (out, h_n), (want, want_h) = layer(packed, h0), ref(packed, h0)
    torch.testing.assert_close(out.data, want.data, rtol=TOL, atol=TOL)
    assert torch.equal(out.batch_sizes, want.batch_sizes)
    for a, b in zip(
        h_n if isinstance(h_n, tuple) else (h_n,),
        want_h if isinstance(want_h, tuple) else (want_h,),
    ):
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)
    assert sum(gpu_routes.values()) == (0 if kind == "lstm" else 8)


def test_equal_lengths_in_one_call_are_the_padded_call(gpu_routes, stack_calls):
    """Lengths that all equal T: the plain call, no packing."""
    layer = rnnkit.LSTM(I, H, 2)
    x = torch.randn(T, B, I)
    out, (h, c) = layer(x, lengths=torch.full((B,), T))
    want, (wh, wc) = layer(x)
    assert torch.equal(out, want) and torch.equal(h, wh) and torch.equal(c, wc)
    assert len(stack_calls) == 2
    gru = rnnkit.GRU(I, H)
    gru.engine = "fused"
    out, h = gru(x, lengths=torch.full((B,), T))
    gru_out, gru_h = gru(x)
    assert torch.equal(out, gru_out) and torch.equal(h, gru_h)
    assert gpu_routes == {"packed": 0, "masked": 0}


def test_unbatched_input_in_one_call(stack_calls):
    layer = rnnkit.LSTM(I, H, 2).double()
    x = torch.randn(T, I, dtype=torch.float64)
    h0 = (torch.randn(2, H, dtype=torch.float64), torch.randn(2, H, dtype=torch.float64))
    out, (h, c) = layer(x, h0)
    assert len(stack_calls) == 1
    want, (wh, wc) = layer(x.unsqueeze(1), tuple(s.unsqueeze(1) for s in h0))
    assert torch.equal(out, want.squeeze(1))
    assert torch.equal(h, wh.squeeze(1)) and torch.equal(c, wc.squeeze(1))
    layer.engine = "reference"
    ref, (rh, rc) = layer(x, h0)
    torch.testing.assert_close(out, ref, rtol=TOL, atol=TOL)
    torch.testing.assert_close(c, rc, rtol=TOL, atol=TOL)


def test_bad_initial_state_is_refused_in_one_call():
    layer = rnnkit.LSTM(I, H, 2)
    x = torch.randn(T, B, I)
    with pytest.raises(ValueError, match=r"h_0\[1\] must have shape \(2, 4, 5\)"):
        layer(x, (torch.zeros(2, B, H), torch.zeros(1, B, H)))
    with pytest.raises(ValueError, match="h_0 must be a tuple of 2 tensor"):
        layer(x, torch.zeros(2, B, H))


def _takes_one_call(layer, x, stack_calls, **kw) -> bool:
    before = len(stack_calls)
    layer(x, **kw)
    return len(stack_calls) > before


def test_where_a_layer_takes_one_call(stack_calls):
    x = torch.randn(T, B, I)
    assert _takes_one_call(rnnkit.LSTM(I, H, 2, bidirectional=True), x, stack_calls)
    # dropout between layers: torch's op would draw its own masks; rnnkit keeps its own
    drop = rnnkit.LSTM(I, H, 2, dropout=0.5)
    assert not _takes_one_call(drop, x, stack_calls)
    assert _takes_one_call(drop.eval(), x, stack_calls)
    assert _takes_one_call(rnnkit.LSTM(I, H, 1, dropout=0.5), x, stack_calls)  # no layer between
    # what torch's op has no notion of
    assert not _takes_one_call(rnnkit.LSTM(I, H, 2, residual=True), x, stack_calls)
    summed = rnnkit.LSTM(I, H, bidirectional=True, merge_mode="sum")
    assert not _takes_one_call(summed, x, stack_calls)
    assert not _takes_one_call(rnnkit.LSTM(I, H, peephole=True), x, stack_calls)
    lengths = torch.full((B,), T)
    lengths[1] = T - 1  # lengths that differ: on the CPU, one call per segment or the loop
    assert not _takes_one_call(rnnkit.LSTM(I, H), x, stack_calls, lengths=lengths)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    assert not _takes_one_call(rnnkit.LSTM(I, H), packed, stack_calls)
    # lengths that are all T: the batch without lengths
    assert _takes_one_call(rnnkit.LSTM(I, H), x, stack_calls, lengths=torch.full((B,), T))
    checkpointed = rnnkit.LSTM(I, H)
    checkpointed.checkpoint = 4
    assert not _takes_one_call(checkpointed, x, stack_calls)
    # the path choice: a short sequence, another engine, GRU and Elman on the CPU
    short = x[: HEAD_MIN_STEPS - 1]  # the compiled loop where there is one
    on_loop = rnnkit.engine.native_available()
    assert _takes_one_call(rnnkit.LSTM(I, H), short, stack_calls) == (not on_loop)
    forced = rnnkit.LSTM(I, H)
    forced.engine = "fused"
    assert _takes_one_call(forced, short, stack_calls)
    for name in ("native", "autograd", "reference")[0 if on_loop else 1 :]:
        forced.engine = name
        assert not _takes_one_call(forced, x, stack_calls)
    with rnnkit.engine.use("reference"):
        assert not _takes_one_call(rnnkit.LSTM(I, H), x, stack_calls)
    assert not _takes_one_call(rnnkit.GRU(I, H), x, stack_calls)  # the compiled loop's
    assert not _takes_one_call(rnnkit.RNN(I, H), x, stack_calls)
    assert _takes_one_call(rnnkit.GRU(I, H).half(), x.half(), stack_calls)  # no loop for it
    assert not _takes_one_call(rnnkit.GRU(I, H, reset_after=False), x, stack_calls)


# torch's forward_ad loads its jvp decompositions through the deprecated torch.jit.script
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_transforms_and_forward_ad_leave_the_one_call(stack_calls):
    """torch.func transforms and forward-mode AD take the autograd loop, as before."""
    layer = rnnkit.LSTM(I, H, 2).double()
    x = torch.randn(T, B, I, dtype=torch.float64)
    params = dict(layer.named_parameters())

    def loss(p, x):
        return torch.func.functional_call(layer, p, (x,))[0].square().sum()

    grads = torch.func.grad(loss)(params, x)
    assert not stack_calls
    want = torch.autograd.grad(loss(params, x), list(params.values()))
    assert len(stack_calls) == 1
    for a, b in zip(grads.values(), want):
        torch.testing.assert_close(a, b, rtol=TOL, atol=TOL)
    tangent = torch.randn_like(x)
    with fwAD.dual_level():
        out = layer(fwAD.make_dual(x, tangent))[0]
        jvp = fwAD.unpack_dual(out).tangent
    assert len(stack_calls) == 1
    eps = 1e-6  # central differences as the oracle
    fd = (layer(x + eps * tangent)[0] - layer(x - eps * tangent)[0]) / (2 * eps)
    torch.testing.assert_close(jvp, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("autocast", [False, True], ids=["float32", "autocast"])
def test_one_call_under_torch_compile(autocast):
    """torch.compile (Dynamo, eager backend) traces the single call without a warning and gives
    the eager results and gradients, under CPU autocast too (the recurrence in float32)."""
    import warnings

    torch.manual_seed(0)
    layer = rnnkit.LSTM(I, H, 2, bidirectional=True)
    x = torch.randn(T, B, I, requires_grad=True)
    ref, (ref_h, _) = layer(x)
    g_ref = torch.autograd.grad(ref.sum() + ref_h.sum(), [x, *layer.parameters()])
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="eager")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out, (h, _) = compiled(x)
        grads = torch.autograd.grad(out.sum() + h.sum(), [x, *layer.parameters()])
    torch._dynamo.reset()
    assert [str(w.message) for w in caught] == []
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(grads, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_tanh"])
def test_cuda_one_call_is_torch_nn_and_the_cpu_reference(kind, stack_calls):
    """On the GPU "auto" sends every cell with torch.nn's math to cuDNN, GRU and Elman
    included: the whole stack in one call, torch.nn's bits, and the CPU reference's values."""
    torch.manual_seed(2)
    ours, ref = _layer_and_reference(kind, 2, True)
    ours.engine = None  # "auto"
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    want = _run(ref, x, None)
    ours.cuda()
    x_gpu = x.detach().cuda().requires_grad_()
    got = _run(ours, x_gpu, None)
    assert len(stack_calls) == 1
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-8, atol=1e-8)
    theirs = _torch_twin(kind, ours)
    theirs = theirs.cuda().float()
    ours = ours.float()
    x32 = x_gpu.detach().float().requires_grad_()
    for a, b in zip(_run(ours, x32, None), _run(theirs, x32, None)):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_cuda_lengths_routes(kind, stack_calls, route_calls):
    """On the GPU, an LSTM with lengths takes cuDNN's variable-length mode, the whole stack in
    one call with torch.nn's PackedSequence bits; a GRU or Elman stack one masked padded call
    per layer-direction. Both give the CPU reference's values (float64: in float32 cuDNN's
    products run in TF32, torch.backends.cudnn.allow_tf32)."""
    calls = route_calls
    torch.manual_seed(2)
    ours, ref = _layer_and_reference(kind, 2, True)
    ours.engine = None  # "auto"
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    want = _run(ref, x, None, lengths=LENGTHS)
    ours.cuda()
    x_gpu = x.detach().cuda().requires_grad_()
    got = _run(ours, x_gpu, None, lengths=LENGTHS.cuda())
    lstm = kind == "lstm"
    assert len(stack_calls) == int(lstm) and calls == {"packed": 0, "masked": 0 if lstm else 4}
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-8, atol=1e-8)
    theirs = _torch_twin(kind, ours).cuda()
    for a, b in zip(
        _run(ours, x_gpu, None, lengths=LENGTHS), _torch_packed(theirs, x_gpu, LENGTHS)
    ):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)
    if lstm:
        ours, theirs = ours.float(), theirs.float()
        x32 = x_gpu.detach().float().requires_grad_()
        for a, b in zip(
            _run(ours, x32, None, lengths=LENGTHS), _torch_packed(theirs, x32, LENGTHS)
        ):
            assert torch.equal(a, b)
    summed = _layer(kind, 2, True, merge_mode="sum").double().cuda()
    before = dict(calls)
    out, _ = summed(x_gpu, lengths=LENGTHS)
    route = "packed" if lstm else "masked"
    assert calls[route] == before[route] + 4
    summed.engine = "reference"
    torch.testing.assert_close(out, summed(x_gpu, lengths=LENGTHS)[0], rtol=1e-8, atol=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", ["lstm", "lstm_proj", "gru", "rnn_relu"])
def test_cuda_weights_live_in_one_buffer(kind):
    """After .cuda() the weights are views into one buffer in cuDNN's layout, as torch.nn's:
    cuDNN reads them in place (its warning that it copies them does not come) and the results
    stay torch.nn's bits. A stack of another shape keeps a tensor per weight."""
    import warnings

    torch.manual_seed(4)
    ours = _layer(kind, 2, True).cuda()
    weights = [w for cell in ours.cells for w in fused.fused_weights(cell)]
    assert len({w.untyped_storage().data_ptr() for w in weights}) == 1
    x = torch.randn(T, B, I, device="cuda", requires_grad=True)
    hx = ours._stacked_states(None, B, x, False)
    args = (weights, True, 2, 0.0, True, True, False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused._raw_op(fused.fused_kind(ours.cells[0]), x, hx, args, None)
    assert [str(w.message) for w in caught] == []
    theirs = _torch_twin(kind, ours).cuda()
    for a, b in zip(_run(ours, x, None), _run(theirs, x, None)):
        assert torch.equal(a, b)
    ours.double()  # .to() and the like flatten again
    assert len({p.untyped_storage().data_ptr() for p in ours.parameters()}) == 1
    with torch.device("cuda"):  # made on the GPU: flattened from the start
        made_there = _layer(kind, 2, True)
    assert len({p.untyped_storage().data_ptr() for p in made_there.parameters()}) == 1
    summed = _layer(kind, 2, True, merge_mode="sum").cuda()
    n = len(list(summed.parameters()))
    assert len({p.untyped_storage().data_ptr() for p in summed.parameters()}) == n
