"""What a task is: real data, a default model, a training set-up and a metric with baselines.

A task subclasses :class:`Task` and fills in the hooks below; :mod:`rnnkit.training.run`
does the rest (run folder, Trainer, checkpoints, export, metrics.json, loss curve). The run
configuration is a dataclass with four sections, each overridable by dotted key::

    @dataclass
    class MyConfig:
        data: MyDataConfig = field(default_factory=MyDataConfig)
        model: ClassifierConfig = field(default_factory=...)      # an rnnkit.models config
        trainer: TrainerConfig = field(default_factory=...)
        optim: OptimConfig = field(default_factory=...)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from ..training.config import ConfigError
from ..training.loader import BatchLoader
from ..training.modules import RnnkitModule


class Task:
    """One application: subclasses set the class attributes and implement the hooks."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    module_class: ClassVar[type[RnnkitModule]]
    # model keys the task sets from the data (vocabulary size, classes...): not overridable
    derived_keys: ClassVar[tuple[str, ...]] = ()

    def default_config(self) -> Any:
        return self.config_class()

    def check_overrides(self, overrides: dict[str, str]) -> None:
        """Refuse overrides of keys the task derives from the data."""
        for key in overrides:
            if key in self.derived_keys:
                raise ConfigError(
                    f"{key} is set by the {self.name} task from its data and cannot be overridden"
                )

    # -- hooks -------------------------------------------------------------------------------
    def load_data(self, config: Any) -> Any:
        """Everything the run needs from the data: splits, vocabulary, normalisation."""
        raise NotImplementedError

    def derive(self, config: Any, data: Any) -> Any:
        """``config`` with the keys that depend on the data (``derived_keys``) filled in."""
        return config

    def build_model(self, config: Any, data: Any) -> nn.Module:
        """The untrained model of the derived ``config``."""
        raise NotImplementedError

    def vocab(self, data: Any) -> dict[str, Any] | None:
        """The JSON object saved with the model (vocabulary, normalisation), or None."""
        return None

    def train_loader(self, config: Any, data: Any, rank: int, world_size: int) -> BatchLoader:
        raise NotImplementedError

    def val_loader(self, config: Any, data: Any, rank: int, world_size: int) -> BatchLoader:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, config: Any, data: Any, run_dir: Path) -> dict[str, Any]:
        """Test-split metrics and their baselines; may write figures into ``run_dir``."""
        raise NotImplementedError

    def report(self, metrics: dict[str, Any]) -> list[str]:
        """The lines printed after training or ``rnnkit evaluate``."""
        return [f"{k}: {v}" for k, v in metrics.items()]
