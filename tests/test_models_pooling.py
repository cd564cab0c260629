"""Acceptance 1 and 2: masked pooling equals pooling each sequence alone, bit for bit; the
tagger's and the classifier's losses ignore padding (two paddings, each sequence alone)."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models import (
    POOLINGS,
    ClassifierConfig,
    Pooling,
    RecurrentEncoderConfig,
    SequenceClassifier,
    SequenceTagger,
    TaggerConfig,
)

LENGTHS = torch.tensor([7, 1, 4, 6, 2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", POOLINGS)
def test_masked_pooling_equals_each_sequence_alone_exactly(kind, dtype):
    pool = Pooling(kind, 6, attention_size=5).to(dtype)
    B, T = len(LENGTHS), 9  # T > every length: two steps of pure padding
    h = torch.randn(B, T, 6, dtype=dtype)
    h[:, 7:] = 1e6  # padding that would dominate a max or a mean if it leaked in
    pooled, weights = pool.pool(h, LENGTHS)
    for b, n in enumerate(LENGTHS.tolist()):
        alone, alone_w = pool.pool(h[b : b + 1, :n], None)
        assert torch.equal(pooled[b], alone[0])
        if kind == "attention":
            assert torch.equal(weights[b, :n], alone_w[0])
            assert torch.all(weights[b, n:] == 0)


@pytest.mark.parametrize("kind", ["mean", "max", "last"])
def test_pooling_matches_its_formula(kind):
    h = torch.tensor([[[1.0, -2.0], [3.0, 5.0], [-4.0, 0.5], [9.0, 9.0]]])  # (1, 4, 2)
    pooled = Pooling(kind, 2)(h, torch.tensor([3]))
    expected = {
        "mean": torch.tensor([[0.0, 3.5 / 3]]),
        "max": torch.tensor([[3.0, 5.0]]),
        "last": torch.tensor([[-4.0, 0.5]]),
    }[kind]
    torch.testing.assert_close(pooled, expected)


def test_attention_pooling_matches_its_formula():
    pool = Pooling("attention", 3, attention_size=2).double()
    h = torch.randn(2, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 3])
    pooled, weights = pool.pool(h, lengths)
    for b, n in enumerate(lengths.tolist()):
        e = torch.tanh(h[b, :n] @ pool.weight.T + pool.bias) @ pool.query  # (n,)
        alpha = torch.exp(e) / torch.exp(e).sum()
        torch.testing.assert_close(weights[b, :n], alpha)
        torch.testing.assert_close(pooled[b], alpha @ h[b, :n])


def _pad(x, T, fill):
    """x (B, T0, ...) padded with ``fill`` to T steps."""
    extra = torch.full((x.shape[0], T - x.shape[1], *x.shape[2:]), fill, dtype=x.dtype)
    return torch.cat([x, extra], dim=1)


def _loss_and_grads(model, x, y, lengths):
    model.zero_grad()
    loss = model.loss(x, y, lengths)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], rtol=1e-12, atol=1e-12)
    for ga, gb in zip(a[1], b[1]):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-12)


CASES = [
    ("lstm", False, "last"),
    ("gru", True, "mean"),
    ("mgu", True, "max"),
    ("peephole_lstm", False, "attention"),
]


@pytest.mark.parametrize("cell,bidirectional,pooling", CASES)
def test_classifier_loss_ignores_padding(cell, bidirectional, pooling):
    enc = RecurrentEncoderConfig(
        cell=cell, hidden_size=5, num_layers=2, bidirectional=bidirectional
    )
    cfg = ClassifierConfig(num_classes=3, input_size=4, encoder=enc, pooling=pooling)
    model = SequenceClassifier(cfg).double()
    x = torch.randn(len(LENGTHS), 7, 4, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1, 0])
    short = _loss_and_grads(model, x, y, LENGTHS)
    long = _loss_and_grads(model, _pad(x, 11, 3.0), y, LENGTHS)
    _assert_same(short, long)

    # oracle: the mean of the per-sequence losses, each sequence run alone
    model.zero_grad()
    total = sum(model.loss(x[b : b + 1, :n], y[b : b + 1]) for b, n in enumerate(LENGTHS.tolist()))
    (total / len(LENGTHS)).backward()
    alone = (total.detach() / len(LENGTHS), [p.grad.clone() for p in model.parameters()])
    _assert_same(short, alone)


@pytest.mark.parametrize("num_classes", [1, 4])
@pytest.mark.parametrize("cell,bidirectional", [("lstm", True), ("gru_reset_before", False)])
def test_tagger_loss_ignores_padding(cell, bidirectional, num_classes):
    enc = RecurrentEncoderConfig(cell=cell, hidden_size=5, bidirectional=bidirectional)
    model = SequenceTagger(
        TaggerConfig(num_classes=num_classes, input_size=3, encoder=enc)
    ).double()
    B, T = len(LENGTHS), 7
    x = torch.randn(B, T, 3, dtype=torch.float64)
    if num_classes == 1:
        y = torch.randint(0, 2, (B, T)).double()
    else:
        y = torch.randint(0, num_classes, (B, T))
    short = _loss_and_grads(model, x, y, LENGTHS)
    # the longer padding holds targets that are not even valid class ids: never read
    long = _loss_and_grads(model, _pad(x, 10, -7.0), _pad(y, 10, -5), LENGTHS)
    _assert_same(short, long)

    # oracle: every valid step of every sequence alone, averaged over all valid steps
    model.zero_grad()
    n_total = int(LENGTHS.sum())
    total = sum(
        model.loss(x[b : b + 1, :n], y[b : b + 1, :n]) * n for b, n in enumerate(LENGTHS.tolist())
    )
    (total / n_total).backward()
    alone = (total.detach() / n_total, [p.grad.clone() for p in model.parameters()])
    _assert_same(short, alone)


def test_binary_tagger_is_the_lecture_cross_entropy():
    """ℓ = Σ_t -y log ŷ - (1 - y) log(1 - ŷ) over valid steps, ŷ = σ(logit), divided by their
    number; probabilities are zero on padding."""
    enc = RecurrentEncoderConfig(cell="rnn", hidden_size=4)
    model = SequenceTagger(TaggerConfig(num_classes=1, input_size=2, encoder=enc)).double()
    x = torch.randn(2, 5, 2, dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    lengths = torch.tensor([5, 2])
    logits = model(x, lengths)[..., 0]
    p = 1.0 / (1.0 + torch.exp(-logits))
    terms = []
    for b, n in enumerate(lengths.tolist()):
        terms += [-(y[b, :n] * torch.log(p[b, :n]) + (1 - y[b, :n]) * torch.log(1 - p[b, :n]))]
    expected = torch.cat(terms).sum() / 7
    torch.testing.assert_close(model.loss(x, y, lengths), expected)
    probs = model.predict_proba(x, lengths)
    torch.testing.assert_close(probs[0], p[0])
    torch.testing.assert_close(probs[1, :2], p[1, :2])
    assert torch.all(probs[1, 2:] == 0)
    assert model.predict(x, lengths)[1, 2:].tolist() == [-1, -1, -1]
