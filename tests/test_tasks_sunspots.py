"""sunspots end to end with a tiny budget: the network's RMSE recomputed from the saved
model, persistence by hand, and ARIMA's fast one-step path against its own h-step loop."""

from __future__ import annotations

import math

import numpy as np
import torch

from rnnkit.datasets.sunspots import load_sunspots, split_bounds
from rnnkit.models import load_model
from rnnkit.tasks.sunspots import ARIMAForecaster
from rnnkit.training.run import train


def test_sunspots_end_to_end(tmp_path):
    run = tmp_path / "run"
    m = train(
        "sunspots",
        {"trainer.max_steps": "40", "trainer.val_every_n_steps": "20",
         "trainer.checkpoint_every_n_steps": "20", "trainer.progress_bar": "false",
         "model.encoder.hidden_size": "16", "data.window": "24",
         "data.arima_order": "2,0,1", "trainer.accelerator": "cpu"},
        run_dir=run, argv=["rnnkit"], echo=False,
    )["metrics"]  # fmt: skip
    s = load_sunspots()
    lo, hi = split_bounds()["test"]
    months = np.arange(lo, hi)
    model = load_model(run / "model")
    for h in (1, 12):
        origins = months - h
        persistence = math.sqrt(np.mean((s[origins] - s[months]) ** 2))
        assert math.isclose(m[f"baseline_persistence_rmse_{h}"], persistence, rel_tol=1e-12)
        x = torch.tensor(np.stack([s[o - 23 : o + 1] for o in origins]) / 100.0).float()
        with torch.no_grad():
            pred = model(x.unsqueeze(2))[:, h - 1, 0].numpy() * 100.0
        assert math.isclose(m[f"rmse_{h}"], math.sqrt(np.mean((pred - s[months]) ** 2)),
                            rel_tol=1e-6)  # fmt: skip
    assert m["baseline_arima_rmse_12"] > m["baseline_arima_rmse_1"]
    assert (run / "forecast.png").read_bytes()[:4] == b"\x89PNG"


def test_arima_one_step_filter_equals_the_per_origin_forecasts():
    s = load_sunspots()
    arima = ARIMAForecaster(s[:600], (2, 0, 1))
    origins = np.arange(900, 912)
    fast = arima.forecast(s, origins, 1)
    slow = arima.forecast(s, origins[::-1], 1)[::-1]  # not consecutive: one call per origin
    np.testing.assert_allclose(fast, slow, rtol=1e-9)
