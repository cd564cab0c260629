"""``sunspots``: forecast the monthly sunspot number 1 and 12 months ahead.

The lecture's sunspot forecasting. A two-layer GRU reads the last ``window`` months (values /
100) and predicts the next ``horizon`` = 12 months at once (a direct multi-step forecast,
:class:`rnnkit.models.SequenceRegressor`). The split is chronological
(:mod:`rnnkit.datasets.sunspots`): train 1749-1931, validation 1931-1970, test 1970-2009.

Metric: RMSE over every test month of the forecast made h = 1 and h = 12 months earlier from
the true values up to then, against

* persistence: the last known value, y(t - h);
* ARIMA(p, d, q) from statsmodels, fitted on the training span only, then run over the whole
  series with its parameters fixed (the Kalman filter conditions on the same past as the
  network) and asked for the h-step forecast from each origin.

``forecast.png`` shows the test span with both models' forecasts.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets._deps import require
from ..datasets.sunspots import load_sunspots, month_name, split_bounds
from ..models import RecurrentEncoderConfig
from ..models.regressor import RegressorConfig, SequenceRegressor
from ..training.config import OptimConfig, TrainerConfig
from ..training.modules import SupervisedModule
from ..training.plots import forecast_plot
from ._common import array_loaders, predict_in_batches
from .base import Task

SCALE = 100.0
HORIZONS = (1, 12)


@dataclass
class SunspotsData:
    window: int = 132  # months the network reads (11 years, about one solar cycle)
    # chosen by the lowest AIC on the training span among p, q <= 3, d <= 1
    arima_order: tuple[int, int, int] = (3, 0, 2)


@dataclass
class SunspotsConfig:
    data: SunspotsData = field(default_factory=SunspotsData)
    model: RegressorConfig = field(
        default_factory=lambda: RegressorConfig(
            input_size=1,
            output_size=1,
            horizon=12,
            # two layers with dropout had the lowest validation loss of the three set-ups
            # tried (docs/results.md)
            encoder=RecurrentEncoderConfig(cell="gru", hidden_size=64, num_layers=2, dropout=0.2),
            dropout=0.2,
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=1500, batch_size=32, val_every_n_steps=100, checkpoint_every_n_steps=100
        )
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))


@dataclass
class SunspotsData_:
    series: np.ndarray  # (N,) all months
    bounds: dict[str, tuple[int, int]]
    x: dict[str, torch.Tensor]  # split -> (n, window, 1): inputs ending at each origin
    y: dict[str, torch.Tensor]  # split -> (n, 12, 1): the 12 months after each origin


def origins_windows(
    series: np.ndarray, origins: np.ndarray, window: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each origin o: inputs series[o-window+1 .. o] (n, window, 1) and targets
    series[o+1 .. o+horizon] (n, horizon, 1), both / SCALE."""
    idx_in = origins[:, None] + np.arange(-window + 1, 1)  # (n, window)
    idx_out = origins[:, None] + np.arange(1, horizon + 1)  # (n, horizon)
    s = series / SCALE
    return s[idx_in][..., None].astype(np.float32), s[idx_out][..., None].astype(np.float32)


