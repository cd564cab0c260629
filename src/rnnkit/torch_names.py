"""torch.nn's ``state_dict`` names for :class:`rnnkit.Recurrent` (``weight_ih_l0``,
``bias_hh_l1_reverse``...), so a torch.nn checkpoint loads unchanged: hooks that rename the
keys on the way out and on the way in."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .recurrent import Recurrent

_TORCH_KEY = re.compile(r"^(?P<name>.+)_l(?P<layer>\d+)(?P<rev>_reverse)?$")


def to_torch_keys(module: Recurrent, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    D = module.num_directions
    head = prefix + "cells."
    for key in [k for k in state_dict if k.startswith(head)]:
        index, _, name = key[len(head) :].partition(".")
        layer, d = divmod(int(index), D)
        state_dict[f"{prefix}{name}_l{layer}{'_reverse' if d else ''}"] = state_dict.pop(key)


def from_torch_keys(
    module: Recurrent,
    state_dict: dict,
    prefix: str,
    local_metadata: dict,
    strict: bool,
    missing_keys: list,
    unexpected_keys: list,
    error_msgs: list,
) -> None:
    D = module.num_directions
    for key in [k for k in state_dict if k.startswith(prefix)]:
        m = _TORCH_KEY.match(key[len(prefix) :])
        if m is None:
            continue
        d = 1 if m["rev"] else 0
        if d >= D or int(m["layer"]) >= module.num_layers:
            continue  # left as it came, for load_state_dict to report as unexpected
        index = int(m["layer"]) * D + d
        state_dict[f"{prefix}cells.{index}.{m['name']}"] = state_dict.pop(key)
