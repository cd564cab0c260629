"""Acceptance 3: stateful training over windows equals one pass over the whole stream cut at
the same points; the loss, perplexity and bits per token against their formulas; weight
tying; both ways of conditioning against a plain run of the encoder."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from rnnkit.models import (
    LanguageModel,
    LanguageModelConfig,
    RecurrentEncoderConfig,
    batchify,
    windows,
)

V = 11


def _lm(cell="lstm", num_layers=2, **kw):
    enc = RecurrentEncoderConfig(cell=cell, hidden_size=6, num_layers=num_layers)
    return LanguageModel(LanguageModelConfig(vocab_size=V, embedding_size=5, encoder=enc, **kw))


def _grads(model):
    return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cell", ["lstm", "gru", "nas"])
@pytest.mark.parametrize("window", [1, 4, 7])
def test_truncated_bptt_equals_one_pass_cut_at_the_same_points(cell, window):
    model = _lm(cell).double()
    streams = batchify(torch.randint(0, V, (3 * 23 + 2,)), 3)  # (3, 23)
    assert streams.shape == (3, 23)

    state, total = None, 0.0
    for inputs, targets in windows(streams, window):
        loss, state = model.stream_loss(inputs, targets, state, reduction="sum")
        loss.backward()
        total += loss.item()
    chunked = _grads(model)

    # oracle: one plain loop over the cells, the state detached every `window` steps
    model.zero_grad()
    cells = [model.encoder.rnn.cell_at(layer) for layer in range(2)]
    states = [c.init_state(3, dtype=torch.float64) for c in cells]
    x = model.embedding(streams[:, :-1])  # (3, 22, E)
    oracle = 0.0
    for t in range(streams.shape[1] - 1):
        if t % window == 0:
            states = [tuple(s.detach() for s in st) for st in states]
        h = x[:, t]
        for layer, c in enumerate(cells):
            h, states[layer] = c(h, states[layer])
        oracle = oracle + F.cross_entropy(model.output(h), streams[:, t + 1], reduction="sum")
    oracle.backward()
    assert total == pytest.approx(oracle.item(), rel=1e-12)
    for name, g in _grads(model).items():
        torch.testing.assert_close(chunked[name], g, rtol=1e-10, atol=1e-12)


def test_loss_perplexity_and_bits_per_token_follow_their_formulas():
    model = _lm("gru", num_layers=1).double()
    tokens = torch.tensor([[2, 5, 6, 7, 3], [2, 9, 3, 0, 0]])
    lengths = torch.tensor([5, 3])
    nll = []
    for b, n in enumerate(lengths.tolist()):  # each sequence alone, token by token
        logits, _ = model(tokens[b : b + 1, : n - 1])
        logp = torch.log_softmax(logits[0], dim=-1)
        nll += [-logp[t, tokens[b, t + 1]] for t in range(n - 1)]
    mean = torch.stack(nll).mean()
    torch.testing.assert_close(model.loss(tokens, lengths), mean)
    score = model.score(tokens, lengths)
    assert score.num_tokens == 6
    assert score.nll == pytest.approx(mean.item(), rel=1e-12)
    assert score.perplexity == pytest.approx(math.exp(mean.item()), rel=1e-12)
    assert score.bits_per_token == pytest.approx(mean.item() / math.log(2), rel=1e-12)


def test_state_passed_back_continues_the_sequence_exactly():
    model = _lm("layernorm_lstm").double()
    tokens = torch.randint(0, V, (2, 9))
    whole, _ = model(tokens)
    first, state = model(tokens[:, :4])
    second, _ = model(tokens[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("hidden", [5, 8])
def test_tied_weights_share_one_matrix(hidden):
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=hidden)
    model = LanguageModel(
        LanguageModelConfig(vocab_size=V, embedding_size=5, encoder=enc, tie_weights=True)
    ).double()
    assert model.output.weight is model.embedding.weight
    assert (model.projection is None) == (hidden == 5)
    tokens = torch.randint(1, V, (2, 4))
    logits, _ = model(tokens)
    h = model.encoder(model.embedding(tokens))
    if model.projection is not None:
        h = h @ model.projection.weight.T
    torch.testing.assert_close(logits, h @ model.embedding.weight.T + model.output.bias)


def test_condition_fed_at_every_step():
    model = _lm("gru", num_layers=1, num_labels=3, label_size=2, latent_size=4).double()
    tokens = torch.randint(0, V, (2, 5))
    labels, z = torch.tensor([2, 0]), torch.randn(2, 4, dtype=torch.float64)
    logits, _ = model(tokens, labels=labels, latent=z)
    k = torch.cat([model.label_embedding(labels), z], dim=1)  # (2, 6)
    x = torch.cat([model.embedding(tokens), k.unsqueeze(1).expand(2, 5, 6)], dim=2)
    torch.testing.assert_close(logits, model.output(model.encoder(x)))


def test_condition_sets_the_initial_state():
    model = _lm("lstm", num_labels=3, label_size=2, condition="state").double()
    tokens = torch.randint(0, V, (2, 5))
    labels = torch.tensor([1, 2])
    logits, _ = model(tokens, labels=labels)
    a0 = torch.tanh(model.condition_to_state(model.label_embedding(labels)))  # (2, 2·2·6)
    # flat layout: all h of every layer, then all c; per sequence
    h0 = a0[:, :12].reshape(2, 2, 6).transpose(0, 1)
    c0 = a0[:, 12:].reshape(2, 2, 6).transpose(0, 1)
    out, _ = model.encoder.rnn(model.embedding(tokens), (h0, c0))
    torch.testing.assert_close(logits, model.output(out))
    other, _ = model(tokens, labels=torch.tensor([0, 0]))
    assert not torch.allclose(other, logits)
