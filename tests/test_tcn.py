"""TCN: equal to the block formula written out with F.conv1d; the measured receptive field
equals the formula; streaming equals the full run; causality; padded batches equal each
sequence alone; gradcheck; pytorch-tcn with copied weights (where installed)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call
from torch.nn import functional as F

from rnnkit.models.encoder import RecurrentEncoderConfig, build_encoder, encoder_config_from_dict
from rnnkit.tcn import TCN, MaskedBatchNorm1d, TCNEncoderConfig, receptive_field

TOL = 1e-10
PHI = {"relu": F.relu, "tanh": torch.tanh, "gelu": F.gelu}


def _tcn(*args, **kw) -> TCN:
    return TCN(*args, **kw).double().eval()


# -- the oracle: Bai et al.'s block written out -------------------------------------------------
def _weight(conv):
    """The convolution's weight; under weight normalisation recomputed as g·v/||v||."""
    if not hasattr(conv, "parametrizations"):
        return conv.weight
    g = conv.parametrizations.weight.original0  # (C_out, 1, 1)
    v = conv.parametrizations.weight.original1  # (C_out, C_in, k)
    return g * v / v.norm(dim=(1, 2), keepdim=True)


def ref_tcn(tcn: TCN, x):
    """x (B, T, I) -> (B, T, H), eval mode, from the formula of TemporalBlock's docstring."""
    phi = PHI[tcn.activation]
    h = x.transpose(1, 2)
    for block, d in zip(tcn.blocks, tcn.dilations):
        P = (tcn.kernel_size - 1) * d
        pad = (P, 0) if tcn.causal else (P // 2, P // 2)

        def conv(c, z, pad=pad, d=d):
            return F.conv1d(F.pad(z, pad), _weight(c), c.bias, dilation=d)

        def norm(n, z):
            if tcn.norm == "layer":
                return F.layer_norm(
                    z.transpose(1, 2), n.normalized_shape, n.weight, n.bias
                ).transpose(1, 2)
            if tcn.norm == "batch":
                return F.batch_norm(z, n.running_mean, n.running_var, n.weight, n.bias, eps=n.eps)
            return z

        u = phi(norm(block.norm1, conv(block.conv1, h)))
        v = phi(norm(block.norm2, conv(block.conv2, u)))
        if not tcn.residual:
            h = v
        else:
            res = (
                h
                if block.downsample is None
                else F.conv1d(h, block.downsample.weight, block.downsample.bias)
            )
            h = phi(v + res)
    return h.transpose(1, 2)


def _perturb_norms(tcn: TCN) -> None:
    """Move norm parameters and running statistics away from their identity initial values."""
    with torch.no_grad():
        for m in tcn.modules():
            if isinstance(m, (MaskedBatchNorm1d, torch.nn.LayerNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
            if isinstance(m, MaskedBatchNorm1d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)


CONFIGS = [
    dict(norm="weight", activation="relu", causal=True),
    dict(norm="layer", activation="tanh", causal=True),
    dict(norm="batch", activation="gelu", causal=True),
    dict(norm=None, activation="relu", causal=False),
    dict(norm="weight", activation="tanh", causal=False, residual=False),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_tcn_equals_block_formula(cfg):
    tcn = _tcn(3, [5, 5, 4], 3, dilations=[1, 2, 3], **cfg)
    _perturb_norms(tcn)
    x = torch.randn(2, 23, 3, dtype=torch.float64)
    out, _ = tcn(x)
    assert (out - ref_tcn(tcn, x)).abs().max().item() <= TOL


@pytest.mark.parametrize(
    "kernel_size,dilations,causal",
    [
        (2, None, True),
        (3, None, True),
        (5, [1, 3], True),
        (3, [1, 2, 4], False),
        (5, [2, 1], False),
    ],
)
def test_measured_receptive_field_equals_formula(kernel_size, dilations, causal):
    n_blocks = 3 if dilations is None else len(dilations)
    tcn = _tcn(
        2, [3] * n_blocks, kernel_size, dilations=dilations, causal=causal, activation="tanh"
    )
    R = tcn.receptive_field
    assert R == 1 + 2 * (kernel_size - 1) * sum(tcn.dilations)
    T = 2 * R + 5
    x = torch.randn(1, T, 2, dtype=torch.float64, requires_grad=True)
    out, _ = tcn(x)
    t = T - 1 if causal else T // 2
    (g,) = torch.autograd.grad(out[0, t].sum(), [x])
    seen = (g[0].abs().sum(dim=1) > 0).nonzero().flatten().tolist()
    first = t - R + 1 if causal else t - (R - 1) // 2
    assert seen == list(range(first, first + R))


def test_receptive_field_function():
    assert receptive_field(3, [1, 2, 4, 8]) == 61
    assert receptive_field(2, [1, 2, 4], convs_per_block=1) == 8
    assert receptive_field(7, [1] * 8) == 97  # Bai et al.'s sequential MNIST: k=7, 8 blocks


def test_causal_output_ignores_later_inputs():
    tcn = _tcn(2, [4, 4, 4], 3, norm="layer")
    x = torch.randn(3, 20, 2, dtype=torch.float64)
    out, _ = tcn(x)
    for t in [0, 5, 13, 18]:
        y = x.clone()
        y[:, t + 1 :] = torch.randn_like(y[:, t + 1 :]) * 10
        out_y, _ = tcn(y)
        assert torch.equal(out_y[:, : t + 1], out[:, : t + 1])
        assert (out_y[:, t + 1 :] - out[:, t + 1 :]).abs().max().item() > 1e-3


@pytest.mark.parametrize("norm", ["weight", "layer", "batch", None])
@pytest.mark.parametrize("B", [1, 4])
def test_streaming_equals_full_sequence(norm, B):
    tcn = _tcn(3, [6, 6, 5, 5], 3, norm=norm, dropout=0.2)  # eval mode: dropout is off
    _perturb_norms(tcn)
    T = 40
    x = torch.randn(B, T, 3, dtype=torch.float64)
    full, state_full = tcn(x)
    outs, state, t = [], None, 0
    for n in [1, 1, 5, 2, 1, 9, 3, 1, 17]:
        y, state = tcn(x[:, t : t + n], state)
        outs.append(y)
        t += n
    assert t == T
    assert (torch.cat(outs, dim=1) - full).abs().max().item() <= TOL
    for a, b in zip(state, state_full):
        assert (a - b).abs().max().item() <= TOL
    zero = tcn.init_state(B)
    y0, _ = tcn(x[:, :7], zero)
    assert (y0 - full[:, :7]).abs().max().item() <= TOL


def test_streaming_with_lengths_continues_each_sequence_from_its_end():
    tcn = _tcn(2, [4, 4, 4], 2)
    lengths = torch.tensor([6, 2, 4])
    first = torch.randn(3, 6, 2, dtype=torch.float64)
    second = torch.randn(3, 5, 2, dtype=torch.float64)
    out1, state = tcn(first, lengths=lengths)
    out2, _ = tcn(second, state)
    for b, n in enumerate(lengths.tolist()):
        whole = torch.cat([first[b : b + 1, :n], second[b : b + 1]], dim=1)
        ref, _ = tcn(whole)
        assert (out1[b, :n] - ref[0, :n]).abs().max().item() <= TOL
        assert out1[b, n:].abs().max().item() == 0.0 if n < 6 else True
        assert (out2[b] - ref[0, n:]).abs().max().item() <= TOL


def test_streaming_buffers_stay_fixed_and_step_cost_does_not_grow():
    tcn = TCN(4, [16] * 5, 3).eval()
    B = 8
    shapes = [(B, c, p) for c, p in tcn.state_shapes()]
    assert [p for _, _, p in shapes] == [2, 2, 4, 4, 8, 8, 16, 16, 32, 32]
    x = torch.randn(B, 1, 4)
    with torch.no_grad():
        _, early = tcn(torch.randn(B, 5, 4))
        late = early
        for _ in range(300):
            _, late = tcn(torch.randn(B, 1, 4), late)
        assert [tuple(s.shape) for s in late] == shapes

        def cost(state):
            start = time.perf_counter()
            for _ in range(10):
                tcn(x, state)
            return time.perf_counter() - start

        # one step from 5 steps seen vs from 305 seen, interleaved, best of 10 each
        times = [(cost(early), cost(late)) for _ in range(10)]
    best_early, best_late = min(t[0] for t in times), min(t[1] for t in times)
    assert best_late < 3.0 * best_early  # generous: only growth with steps seen would break it


def _check_padded_batch(encode, params, x, lengths, tol=TOL):
    """``encode(x, lengths) -> (B, T, H)``: a padded batch equals each sequence run alone
    (outputs and gradients); outputs and input gradients past a length are exactly zero."""
    out = encode(x, lengths)
    w = torch.randn_like(out)
    gx, *gp = torch.autograd.grad((out * w).sum(), [x, *params])
    total = 0.0
    for b, n in enumerate(lengths.tolist()):
        xb = x[b : b + 1, :n].detach().requires_grad_(True)
        ob = encode(xb, None)
        assert (ob[0] - out[b, :n]).abs().max().item() <= tol
        assert out[b, n:].abs().max().item() == 0.0 if n < x.shape[1] else True
        lb = (ob * w[b : b + 1, :n]).sum()
        (gxb,) = torch.autograd.grad(lb, [xb], retain_graph=True)
        assert (gxb[0] - gx[b, :n]).abs().max().item() <= tol
        assert gx[b, n:].abs().max().item() == 0.0 if n < x.shape[1] else True
        total = total + lb
    for a, g in zip(torch.autograd.grad(total, params), gp):
        assert (a - g).abs().max().item() <= 1e-9


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("norm", ["weight", "layer", None])
def test_padded_batch_equals_each_sequence_alone(causal, norm):
    tcn = TCN(3, [5, 5, 4], 3, causal=causal, norm=norm, activation="tanh").double()
    lengths = torch.tensor([9, 2, 6, 1])
    x = torch.randn(4, 9, 3, dtype=torch.float64, requires_grad=True)
    _check_padded_batch(lambda x, n: tcn(x, lengths=n)[0], list(tcn.parameters()), x, lengths)


@pytest.mark.parametrize(
    "config",
    [
        RecurrentEncoderConfig(cell="lstm", hidden_size=4, num_layers=2),
        TCNEncoderConfig(hidden_size=4, num_layers=2, causal=False),
        TCNEncoderConfig(hidden_size=4, num_layers=3, kernel_size=2, norm="layer"),
    ],
    ids=["recurrent", "tcn-centred", "tcn-causal"],
)
def test_tcn_encoder_follows_the_models_encoder_contract(config):
    """A model written against ``h = encoder(x, lengths)`` takes a TCN as it takes an LSTM."""
    enc = build_encoder(config, 3).double()
    assert enc.output_size == 4 and enc.causal == getattr(config, "causal", True)
    lengths = torch.tensor([7, 3, 5])
    x = torch.randn(3, 7, 3, dtype=torch.float64, requires_grad=True)
    _check_padded_batch(enc, list(enc.parameters()), x, lengths)


def test_tcn_encoder_state_continues_selects_and_rebuilds_from_a_vector():
    enc = build_encoder(TCNEncoderConfig(hidden_size=4, num_layers=3), 2).double()
    x = torch.randn(3, 12, 2, dtype=torch.float64)
    full = enc(x)
    a, state = enc.forward_with_state(x[:, :5])
    b, state = enc.forward_with_state(x[:, 5:], enc.detach_state(state))
    assert (torch.cat([a, b], dim=1) - full).abs().max().item() <= TOL
    # a state flattened row by row and rebuilt from the vector is the same state
    flat = torch.cat([s.flatten(1) for s in state], dim=1)
    assert flat.shape[1] == enc.flat_state_size
    rebuilt = enc.state_from_vector(flat)
    assert all(torch.equal(u, v) for u, v in zip(rebuilt, state))
    # selecting sequences 2 and 0 continues those two sequences exactly
    _, s5 = enc.forward_with_state(x[:, :5])
    picked = enc.select_state(s5, torch.tensor([2, 0]))
    c, _ = enc.forward_with_state(x[[2, 0], 5:], picked)
    assert (c - full[[2, 0], 5:]).abs().max().item() <= TOL
    centred = build_encoder(TCNEncoderConfig(hidden_size=4, num_layers=2, causal=False), 2)
    with pytest.raises(ValueError, match=r"forward_with_state needs a causal TCN"):
        centred.forward_with_state(x.float())


def test_models_find_the_tcn_encoder_type_by_name_in_a_fresh_process():
    code = (
        "from rnnkit.models.encoder import build_encoder, encoder_config_from_dict\n"
        "d = {'type': 'tcn', 'hidden_size': 5, 'dilations': [1, 1, 2, 2]}\n"
        "c = encoder_config_from_dict(d)\n"
        "e = build_encoder(c, 3)\n"
        "print(type(e).__name__, e.receptive_field)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["TCNEncoder", str(1 + 2 * 2 * 6)]
    with pytest.raises(ValueError, match=r"encoder.kernel_size must be odd when encoder.causal"):
        encoder_config_from_dict({"type": "tcn", "kernel_size": 2, "causal": False})


def test_masked_batch_norm_counts_valid_steps_only():
    """Training-mode statistics over the valid steps = torch's BatchNorm1d on those steps alone."""
    C = 3
    ours, torchs = MaskedBatchNorm1d(C).double(), torch.nn.BatchNorm1d(C).double()
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.normal_()
    torchs.load_state_dict(ours.state_dict())
    lengths = torch.tensor([5, 2, 4])
    x = torch.randn(3, C, 5, dtype=torch.float64) * 2 + 1
    x[0, :, 4] = 0  # a valid zero column stays counted
    mask = (torch.arange(5) < lengths[:, None]).double()[:, None]
    for _ in range(2):
        y = ours(x, mask)
        valid = torch.cat([x[b, :, :n] for b, n in enumerate(lengths.tolist())], dim=1)[None]
        y_ref = torchs(valid)[0]
        y_valid = torch.cat([y[b, :, :n] for b, n in enumerate(lengths.tolist())], dim=1)
        assert (y_valid - y_ref).abs().max().item() <= TOL
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert (getattr(ours, name) - getattr(torchs, name)).abs().max().item() <= TOL
    ours.eval(), torchs.eval()
    assert (ours(x, mask) - torchs(x)).abs().max().item() <= TOL


@pytest.mark.parametrize("causal", [True, False])
def test_gradcheck_float64(causal):
    tcn = TCN(2, [3, 2], 3, causal=causal, activation="tanh").double()
    names = [n for n, _ in tcn.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in tcn.parameters()]
    x = torch.randn(2, 7, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 4])

    def f(x, *ps):
        out, _ = functional_call(tcn, dict(zip(names, ps)), (x,), {"lengths": lengths})
        return out

    assert gradcheck(f, (x, *params), eps=1e-6, atol=1e-6)


def test_equals_pytorch_tcn_with_copied_weights():
    pytorch_tcn = pytest.importorskip("pytorch_tcn")
    ref = pytorch_tcn.TCN(
        3,
        [6, 6, 4],
        kernel_size=3,
        dropout=0.0,
        causal=True,
        use_norm="weight_norm",
        input_shape="NLC",
    )
    ref = ref.double().eval()
    ours = _tcn(3, [6, 6, 4], 3)
    state = {k.replace("network.", "blocks."): v for k, v in ref.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith("padder.buffer")}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 30, 3, dtype=torch.float64)
    out, _ = ours(x)
    assert (out - ref(x)).abs().max().item() <= TOL


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match=r"kernel_size must be odd when causal=False.*got 4"):
        TCN(2, [4], 4, causal=False)
    with pytest.raises(ValueError, match=r"dilations must have one entry per block.*=2\), got 3"):
        TCN(2, [4, 4], 3, dilations=[1, 2, 4])
    with pytest.raises(
        ValueError, match=r"norm must be one of 'weight', 'batch', 'layer'; got 'group'"
    ):
        TCN(2, [4], 3, norm="group")
    with pytest.raises(ValueError, match=r"activation must be one of .*got 'sigmoid'"):
        TCN(2, [4], 3, activation="sigmoid")
    with pytest.raises(ValueError, match=r"channels must name at least one block"):
        TCN(2, [], 3)
    with pytest.raises(TypeError, match=r"channels\[1\] must be an int"):
        TCN(2, [4, 2.5], 3)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        TCN(2, [4], 3, dropout=1.5)
    tcn = TCN(2, [4, 4], 3)
    with pytest.raises(ValueError, match=r"x must be 3-D \(B, T, I\), got 2-D"):
        tcn(torch.randn(5, 2))
    with pytest.raises(ValueError, match=r"input_size=2 features .*got 3"):
        tcn(torch.randn(1, 5, 3))
    _, state = tcn(torch.randn(2, 5, 2))
    with pytest.raises(
        ValueError, match=r"state\[0\] must have shape \(3, 2, 2\).*got \(2, 2, 2\)"
    ):
        tcn(torch.randn(3, 1, 2), state)
    with pytest.raises(ValueError, match=r"state must hold 4 buffers.*got 3"):
        tcn(torch.randn(2, 1, 2), state[:3])
    with pytest.raises(ValueError, match=r"state must be None when causal=False"):
        TCN(2, [4], 3, causal=False)(torch.randn(2, 1, 2), state[:2])
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\]"):
        tcn(torch.randn(2, 5, 2), lengths=torch.tensor([5, 6]))
