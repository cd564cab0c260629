"""Rebuild an :class:`rnnkit.Recurrent` layer from the weights in a checkpoint.

The layer's weights are found by torch's names (``weight_ih_l0``, ``weight_hh_l1_reverse``...,
under any prefix such as ``model.rnn.``), which rnnkit's layers and ``torch.nn.RNN/LSTM/GRU``
share. The cell kind follows from the shapes, G = rows of ``weight_hh_l0`` / H:
1 Elman (tanh), 3 GRU, 4 LSTM (with peepholes or a projection when their weights are there),
8 NAS; or pass ``cell`` to say it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from ..cells import ElmanCell, GRUCell, LSTMCell, NASCell, RecurrentCell
from ..recurrent import Recurrent

_HH = re.compile(r"^(?P<prefix>.*?)weight_hh_l(?P<layer>\d+)(?P<rev>_reverse)?$")


def load_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """The tensors of a checkpoint: a safetensors file, or a ``torch.save`` file holding a
    state dict, or a dict with one under ``"state_dict"`` (Lightning) or ``"model"``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {path}: expected a state dict, got {type(obj).__name__}")
    return {k: v for k, v in obj.items() if isinstance(v, Tensor)}


def _infer_cell(state: dict[str, Tensor], prefix: str) -> Callable[[int, int], RecurrentCell]:
    w_hh = state[f"{prefix}weight_hh_l0"]
    if f"{prefix}weight_hr_l0" in state:  # projected LSTM: weight_hh is (4H, P)
        P = state[f"{prefix}weight_hr_l0"].shape[0]
        return partial(LSTMCell, proj_size=P, peephole=f"{prefix}weight_ci_l0" in state)
    H = w_hh.shape[1]
    G, rest = divmod(w_hh.shape[0], H)
    bias = f"{prefix}bias_hh_l0" in state
    kinds: dict[int, Callable[..., RecurrentCell]] = {
        1: ElmanCell,
        3: GRUCell,
        4: partial(LSTMCell, peephole=f"{prefix}weight_ci_l0" in state),
        8: NASCell,
    }
    if rest or G not in kinds:
        raise ValueError(
            f"cannot tell the cell from weight_hh_l0 of shape {tuple(w_hh.shape)} "
            f"(expected (G*H, H) with G in 1, 3, 4, 8); name the cell explicitly"
        )
    return partial(kinds[G], bias=bias)


def load_recurrent(
    path: str | os.PathLike,
    *,
    prefix: str | None = None,
    cell: Callable[[int, int], RecurrentCell] | None = None,
    residual: bool = False,
) -> Recurrent:
    """The ``Recurrent`` layer stored in the checkpoint at ``path``, weights loaded (strict).

    ``prefix`` picks one layer when the checkpoint holds several (an encoder and a decoder);
    ``cell`` overrides the inferred cell factory.
    """
    state = load_state_dict(path)
    found: dict[str, set[tuple[int, bool]]] = {}
    for key in state:
        m = _HH.match(key)
        if m:
            found.setdefault(m["prefix"], set()).add((int(m["layer"]), bool(m["rev"])))
    if not found:
        raise ValueError(f"checkpoint {path}: no recurrent weights (no key ending weight_hh_l0)")
    if prefix is None:
        if len(found) > 1:
            raise ValueError(
                f"checkpoint {path} holds several recurrent layers, prefixes "
                f"{sorted(found)}; pass prefix= one of them"
            )
        prefix = next(iter(found))
    if prefix not in found:
        raise ValueError(f"prefix must be one of {sorted(found)}, got {prefix!r}")
    layers = found[prefix]
    num_layers = 1 + max(lay for lay, _ in layers)
    bidirectional = any(rev for _, rev in layers)
    factory = cell if cell is not None else _infer_cell(state, prefix)
    w_ih, w_hh = state[f"{prefix}weight_ih_l0"], state[f"{prefix}weight_hh_l0"]
    hidden = (
        state[f"{prefix}weight_hr_l0"].shape[1]
        if f"{prefix}weight_hr_l0" in state
        else (w_hh.shape[1])
    )
    layer = Recurrent(
        factory,
        w_ih.shape[1],
        hidden,
        num_layers,
        bidirectional=bidirectional,
        residual=residual,
    )
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = {k: v for k, v in own.items() if "." not in k}  # this layer's, not a submodule's
    layer.load_state_dict(own, strict=True)
    return layer.to(w_ih.dtype)
