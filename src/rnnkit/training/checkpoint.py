"""Training checkpoints as single safetensors files, written atomically.

Lightning hands its checkpoint to a ``CheckpointIO`` as a nested dict: model weights,
optimizer and scheduler states, loop counters, callback states, and rnnkit's own entry (run
configuration, vocabulary, task name). :class:`SafetensorsCheckpointIO` stores

* every tensor (and NumPy array) as a safetensors tensor named by its path in the dict
  (``state_dict/encoder.weight_ih_l0``, ``optimizer_states/0/state/3/exp_avg``...);
* everything else as JSON in the file's safetensors metadata (``rnnkit.skeleton``), with each
  tensor replaced by ``{"__tensor__": name}``.

So a checkpoint is a valid safetensors file (no pickle: loading runs no code) whose JSON part
can be read with any safetensors reader. It is written to a temporary file in the same folder,
fsynced and renamed over the target (:func:`rnnkit.datasets._cache.atomic_write`): a reader,
or a run killed mid-write, sees the old file or the whole new one, never half of one.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.plugins.io import CheckpointIO
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from ..datasets._cache import atomic_write_bytes

FORMAT = "rnnkit.checkpoint"
FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that belongs to another task or format."""


def flatten(obj: Any, tensors: dict[str, torch.Tensor], path: str = "") -> Any:
    """A JSON-able skeleton of ``obj``; its tensors go into ``tensors`` under their path."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        if path in tensors:
            raise ValueError(f"two checkpoint entries share the path {path!r}")
        if isinstance(obj, np.ndarray):
            tensors[path] = torch.from_numpy(np.ascontiguousarray(obj).copy())
            return {"__ndarray__": path}
        tensors[path] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": path}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, tensors, f"{path}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        items = [(k, flatten(v, tensors, f"{path}/{k}".lstrip("/"))) for k, v in obj.items()]
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return dict(items)
        for k in obj:
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"checkpoint dict keys must be str or int, got {k!r} at {path!r}")
        return {"__items__": [[k, v] for k, v in items]}
    raise TypeError(
        f"cannot store a {type(obj).__name__} in a checkpoint (at {path or 'the top'!r}); "
        "store tensors, arrays, numbers, strings, lists, tuples and dicts"
    )


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Invert :func:`flatten`."""
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__ndarray__" in skeleton:
            return tensors[skeleton["__ndarray__"]].numpy()
        if "__tuple__" in skeleton:
            return tuple(unflatten(v, tensors) for v in skeleton["__tuple__"])
        if "__items__" in skeleton:
            return OrderedDict((k, unflatten(v, tensors)) for k, v in skeleton["__items__"])
        return OrderedDict((k, unflatten(v, tensors)) for k, v in skeleton.items())
    return skeleton


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``checkpoint`` to ``path`` (see the module docstring), atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten(checkpoint, tensors)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "rnnkit.skeleton": json.dumps(skeleton),
    }
    atomic_write_bytes(path, safetensors_save(tensors, metadata=metadata))


def load_checkpoint_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint_file` (tensors on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint: {e}") from e
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not an rnnkit checkpoint "
            f"(format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    return unflatten(json.loads(metadata["rnnkit.skeleton"]), tensors)


class SafetensorsCheckpointIO(CheckpointIO):
    """Lightning's checkpoint plugin for rnnkit's single-file safetensors format."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("SafetensorsCheckpointIO takes no storage_options")
        save_checkpoint_file(checkpoint, path)

    def load_checkpoint(
        self, path: str | os.PathLike, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return load_checkpoint_file(path)

    def remove_checkpoint(self, path: str | os.PathLike) -> None:
        Path(path).unlink(missing_ok=True)
