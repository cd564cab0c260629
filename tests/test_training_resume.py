"""Acceptance 4: a run killed with SIGKILL between checkpoints, then resumed, has the loss
curve of the same run uninterrupted from the checkpoint on (CPU, fixed seed), and every
checkpoint file it left behind reads back whole."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from rnnkit.training.callbacks import read_history
from rnnkit.training.checkpoint import load_checkpoint_file
from rnnkit.training.run import train

STEPS = 160
EVERY = 20
OVERRIDES = {
    "trainer.max_steps": str(STEPS),
    "trainer.checkpoint_every_n_steps": str(EVERY),
    "trainer.val_every_n_steps": str(EVERY),
    "trainer.progress_bar": "false",
    "trainer.accelerator": "cpu",
    "trainer.num_threads": "1",
    "model.dropout": "0.3",  # so the random state has to be restored too
    "model.encoder.hidden_size": "32",
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rnnkit.cli", *args]


def last_step(history) -> int:
    try:
        lines = history.read_text().splitlines()
    except FileNotFoundError:
        return 0
    rows = [line.split(",") for line in lines[1:] if line.startswith("train,")]
    return int(rows[-1][1]) if rows else 0


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = tmp_path / "killed"
    overrides = [f"--{k}={v}" for k, v in OVERRIDES.items()]
    with subprocess.Popen(
        cli("train", "digits", *overrides, "--run", str(killed)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        # past the second checkpoint and not on a checkpoint step
        while (s := last_step(killed / "history.csv")) < 2 * EVERY + 3 or s % EVERY == 0:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    killed_at = last_step(killed / "history.csv")
    assert killed_at < STEPS

    checkpoints = sorted((killed / "checkpoints").glob("*.safetensors"))
    steps = {p.name: load_checkpoint_file(p)["global_step"] for p in checkpoints}  # all whole
    resumed_from = steps["last.safetensors"]
    assert resumed_from % EVERY == 0 and 2 * EVERY <= resumed_from < killed_at

    subprocess.run(cli("train", "--resume", str(killed)), env=env, check=True, capture_output=True)
    straight = tmp_path / "straight"
    train("digits", OVERRIDES, run_dir=straight, argv=["rnnkit"], echo=False)

    a, b = read_history(straight / "history.csv"), read_history(killed / "history.csv")
    assert max(a["train"]) == max(b["train"]) == STEPS
    assert {s: v for s, v in b["train"].items() if s > resumed_from} == {
        s: v for s, v in a["train"].items() if s > resumed_from
    }
    assert b["valid"] == a["valid"]
    assert (killed / "metrics.json").read_text() == (straight / "metrics.json").read_text()
