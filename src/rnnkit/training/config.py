"""Typed run configuration: dataclasses per component, dotted command-line overrides.

A run's configuration is a dataclass whose fields are sections (``data``, ``model``,
``trainer``, ``optim``), each itself a dataclass of plain typed fields. Any field can be set
from the command line by its dotted key::

    rnnkit train charlm --model.hidden_size=512 --trainer.max_steps=3000

:func:`apply_overrides` parses each value with its field's annotation (``int``, ``float``,
``bool``, ``str``, ``Literal[...]``, ``X | None``, ``tuple[int, ...]``) and raises
:class:`ConfigError` for an unknown key (suggesting the closest known one) or a value of the
wrong type. :func:`to_dict` / :func:`from_dict` round-trip a configuration through JSON.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

C = TypeVar("C")

_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")
_NONE = ("none", "null")


class ConfigError(ValueError):
    """A configuration key or value the command line or a config file got wrong."""


# -- the sections every task shares ------------------------------------------------------------
@dataclasses.dataclass
class TrainerConfig:
    """How long and how to train (Lightning ``Trainer`` settings rnnkit exposes).

    The budget is whichever of ``max_steps``, ``max_epochs`` and ``max_minutes`` ends first
    (``-1`` / ``None``: no limit of that kind; at least one must be set).
    """

    max_steps: int = 1000
    max_epochs: int = -1
    max_minutes: float | None = None
    batch_size: int = 32  # global: over all processes together
    gradient_clip_val: float = 1.0  # 0 turns clipping off; on by default against exploding grads
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    val_every_n_steps: int = 200
    val_batches: int | None = None  # None: the whole validation split
    checkpoint_every_n_steps: int = 200
    keep_checkpoints: int = 2
    early_stopping_patience: int = 0  # validations without improvement; 0 turns it off
    accelerator: Literal["cpu", "gpu", "auto"] = "auto"
    devices: int = 1
    strategy: Literal["auto", "ddp", "ddp_spawn"] = "auto"
    precision: Literal["32-true", "64-true", "bf16-mixed", "16-mixed"] = "32-true"
    # torch intra-op threads per process (0 leaves torch's default). A recurrent step is a
    # small matrix product: one thread is fastest on a CPU, and several threads competing
    # with other processes for the cores can be ten times slower
    num_threads: int = 1
    # keep freed memory in the process for the next step (glibc's malloc): large tensors then
    # reuse mapped pages instead of page-faulting on fresh ones every step; see
    # rnnkit.engine.reuse_freed_memory
    reuse_freed_memory: bool = True
    logger: Literal["csv", "tensorboard", "none"] = "csv"
    progress_bar: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.max_steps == -1 or self.max_steps >= 1, "trainer.max_steps", "-1 or >= 1")
        _check(self.max_epochs == -1 or self.max_epochs >= 1, "trainer.max_epochs", "-1 or >= 1")
        _check(
            self.max_minutes is None or self.max_minutes > 0, "trainer.max_minutes", "> 0 or none"
        )
        _check(
            self.max_steps != -1 or self.max_epochs != -1 or self.max_minutes is not None,
            "trainer.max_steps",
            "set, or trainer.max_epochs or trainer.max_minutes set (the run needs a budget)",
        )
        for name in ("batch_size", "val_every_n_steps", "checkpoint_every_n_steps", "devices"):
            _check(getattr(self, name) >= 1, f"trainer.{name}", ">= 1")
        _check(self.keep_checkpoints >= 1, "trainer.keep_checkpoints", ">= 1")
        _check(self.gradient_clip_val >= 0, "trainer.gradient_clip_val", ">= 0")
        _check(self.early_stopping_patience >= 0, "trainer.early_stopping_patience", ">= 0")
        _check(self.val_batches is None or self.val_batches >= 1, "trainer.val_batches", ">= 1")
        _check(self.num_threads >= 0, "trainer.num_threads", ">= 0")
        _check(self.batch_size % self.devices == 0, "trainer.batch_size", "divisible by devices")


@dataclasses.dataclass
class OptimConfig:
    """The optimizer and its learning-rate schedule."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # sgd only
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # cosine: the final lr as a fraction of lr

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr", "> 0")
        _check(self.weight_decay >= 0, "optim.weight_decay", ">= 0")
        _check(self.warmup_steps >= 0, "optim.warmup_steps", ">= 0")
        _check(0 <= self.min_lr_ratio <= 1, "optim.min_lr_ratio", "in [0, 1]")


