"""A training run from start to finish: folder, Trainer, fit or resume, export, test metrics.

A run folder holds::

    RUN/config.json                 task, resolved configuration, the command line, versions
    RUN/history.csv                 every step's training loss and every validation loss
    RUN/checkpoints/step-*.safetensors, last.safetensors   periodic checkpoints (resume)
    RUN/checkpoints/best.safetensors                          lowest validation loss so far
    RUN/model/                      the best weights as an rnnkit.models folder (+ vocab.json)
    RUN/metrics.json                the task's test metrics and baselines
    RUN/loss.png and the task's own figures
    RUN/logs/version_*/metrics.csv  Lightning's CSV log (one version per start or resume)

``train`` starts a run or resumes one (``resume=True``); ``evaluate`` recomputes the test
metrics of a finished run from ``RUN/model``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar

from .. import __version__
from ..datasets._cache import atomic_write
from ..engine.allocator import reuse_freed_memory
from .callbacks import LossHistory, RandomState, read_history
from .checkpoint import CheckpointError, SafetensorsCheckpointIO, load_checkpoint_file
from .config import ConfigError, TrainerConfig, apply_overrides, from_dict, to_dict
from .plots import loss_curve

RUNS_ENV = "RNNKIT_RUNS"
RUN_DIR_ENV = "RNNKIT_RUN_DIR"  # hands the run folder to the processes DDP launches
CONFIG_FORMAT = "rnnkit.run"
# keys a resumed run may change: how long it trains and how it shows progress
RESUMABLE_KEYS = ("trainer.max_steps", "trainer.max_epochs", "trainer.max_minutes",
                  "trainer.progress_bar")  # fmt: skip


class RunError(Exception):
    """A run folder that is missing, of another task, or in a state the command cannot use."""


@dataclass(frozen=True)
class RunFolder:
    """The paths inside one run folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.safetensors"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def loss_png(self) -> Path:
        return self.root / "loss.png"


class _ProgressBar(RichProgressBar):
    """Lightning's rich progress bar, without "Epoch 3/-2" when epochs are not the budget."""

    def _get_train_description(self, current_epoch: int) -> str:
        if self.trainer.max_epochs is not None and self.trainer.max_epochs < 0:
            return f"Epoch {current_epoch}"
        return super()._get_train_description(current_epoch)


class SafetensorsModelCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint with rnnkit's file extension (the format is the plugin's)."""

    FILE_EXTENSION = ".safetensors"


def _is_rank_zero() -> bool:
    # before the Trainer exists: processes DDP launched carry their rank in the environment
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _is_ddp_child() -> bool:
    return not _is_rank_zero()


def new_run_folder(task_name: str) -> Path:
    """``$RNNKIT_RUNS/<task>-<YYYYmmdd-HHMMSS>`` (``runs/`` by default), unused so far."""
    root = Path(os.environ.get(RUNS_ENV, "runs"))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{task_name}-{stamp}"
    n = 2
    while path.exists():
        path = root / f"{task_name}-{stamp}-{n}"
        n += 1
    return path


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of a run folder, checked."""
    run = RunFolder(Path(run_dir))
    if not run.root.is_dir():
        raise RunError(f"run folder {run.root} does not exist")
    if not run.config.is_file():
        raise RunError(f"{run.root} is not a run folder: it has no config.json")
    try:
        data = json.loads(run.config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{run.config} is not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != CONFIG_FORMAT:
        raise RunError(f"{run.config} is not an rnnkit run configuration")
    return data


def _write_json(path: Path, data: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2, allow_nan=False)
        f.write("\n")


def build_trainer(tc: TrainerConfig, run: RunFolder) -> tuple[pl.Trainer, ModelCheckpoint]:
    """The Lightning Trainer for ``tc``, writing into ``run``; also returns the best-model
    checkpoint callback."""
    periodic = SafetensorsModelCheckpoint(
        dirpath=run.checkpoints,
        filename="step-{step:06d}",
        auto_insert_metric_name=False,
        every_n_train_steps=tc.checkpoint_every_n_steps,
        monitor="step",
        mode="max",
        save_top_k=tc.keep_checkpoints,
        save_last=True,
    )
    best = SafetensorsModelCheckpoint(
        dirpath=run.checkpoints,
        filename="best",
        auto_insert_metric_name=False,
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        save_on_train_epoch_end=False,
    )
    callbacks: list[pl.Callback] = [RandomState(), LossHistory(run.history), periodic, best]
    if tc.early_stopping_patience:
        callbacks.append(
            EarlyStopping(
                monitor="val_loss",
                mode="min",
                patience=tc.early_stopping_patience,
                check_on_train_epoch_end=False,
            )
        )
    if tc.progress_bar:
        callbacks.append(_ProgressBar(leave=True))
    if tc.logger == "csv":
        logger: Any = pl.loggers.CSVLogger(run.root, name="logs")
    elif tc.logger == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError(
                "trainer.logger=tensorboard needs the 'tensorboard' package: "
                "pip install tensorboard (or use trainer.logger=csv)"
            ) from None
        logger = pl.loggers.TensorBoardLogger(run.root, name="tensorboard")
    else:
        logger = False
    trainer = pl.Trainer(
        accelerator=tc.accelerator,
        devices=tc.devices,
        strategy=tc.strategy,
        precision=tc.precision,
        max_steps=tc.max_steps,
        max_epochs=tc.max_epochs,
        max_time=dt.timedelta(minutes=tc.max_minutes) if tc.max_minutes else None,
        gradient_clip_val=tc.gradient_clip_val or None,
        gradient_clip_algorithm=tc.gradient_clip_algorithm if tc.gradient_clip_val else None,
        val_check_interval=tc.val_every_n_steps,
        check_val_every_n_epoch=None,
        limit_val_batches=tc.val_batches if tc.val_batches is not None else 1.0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        callbacks=callbacks,
        logger=logger,
        enable_progress_bar=tc.progress_bar,
        enable_model_summary=False,
        plugins=[SafetensorsCheckpointIO()],
        use_distributed_sampler=False,
        default_root_dir=run.root,
    )
    return trainer, best


def _resolve(task_name: str, overrides: dict[str, str]) -> tuple[Any, Any]:
    from ..tasks import get_task

    task = get_task(task_name)
    task.check_overrides(overrides)
    return task, apply_overrides(task.default_config(), overrides)


def train(
    task_name: str,
    overrides: dict[str, str],
    *,
    run_dir: str | Path | None = None,
    resume: bool = False,
    argv: Sequence[str] | None = None,
    echo: bool = True,
) -> dict[str, Any] | None:
    """Train ``task_name`` (or resume the run in ``run_dir``); returns the test metrics.

    Processes that DDP launched besides rank 0 return ``None`` once training ends.
    """
    argv = list(sys.argv if argv is None else argv)
    if resume:
        task, config, run = _reopen(task_name, overrides, run_dir)
    else:
        task, config, run = _create(task_name, overrides, run_dir)
    tc: TrainerConfig = config.trainer
    if tc.devices > 1:
        os.environ[RUN_DIR_ENV] = str(run.root)  # inherited by the processes DDP launches
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    if tc.reuse_freed_memory:
        reuse_freed_memory()
    command = shlex.join(["rnnkit", *argv[1:]]) if argv else ""
    record = {
        "format": CONFIG_FORMAT,
        "task": task_name,
        "config": to_dict(config),
        "command": command,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "versions": {
            "rnnkit": __version__,
            "torch": torch.__version__,
            "lightning": pl.__version__,
        },
    }
    if _is_rank_zero():
        run.root.mkdir(parents=True, exist_ok=True)
        if resume:
            record = {**read_run(run.root), "config": to_dict(config)}
            record.setdefault("resumed", []).append(command)
            for stale in run.checkpoints.glob(".*.part"):  # a save the kill interrupted
                stale.unlink()
        _write_json(run.config, record)  # before the data loads, so a failed start is recorded

    pl.seed_everything(tc.seed, workers=False, verbose=False)
    data = task.load_data(config)
    config = task.derive(config, data)
    if _is_rank_zero():
        _write_json(run.config, {**record, "config": to_dict(config)})
    model = task.build_model(config, data)
    run_info = {"task": task_name, "config": to_dict(config), "vocab": task.vocab(data)}
    module = task.module_class(
        model,
        config.optim,
        train_loader=lambda rank, world: task.train_loader(config, data, rank, world),
        val_loader=lambda rank, world: task.val_loader(config, data, rank, world),
        run_info=run_info,
        total_steps=tc.max_steps,
    )
    trainer, best = build_trainer(tc, run)
    with warnings.catch_warnings():
        # a resumed run writes into its own checkpoint folder: that it is not empty is expected
        warnings.filterwarnings(
            "ignore", message=r"Checkpoint directory .* exists and is not empty"
        )
        # lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; nothing to act on
        warnings.filterwarnings(
            "ignore",
            message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
            category=FutureWarning,
        )
        trainer.fit(module, ckpt_path=str(run.last) if resume else None)
    if not trainer.is_global_zero:
        return None

    if best.best_model_path and Path(best.best_model_path).is_file():
        state = load_checkpoint_file(best.best_model_path)["state_dict"]
        module.load_state_dict(state)
    model = module.model.to("cpu").eval()
    model.save(run.model, vocab=task.vocab(data))
    return finish(task, model, config, data, run, echo=echo)


def _create(
    task_name: str, overrides: dict[str, str], run_dir: str | Path | None
) -> tuple[Any, Any, RunFolder]:
    """(task, configuration, folder) of a new run."""
    task, config = _resolve(task_name, overrides)
    if run_dir is None:
        run_dir = os.environ.get(RUN_DIR_ENV) if _is_ddp_child() else None
        run_dir = run_dir or new_run_folder(task_name)
    run = RunFolder(Path(run_dir))
    if run.config.exists() and not _is_ddp_child():
        raise RunError(
            f"{run.root} already holds a run; resume it with `rnnkit train {task_name} "
            f"--resume {run.root}` or choose another --run folder"
        )
    return task, config, run


def _reopen(
    task_name: str, overrides: dict[str, str], run_dir: str | Path | None
) -> tuple[Any, Any, RunFolder]:
    """(task, stored configuration with the allowed overrides, folder) of a run to resume."""
    if run_dir is None:
        raise RunError("resuming needs the run folder")
    stored = read_run(run_dir)
    if stored["task"] != task_name:
        raise RunError(
            f"{run_dir} is a {stored['task']!r} run; it cannot be resumed as {task_name!r}"
        )
    run = RunFolder(Path(run_dir))
    if not run.last.is_file():
        raise RunError(f"{run.root} has no checkpoint to resume from ({run.last} is missing)")
    _check_checkpoint_task(run.last, task_name)
    for key in overrides:
        if key not in RESUMABLE_KEYS:
            raise ConfigError(
                f"a resumed run keeps its configuration; only {', '.join(RESUMABLE_KEYS)} "
                f"may change, got {key}"
            )
    task, _ = _resolve(task_name, {})
    config = apply_overrides(from_dict(task.config_class, stored["config"]), overrides)
    return task, config, run


def finish(
    task: Any, model: Any, config: Any, data: Any, run: RunFolder, *, echo: bool
) -> dict[str, Any]:
    """Test metrics into ``metrics.json``, the loss curve into ``loss.png``; print both."""
    with torch.no_grad():
        metrics = task.evaluate(model, config, data, run.root)
    history = read_history(run.history)
    steps = max(history["train"], default=0)
    result = {"task": task.name, "steps": steps, "metrics": metrics}
    _write_json(run.metrics, result)
    loss_curve(history, run.loss_png, title=f"{task.name}: loss per step", ylabel="loss (nats)")
    if echo:
        print(f"\n{task.name}: {steps} steps, run folder {run.root}")
        for line in task.report(metrics):
            print(f"  {line}")
    return result


def _check_checkpoint_task(path: Path, task_name: str) -> None:
    try:
        info = load_checkpoint_file(path).get("rnnkit", {})
    except CheckpointError as e:
        raise RunError(str(e)) from None
    if info.get("task") != task_name:
        raise RunError(
            f"{path} is a checkpoint of the {info.get('task')!r} task, not of {task_name!r}"
        )


def load_run(run_dir: str | Path) -> tuple[Any, Any, Any, RunFolder]:
    """(task, config, trained model) of a finished run folder."""
    from ..models import load_model
    from ..tasks import get_task

    stored = read_run(run_dir)
    run = RunFolder(Path(run_dir))
    task = get_task(stored["task"])
    config = from_dict(task.config_class, stored["config"])  # derived keys included
    if not (run.model / "config.json").is_file():
        raise RunError(
            f"{run.root} has no trained model yet ({run.model} is missing): the run has not "
            f"finished; resume it with `rnnkit train {task.name} --resume {run.root}`"
        )
    return task, config, load_model(run.model), run


def evaluate(run_dir: str | Path, *, echo: bool = True) -> dict[str, Any]:
    """Recompute a finished run's test metrics (and figures) from ``RUN/model``."""
    task, config, model, run = load_run(run_dir)
    data = task.load_data(config)
    return finish(task, model, config, data, run, echo=echo)
