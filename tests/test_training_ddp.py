"""Acceptance 5: two DDP processes on the CPU (gloo), each with half of every global batch,
end with the weights of one process trained on the whole global batches."""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from rnnkit.training.callbacks import read_history
from rnnkit.training.run import train

OVERRIDES = {
    "trainer.max_steps": "12",
    "trainer.batch_size": "32",  # global: 16 per process under DDP
    "trainer.val_every_n_steps": "6",
    "trainer.checkpoint_every_n_steps": "6",
    "trainer.progress_bar": "false",
    "trainer.accelerator": "cpu",
    "trainer.num_threads": "1",
    "model.encoder.hidden_size": "32",
}


def test_two_gloo_processes_equal_one_process(tmp_path):
    ddp = tmp_path / "ddp"
    args = [f"--{k}={v}" for k, v in OVERRIDES.items()]
    subprocess.run(
        [sys.executable, "-m", "rnnkit.cli", "train", "digits", *args,
         "--trainer.devices=2", "--trainer.strategy=ddp", "--run", str(ddp)],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, capture_output=True,
        cwd=tmp_path,
    )  # fmt: skip
    one = tmp_path / "one"
    train("digits", OVERRIDES, run_dir=one, argv=["rnnkit"], echo=False)

    a = load_file(str(ddp / "model" / "model.safetensors"))
    b = load_file(str(one / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # the same global batches gave the same loss at every step (rank 0 logs the mean of both)
    ha, hb = read_history(ddp / "history.csv"), read_history(one / "history.csv")
    assert ha["train"].keys() == hb["train"].keys() == set(range(1, 13))
    for step in hb["train"]:
        assert abs(ha["train"][step] - hb["train"][step]) < 1e-5
