"""Single-file safetensors checkpoints: exact round trip, atomic replacement, kill-safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections import OrderedDict

import numpy as np
import pytest
import torch
from safetensors import safe_open

from rnnkit.training import checkpoint as ckpt
from rnnkit.training.checkpoint import (
    CheckpointError,
    SafetensorsCheckpointIO,
    load_checkpoint_file,
    save_checkpoint_file,
)


def lightning_like() -> dict:
    """What Lightning hands a CheckpointIO: nested dicts with int keys, tuples, tensors."""
    g = torch.Generator().manual_seed(3)
    return {
        "epoch": 2,
        "global_step": 60,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": OrderedDict(
            [("model.w", torch.randn(3, 4, generator=g)), ("model.b", torch.zeros(4))]
        ),
        "optimizer_states": [
            {
                "state": {0: {"step": torch.tensor(60.0), "m": torch.randn(3, 4, generator=g)}},
                "param_groups": [{"lr": 0.002, "betas": (0.9, 0.999), "params": [0, 1]}],
            }
        ],
        "lr_schedulers": [{"base_lrs": [0.002], "lr_lambdas": [None], "last_epoch": 59}],
        "loops": {"fit_loop": {"state_dict": {"combined_loader": [{"epoch": 1, "position": 21}]}}},
        "callbacks": {"RNG": {"numpy": np.arange(5, dtype=np.uint32), "python": [3, [1, 2]]}},
        "rnnkit": {"task": "digits", "config": {"model": {"hidden": 8}}, "vocab": None},
        "best_model_score": float("inf"),
    }  # fmt: skip


def assert_same(a, b) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)  # keys, their types and their order
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert type(a) is type(b) and a == b


def test_round_trip_is_exact(tmp_path):
    original = lightning_like()
    path = tmp_path / "c.safetensors"
    save_checkpoint_file(original, path)
    assert_same(original, load_checkpoint_file(path))


def test_file_is_plain_safetensors_with_json_metadata(tmp_path):
    original = lightning_like()
    path = tmp_path / "c.safetensors"
    SafetensorsCheckpointIO().save_checkpoint(original, path)
    with safe_open(str(path), framework="pt") as f:
        assert torch.equal(f.get_tensor("state_dict/model.w"), original["state_dict"]["model.w"])
        skeleton = json.loads(f.metadata()["rnnkit.skeleton"])
    assert skeleton["rnnkit"] == original["rnnkit"]
    assert skeleton["global_step"] == 60


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.safetensors"
    save_checkpoint_file({"global_step": 1, "w": torch.ones(2)}, path)
    before = path.read_bytes()

    def broken(tensors, metadata):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "safetensors_save", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint_file({"global_step": 2, "w": torch.zeros(2)}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


WRITER = textwrap.dedent(
    """
    import sys, torch
    from rnnkit.training.checkpoint import save_checkpoint_file
    path = sys.argv[1]
    big = torch.arange(4_000_000, dtype=torch.float32)  # 16 MB: a write takes a while
    for step in range(1, 100):
        print("writing", step, flush=True)
        save_checkpoint_file({"global_step": step, "w": big + step}, path)
    """
)


def test_sigkill_mid_write_never_leaves_a_half_written_checkpoint(tmp_path):
    path = tmp_path / "last.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True
    ) as proc:
        while proc.stdout.readline().split() != ["writing", "3"]:
            pass
        proc.send_signal(signal.SIGKILL)  # while checkpoint 3 is being written
    loaded = load_checkpoint_file(path)
    step = loaded["global_step"]
    assert step in (2, 3)  # 2 unless the 16-MB write beat the signal
    assert torch.equal(loaded["w"], torch.arange(4_000_000, dtype=torch.float32) + step)
    others = [p.name for p in tmp_path.iterdir() if p != path]
    assert all(name.startswith(".last.safetensors.") and name.endswith(".part") for name in others)


def test_foreign_and_damaged_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "weights.safetensors"
    save_file({"w": torch.ones(1)}, str(foreign))
    with pytest.raises(CheckpointError, match="not an rnnkit checkpoint"):
        load_checkpoint_file(foreign)
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint_file(damaged)
    with pytest.raises(CheckpointError, match="no checkpoint file at"):
        load_checkpoint_file(tmp_path / "missing.safetensors")


def test_unstorable_objects_are_named():
    with pytest.raises(TypeError, match=r"cannot store a object in a checkpoint \(at 'a/b'\)"):
        ckpt.flatten({"a": {"b": object()}}, {})
