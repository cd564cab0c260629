"""Lightning callbacks rnnkit adds to every run: exact resume and the loss history.

* :class:`RandomState` saves the torch, NumPy and Python random generators into each checkpoint
  and puts them back when a run resumes, so dropout masks after a resume are the ones an
  uninterrupted run would have drawn.
* :class:`LossHistory` writes every training step's loss (averaged over processes) and every
  validation loss to ``history.csv`` in the run folder, one line at a time, and on resume drops
  the lines written after the checkpoint it resumes from.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from ..datasets._cache import atomic_write

HISTORY_FIELDS = ("split", "step", "loss")


class RandomState(pl.Callback):
    """Checkpoint the random generators; restore them when training (re)starts."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        # the legacy global generator is the state code outside rnnkit may draw from
        np_state = np.random.get_state()  # noqa: NPY002
        state = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "name": np_state[0],
                "keys": np_state[1],
                "pos": int(np_state[2]),
                "has_gauss": int(np_state[3]),
                "cached_gaussian": float(np_state[4]),
            },
            "python": _to_lists(random.getstate()),
        }
        if torch.cuda.is_available():
            state["cuda"] = list(torch.cuda.get_rng_state_all())
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # applied in on_train_start: restoring happens before Lightning's own set-up, which
        # may still draw random numbers
        self._pending = dict(state_dict)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state(  # noqa: NPY002
            (n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
             n["cached_gaussian"])
        )  # fmt: skip
        random.setstate(_to_tuples(state["python"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(obj: Any) -> Any:
    return [_to_lists(v) for v in obj] if isinstance(obj, (tuple, list)) else obj


def _to_tuples(obj: Any) -> Any:
    return tuple(_to_tuples(v) for v in obj) if isinstance(obj, (tuple, list)) else obj


def read_history(path: str | Path) -> dict[str, dict[int, float]]:
    """``{"train": {step: loss}, "valid": {step: loss}}`` from a ``history.csv``.

    A (split, step) written twice keeps its last value.
    """
    out: dict[str, dict[int, float]] = {"train": {}, "valid": {}}
    path = Path(path)
    if not path.exists():
        return out
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["split"], {})[int(row["step"])] = float(row["loss"])
    return out


class LossHistory(pl.Callback):
    """Append ``split,step,loss`` lines to ``path`` (global rank 0 writes).

    The step of a training loss is the optimizer step it produced (1 for the first); a
    validation loss carries the number of optimizer steps taken before it.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = None
        self._writer: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        resumed_at = trainer.global_step
        kept = [
            (split, step, loss)
            for split, rows in read_history(self.path).items()
            for step, loss in sorted(rows.items())
            if step <= resumed_at
        ]
        with atomic_write(self.path, "w") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(HISTORY_FIELDS)
            w.writerows((s, step, repr(loss)) for s, step, loss in kept)
        self._file = open(self.path, "a", newline="")  # noqa: SIM115 (open for the whole run)
        self._writer = csv.writer(self._file, lineterminator="\n")

    def _write(self, split: str, step: int, loss: float) -> None:
        if self._writer is not None:
            self._writer.writerow((split, step, repr(loss)))
            self._file.flush()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        loss = trainer.strategy.reduce(loss.detach(), reduce_op="mean")
        self._write("train", trainer.global_step, float(loss))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        self._write("valid", trainer.global_step, float(trainer.callback_metrics["val_loss"]))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.close()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._writer = None, None
