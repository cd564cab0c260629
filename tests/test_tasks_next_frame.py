"""next_frame end to end with a tiny budget, for both predictors: the per-frame BCE and MSE
recomputed in float64 NumPy from the saved model on test videos generated again, both
baselines by hand, and the trained model past them; the FC-LSTM width against a brute-force
parameter match; bad settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cli_checks import fails
from rnnkit.models import load_model
from rnnkit.tasks.moving_digits import moving_digits
from rnnkit.tasks.next_frame import (
    ConvLSTMPredictor,
    FramePredictor,
    FramePredictorConfig,
    n_params,
)
from rnnkit.training.run import train

S, T, SEED = 12, 5, 0
TINY = {"data.seq_len": str(T), "data.canvas": str(S), "data.train_size": "300",
        "data.valid_size": "20", "data.test_size": "50", "data.seed": str(SEED),
        "model.channels": "4", "model.kernel_size": "3", "optim.lr": "1e-2",
        "trainer.max_steps": "150", "trainer.val_every_n_steps": "75",
        "trainer.checkpoint_every_n_steps": "75", "trainer.progress_bar": "false",
        "trainer.accelerator": "cpu"}  # fmt: skip


def clipped_bce(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-frame mean BCE of probabilities clipped to [0.001, 0.999]: (N, F, 1, S, S) -> (F,)."""
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=(0, 2, 3, 4))


@pytest.mark.parametrize("kind", ["convlstm", "fc_lstm"])
def test_next_frame_end_to_end(tmp_path, kind):
    run = tmp_path / "run"
    result = train("next_frame", {**TINY, "model.kind": kind}, run_dir=run, argv=["rnnkit"],
                   echo=False)  # fmt: skip
    assert json.loads((run / "metrics.json").read_text()) == result
    m = result["metrics"]

    test = moving_digits(50, seed=SEED + 1, split="test", seq_len=T, canvas=S)
    model = load_model(run / "model")
    assert isinstance(model, FramePredictor) and model.config.kind == kind
    with torch.no_grad():
        z = model(test[:, :-1]).double().numpy()  # logits of frames 2..T
    y = test[:, 1:].double().numpy()
    # BCE with logits z: log(1 + e^z) - y·z
    bce = (np.logaddexp(0.0, z) - y * z).mean(axis=(0, 2, 3, 4))
    mse = ((1 / (1 + np.exp(-z)) - y) ** 2).mean(axis=(0, 2, 3, 4))
    np.testing.assert_allclose(m["bce_per_frame"], bce, rtol=1e-5)
    np.testing.assert_allclose(m["mse_per_frame"], mse, rtol=1e-5)
    assert m["bce"] == pytest.approx(bce.mean(), rel=1e-5)
    assert m["predicted_frames"] == list(range(2, T + 1))

    last = test[:, :-1].double().numpy()
    np.testing.assert_allclose(m["baseline_copy_last_bce_per_frame"], clipped_bce(last, y),
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(m["baseline_copy_last_mse_per_frame"],
                               ((last - y) ** 2).mean(axis=(0, 2, 3, 4)), rtol=1e-5)  # fmt: skip
    train_videos = moving_digits(300, seed=SEED, split="train", seq_len=T, canvas=S)
    pixel = float(train_videos.double().mean())
    assert m["baseline_constant_pixel"] == pytest.approx(pixel, rel=1e-6)
    const = np.full_like(y, pixel)
    assert m["baseline_constant_bce"] == pytest.approx(clipped_bce(const, y).mean(), rel=1e-5)
    assert m["baseline_constant_mse"] == pytest.approx(((const - y) ** 2).mean(), rel=1e-5)

    # 150 updates learn the digits' look: better than both baselines on both losses
    assert m["bce"] < 0.8 * m["baseline_constant_bce"]
    assert m["mse"] < 0.8 * min(m["baseline_constant_mse"], m["baseline_copy_last_mse"])

    if kind == "fc_lstm":  # the width whose parameter count is nearest the ConvLSTM's
        target = n_params(ConvLSTMPredictor(S, 4, 3, peephole=True))
        sizes = {h: n_params(FramePredictor(FramePredictorConfig(S, "fc_lstm", hidden_size=h)))
                 for h in range(1, 60)}  # fmt: skip
        assert model.config.hidden_size == min(sizes, key=lambda h: abs(sizes[h] - target))
        assert m["parameters"] == sizes[model.config.hidden_size]


def test_predictors_read_frames_one_step_at_a_time():
    """Output t depends on frames 1..t only: changing frame t+1 leaves outputs 1..t alone."""
    torch.manual_seed(0)
    for kind in ("convlstm", "fc_lstm"):
        model = FramePredictor(FramePredictorConfig(S, kind, channels=2, hidden_size=8))
        frames = moving_digits(2, seed=3, seq_len=T, canvas=S)
        changed = frames.clone()
        changed[:, 3] = 1.0 - changed[:, 3]
        with torch.no_grad():
            a, b = model(frames), model(changed)
        torch.testing.assert_close(a[:, :3], b[:, :3], rtol=0, atol=0)
        assert (a[:, 3] - b[:, 3]).abs().max() > 0


@pytest.mark.parametrize(
    "setting, message",
    [
        ("--model.kind=lstm", "model.kind expects one of 'convlstm', 'fc_lstm', got 'lstm'"),
        ("--data.seq_len=1", "data.seq_len must be >= 2 (one frame in, the next out), got 1"),
        ("--data.canvas=6", "data.canvas must be >= 8 (the digits' side), got 6"),
        ("--model.kernel_size=4", "kernel_size must be odd (a 'same' convolution), got 4"),
        ("--model.canvas=20", "model.canvas is set by the next_frame task from its data"),
    ],
)
def test_bad_settings_name_the_key(capsys, tmp_path, setting, message):
    fails(capsys, ["train", "next_frame", setting, "--run", str(tmp_path / "r")], message)


def test_frames_of_the_wrong_canvas_are_refused():
    model = FramePredictor(FramePredictorConfig(S, "convlstm", channels=2))
    with pytest.raises(ValueError, match=r"frames must be a float tensor \(B, T, 1, 12, 12\), "
                       r"got \(2, 5, 1, 10, 10\)"):  # fmt: skip
        model(torch.zeros(2, T, 1, 10, 10))
