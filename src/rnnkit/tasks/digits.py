"""``digits``: classify scikit-learn's 8x8 handwritten digits read one row per step.

Many-to-one: a GRU reads the 8 rows (8 pixels each) and its last output names the digit.
Metric: test accuracy, against always answering the most frequent training digit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets.digits import load_digits_sequences
from ..models import ClassifierConfig, RecurrentEncoderConfig, SequenceClassifier
from ..training.config import OptimConfig, TrainerConfig
from ..training.modules import SupervisedModule
from ._common import array_loaders, majority_accuracy, predict_in_batches
from .base import Task


@dataclass
class DigitsData:
    train_limit: int = 0  # train on the first N training images only; 0 uses all 1,257


@dataclass
class DigitsConfig:
    data: DigitsData = field(default_factory=DigitsData)
    model: ClassifierConfig = field(
        default_factory=lambda: ClassifierConfig(
            num_classes=10,
            input_size=8,
            encoder=RecurrentEncoderConfig(cell="gru", hidden_size=64),
            pooling="last",
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=1200, batch_size=32, val_every_n_steps=100, checkpoint_every_n_steps=100
        )
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=3e-3))


@dataclass
class DigitsData_:
    x: dict[str, torch.Tensor]  # split -> (N, T=8, I=8)
    y: dict[str, torch.Tensor]  # split -> (N,)


class DigitsTask(Task):
    name = "digits"
    config_class = DigitsConfig
    module_class = SupervisedModule
    derived_keys = ("model.num_classes", "model.input_size", "model.vocab_size")

    def load_data(self, config: DigitsConfig) -> DigitsData_:
        xs, ys = {}, {}
        for split in ("train", "valid", "test"):
            x, y = load_digits_sequences(split)
            if split == "train" and config.data.train_limit:
                x, y = x[: config.data.train_limit], y[: config.data.train_limit]
            xs[split], ys[split] = torch.from_numpy(x), torch.from_numpy(y)
        return DigitsData_(xs, ys)

    def build_model(self, config: DigitsConfig, data: DigitsData_) -> SequenceClassifier:
        return SequenceClassifier(config.model)

    def train_loader(self, config: DigitsConfig, data: DigitsData_, rank: int, world: int):
        return array_loaders(
            data.x["train"], data.y["train"], batch_size=config.trainer.batch_size,
            seed=config.trainer.seed, rank=rank, world_size=world, train=True,
        )  # fmt: skip

    def val_loader(self, config: DigitsConfig, data: DigitsData_, rank: int, world: int):
        return array_loaders(
            data.x["valid"], data.y["valid"], batch_size=256,
            seed=0, rank=0, world_size=1, train=False,
        )  # fmt: skip

    def evaluate(
        self, model: SequenceClassifier, config: DigitsConfig, data: DigitsData_, run_dir: Path
    ) -> dict[str, Any]:
        model.eval()
        pred = predict_in_batches(model.predict, data.x["test"]).numpy()
        truth = data.y["test"].numpy()
        return {
            "split": "test",
            "n": int(truth.size),
            "accuracy": float(np.mean(pred == truth)),
            "baseline_majority_accuracy": majority_accuracy(data.y["train"].numpy(), truth),
        }

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"test accuracy {metrics['accuracy']:.2%} on {metrics['n']} digits "
            f"(always the most frequent digit: {metrics['baseline_majority_accuracy']:.2%})"
        ]
