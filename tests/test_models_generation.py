"""Acceptance 4: seeded batched generation equals one-by-one generation; top_k=1 equals greedy;
generation stops at <eos> per sequence (a hand-built bigram model with known transitions);
the sampling distribution against hand-computed values, summing to 1."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models import (
    LanguageModel,
    LanguageModelConfig,
    RecurrentEncoderConfig,
    generate,
    sampling_probs,
)

PAD, BOS, EOS = 0, 2, 3
V = 9


def _lm(**kw):
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=8)
    cfg = LanguageModelConfig(vocab_size=V, embedding_size=4, encoder=enc, **kw)
    return LanguageModel(cfg).double()


def _bigram(next_logits: dict[int, dict[int, float]]) -> LanguageModel:
    """A language model whose next-token logits depend only on the last token, as listed
    (every other logit -20): a one-hot embedding, h = tanh(10·onehot) and W_out = table."""
    enc = RecurrentEncoderConfig(cell="rnn", hidden_size=V)
    model = LanguageModel(LanguageModelConfig(vocab_size=V, embedding_size=V, encoder=enc))
    model = model.double()
    cell = model.encoder.rnn.cell_at(0)
    table = torch.full((V, V), -20.0, dtype=torch.float64)  # table[prev, next]
    for prev, row in next_logits.items():
        for nxt, logit in row.items():
            table[prev, nxt] = logit
    with torch.no_grad():
        model.embedding.weight.copy_(torch.eye(V))
        cell.weight_ih.copy_(10.0 * torch.eye(V))
        for p in (cell.weight_hh, cell.bias_ih, cell.bias_hh, model.output.bias):
            p.zero_()
        model.output.weight.copy_(table.T / torch.tanh(torch.tensor(10.0)))
    return model


def test_bigram_model_has_the_table_it_was_built_from():
    model = _bigram({4: {EOS: 5.0, 6: 1.0}})
    logits, _ = model(torch.tensor([[4]]))
    expected = torch.full((V,), -20.0, dtype=torch.float64)
    expected[EOS], expected[6] = 5.0, 1.0
    torch.testing.assert_close(logits[0, 0], expected)


def test_generation_stops_at_eos_per_sequence():
    # greedy: 4 -> <eos>; 5 -> 6 -> <eos>; 7 -> 7 -> 7 ... (never ends)
    model = _bigram({4: {EOS: 5.0}, 5: {6: 5.0}, 6: {EOS: 5.0}, 7: {7: 5.0}})
    out = generate(model, prompt=torch.tensor([[4], [5], [7]]), max_length=5, greedy=True)
    assert out.tokens.tolist() == [
        [EOS, PAD, PAD, PAD, PAD],
        [6, EOS, PAD, PAD, PAD],
        [7, 7, 7, 7, 7],
    ]
    assert out.lengths.tolist() == [1, 2, 5]
    # sampling from a nearly deterministic table stops the same way
    sampled = generate(model, prompt=torch.tensor([[4], [5], [7]]), max_length=5, seed=1)
    assert sampled.tokens.tolist() == out.tokens.tolist()


def test_all_sequences_done_early_trims_the_output():
    model = _bigram({BOS: {5: 5.0}, 5: {EOS: 5.0}})
    out = generate(model, num_sequences=3, max_length=10, greedy=True)
    assert out.tokens.tolist() == [[5, EOS]] * 3
    assert out.lengths.tolist() == [2, 2, 2]


@pytest.mark.parametrize(
    "kw", [{}, {"temperature": 0.7}, {"top_k": 3}, {"top_p": 0.8}, {"top_k": 4, "top_p": 0.9}]
)
def test_batched_generation_equals_one_by_one(kw):
    model = _lm()
    batch = generate(model, num_sequences=4, max_length=12, seed=100, **kw)
    for i in range(4):
        alone = generate(model, num_sequences=1, max_length=12, seed=100 + i, **kw)
        n = int(alone.lengths[0])
        assert int(batch.lengths[i]) == n
        assert batch.tokens[i, :n].tolist() == alone.tokens[0, :n].tolist()
        assert torch.all(batch.tokens[i, n:] == PAD)
    again = generate(model, num_sequences=4, max_length=12, seed=[100, 101, 102, 103], **kw)
    assert torch.equal(again.tokens, batch.tokens)


def test_eos_ends_each_sampled_sequence():
    model = _lm()
    with torch.no_grad():
        model.output.bias[EOS] += 1.5  # make <eos> come early enough to see it
    out = generate(model, num_sequences=6, max_length=15, seed=5)
    for row, n in zip(out.tokens.tolist(), out.lengths.tolist()):
        assert EOS not in row[: n - 1]
        assert row[n - 1] == EOS or n == 15
        assert all(t == PAD for t in row[n:])
    assert EOS in out.tokens


def test_top_k_1_equals_greedy_and_greedy_is_the_arg_max_chain():
    model = _lm()
    greedy = generate(model, num_sequences=3, max_length=10, greedy=True)
    top1 = generate(model, num_sequences=3, max_length=10, top_k=1, seed=3, temperature=2.0)
    assert torch.equal(top1.tokens, greedy.tokens)
    # oracle: rerun the prefix and check each token is the arg max of the next distribution
    prefix = torch.full((1, 1), BOS)
    for t in range(int(greedy.lengths[0])):
        logits, _ = model(prefix)
        assert int(greedy.tokens[0, t]) == int(logits[0, -1].argmax())
        prefix = torch.cat([prefix, greedy.tokens[:1, t : t + 1]], dim=1)


def test_conditional_generation_follows_the_label():
    model = _lm(num_labels=2, label_size=3)
    labels = torch.tensor([0, 1, 1])
    batch = generate(model, labels=labels, max_length=8, seed=9)
    for i in range(3):
        alone = generate(model, labels=labels[i : i + 1], max_length=8, seed=9 + i)
        n = int(alone.lengths[0])
        assert batch.tokens[i, :n].tolist() == alone.tokens[0, :n].tolist()


def test_sampling_probs_match_hand_computed_values():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.1]], dtype=torch.float64))
    torch.testing.assert_close(sampling_probs(logits), torch.exp(logits))
    # temperature 0.5 squares the probabilities before renormalising
    sq = torch.tensor([[0.25, 0.0625, 0.0225, 0.01]], dtype=torch.float64)
    torch.testing.assert_close(sampling_probs(logits, temperature=0.5), sq / sq.sum())
    top2 = torch.tensor([[0.5, 0.25, 0.0, 0.0]], dtype=torch.float64) / 0.75
    torch.testing.assert_close(sampling_probs(logits, top_k=2), top2)
    # nucleus 0.7: 0.5 < 0.7, then 0.75 >= 0.7, so the first two are kept
    torch.testing.assert_close(sampling_probs(logits, top_p=0.7), top2)
    torch.testing.assert_close(
        sampling_probs(logits, top_p=0.5), torch.tensor([[1.0, 0, 0, 0]]).double()
    )
    torch.testing.assert_close(sampling_probs(logits, top_p=1.0), torch.exp(logits))


@pytest.mark.parametrize("kw", [{}, {"temperature": 3.0}, {"top_k": 5}, {"top_p": 0.3}])
def test_sampling_probs_sum_to_one(kw):
    logits = 4.0 * torch.randn(16, 50)
    probs = sampling_probs(logits, **kw)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(16))
    assert torch.all(probs >= 0)
    if "top_k" in kw:
        assert torch.all((probs > 0).sum(dim=1) == 5)
