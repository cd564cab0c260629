"""Acceptance 8: models export to ONNX with variable batch size and length, and onnxruntime
gives the outputs PyTorch gives, on two lengths and two batch sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.models import (
    ClassifierConfig,
    LanguageModel,
    LanguageModelConfig,
    RecurrentEncoderConfig,
    SequenceClassifier,
    SequenceTagger,
    TaggerConfig,
)
from rnnkit.models.onnx import choose_route, export_onnx

ort = pytest.importorskip("onnxruntime")

SIZES = [(2, 5), (3, 11)]  # (B, T): two batch sizes, two lengths
TOL = 1e-5


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_sequence_model(model, path, tokens=False):
    session = _session(path)
    g = torch.Generator().manual_seed(0)
    for B, T in SIZES:
        x = (
            torch.randint(1, 10, (B, T), generator=g)
            if tokens
            else torch.randn(B, T, 4, generator=g)
        )
        lengths = torch.randint(1, T + 1, (B,), generator=g)
        lengths[0] = T
        (got,) = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            want = model(x, lengths).numpy()
        np.testing.assert_allclose(got, want, rtol=TOL, atol=TOL)


@pytest.mark.parametrize(
    "cell,bidirectional,pooling",
    [("lstm", True, "last"), ("gru", False, "attention"), ("gru", True, "mean")],
)
def test_classifier_exports(cell, bidirectional, pooling, tmp_path):
    enc = RecurrentEncoderConfig(
        cell=cell, hidden_size=6, num_layers=2, bidirectional=bidirectional
    )
    model = SequenceClassifier(
        ClassifierConfig(num_classes=3, input_size=4, encoder=enc, pooling=pooling)
    ).eval()
    assert choose_route(model) == "fused"
    _check_sequence_model(model, export_onnx(model, tmp_path / "c.onnx"))


def test_token_tagger_exports(tmp_path):
    enc = RecurrentEncoderConfig(cell="rnn", hidden_size=6, bidirectional=True, residual=True)
    model = SequenceTagger(TaggerConfig(num_classes=2, vocab_size=10, encoder=enc)).eval()
    _check_sequence_model(model, export_onnx(model, tmp_path / "t.onnx"), tokens=True)


def _check_language_model(model, path):
    session = _session(path)
    names = [i.name for i in session.get_inputs()]
    g = torch.Generator().manual_seed(0)
    for B, T in SIZES:
        tokens = torch.randint(0, 12, (B, T), generator=g)
        state = model.encoder.state_from_vector(
            torch.randn(B, model.encoder.flat_state_size, generator=g)
        )
        state = (state,) if isinstance(state, torch.Tensor) else state
        got = session.run(
            None, {"tokens": tokens.numpy(), **{n: s.numpy() for n, s in zip(names[1:], state)}}
        )
        with torch.no_grad():
            logits, h_n = model(tokens, state[0] if len(state) == 1 else state)
        h_n = (h_n,) if isinstance(h_n, torch.Tensor) else h_n
        for a, b in zip(got, (logits, *h_n)):
            np.testing.assert_allclose(a, b.numpy(), rtol=TOL, atol=TOL)


@pytest.mark.parametrize(
    "cell,names", [("lstm", ["tokens", "h_0", "c_0"]), ("gru", ["tokens", "h_0"])]
)
def test_language_model_exports_with_its_state(cell, names, tmp_path):
    enc = RecurrentEncoderConfig(cell=cell, hidden_size=6, num_layers=2)
    model = LanguageModel(
        LanguageModelConfig(vocab_size=12, embedding_size=6, encoder=enc, tie_weights=True)
    ).eval()
    path = export_onnx(model, tmp_path / "lm.onnx")
    assert [i.name for i in _session(path).get_inputs()] == names
    _check_language_model(model, path)


def test_other_cells_export_through_scan(tmp_path):
    enc = RecurrentEncoderConfig(cell="peephole_lstm", hidden_size=5)
    model = LanguageModel(LanguageModelConfig(vocab_size=12, embedding_size=4, encoder=enc)).eval()
    assert choose_route(model) == "scan"
    with pytest.raises(ValueError, match="route='fused' needs rnn, lstm or gru cells"):
        export_onnx(model, tmp_path / "no.onnx", route="fused")
    _check_language_model(model, export_onnx(model, tmp_path / "lm.onnx"))


@pytest.mark.parametrize("cell", ["mut1", "mut2"])
def test_mut_cells_with_literal_inputs_export_through_scan(cell, tmp_path):
    """MUT1 and MUT2 with equal input and hidden sizes project their input block by block
    (engine/projection.py); under torch.export that projection takes its composed torch ops,
    which the graph can hold, and the exported model computes what the model does."""
    enc = RecurrentEncoderConfig(cell=cell, hidden_size=5)
    model = LanguageModel(LanguageModelConfig(vocab_size=12, embedding_size=5, encoder=enc)).eval()
    assert choose_route(model) == "scan"
    _check_language_model(model, export_onnx(model, tmp_path / "lm.onnx"))
