"""Acceptance 9: bad input gives a clear error naming the argument, one test each."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models import (
    ClassifierConfig,
    LanguageModel,
    LanguageModelConfig,
    RecurrentEncoderConfig,
    Seq2Seq,
    Seq2SeqConfig,
    SequenceClassifier,
    generate,
    sampling_probs,
)


def _classifier():
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=4)
    return SequenceClassifier(ClassifierConfig(num_classes=2, input_size=3, encoder=enc))


def _lm(**kw):
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=4, **kw)
    return LanguageModel(LanguageModelConfig(vocab_size=8, embedding_size=3, encoder=enc))


def _seq2seq():
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=4)
    return Seq2Seq(
        Seq2SeqConfig(tgt_vocab_size=8, src_vocab_size=8, encoder=enc, decoder_hidden_size=4)
    )


def test_lengths_batch_mismatch():
    with pytest.raises(ValueError, match=r"lengths must have shape \(3,\).*got \(2,\)"):
        _classifier()(torch.randn(3, 5, 3), torch.tensor([5, 4]))


def test_lengths_longer_than_the_sequence():
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, T=5\]"):
        _classifier()(torch.randn(2, 5, 3), torch.tensor([6, 4]))


def test_unknown_pooling():
    with pytest.raises(
        ValueError, match="pooling must be one of 'last', 'mean', 'max', 'attention'; got 'sum'"
    ):
        ClassifierConfig(num_classes=2, input_size=3, pooling="sum")


def test_unknown_attention_type():
    with pytest.raises(
        ValueError, match="attention must be one of 'additive', 'multiplicative', 'none'; got 'dot'"
    ):
        Seq2SeqConfig(tgt_vocab_size=8, src_vocab_size=8, attention="dot")


def test_unknown_cell():
    with pytest.raises(ValueError, match="encoder.cell must be one of .*got 'lstn'"):
        RecurrentEncoderConfig(cell="lstn")


@pytest.mark.parametrize("max_length", [0, -3])
def test_max_length_below_one(max_length):
    with pytest.raises(ValueError, match=f"max_length must be >= 1, got {max_length}"):
        generate(_lm(), max_length=max_length)
    with pytest.raises(ValueError, match=f"max_length must be >= 1, got {max_length}"):
        _seq2seq().beam_search(torch.tensor([[4, 5]]), beam_size=2, max_length=max_length)


@pytest.mark.parametrize("top_p", [0.0, -0.5, 1.5])
def test_top_p_outside_zero_one(top_p):
    with pytest.raises(ValueError, match=rf"top_p must be in \(0.0, 1.0\], got {top_p}"):
        generate(_lm(), max_length=3, top_p=top_p)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_temperature_not_positive(temperature):
    with pytest.raises(
        ValueError, match=rf"temperature must be in \(0.0, inf\], got {temperature}"
    ):
        sampling_probs(torch.zeros(1, 4), temperature=temperature)


def test_top_k_below_one():
    with pytest.raises(ValueError, match="top_k must be >= 1, got 0"):
        generate(_lm(), max_length=3, top_k=0)


def test_language_model_rejects_a_non_causal_encoder():
    with pytest.raises(ValueError, match="needs a causal encoder"):
        _lm(bidirectional=True)


def test_features_of_the_wrong_width():
    with pytest.raises(
        ValueError, match=r"x must be a float tensor \(B, T, I=3\), got .* shape \(2, 5, 4\)"
    ):
        _classifier()(torch.randn(2, 5, 4))


def test_class_ids_out_of_range():
    with pytest.raises(
        ValueError, match=r"y must hold class ids in \[0, 2\), got values from 0 to 2"
    ):
        _classifier().loss(torch.randn(2, 5, 3), torch.tensor([0, 2]))


def test_tokens_out_of_the_vocabulary():
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, vocab_size=8\)"):
        _lm()(torch.tensor([[1, 8]]))


def test_missing_label_of_a_conditional_model():
    enc = RecurrentEncoderConfig(cell="gru", hidden_size=4)
    lm = LanguageModel(LanguageModelConfig(vocab_size=8, encoder=enc, num_labels=3))
    with pytest.raises(ValueError, match="labels .* are required"):
        lm(torch.tensor([[1, 2]]))


def test_beam_size_below_one():
    with pytest.raises(ValueError, match="beam_size must be >= 1, got 0"):
        _seq2seq().beam_search(torch.tensor([[4, 5]]), beam_size=0, max_length=3)


def test_teacher_forcing_ratio_outside_zero_one():
    s2s = _seq2seq()
    tgt = torch.tensor([[2, 4, 3]])
    with pytest.raises(ValueError, match=r"teacher_forcing_ratio must be in \[0.0, 1.0\], got 1.5"):
        s2s.loss(torch.tensor([[4, 5]]), None, tgt, teacher_forcing_ratio=1.5)


def test_features_and_tokens_both_given():
    with pytest.raises(ValueError, match="exactly one of input_size .* and vocab_size"):
        ClassifierConfig(num_classes=2, input_size=3, vocab_size=10)
