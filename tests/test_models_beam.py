"""Acceptance 5: beam search with beam size 1 equals greedy decoding; on a hand-built model
with known scores it finds the best sequence (checked by enumerating every sequence) that
greedy misses; reported scores equal the model's own teacher-forced log-probabilities."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from rnnkit.models import (
    ATTENTIONS,
    RecurrentEncoderConfig,
    Seq2Seq,
    Seq2SeqConfig,
    beam_search,
    greedy_search,
)

PAD, BOS, EOS = 0, 2, 3
A, B_, C, D = 4, 5, 6, 7
V = 8
# P(next | previous token): greedy takes A (0.55) then C (0.40) then <eos>: 0.22;
# the best sequence is B <eos>: 0.45 * 0.9 = 0.405.
TABLE = {
    BOS: {A: 0.55, B_: 0.45},
    A: {EOS: 0.25, C: 0.40, D: 0.35},
    B_: {EOS: 0.90, C: 0.10},
    C: {EOS: 1.0},
    D: {EOS: 0.5, A: 0.5},
}


def _table_step():
    logp = torch.full((V, V), -30.0, dtype=torch.float64)
    for prev, row in TABLE.items():
        for nxt, p in row.items():
            logp[prev, nxt] = math.log(p)
    logp = torch.log_softmax(logp, dim=1)  # the -30 entries take a negligible share

    def step(tokens, state):
        return logp[tokens], state, None

    return step, logp


def _enumerate_best(logp, max_length, alpha):
    """Every sequence of up to max_length tokens (ending at <eos> or at max_length)."""
    best = (-math.inf, None)
    for n in range(1, max_length + 1):
        for seq in itertools.product(range(V), repeat=n):
            if EOS in seq[:-1]:
                continue
            if n < max_length and seq[-1] != EOS:
                continue
            prev, lp = BOS, 0.0
            for tok in seq:
                lp += float(logp[prev, tok])
                prev = tok
            score = lp / n**alpha
            if score > best[0]:
                best = (score, list(seq))
    return best


def _search(fn, step, B=1, K=None, max_length=4, alpha=0.0):
    kw = {"beam_size": K} if K is not None else {}
    state = (torch.zeros(B * (K or 1), 1),)
    return fn(
        step,
        state,
        batch_size=B,
        bos_id=BOS,
        eos_id=EOS,
        pad_id=PAD,
        max_length=max_length,
        length_penalty=alpha,
        **kw,
    )


def test_beam_finds_the_best_sequence_that_greedy_misses():
    step, logp = _table_step()
    greedy = _search(greedy_search, step)
    assert greedy.tokens.tolist() == [[A, C, EOS]]
    beam = _search(beam_search, step, K=2)
    assert beam.tokens.tolist() == [[B_, EOS]]
    best_score, best_seq = _enumerate_best(logp, 4, 0.0)
    assert beam.tokens[0, : int(beam.lengths[0])].tolist() == best_seq
    assert float(beam.log_probs[0]) == pytest.approx(best_score, abs=1e-9)
    assert float(beam.log_probs[0]) == pytest.approx(math.log(0.405), abs=1e-9)
    assert float(greedy.log_probs[0]) == pytest.approx(math.log(0.22), abs=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_wide_beam_equals_exhaustive_search_with_length_penalty(alpha):
    step, logp = _table_step()
    beam = _search(beam_search, step, K=V * V, max_length=3, alpha=alpha)
    best_score, best_seq = _enumerate_best(logp, 3, alpha)
    assert beam.tokens[0, : int(beam.lengths[0])].tolist() == best_seq
    assert float(beam.scores[0]) == pytest.approx(best_score, abs=1e-9)


def test_beam_size_1_equals_greedy_on_the_table():
    step, _ = _table_step()
    g, b = _search(greedy_search, step), _search(beam_search, step, K=1)
    assert torch.equal(g.tokens, b.tokens) and torch.equal(g.lengths, b.lengths)


def _seq2seq(attention, cell="gru"):
    enc = RecurrentEncoderConfig(cell=cell, hidden_size=6, bidirectional=True)
    cfg = Seq2SeqConfig(
        tgt_vocab_size=10,
        src_vocab_size=10,
        embedding_size=5,
        encoder=enc,
        decoder_cell=cell,
        decoder_hidden_size=7,
        attention=attention,
        attention_size=4,
    )
    model = Seq2Seq(cfg).double().eval()
    with torch.no_grad():
        model.output.bias[EOS] += 0.5  # some hypotheses end before max_length
    return model


SRC = torch.tensor([[4, 5, 6, 7, 8], [9, 4, 0, 0, 0], [5, 6, 7, 0, 0]])
SRC_LENGTHS = torch.tensor([5, 2, 3])


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_seq2seq_beam_size_1_equals_greedy(attention, cell):
    model = _seq2seq(attention, cell)
    g = model.greedy_decode(SRC, SRC_LENGTHS, max_length=8)
    b = model.beam_search(SRC, SRC_LENGTHS, beam_size=1, max_length=8)
    assert torch.equal(g.tokens, b.tokens)
    assert torch.equal(g.lengths, b.lengths)
    torch.testing.assert_close(g.log_probs, b.log_probs)
    if attention == "none":
        assert g.attention is None and b.attention is None
    else:
        torch.testing.assert_close(g.attention, b.attention)


def _teacher_forced_log_prob(model, src, src_len, tokens, n):
    tgt_in = torch.cat([torch.tensor([BOS]), tokens[: n - 1]]).unsqueeze(0)
    with torch.no_grad():
        logits, attention = model(src.unsqueeze(0), src_len.view(1), tgt_in)
    logp = torch.log_softmax(logits[0], dim=-1)
    return float(logp[torch.arange(n), tokens[:n]].sum()), attention


@pytest.mark.parametrize("attention", ["additive", "multiplicative"])
def test_seq2seq_beam_scores_are_the_model_log_probabilities(attention):
    model = _seq2seq(attention)
    beam = model.beam_search(SRC, SRC_LENGTHS, beam_size=4, max_length=6, length_penalty=0.5)
    greedy = model.greedy_decode(SRC, SRC_LENGTHS, max_length=6)
    for b in range(3):
        n = int(beam.lengths[b])
        lp, attn = _teacher_forced_log_prob(model, SRC[b], SRC_LENGTHS[b], beam.tokens[b], n)
        assert float(beam.log_probs[b]) == pytest.approx(lp, abs=1e-9)
        assert float(beam.scores[b]) == pytest.approx(lp / n**0.5, abs=1e-9)
        torch.testing.assert_close(beam.attention[b, :n], attn[0, :n])
        # a wider beam never finds a worse (ranked) hypothesis than greedy's
        g_n = int(greedy.lengths[b])
        assert float(beam.scores[b]) >= float(greedy.log_probs[b]) / g_n**0.5 - 1e-9
