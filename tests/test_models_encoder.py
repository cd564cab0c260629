"""The encoder contract: a registered encoder type plugs into every model and round-trips
through JSON; the recurrent encoder equals its runner and lays out its state as documented."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from torch import nn

from rnnkit import Recurrent
from rnnkit.models import (
    CELLS,
    ClassifierConfig,
    RecurrentEncoder,
    RecurrentEncoderConfig,
    SequenceClassifier,
    config_from_dict,
    config_to_dict,
    register_encoder,
)
from rnnkit.models import encoder as encoder_module


@dataclass
class ScaleConfig:
    type: ClassVar[str] = "scale"
    factor: float = 2.0


class ScaleEncoder(nn.Module):
    """h^<t> = factor · x^<t>: the smallest encoder that follows the contract."""

    def __init__(self, config: ScaleConfig, input_size: int) -> None:
        super().__init__()
        self.factor = config.factor
        self.output_size = input_size
        self.causal = True

    def forward(self, x, lengths=None):
        if lengths is None:
            return self.factor * x
        valid = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        return self.factor * x * valid.unsqueeze(2)


def test_a_registered_encoder_plugs_into_a_model(monkeypatch):
    monkeypatch.setattr(encoder_module, "_ENCODERS", dict(encoder_module._ENCODERS))
    register_encoder("scale", ScaleConfig, ScaleEncoder)
    cfg = ClassifierConfig(num_classes=2, input_size=3, encoder=ScaleConfig(0.5), pooling="mean")
    data = config_to_dict(cfg)
    assert data["encoder"] == {"type": "scale", "factor": 0.5}
    assert config_from_dict(ClassifierConfig, data) == cfg
    model = SequenceClassifier(cfg).double()
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    lengths = torch.tensor([4, 2])
    means = torch.stack([0.5 * x[0].mean(0), 0.5 * x[1, :2].mean(0)])
    torch.testing.assert_close(model(x, lengths), model.head(means))


def test_register_checks_the_type_name():
    with pytest.raises(ValueError, match="config_class.type must equal the registered name"):
        register_encoder("other", ScaleConfig, ScaleEncoder)


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_recurrent_encoder_is_its_runner(cell):
    enc = RecurrentEncoder(
        RecurrentEncoderConfig(cell=cell, hidden_size=4, num_layers=2, bidirectional=True), 3
    ).double()
    runner = Recurrent(CELLS[cell], 3, 4, 2, bidirectional=True, batch_first=True).double()
    runner.load_state_dict(enc.rnn.state_dict())
    x = torch.randn(3, 5, 3, dtype=torch.float64)
    lengths = torch.tensor([5, 1, 3])
    torch.testing.assert_close(enc(x, lengths), runner(x, lengths=lengths)[0], rtol=0, atol=0)
    assert enc.output_size == 8 and not enc.causal


def test_state_vector_layout():
    """Per sequence: every h (layer-direction major), then every c."""
    enc = RecurrentEncoder(
        RecurrentEncoderConfig(cell="lstm", hidden_size=3, num_layers=2, bidirectional=True), 2
    )
    assert enc.flat_state_size == 2 * 4 * 3
    v = torch.arange(2 * 24, dtype=torch.float32).view(2, 24)
    h, c = enc.state_from_vector(v)
    assert h.shape == c.shape == (4, 2, 3)
    assert h[1, 0].tolist() == [3.0, 4.0, 5.0]  # sequence 0, layer 0 backward
    assert c[3, 1].tolist() == [24 + 12 + 9.0, 24 + 12 + 10.0, 24 + 12 + 11.0]
    picked = enc.select_state((h, c), torch.tensor([1]))
    assert torch.equal(picked[0][:, 0], h[:, 1]) and torch.equal(picked[1][:, 0], c[:, 1])


def test_recurrent_encoder_checkpoint_gives_the_same_model():
    """encoder.checkpoint recomputes in segments: outputs and every gradient unchanged."""
    torch.manual_seed(0)
    cfg = RecurrentEncoderConfig(cell="mut2", hidden_size=4, num_layers=2, bidirectional=True)
    plain = RecurrentEncoder(cfg, 3).double()
    cfg_ck = RecurrentEncoderConfig(
        cell="mut2", hidden_size=4, num_layers=2, bidirectional=True, checkpoint=2
    )
    segmented = RecurrentEncoder(cfg_ck, 3).double()
    segmented.load_state_dict(plain.state_dict())
    assert segmented.rnn.checkpoint == 2 and plain.rnn.checkpoint is None
    x = torch.randn(3, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 2, 5])
    w = torch.randn(3, 7, 8, dtype=torch.float64)
    grads = []
    for enc in (plain, segmented):
        out = enc(x, lengths)
        grads.append((out, *torch.autograd.grad((out * w).sum(), list(enc.parameters()))))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("value,error", [(0, ValueError), (2.0, TypeError)])
def test_recurrent_encoder_checkpoint_is_checked(value, error):
    with pytest.raises(error, match="encoder.checkpoint"):
        RecurrentEncoderConfig(checkpoint=value)
