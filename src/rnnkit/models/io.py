"""The saved-model format: a folder with JSON for the config and vocabulary, safetensors for
the weights. Nothing is pickled, so loading a file runs no code from it.

::

    model_dir/
        config.json        {"format": "rnnkit.model", "format_version": 1,
                            "model_type": "SequenceClassifier", "config": {...}}
        model.safetensors  the state_dict (tied weights stored once); its metadata repeats
                           the format and the model type
        vocab.json         optional: any JSON object given at save time (e.g. a Vocab's dict)

This module reads and writes that folder; :mod:`rnnkit.models.base` turns it into models.
Every failure to read raises ``ValueError`` (``FileNotFoundError`` for a missing folder or file)
with the path and what was wrong.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model as _load_safetensors
from safetensors.torch import save_model as _save_safetensors
from torch import nn

FORMAT = "rnnkit.model"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"


@dataclass
class Checkpoint:
    """What ``config.json`` (and ``vocab.json``) of a saved model hold."""

    model_type: str
    config: dict[str, Any]
    vocab: dict[str, Any] | None
    weights_path: Path


def _write_json(path: Path, data: object) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_checkpoint(
    directory: str | os.PathLike,
    *,
    model_type: str,
    config: dict[str, Any],
    module: nn.Module,
    vocab: dict[str, Any] | None = None,
) -> Path:
    """Write ``module``'s weights, its config dict and an optional vocabulary to ``directory``."""
    if vocab is not None and not isinstance(vocab, dict):
        raise TypeError(f"vocab must be a dict (JSON object) or None, got {type(vocab).__name__}")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_type": model_type}
    fd, tmp = tempfile.mkstemp(dir=path, prefix=WEIGHTS_FILE, suffix=".tmp")
    os.close(fd)
    try:
        _save_safetensors(module, tmp, metadata={k: str(v) for k, v in header.items()})
        os.replace(tmp, path / WEIGHTS_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_json(path / CONFIG_FILE, {**header, "config": config})
    vocab_path = path / VOCAB_FILE
    if vocab is not None:
        _write_json(vocab_path, vocab)
    elif vocab_path.exists():
        vocab_path.unlink()  # a stale vocabulary from an earlier save would not match
    return path


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not a saved rnnkit model folder")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is corrupt: not valid JSON ({err})") from None


def read_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read and check ``config.json``, ``vocab.json`` and the weights file's header."""
    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a folder: expected a saved rnnkit model folder")
    data = _read_json(path / CONFIG_FILE)
    where = path / CONFIG_FILE
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{where} is not an rnnkit model config (expected format {FORMAT!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{where} has format_version {data.get('format_version')!r}; this rnnkit reads "
            f"version {FORMAT_VERSION}"
        )
    model_type, config = data.get("model_type"), data.get("config")
    if not isinstance(model_type, str) or not isinstance(config, dict):
        raise ValueError(f"{where} must hold a string 'model_type' and an object 'config'")

    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} not found: the saved model has no weights")
    try:
        with safe_open(weights, framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights} is corrupt: not a readable safetensors file ({err})") from None
    if meta.get("model_type") != model_type:
        raise ValueError(
            f"{weights} holds weights of a {meta.get('model_type')!r}, but {where} says "
            f"{model_type!r}"
        )

    vocab = None
    if (path / VOCAB_FILE).exists():
        vocab = _read_json(path / VOCAB_FILE)
        if not isinstance(vocab, dict):
            raise ValueError(f"{path / VOCAB_FILE} must hold a JSON object")
    return Checkpoint(model_type, config, vocab, weights)


def load_weights(module: nn.Module, weights_path: Path) -> None:
    """Copy the weights file into ``module``; every key must match in name and shape."""
    try:
        _load_safetensors(module, weights_path, strict=True)
    except SafetensorError as err:
        raise ValueError(f"{weights_path} is corrupt: {err}") from None
    except RuntimeError as err:
        raise ValueError(
            f"{weights_path} does not fit the model its config describes: {err}"
        ) from None