def _check(ok: bool, key: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {expected}")


# -- reading values -------------------------------------------------------------------------
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(
            "none" if a is type(None) else _type_name(a) for a in typing.get_args(tp)
        )
    if origin is tuple:
        args = typing.get_args(tp)
        inner = _type_name(args[0])
        return f"comma-separated {inner}s" if args[-1] is Ellipsis else f"{len(args)} {inner}s"
    return getattr(tp, "__name__", str(tp))


def parse_value(key: str, text: str, tp: Any) -> Any:
    """``text`` from the command line as a value of annotation ``tp`` (``key`` for errors)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if type(None) in args and text.strip().lower() in _NONE:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return parse_value(key, text, arg)
            except ConfigError:
                pass
        raise ConfigError(f"{key} expects {_type_name(tp)}, got {text!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if str(choice) == text:
                return choice
        hint = difflib.get_close_matches(text, [str(c) for c in choices], n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{key} expects {_type_name(tp)}, got {text!r}{extra}")
    if origin is tuple:
        args = typing.get_args(tp)
        parts = [p for p in text.replace("(", "").replace(")", "").split(",") if p.strip()]
        if args[-1] is Ellipsis:
            return tuple(parse_value(key, p.strip(), args[0]) for p in parts)
        if len(parts) != len(args):
            raise ConfigError(f"{key} expects {_type_name(tp)}, got {text!r}")
        return tuple(parse_value(key, p.strip(), a) for p, a in zip(parts, args))
    if tp is bool:
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{key} expects a bool (true or false), got {text!r}")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key} expects an int, got {text!r}") from None
    if tp is float:
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"{key} expects a float, got {text!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{key} expects a finite float, got {text!r}")
        return value
    if tp is str:
        return text
    raise ConfigError(f"{key}: fields of type {tp!r} cannot be set from the command line")


def _check_type(key: str, value: Any, tp: Any) -> Any:
    """``value`` (from JSON) checked against ``tp``; JSON lists become tuples."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _check_type(key, value, arg)
            except ConfigError:
                pass
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if args[-1] is Ellipsis:
            return tuple(_check_type(key, v, args[0]) for v in value)
        if len(value) == len(args):
            return tuple(_check_type(key, v, a) for v, a in zip(value, args))
    elif tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif tp in (bool, str) and type(value) is tp:
        return value
    raise ConfigError(f"{key} expects {_type_name(tp)}, got {value!r}")


# -- the whole tree ---------------------------------------------------------------------------
# A field whose metadata holds {"encoder": True} (rnnkit.models' convention) is polymorphic: its
# dict form carries "type" (e.g. "recurrent", "tcn") and its keys are those of that type.
def _is_encoder(f: dataclasses.Field) -> bool:
    return bool(f.metadata.get("encoder"))


def _encoder_default(type_name: object, key: str) -> Any:
    from ..models.encoder import encoder_config_from_dict

    try:
        return encoder_config_from_dict({"type": type_name})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{key}: {e}") from None


def keys(config: Any, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key of the config instance ``config`` and its annotation."""
    out: dict[str, Any] = {}
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        key = f"{prefix}{f.name}"
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            if _is_encoder(f):
                out[key + ".type"] = str
            out.update(keys(value, key + "."))
        else:
            out[key] = hints[f.name]
    return out


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready nested dict of ``config`` (tuples become lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            inner = to_dict(value)
            out[f.name] = {"type": value.type, **inner} if _is_encoder(f) else inner
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def from_dict(config_cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    """Build ``config_cls`` from a nested dict; unknown keys and wrong types are errors.

    Keys the dict leaves out keep their defaults.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = _hints(config_cls)
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in by_name:
            raise ConfigError(_unknown(key, [f"{prefix}{n}" for n in by_name]))
        f = by_name[name]
        if _is_encoder(f):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{key} must be a mapping, got {value!r}")
            default = _encoder_default(value.get("type", "recurrent"), key + ".type")
            rest = {k: v for k, v in value.items() if k != "type"}
            kwargs[name] = from_dict(type(default), rest, key + ".")
        elif _is_dataclass_type(hints[name]):
            kwargs[name] = from_dict(hints[name], value, key + ".")
        else:
            kwargs[name] = _check_type(key, value, hints[name])
    try:
        return config_cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        where = prefix.rstrip(".")
        raise ConfigError(f"{where + ': ' if where else ''}{e}") from None


def _unknown(key: str, known: Iterable[str]) -> str:
    known = sorted(known)
    # a misspelt last part ("model.hiden_size") or a missing section ("model.hidden_size" for
    # "model.encoder.hidden_size") is matched on the last part within the same section first
    head, leaf = key.split(".", 1)[0], key.rpartition(".")[2]
    same_section = [k for k in known if k.split(".", 1)[0] == head]
    leaves = {k.rpartition(".")[2]: k for k in same_section}
    hint = [leaves[m] for m in difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.75)]
    hint = hint or difflib.get_close_matches(key, known, n=1, cutoff=0.85)
    if hint:
        return f"unknown config key {key!r}: did you mean {hint[0]!r}?"
    section = key.rpartition(".")[0]
    near = [k for k in known if k.startswith(section + ".")] if section else []
    listed = ", ".join(near or known)
    return f"unknown config key {key!r}; known keys: {listed}"


def parse_overrides(args: Iterable[str]) -> dict[str, str]:
    """``["--a.b=1", "--c", "x"]`` -> ``{"a.b": "1", "c": "x"}``.

    A key may appear once; ``--key value`` and ``--key=value`` are both accepted.
    """
    out: dict[str, str] = {}
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or len(item) < 3:
            raise ConfigError(f"expected an override such as --model.hidden_size=256, got {item!r}")
        body = item[2:]
        if "=" in body:
            key, value = body.split("=", 1)
        elif i + 1 < len(items) and not items[i + 1].startswith("--"):
            key, value = body, items[i + 1]
            i += 1
        else:
            raise ConfigError(f"override {item!r} has no value: write {item}=VALUE")
        if key in out:
            raise ConfigError(f"config key {key!r} is given twice")
        out[key] = value
        i += 1
    return out


def _set(tree: dict[str, Any], key: str, value: Any) -> None:
    *path, leaf = key.split(".")
    for part in path:
        tree = tree[part]
    tree[leaf] = value


def apply_overrides(config: C, overrides: Mapping[str, str]) -> C:
    """A copy of ``config`` with each dotted key set from its text (see the module docstring).

    Every section's ``__post_init__`` runs again, so a value out of range is an error too.
    Changing an encoder's ``type`` resets that encoder to the new type's defaults before the
    other keys apply.
    """
    known = keys(config)
    switches = [k for k in overrides if k.endswith(".type") and known.get(k) is str]
    tree = to_dict(config)
    for key in switches:
        _set(tree, key.removesuffix(".type"), {"type": overrides[key]})
    config = from_dict(type(config), tree)
    known = keys(config)  # the keys of the new encoder types
    for key, text in overrides.items():
        if key in switches:
            continue
        if key not in known:
            raise ConfigError(_unknown(key, known))
        _set(tree, key, parse_value(key, text, known[key]))
    return from_dict(type(config), tree)
