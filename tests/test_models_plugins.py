"""A model saved by a task (its own model class, or its own encoder type) loads in a fresh
interpreter through rnnkit.models.load_model alone, without importing the task first, and
computes what it computed before it was saved."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from rnnkit.models import Seq2Seq, Seq2SeqConfig
from rnnkit.tasks.captioning import ImageEncoderConfig
from rnnkit.tasks.chorales import PianoRollConfig, PianoRollModel
from rnnkit.tasks.next_frame import FramePredictor, FramePredictorConfig


def frame_predictor():
    model = FramePredictor(FramePredictorConfig(canvas=8, channels=4, kernel_size=3))
    return model, (torch.rand(2, 3, 1, 8, 8),), {}


def piano_roll():
    model = PianoRollModel(PianoRollConfig(num_keys=6, num_labels=2))
    return model, ((torch.rand(2, 4, 6) > 0.5).float(),), {"labels": torch.tensor([0, 1])}


def captioner():
    cfg = Seq2SeqConfig(
        tgt_vocab_size=9,
        src_input_size=8,
        embedding_size=4,
        encoder=ImageEncoderConfig(channels=4, hidden_size=6),
        decoder_hidden_size=6,
        attention="additive",
        attention_size=4,
    )
    return Seq2Seq(cfg), (torch.rand(2, 8, 8), None, torch.randint(4, 9, (2, 3))), {}


FRESH = """
import sys, torch
from rnnkit.models import load_model
model = load_model(sys.argv[1])
args, kwargs = torch.load(sys.argv[2])
with torch.no_grad():
    out = model(*args, **kwargs)
torch.save(out[0] if isinstance(out, tuple) else out, sys.argv[3])
"""


@pytest.mark.parametrize("make", [frame_predictor, piano_roll, captioner])
def test_task_model_loads_in_a_fresh_interpreter(tmp_path, make):
    torch.manual_seed(0)
    model, args, kwargs = make()
    model.eval()
    with torch.no_grad():
        expected = model(*args, **kwargs)
    expected = expected[0] if isinstance(expected, tuple) else expected
    model.save(tmp_path / "model")
    torch.save((args, kwargs), tmp_path / "inputs.pt")
    subprocess.run(
        [sys.executable, "-c", FRESH, str(tmp_path / "model"), str(tmp_path / "inputs.pt"),
         str(tmp_path / "out.pt")],
        check=True,
    )  # fmt: skip
    torch.testing.assert_close(torch.load(tmp_path / "out.pt"), expected, rtol=0, atol=0)
