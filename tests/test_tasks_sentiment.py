"""sentiment end to end on VADER's movie sentences with a tiny budget: the accuracy
recomputed sentence by sentence in file order, the baselines recomputed."""

from __future__ import annotations

import numpy as np
import torch

from rnnkit.datasets.sentiment import load_sentiment
from rnnkit.models import load_model, load_vocab
from rnnkit.tasks.sentiment import tokens
from rnnkit.text import Vocab
from rnnkit.training.run import train


def test_sentiment_end_to_end(tmp_path):
    run = tmp_path / "run"
    m = train(
        "sentiment",
        {"data.train_limit": "1500", "model.embedding_size": "32",
         "model.encoder.hidden_size": "32", "trainer.max_steps": "40",
         "trainer.val_every_n_steps": "20", "trainer.checkpoint_every_n_steps": "20",
         "trainer.progress_bar": "false", "trainer.accelerator": "cpu"},
        run_dir=run, argv=["rnnkit"], echo=False,
    )["metrics"]  # fmt: skip

    texts, labels = load_sentiment("test")
    model, vocab = load_model(run / "model"), Vocab.from_dict(load_vocab(run / "model"))
    with torch.no_grad():  # one sentence at a time, in file order: no padding, no buckets
        pred = [int(model(torch.tensor([vocab.encode(tokens(t, 80))]))[0, 0] > 0) for t in texts]
    assert m["accuracy"] == float(np.mean(np.array(pred) == np.array(labels)))
    assert m["baseline_majority_accuracy"] == 554 / 1058  # training is 50.4 % negative
    assert m["baseline_vader_accuracy"] == 634 / 1058  # vaderSentiment 3.3.2, compound >= 0
