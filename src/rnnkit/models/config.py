"""Typed model configurations: checks, and the round trip to and from JSON-ready dicts.

Every model owns a ``@dataclass`` config whose fields are plain JSON values, plus at
most one nested encoder config (a field whose metadata holds ``{"encoder": True}``). The dict
form is what ``config.json`` of a saved model holds and what a command line overrides by dotted
key; unknown keys are errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

from .encoder import encoder_config_from_dict, encoder_config_to_dict

C = TypeVar("C")


# -- dict round trip ---------------------------------------------------------------------------
def config_to_dict(config: Any) -> dict[str, Any]:
    """The JSON-ready dict of a config dataclass (the encoder config tagged with its type)."""
    if not is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config must be a dataclass instance, got {type(config).__name__}")
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("encoder"):
            value = encoder_config_to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


def config_from_dict(cls: type[C], data: object) -> C:
    """Build ``cls`` from its dict form; unknown or missing keys raise ``ValueError``."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__} data must be a mapping, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} key(s) {unknown}; expected keys among {sorted(known)}"
        )
    kwargs = {}
    for key, value in data.items():
        if known[key].metadata.get("encoder"):
            value = encoder_config_from_dict(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        if "missing" in str(err):
            raise ValueError(f"{cls.__name__} data lacks a required key: {err}") from None
        raise
