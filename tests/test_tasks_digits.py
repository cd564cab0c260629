"""digits end to end on the real data with a tiny budget; the metric recomputed from the
saved model, and against the majority baseline."""

from __future__ import annotations

import json

import numpy as np
import torch

from rnnkit.datasets.digits import load_digits_sequences
from rnnkit.models import load_model
from rnnkit.training.run import train


def test_digits_end_to_end(tmp_path):
    run = tmp_path / "run"
    result = train(
        "digits",
        {"trainer.max_steps": "150", "trainer.val_every_n_steps": "50",
         "trainer.checkpoint_every_n_steps": "50", "trainer.progress_bar": "false",
         "model.encoder.hidden_size": "32", "trainer.accelerator": "cpu"},
        run_dir=run, argv=["rnnkit"], echo=False,
    )  # fmt: skip
    m = result["metrics"]
    assert json.loads((run / "metrics.json").read_text()) == result

    x, y = load_digits_sequences("test")
    model = load_model(run / "model")
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    assert m["accuracy"] == float(np.mean(pred == y))
    _, y_train = load_digits_sequences("train")
    assert m["baseline_majority_accuracy"] == float(np.mean(y == np.bincount(y_train).argmax()))
    assert m["accuracy"] > 3 * m["baseline_majority_accuracy"]  # 150 steps learn a lot
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
