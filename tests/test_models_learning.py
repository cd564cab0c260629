"""Acceptance 6: learning on tiny real or exactly specified problems, each a test that fails
when the model does not learn: sklearn's 8x8 digits read row by row (>= 95 % held-out
accuracy) and reversing random digit strings with attention (>= 95 % exact match)."""

from __future__ import annotations

import torch

from rnnkit.models import (
    ClassifierConfig,
    RecurrentEncoderConfig,
    Seq2Seq,
    Seq2SeqConfig,
    SequenceClassifier,
)

PAD, BOS, EOS = 0, 2, 3


def _train(model, batches, steps, lr):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / steps)
    model.train()
    for step in range(steps):
        loss = model.loss(*batches(step))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model.eval()


def test_classifier_reads_digits_row_by_row():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (1797, T=8 rows, I=8)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    train, test = order[:1400], order[1400:]
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=64)
    model = SequenceClassifier(ClassifierConfig(num_classes=10, input_size=8, encoder=enc))
    g = torch.Generator().manual_seed(1)
    per_epoch = 22  # batches of 64 over the 1400 training images
    perm = {}

    def batches(step):
        epoch, i = divmod(step, per_epoch)
        if epoch not in perm:
            perm[epoch] = train[torch.randperm(len(train), generator=g)]
        idx = perm[epoch][i * 64 : (i + 1) * 64]
        return x[idx], y[idx]

    _train(model, batches, 15 * per_epoch, lr=1e-2)
    with torch.no_grad():
        accuracy = (model.predict(x[test]) == y[test]).float().mean().item()
    assert accuracy >= 0.95, f"held-out accuracy {accuracy:.3f}"


def _reversal_batch(g, batch_size, lo=2, hi=5):
    """Random digit strings (ids 4..13) and their reversals as [<bos>, ..., <eos>]."""
    n = torch.randint(lo, hi + 1, (batch_size,), generator=g)
    src = torch.full((batch_size, hi), PAD)
    tgt = torch.full((batch_size, hi + 2), PAD)
    for b, k in enumerate(n.tolist()):
        digits = torch.randint(4, 14, (k,), generator=g)
        src[b, :k] = digits
        tgt[b, 0], tgt[b, 1 : k + 1], tgt[b, k + 1] = BOS, digits.flip(0), EOS
    return src, n, tgt, n + 2


def test_seq2seq_with_attention_learns_to_reverse_digit_strings():
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=32, bidirectional=True)
    cfg = Seq2SeqConfig(
        tgt_vocab_size=14,
        src_vocab_size=14,
        embedding_size=16,
        encoder=enc,
        decoder_hidden_size=32,
        attention="additive",
        attention_size=32,
    )
    model = Seq2Seq(cfg)
    g = torch.Generator().manual_seed(0)
    _train(model, lambda step: _reversal_batch(g, 64), 220, lr=1e-2)

    src, n, tgt, _ = _reversal_batch(torch.Generator().manual_seed(123), 300)
    out = model.greedy_decode(src, n, max_length=8)
    exact = [
        out.tokens[b, : k + 1].tolist() == tgt[b, 1 : k + 2].tolist()
        and int(out.lengths[b]) == k + 1
        for b, k in enumerate(n.tolist())
    ]
    accuracy = sum(exact) / len(exact)
    assert accuracy >= 0.95, f"exact-match accuracy {accuracy:.3f}"
