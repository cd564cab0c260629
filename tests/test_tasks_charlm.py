"""charlm end to end on Shakespeare with a tiny budget: streamed held-out loss equals one
pass over each whole stream, the unigram baseline recomputed, beaten, and sampling."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from rnnkit.cli import main
from rnnkit.models import load_model
from rnnkit.models.language_model import batchify
from rnnkit.tasks.charlm import EVAL_STREAMS, CharLMTask
from rnnkit.training.config import from_dict
from rnnkit.training.run import read_run, train

OVERRIDES = {
    "data.train_chars": "150000", "data.val_chars": "10000", "data.test_chars": "6000",
    "data.seq_len": "64", "data.sample_length": "40", "model.encoder.hidden_size": "64",
    "trainer.max_steps": "80", "trainer.val_every_n_steps": "40",
    "trainer.checkpoint_every_n_steps": "40", "trainer.progress_bar": "false",
    "trainer.accelerator": "cpu", "optim.lr": "0.01",
}  # fmt: skip


def test_charlm_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    m = train("charlm", OVERRIDES, run_dir=run, argv=["rnnkit"], echo=False)["metrics"]

    task = CharLMTask()
    config = from_dict(task.config_class, read_run(run)["config"])
    data = task.load_data(config)
    model = load_model(run / "model")
    streams = batchify(data.ids["test"].long(), EVAL_STREAMS)  # (32, N/32)
    with torch.no_grad():  # each stream in one call: no windows, no state carried by hand
        logits, _ = model(streams[:, :-1])
        nats = float(F.cross_entropy(logits.transpose(1, 2), streams[:, 1:]))
    assert math.isclose(m["nats_per_char"], nats, rel_tol=1e-5)
    assert m["bits_per_char"] == m["nats_per_char"] / math.log(2)

    counts = np.bincount(data.ids["train"].numpy(), minlength=len(data.vocab)) + 1.0
    p = counts / counts.sum()
    unigram = float(-np.log(p[streams[:, 1:].numpy()]).mean())
    assert math.isclose(m["baseline_unigram_nats_per_char"], unigram, rel_tol=1e-9)
    assert m["nats_per_char"] < unigram  # 80 steps already beat character frequencies

    assert (run / "sample.txt").read_text(encoding="utf-8") == m["sample"]
    capsys.readouterr()
    assert main(["sample", str(run), "--length", "30", "--prime", "ROMEO.", "--seed", "2"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", str(run), "--length", "30", "--prime", "ROMEO.", "--seed", "2"]) == 0
    assert capsys.readouterr().out == first and first.startswith("ROMEO.")
