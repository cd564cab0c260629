"""Acceptance 7: save -> load gives identical outputs for every model; loading the wrong
model type, a corrupt file or weights that do not fit the config gives a clear error; configs
round-trip through JSON and reject unknown keys."""

from __future__ import annotations

import json

import pytest
import torch

from rnnkit.models import (
    ClassifierConfig,
    LanguageModel,
    LanguageModelConfig,
    RecurrentEncoderConfig,
    RegressorConfig,
    Seq2Seq,
    Seq2SeqConfig,
    SequenceClassifier,
    SequenceRegressor,
    SequenceTagger,
    TaggerConfig,
    config_from_dict,
    config_to_dict,
    load_model,
    load_vocab,
)


def _enc(cell="lstm", **kw):
    return RecurrentEncoderConfig(cell=cell, hidden_size=6, **kw)


def _models():
    x = torch.randn(2, 5, 3)
    lengths = torch.tensor([5, 3])
    tokens = torch.randint(4, 10, (2, 5))
    return {
        "tagger": (
            SequenceTagger(TaggerConfig(num_classes=4, vocab_size=10, encoder=_enc("gru"))),
            lambda m: m(tokens, lengths),
        ),
        "classifier": (
            SequenceClassifier(
                ClassifierConfig(
                    num_classes=3,
                    input_size=3,
                    pooling="attention",
                    encoder=_enc("peephole_lstm", bidirectional=True, num_layers=2),
                )
            ),
            lambda m: m(x, lengths),
        ),
        "regressor": (
            SequenceRegressor(
                RegressorConfig(input_size=3, output_size=3, horizon=2, encoder=_enc("mut2"))
            ),
            lambda m: m.forecast(x, 4, lengths),
        ),
        "language_model": (
            LanguageModel(
                LanguageModelConfig(
                    vocab_size=10,
                    embedding_size=6,
                    tie_weights=True,
                    num_labels=2,
                    encoder=_enc("nas"),
                )
            ),
            lambda m: m(tokens, labels=torch.tensor([0, 1]))[0],
        ),
        "seq2seq": (
            Seq2Seq(
                Seq2SeqConfig(
                    tgt_vocab_size=10,
                    src_vocab_size=10,
                    decoder_cell="lstm",
                    decoder_hidden_size=6,
                    attention="multiplicative",
                    encoder=_enc("layernorm_lstm", bidirectional=True),
                )
            ),
            lambda m: m.beam_search(tokens, lengths, beam_size=3, max_length=5).log_probs,
        ),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_save_load_gives_identical_outputs(name, tmp_path):
    model, run = _models()[name]
    model.eval()
    vocab = {"itos": ["<pad>", "<unk>", "<bos>", "<eos>"] + list("abcdef")}
    model.save(tmp_path / name, vocab=vocab)
    loaded = type(model).load(tmp_path / name)
    also = load_model(tmp_path / name)
    assert type(also) is type(model)
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(run(loaded), run(model))
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert load_vocab(tmp_path / name) == vocab


def test_tied_weights_stay_tied_after_loading(tmp_path):
    model = LanguageModel(
        LanguageModelConfig(vocab_size=10, embedding_size=6, tie_weights=True, encoder=_enc("gru"))
    )
    model.save(tmp_path / "lm")
    loaded = LanguageModel.load(tmp_path / "lm")
    assert loaded.output.weight is loaded.embedding.weight
    assert torch.equal(loaded.embedding.weight, model.embedding.weight)
    assert load_vocab(tmp_path / "lm") is None


def test_loading_the_wrong_model_type_is_a_clear_error(tmp_path):
    lm = LanguageModel(LanguageModelConfig(vocab_size=10, encoder=_enc()))
    lm.save(tmp_path / "lm")
    with pytest.raises(ValueError, match="holds a LanguageModel, not a SequenceClassifier"):
        SequenceClassifier.load(tmp_path / "lm")


def test_corrupt_weights_are_a_clear_error(tmp_path):
    model = SequenceTagger(TaggerConfig(num_classes=2, input_size=3, encoder=_enc()))
    path = model.save(tmp_path / "m")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors is corrupt"):
        SequenceTagger.load(path)
    (path / "model.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(ValueError, match="model.safetensors is corrupt"):
        load_model(path)


def test_corrupt_config_is_a_clear_error(tmp_path):
    model = SequenceTagger(TaggerConfig(num_classes=2, input_size=3, encoder=_enc()))
    path = model.save(tmp_path / "m")
    (path / "config.json").write_text('{"format": "rnnkit.model", "model_ty')
    with pytest.raises(ValueError, match="config.json is corrupt: not valid JSON"):
        load_model(path)
    (path / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not an rnnkit model config"):
        load_model(path)


def test_weights_that_do_not_fit_the_config_are_a_clear_error(tmp_path):
    model = SequenceTagger(TaggerConfig(num_classes=2, input_size=3, encoder=_enc()))
    path = model.save(tmp_path / "m")
    data = json.loads((path / "config.json").read_text())
    data["config"]["encoder"]["hidden_size"] = 9
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="does not fit the model its config describes"):
        load_model(path)
    data["config"]["encoder"]["hidden_sise"] = 9
    (path / "config.json").write_text(json.dumps(data))
    with pytest.raises(
        ValueError, match=r"unknown RecurrentEncoderConfig key\(s\) \['hidden_sise'\]"
    ):
        load_model(path)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_model(tmp_path / "nothing")


def test_config_round_trips_through_json():
    cfg = Seq2SeqConfig(
        tgt_vocab_size=20,
        src_input_size=7,
        attention="none",
        encoder=_enc("mut1", num_layers=3, merge_mode="sum", bidirectional=True),
    )
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert data["encoder"] == {
        "type": "recurrent",
        "cell": "mut1",
        "hidden_size": 6,
        "num_layers": 3,
        "bidirectional": True,
        "merge_mode": "sum",
        "dropout": 0.0,
        "residual": False,
        "checkpoint": None,
    }
    assert config_from_dict(Seq2SeqConfig, data) == cfg
    with pytest.raises(ValueError, match=r"unknown Seq2SeqConfig key\(s\) \['beam'\]"):
        config_from_dict(Seq2SeqConfig, {**data, "beam": 3})
    with pytest.raises(ValueError, match="encoder type must be one of"):
        config_from_dict(Seq2SeqConfig, {**data, "encoder": {"type": "transformer"}})
