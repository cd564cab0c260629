"""``sentiment``: is a movie-review sentence positive or negative?

The lecture's many-to-one sentiment classifier on the 10,568 human-scored movie-review
sentences VADER ships (:mod:`rnnkit.datasets.sentiment`; 80/10/10 split). Words (lower-cased,
:func:`rnnkit.text.word_tokens`) seen at least ``min_freq`` times in training get an
embedding; a bidirectional LSTM reads the sentence and max pooling over time feeds one
sigmoid.

Metric: test accuracy, against the majority class of the training split and against VADER's
own lexicon-and-rules scorer (``vaderSentiment``: compound score >= 0 means positive) on the
same test sentences.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import BucketBatchSampler, pad_batch
from ..datasets._deps import require
from ..datasets.sentiment import load_sentiment
from ..models import ClassifierConfig, RecurrentEncoderConfig, SequenceClassifier
from ..text import Vocab, word_tokens
from ..training.config import OptimConfig, TrainerConfig
from ..training.loader import BatchLoader, ResumableLoader
from ..training.modules import LabelledBatch, SupervisedModule
from ._common import majority_accuracy
from .base import Task


@dataclass
class SentimentData:
    min_freq: int = 2  # words seen fewer times in training map to <unk>
    max_tokens: int = 80  # longer sentences are cut
    train_limit: int = 0  # train on the first N training sentences only; 0 = all 8,454


@dataclass
class SentimentConfig:
    data: SentimentData = field(default_factory=SentimentData)
    model: ClassifierConfig = field(
        default_factory=lambda: ClassifierConfig(
            num_classes=1,
            vocab_size=4,  # placeholder: set from the data
            embedding_size=128,
            encoder=RecurrentEncoderConfig(cell="lstm", hidden_size=128, bidirectional=True),
            pooling="max",
            dropout=0.5,
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=2000,
            batch_size=32,
            val_every_n_steps=100,
            checkpoint_every_n_steps=100,
            early_stopping_patience=6,
        )
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=1e-5))


@dataclass
class SentimentData_:
    vocab: Vocab
    texts: dict[str, list[str]]
    ids: dict[str, list[list[int]]]
    labels: dict[str, np.ndarray]


def tokens(text: str, max_tokens: int) -> list[str]:
    return word_tokens(text, lower=True)[:max_tokens] or ["<unk>"]


class SentimentTask(Task):
    name = "sentiment"
    config_class = SentimentConfig
    module_class = SupervisedModule
    derived_keys = ("model.vocab_size", "model.pad_id", "model.num_classes", "model.input_size")

    def load_data(self, config: SentimentConfig) -> SentimentData_:
        d = config.data
        texts, labels = {}, {}
        for split in ("train", "valid", "test"):
            t, y = load_sentiment(split)
            if split == "train" and d.train_limit:
                t, y = t[: d.train_limit], y[: d.train_limit]
            texts[split], labels[split] = t, np.asarray(y, dtype=np.int64)
        vocab = Vocab.build((tokens(t, d.max_tokens) for t in texts["train"]), min_freq=d.min_freq)
        ids = {s: [vocab.encode(tokens(t, d.max_tokens)) for t in ts] for s, ts in texts.items()}
        return SentimentData_(vocab, texts, ids, labels)

    def derive(self, config: SentimentConfig, data: SentimentData_) -> SentimentConfig:
        model = replace(config.model, vocab_size=len(data.vocab), pad_id=data.vocab.pad_id)
        return replace(config, model=model)

    def build_model(self, config: SentimentConfig, data: SentimentData_) -> SequenceClassifier:
        return SequenceClassifier(config.model)

    def vocab(self, data: SentimentData_) -> dict[str, Any]:
        return data.vocab.to_dict()

    def _collate(self, data: SentimentData_, split: str):
        ids, labels = data.ids[split], torch.from_numpy(data.labels[split]).float()

        def collate(index: list[int]) -> LabelledBatch:
            x, lengths, _ = pad_batch([ids[i] for i in index], value=data.vocab.pad_id)
            return LabelledBatch(x.long(), lengths, labels[index])

        return collate

    def train_loader(self, config: SentimentConfig, data: SentimentData_, rank: int, world: int):
        sampler = BucketBatchSampler(
            [len(s) for s in data.ids["train"]], config.trainer.batch_size,
            drop_last=True, seed=config.trainer.seed,
        )  # fmt: skip
        return ResumableLoader(
            sampler.batches, self._collate(data, "train"), rank=rank, world_size=world
        )

    def val_loader(self, config: SentimentConfig, data: SentimentData_, rank: int, world: int):
        return self._eval_loader(data, "valid")

    def _eval_loader(self, data: SentimentData_, split: str) -> BatchLoader:
        sampler = BucketBatchSampler([len(s) for s in data.ids[split]], 256, shuffle=False)
        batches = sampler.batches(0)
        return BatchLoader(lambda epoch: batches, self._collate(data, split))

    def evaluate(
        self, model: SequenceClassifier, config: SentimentConfig, data: SentimentData_,
        run_dir: Path,
    ) -> dict[str, Any]:  # fmt: skip
        model.eval()
        truth = data.labels["test"]
        pred = np.empty_like(truth)
        loader = self._eval_loader(data, "test")
        order = [i for batch in loader.plan(0) for i in batch]
        with torch.no_grad():
            out = torch.cat([model.predict(b.x, b.lengths) for b in loader]).numpy()
        pred[order] = out
        return {
            "split": "test",
            "n": int(truth.size),
            "accuracy": float(np.mean(pred == truth)),
            "baseline_majority_accuracy": majority_accuracy(data.labels["train"], truth),
            "baseline_vader_accuracy": vader_accuracy(data.texts["test"], truth),
        }

    def report(self, metrics: dict[str, Any]) -> list[str]:
        return [
            f"test accuracy {metrics['accuracy']:.2%} on {metrics['n']} sentences; "
            f"majority class {metrics['baseline_majority_accuracy']:.2%}, "
            f"VADER's lexicon scorer {metrics['baseline_vader_accuracy']:.2%}"
        ]


def vader_accuracy(texts: list[str], labels: np.ndarray) -> float:
    """Accuracy of VADER's compound score (>= 0 positive) on ``texts``."""
    module = require(
        "vaderSentiment.vaderSentiment", package="vaderSentiment",
        needed_for="the sentiment task's VADER baseline",
    )  # fmt: skip
    analyzer = module.SentimentIntensityAnalyzer()
    pred = np.array([analyzer.polarity_scores(t)["compound"] >= 0.0 for t in texts], np.int64)
    return float(np.mean(pred == labels))