class SunspotsTask(Task):
    name = "sunspots"
    config_class = SunspotsConfig
    module_class = SupervisedModule
    derived_keys = ("model.input_size", "model.output_size", "model.horizon")

    def load_data(self, config: SunspotsConfig) -> SunspotsData_:
        series = load_sunspots()
        bounds = split_bounds(len(series))
        W, H = config.data.window, config.model.horizon
        xs, ys = {}, {}
        for split, (lo, hi) in bounds.items():
            # an origin o belongs to the split of its targets o+1 .. o+H
            origins = np.arange(max(lo - 1, W - 1), hi - H)
            x, y = origins_windows(series, origins, W, H)
            xs[split], ys[split] = torch.from_numpy(x), torch.from_numpy(y)
        return SunspotsData_(series, bounds, xs, ys)

    def build_model(self, config: SunspotsConfig, data: SunspotsData_) -> SequenceRegressor:
        return SequenceRegressor(config.model)

    def train_loader(self, config: SunspotsConfig, data: SunspotsData_, rank: int, world: int):
        return array_loaders(
            data.x["train"], data.y["train"], batch_size=config.trainer.batch_size,
            seed=config.trainer.seed, rank=rank, world_size=world, train=True,
        )  # fmt: skip

    def val_loader(self, config: SunspotsConfig, data: SunspotsData_, rank: int, world: int):
        return array_loaders(
            data.x["valid"], data.y["valid"], batch_size=256, seed=0, rank=0, world_size=1,
            train=False,
        )  # fmt: skip

    def evaluate(
        self, model: SequenceRegressor, config: SunspotsConfig, data: SunspotsData_,
        run_dir: Path,
    ) -> dict[str, Any]:  # fmt: skip
        model.eval()
        s, (lo, hi) = data.series, data.bounds["test"]
        months = np.arange(lo, hi)  # every test month is a target
        truth = s[months]
        W = config.data.window
        out: dict[str, Any] = {"split": "test", "months": int(months.size),
                               "first": month_name(lo), "last": month_name(hi - 1)}  # fmt: skip
        arima = ARIMAForecaster(s[: data.bounds["train"][1]], config.data.arima_order)
        forecasts = {}
        for h in HORIZONS:
            origins = months - h
            x = _inputs(s, origins, W)
            pred = predict_in_batches(model, torch.from_numpy(x))[:, h - 1, 0].numpy() * SCALE
            forecasts[h] = pred
            out[f"rmse_{h}"] = rmse(pred, truth)
            out[f"baseline_persistence_rmse_{h}"] = rmse(s[origins], truth)
            out[f"baseline_arima_rmse_{h}"] = rmse(arima.forecast(s, origins, h), truth)
        out["arima_order"] = list(config.data.arima_order)
        years = 1749 + months / 12.0
        forecast_plot(
            years,
            {"observed": truth, "GRU, 1 month ahead": forecasts[1],
             "GRU, 12 months ahead": forecasts[12],
             f"ARIMA{tuple(config.data.arima_order)}, 12 months ahead":
                 arima.forecast(s, months - 12, 12)},
            run_dir / "forecast.png",
            title="Monthly sunspot number, test span", xlabel="year", ylabel="sunspot number",
        )  # fmt: skip
        return out

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"test RMSE {h} month{'s' if h > 1 else ''} ahead: GRU {metrics[f'rmse_{h}']:.2f}, "
            f"persistence {metrics[f'baseline_persistence_rmse_{h}']:.2f}, "
            f"ARIMA{tuple(metrics['arima_order'])} {metrics[f'baseline_arima_rmse_{h}']:.2f} "
            f"({metrics['months']} months, {metrics['first']} to {metrics['last']})"
            for h in HORIZONS
        ]


def _inputs(series: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """(n, window, 1): the ``window`` months up to each origin, / SCALE."""
    idx = origins[:, None] + np.arange(-window + 1, 1)  # (n, window)
    return (series[idx] / SCALE)[..., None].astype(np.float32)


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - truth) ** 2)))


class ARIMAForecaster:
    """statsmodels ARIMA fitted on ``train``; forecasts use fixed parameters on any series."""

    def __init__(self, train: np.ndarray, order: tuple[int, int, int]) -> None:
        arima = require(
            "statsmodels.tsa.arima.model", package="statsmodels", needed_for="the ARIMA baseline"
        )
        with warnings.catch_warnings():
            # the optimiser's convergence notes on this long series are not actionable here
            warnings.simplefilter("ignore")
            self.result = arima.ARIMA(train, order=tuple(order)).fit()

    def forecast(self, series: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
        """The h-step forecast of series[o + h] from series[..o], for each origin o."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            full = self.result.apply(series)
            if h == 1 and np.all(np.diff(origins) == 1):  # one filter pass gives them all
                pred = full.get_prediction(start=int(origins[0]) + 1, end=int(origins[-1]) + 1)
                return np.asarray(pred.predicted_mean)
            out = np.empty(len(origins))
            for i, o in enumerate(origins):
                p = full.get_prediction(start=int(o) + 1, end=int(o) + h, dynamic=True)
                out[i] = np.asarray(p.predicted_mean)[-1]
            return out
