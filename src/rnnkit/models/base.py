"""What every model shares: a typed config, save and load (see :mod:`rnnkit.models.io`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from torch import nn

from . import io
from .config import config_from_dict, config_to_dict
from .encoder import import_plugin

M = TypeVar("M", bound="Model")

#: Every model class by its ``model_type``, filled in as the classes are defined.
MODEL_TYPES: dict[str, type[Model]] = {}
#: Model types defined outside rnnkit.models, by the module that defines them: load_model
#: imports it on first use, so a saved task model loads without importing its task first.
MODEL_PLUGINS = {
    "PianoRollModel": "rnnkit.tasks.chorales",
    "FramePredictor": "rnnkit.tasks.next_frame",
}


class Model(nn.Module):
    """Base class of the models: built from one config dataclass, saved as config + weights.

    Subclasses set ``config_class`` and build every submodule from ``config`` alone, so that
    ``type(model)(model.config)`` has the same parameters and :meth:`load` can rebuild it.
    """

    config_class: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_class" in cls.__dict__:
            MODEL_TYPES[cls.__name__] = cls

    def __init__(self, config: Any) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"config must be a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config

    @classmethod
    def model_type(cls) -> str:
        return cls.__name__

    def save(self, directory: str | os.PathLike, *, vocab: dict[str, Any] | None = None) -> Path:
        """Write config, weights and an optional vocabulary (a JSON object) to ``directory``."""
        return io.write_checkpoint(
            directory,
            model_type=self.model_type(),
            config=config_to_dict(self.config),
            module=self,
            vocab=vocab,
        )

    @classmethod
    def load(cls: type[M], directory: str | os.PathLike) -> M:
        """Rebuild a model saved with :meth:`save`; it must be of this class."""
        model = load_model(directory)
        if not isinstance(model, cls):
            raise ValueError(
                f"{directory} holds a {type(model).__name__}, not a {cls.__name__}; load it "
                f"with {type(model).__name__}.load or rnnkit.models.load_model"
            )
        return model


def load_model(directory: str | os.PathLike) -> Model:
    """Rebuild whichever model was saved in ``directory`` (in eval mode, on the CPU)."""
    ckpt = io.read_checkpoint(directory)
    if ckpt.model_type not in MODEL_TYPES and ckpt.model_type in MODEL_PLUGINS:
        import_plugin(MODEL_PLUGINS[ckpt.model_type], f"{directory} holds a {ckpt.model_type}; it")
    cls = MODEL_TYPES.get(ckpt.model_type)
    if cls is None:
        raise ValueError(
            f"{directory} holds a model of unknown type {ckpt.model_type!r}; known types: "
            f"{sorted(set(MODEL_TYPES) | set(MODEL_PLUGINS))}"
        )
    try:
        config = config_from_dict(cls.config_class, ckpt.config)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{directory}: the config of the {ckpt.model_type} is invalid: {err}"
        ) from None
    model = cls(config)
    io.load_weights(model, ckpt.weights_path)
    return model.eval()


def load_vocab(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The vocabulary saved with a model (the dict given to :meth:`Model.save`), or None."""
    return io.read_checkpoint(directory).vocab


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Run a block in eval mode (no dropout), then restore the module's mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
