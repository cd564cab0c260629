"""rnnkit: recurrent sequence models on PyTorch.

The top-level names are imported lazily so that the torch-free parts (``rnnkit.reference``,
``rnnkit.text``) can be used, and tested, without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # cells
    "RecurrentCell": "rnnkit.cells",
    "ElmanCell": "rnnkit.cells",
    "LSTMCell": "rnnkit.cells",
    "LayerNormLSTMCell": "rnnkit.cells",
    "GRUCell": "rnnkit.cells",
    "MGUCell": "rnnkit.cells",
    "MUT1Cell": "rnnkit.cells",
    "MUT2Cell": "rnnkit.cells",
    "MUT3Cell": "rnnkit.cells",
    "NASCell": "rnnkit.cells",
    "ConvLSTMCell": "rnnkit.cells",
    "ConvGRUCell": "rnnkit.cells",
    # runner and torch-compatible layers
    "Recurrent": "rnnkit.recurrent",
    "RNN": "rnnkit.layers",
    "LSTM": "rnnkit.layers",
    "GRU": "rnnkit.layers",
    # temporal convolution network
    "TCN": "rnnkit.tcn",
    "receptive_field": "rnnkit.tcn",
}

# subpackages reachable as attributes after a plain ``import rnnkit`` (``rnnkit.engine.use``)
_SUBMODULES = (
    "audio", "cells", "cli", "ctc", "data", "datasets", "diagnostics", "embeddings", "engine",
    "layers", "models", "recurrent", "reference", "search", "tasks", "tcn", "text", "training",
    "word2vec",
)  # fmt: skip

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"rnnkit.{name}")  # the import sets the attribute
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__ + sorted(_SUBMODULES)
