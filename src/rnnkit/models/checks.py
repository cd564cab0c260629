"""Eager argument checks shared by the models: each error names the argument, what was expected
and what came."""

from __future__ import annotations

import torch
from torch import Tensor

from ..loop import check_lengths as _runner_check_lengths


def check_int(name: str, value: object, *, low: int = 0) -> int:
    """Return ``value`` if it is an ``int`` >= ``low``; raise a clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def check_float(
    name: str,
    value: object,
    *,
    low: float,
    high: float,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it lies in the interval; raise a clear error otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} ({value!r})")
    v = float(value)
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value}")
    return v


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} ({value!r})")
    return value


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; raise a clear error otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def exporting() -> bool:
    """True while torch traces or exports the model (ONNX): checks that read tensor values are
    skipped then, since a graph cannot branch on the values it will be given later."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.compiler.is_compiling()


def check_lengths(lengths: object, batch_size: int, max_len: int, device: torch.device) -> Tensor:
    """``lengths`` (B,) integers in [1, T] as int64 on ``device``; a clear error otherwise.

    A list of ints is accepted too. The error for a lengths/batch mismatch names both sizes.
    """
    if exporting() and isinstance(lengths, Tensor):
        return lengths
    return _runner_check_lengths(lengths, batch_size, max_len, device)


def check_targets(name: str, y: object, shape: tuple[int, ...], *, integer: bool) -> Tensor:
    """``y`` of exactly ``shape``, with an integer dtype (class ids) or a floating one."""
    if not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(y).__name__}")
    if tuple(y.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(y.shape)}")
    if integer and (y.dtype.is_floating_point or y.dtype == torch.bool):
        raise TypeError(f"{name} must hold integer class ids, got dtype {y.dtype}")
    if not integer and not y.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {y.dtype}")
    return y


def check_input_kind(input_size: object, vocab_size: object, embedding_size: object) -> None:
    """A model reads features (``input_size`` > 0) or token ids (``vocab_size`` > 0), not both."""
    check_int("input_size", input_size)
    check_int("vocab_size", vocab_size)
    check_int("embedding_size", embedding_size, low=1)
    if (input_size > 0) == (vocab_size > 0):  # type: ignore[operator]
        raise ValueError(
            "exactly one of input_size (features per step) and vocab_size (token ids) must be "
            f"> 0, got input_size={input_size}, vocab_size={vocab_size}"
        )


def batch_lengths(x: Tensor, lengths: object) -> Tensor | None:
    """Validated ``lengths`` for a batch ``x`` (B, T, ...), or None."""
    if lengths is None:
        return None
    return check_lengths(lengths, x.shape[0], x.shape[1], x.device)
