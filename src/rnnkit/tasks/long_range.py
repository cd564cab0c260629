"""``adding`` and ``copy``: the long-range tasks of Bai, Kolter & Koltun 2018 (section 5).

Data from :mod:`rnnkit.tasks.synthetic`, generated from ``data.seed`` (train), ``seed + 1``
(validation) and ``seed + 2`` (test), with the paper's definitions:

* ``adding``: T steps of (value ~ U(0, 1), marker); the target is the sum of the two marked
  values. Many-to-one regression (:class:`rnnkit.models.SequenceRegressor`, the output of the
  last step). Metric: test MSE, against predicting 1 (the target's mean), which scores 1/6.
* ``copy``: ten digits from 1..8, T - 1 blanks, eleven delimiters; the last ten targets repeat
  the digits, every other target is the blank. Per-step classification over the 10 tokens
  (:class:`rnnkit.models.SequenceTagger`, tokens through a learned embedding). Metrics: test
  cross-entropy per step over all T + 20 steps, against a model without memory
  (:func:`~rnnkit.tasks.synthetic.copy_memory_baseline`), and recall accuracy on the ten
  digits, against chance 1/8.

The paper's lengths are T = 200 and 600 (adding), 500 and 1000 (copy); the defaults here are
the shorter of each. The default encoder is a TCN, the paper's model (here kernel 8,
dilations 1, 2, 4, ...), with as few blocks as cover the sequence and narrower than the paper's;
``--model.encoder.type=recurrent --model.encoder.cell=lstm`` (or ``gru``) trains the
recurrent baselines. A TCN whose receptive field cannot reach from the last output back to
the first input it needs is a configuration error: a longer ``data.seq_len`` needs more
``model.encoder.num_layers`` (T = 600: 6 blocks; T = 1000 for copy: 7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..models import SequenceRegressor, SequenceTagger, TaggerConfig
from ..models.regressor import RegressorConfig
from ..tcn import TCNEncoderConfig, receptive_field
from ..training.config import ConfigError, OptimConfig, TrainerConfig
from ..training.modules import SupervisedModule
from ._common import array_loaders, predict_in_batches
from .base import Task
from .synthetic import (
    ADDING_BASELINE_MSE,
    COPY_SYMBOLS,
    adding_problem,
    copy_memory,
    copy_memory_baseline,
)

MEM_LEN = 10  # digits to remember in the copy task (the paper's)


def _check_size(key: str, value: int, low: int, why: str = "") -> None:
    if value < low:
        raise ConfigError(f"{key} must be >= {low}{why}, got {value}")


@dataclass
class AddingData:
    seq_len: int = 200  # T; the paper's are 200 and 600
    train_size: int = 20000
    valid_size: int = 1000
    test_size: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        _check_size("data.seq_len", self.seq_len, 2, " (two steps are marked)")
        for name in ("train_size", "valid_size", "test_size"):
            _check_size(f"data.{name}", getattr(self, name), 1)


@dataclass
class CopyData:
    seq_len: int = 500  # T, the blank length (sequences of T + 20); the paper's: 500 and 1000
    train_size: int = 10000
    valid_size: int = 500
    test_size: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        _check_size("data.seq_len", self.seq_len, 1)
        for name in ("train_size", "valid_size", "test_size"):
            _check_size(f"data.{name}", getattr(self, name), 1)


def _trainer(max_steps: int) -> TrainerConfig:
    return TrainerConfig(max_steps=max_steps, batch_size=32, val_every_n_steps=200,
                         checkpoint_every_n_steps=200)  # fmt: skip


@dataclass
class AddingConfig:
    data: AddingData = field(default_factory=AddingData)
    model: RegressorConfig = field(
        default_factory=lambda: RegressorConfig(
            input_size=2,
            output_size=1,
            horizon=1,
            # 4 blocks of kernel 8: receptive field 1 + 2·7·15 = 211 >= T = 200
            encoder=TCNEncoderConfig(hidden_size=24, num_layers=4, kernel_size=8),
            pooling="last",
        )
    )
    trainer: TrainerConfig = field(default_factory=lambda: _trainer(3000))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))


@dataclass
class CopyConfig:
    data: CopyData = field(default_factory=CopyData)
    model: TaggerConfig = field(
        default_factory=lambda: TaggerConfig(
            num_classes=COPY_SYMBOLS,
            vocab_size=COPY_SYMBOLS,
            embedding_size=COPY_SYMBOLS,
            # token 0, the blank, is the embedding's zero vector: it carries no information
            pad_id=0,
            # 6 blocks of kernel 8: receptive field 1 + 2·7·63 = 883 >= T + 11 = 511
            encoder=TCNEncoderConfig(hidden_size=10, num_layers=6, kernel_size=8),
        )
    )
    trainer: TrainerConfig = field(default_factory=lambda: _trainer(3000))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-3))


@dataclass
class Splits:
    x: dict[str, Tensor]  # split -> adding (N, T, 2) float; copy (N, T + 20) token ids
    y: dict[str, Tensor]  # split -> adding (N, 1, 1) sums; copy (N, T + 20) token ids


def check_reach(encoder: Any, span: int) -> None:
    """Raise :class:`ConfigError` when a TCN ``encoder`` config's output cannot see an input
    ``span`` steps earlier (recurrent encoders see the whole past)."""
    if not isinstance(encoder, TCNEncoderConfig):
        return
    k, L = encoder.kernel_size, encoder.num_layers
    r = receptive_field(k, encoder.dilations or [2**i for i in range(L)])
    reach = r - 1 if encoder.causal else (r - 1) // 2
    if reach < span:
        raise ConfigError(
            f"model.encoder: the TCN's receptive field ({r} steps: kernel {k}, {L} blocks) "
            f"does not reach back the {span} steps data.seq_len needs; raise "
            f"model.encoder.num_layers or model.encoder.kernel_size"
        )


def _loader(x: Tensor, y: Tensor, batch: int, seed: int, rank: int, world: int, train: bool):
    return array_loaders(x, y, batch_size=batch, seed=seed, rank=rank, world_size=world,
                         train=train)  # fmt: skip


class _LongRangeTask(Task):
    """What both tasks share: three generated splits, array loaders."""

    module_class = SupervisedModule

    def generate(self, n: int, seq_len: int, seed: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def load_data(self, config: Any) -> Splits:
        d = config.data
        xs, ys = {}, {}
        sizes = {"train": d.train_size, "valid": d.valid_size, "test": d.test_size}
        for offset, (split, n) in enumerate(sizes.items()):
            xs[split], ys[split] = self.generate(n, d.seq_len, d.seed + offset)
        return Splits(xs, ys)

    def train_loader(self, config: Any, data: Splits, rank: int, world: int):
        return _loader(data.x["train"], data.y["train"], config.trainer.batch_size,
                       config.trainer.seed, rank, world, train=True)  # fmt: skip

    def val_loader(self, config: Any, data: Splits, rank: int, world: int):
        return _loader(data.x["valid"], data.y["valid"], 256, 0, 0, 1, train=False)


class AddingTask(_LongRangeTask):
    name = "adding"
    config_class = AddingConfig
    derived_keys = ("model.input_size", "model.output_size", "model.horizon")

    def generate(self, n: int, seq_len: int, seed: int) -> tuple[Tensor, Tensor]:
        x, y = adding_problem(n, seq_len, seed=seed)  # (n, T, 2), (n,)
        return x, y.view(n, 1, 1)  # the regressor's (B, horizon, O)

    def load_data(self, config: AddingConfig) -> Splits:
        # the last output must see the first step, T - 1 steps back
        check_reach(config.model.encoder, config.data.seq_len - 1)
        return super().load_data(config)

    def build_model(self, config: AddingConfig, data: Splits) -> SequenceRegressor:
        return SequenceRegressor(config.model)

    def evaluate(
        self, model: SequenceRegressor, config: AddingConfig, data: Splits, run_dir: Path
    ) -> dict[str, Any]:
        model.eval()
        pred = predict_in_batches(model, data.x["test"])[:, 0, 0]  # (N,)
        y = data.y["test"][:, 0, 0]
        return {
            "split": "test",
            "n": int(y.numel()),
            "seq_len": config.data.seq_len,
            "mse": float(torch.mean((pred - y) ** 2)),
            "baseline_predict_one_mse": ADDING_BASELINE_MSE,
            "baseline_predict_one_mse_test": float(torch.mean((1.0 - y) ** 2)),
        }

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"test MSE {metrics['mse']:.4f} on {metrics['n']} sequences of "
            f"{metrics['seq_len']} steps (predicting 1: {metrics['baseline_predict_one_mse']:.4f}"
            f" expected, {metrics['baseline_predict_one_mse_test']:.4f} on these)"
        ]


class CopyTask(_LongRangeTask):
    name = "copy"
    config_class = CopyConfig
    derived_keys = ("model.num_classes", "model.input_size", "model.vocab_size", "model.pad_id")

    def generate(self, n: int, seq_len: int, seed: int) -> tuple[Tensor, Tensor]:
        return copy_memory(n, seq_len, seed=seed, mem_len=MEM_LEN)  # (n, T + 20) twice

    def load_data(self, config: CopyConfig) -> Splits:
        # output T + 10 + j repeats input j: T + 10 steps back
        check_reach(config.model.encoder, config.data.seq_len + MEM_LEN)
        return super().load_data(config)

    def build_model(self, config: CopyConfig, data: Splits) -> SequenceTagger:
        return SequenceTagger(config.model)

    def evaluate(
        self, model: SequenceTagger, config: CopyConfig, data: Splits, run_dir: Path
    ) -> dict[str, Any]:
        model.eval()
        logits = predict_in_batches(model, data.x["test"])  # (N, T + 20, 10)
        y = data.y["test"]  # (N, T + 20)
        recalled = logits[:, -MEM_LEN:].argmax(dim=-1) == y[:, -MEM_LEN:]  # (N, 10)
        return {
            "split": "test",
            "n": int(y.shape[0]),
            "seq_len": config.data.seq_len,
            "cross_entropy": float(F.cross_entropy(logits.flatten(0, 1), y.flatten())),
            "recall_accuracy": float(recalled.double().mean()),  # exact to float64
            "baseline_memoryless_cross_entropy": copy_memory_baseline(config.data.seq_len),
            "baseline_chance_recall_accuracy": 1.0 / 8.0,
        }

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"test cross-entropy per step {metrics['cross_entropy']:.4f} (no memory: "
            f"{metrics['baseline_memoryless_cross_entropy']:.4f}), recall accuracy "
            f"{metrics['recall_accuracy']:.2%} (chance 12.5%) on {metrics['n']} sequences, "
            f"T = {metrics['seq_len']}"
        ]
