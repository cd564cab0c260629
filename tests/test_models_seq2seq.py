"""Seq2Seq: the loss ignores padding on both sides (two paddings, each pair alone); attention
weights are a distribution over the valid source steps; teacher forcing with a ratio equals
teacher forcing on the tokens it actually fed; ratio 0 decodes as greedy decoding."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models import RecurrentEncoderConfig, Seq2Seq, Seq2SeqConfig

PAD, BOS, EOS = 0, 2, 3
V = 12


def _model(attention="additive", features=False, cell="gru"):
    enc = RecurrentEncoderConfig(cell=cell, hidden_size=6, bidirectional=True)
    src = {"src_input_size": 3} if features else {"src_vocab_size": V}
    cfg = Seq2SeqConfig(
        tgt_vocab_size=V,
        embedding_size=5,
        encoder=enc,
        decoder_cell=cell,
        decoder_hidden_size=7,
        attention=attention,
        attention_size=4,
        **src,
    )
    return Seq2Seq(cfg).double()


def _data(features):
    src_lengths = torch.tensor([5, 2, 4])
    src = torch.randn(3, 5, 3, dtype=torch.float64) if features else torch.randint(4, V, (3, 5))
    tgt = torch.tensor([[BOS, 4, 5, 6, EOS], [BOS, 7, EOS, PAD, PAD], [BOS, 8, 9, EOS, PAD]])
    return src, src_lengths, tgt, torch.tensor([5, 3, 4])


def _pad(x, T, fill):
    extra = torch.full((x.shape[0], T - x.shape[1], *x.shape[2:]), fill, dtype=x.dtype)
    return torch.cat([x, extra], dim=1)


def _loss_grads(model, *args):
    model.zero_grad()
    loss = model.loss(*args)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("attention", ["none", "additive", "multiplicative"])
@pytest.mark.parametrize("features", [False, True])
def test_loss_ignores_padding_on_both_sides(attention, features):
    model = _model(attention, features)
    src, src_len, tgt, tgt_len = _data(features)
    short = _loss_grads(model, src, src_len, tgt, tgt_len)
    long = _loss_grads(model, _pad(src, 8, 1), src_len, _pad(tgt, 7, PAD), tgt_len)

    model.zero_grad()  # oracle: each pair alone, weighted by its number of target tokens
    total = sum(
        model.loss(src[b : b + 1, :s], None, tgt[b : b + 1, :u]) * (u - 1)
        for b, (s, u) in enumerate(zip(src_len.tolist(), tgt_len.tolist()))
    )
    n = int((tgt_len - 1).sum())
    (total / n).backward()
    alone = (total.detach() / n, [p.grad.clone() for p in model.parameters()])
    for other in (long, alone):
        torch.testing.assert_close(short[0], other[0], rtol=1e-12, atol=1e-12)
        for a, b in zip(short[1], other[1]):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("attention", ["additive", "multiplicative"])
def test_attention_is_a_distribution_over_the_valid_source_steps(attention):
    model = _model(attention, cell="lstm")
    src, src_len, tgt, _ = _data(False)
    _, alpha = model(src, src_len, tgt[:, :-1])  # (B, U, S)
    for b, s in enumerate(src_len.tolist()):
        torch.testing.assert_close(alpha[b, :, :s].sum(dim=1), torch.ones(4, dtype=torch.float64))
        assert torch.all(alpha[b, :, s:] == 0)
        _, alone = model(src[b : b + 1, :s], None, tgt[b : b + 1, :-1])
        torch.testing.assert_close(alpha[b, :, :s], alone[0], rtol=1e-12, atol=1e-12)


def test_teacher_forcing_ratio_feeds_gold_or_own_tokens_as_drawn():
    model = _model("multiplicative")
    src, src_len, tgt, _ = _data(False)
    tgt_in = tgt[:, :-1]
    mixed, _ = model(
        src,
        src_len,
        tgt_in,
        teacher_forcing_ratio=0.5,
        generator=torch.Generator().manual_seed(4),
    )
    # oracle: replay the draws, rebuild the tokens that were fed, and teacher-force them
    draws = torch.Generator().manual_seed(4)
    fed = tgt_in.clone()
    for t in range(1, tgt_in.shape[1]):
        use_gold = torch.rand(3, generator=draws) < 0.5
        fed[:, t] = torch.where(use_gold, tgt_in[:, t], mixed[:, t - 1].argmax(dim=1))
    assert not torch.equal(fed, tgt_in)  # some own tokens were fed
    forced, _ = model(src, src_len, fed)
    torch.testing.assert_close(mixed, forced, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("attention", ["none", "additive", "multiplicative"])
def test_ratio_zero_decodes_like_greedy(attention):
    model = _model(attention).eval()
    src, src_len, _, _ = _data(False)
    greedy = model.greedy_decode(src, src_len, max_length=6)
    start = torch.full((3, 6), BOS)  # only the first token is read with ratio 0
    logits, _ = model(src, src_len, start, teacher_forcing_ratio=0.0)
    own = logits.argmax(dim=2)
    for b, n in enumerate(greedy.lengths.tolist()):
        assert own[b, :n].tolist() == greedy.tokens[b, :n].tolist()


def test_teacher_forced_step_equals_the_prefix_run_alone():
    """Causality: the logits at step t depend on the target prefix up to t only."""
    model = _model("additive")
    src, src_len, tgt, _ = _data(False)
    logits, _ = model(src, src_len, tgt)
    for t in range(tgt.shape[1]):
        prefix, _ = model(src, src_len, tgt[:, : t + 1])
        torch.testing.assert_close(prefix[:, t], logits[:, t], rtol=1e-12, atol=1e-12)
