"""The plain time loop over one cell, and the checks and reversal every runner shares.

:func:`run_cell` is the reference that every engine path equals (``engine="reference"``):
all T steps, masked past each sequence's length. Shapes use the glossary of
:mod:`rnnkit.cells.base` (B batch, T time, I input).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cells.base import RecurrentCell, State
from .engine.packing import lengths_values, listed_lengths


def check_lengths(lengths: object, batch_size: int, max_len: int, device: torch.device) -> Tensor:
    """Validate ``lengths`` (B,) of integers in [1, T] and return it as int64 on ``device``."""
    return checked_lengths(lengths, batch_size, max_len, device)[0]


def checked_lengths(
    lengths: object, batch_size: int, max_len: int, device: torch.device
) -> tuple[Tensor, int, int]:
    """:func:`check_lengths`, and the shortest and longest length (read once, on the host)."""
    if not isinstance(lengths, Tensor):
        if isinstance(lengths, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in lengths
        ):
            lengths = torch.tensor(lengths, dtype=torch.int64)
        else:
            raise TypeError(
                f"lengths must be a 1-D integer tensor (or a list of ints), "
                f"got {type(lengths).__name__}"
            )
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must have an integer dtype, got {lengths.dtype}")
    if lengths.dim() != 1 or lengths.shape[0] != batch_size:
        raise ValueError(
            f"lengths must have shape ({batch_size},) (one length per sequence), "
            f"got {tuple(lengths.shape)}"
        )
    listed = listed_lengths(lengths)  # a small batch: a list, cheaper than NumPy here
    if listed is not None:
        lo, hi = min(listed), max(listed)
    else:
        values, _ = lengths_values(lengths)  # inside vmap: every mapped sample's lengths
        lo, hi = int(values.min()), int(values.max())
    if lo < 1 or hi > max_len:
        raise ValueError(f"lengths must lie in [1, T={max_len}], got values from {lo} to {hi}")
    if lengths.dtype is torch.int64 and lengths.device == device:
        return lengths, lo, hi
    return lengths.to(device=device, dtype=torch.int64), lo, hi


def valid_steps(T: int, lengths: Tensor) -> Tensor:
    """(T, B) bool: True where step t lies within sequence b's length."""
    return torch.arange(T, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)


def reverse_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` (T, B, ...) within its valid part; padding stays last.

    The map is its own inverse, so the same call undoes it.
    """
    if lengths is None:
        return x.flip(0)
    T = x.shape[0]
    t = torch.arange(T, device=x.device).unsqueeze(1)  # (T, 1)
    n = lengths.unsqueeze(0)  # (1, B)
    index = torch.where(t < n, n - 1 - t, t)  # (T, B)
    index = index.view(T, -1, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(0, index)


def run_cell(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` (T, B, I) from ``state``; the reference time loop.

    With ``lengths``, a sequence's state stops changing after its last valid step and its
    outputs there are zero. Returns (outputs (T, B, O), final state).
    """
    gx = cell.project_input(x)  # (T, B, G): the input half of every step in one product
    outputs = []
    if lengths is None:
        for gx_t in gx.unbind(0):  # unbind, never gx[t]: indexing makes backward O(T^2)
            h, state = cell.step(gx_t, state)
            outputs.append(h)
    else:
        valid = valid_steps(x.shape[0], lengths.to(x.device))  # (T, B)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        for gx_t, m in zip(gx.unbind(0), valid.unbind(0)):
            h, new = cell.step(gx_t, state)
            state = tuple(torch.where(_rows(m, s), s, s_old) for s, s_old in zip(new, state))
            outputs.append(torch.where(_rows(m, h), h, zero))
    return torch.stack(outputs), state


def step_input_shape(cell: RecurrentCell) -> tuple[int, ...]:
    """Per-sample shape of one step of ``cell``'s input: (I,), unless the cell declares another
    as ``input_shape`` (a convolutional cell's (C, *spatial)). Features always sit on axis 2 of
    a (T, B, ...) sequence, where directions are concatenated."""
    return tuple(getattr(cell, "input_shape", (cell.input_size,)))


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """A (B,) mask viewed to broadcast over a (B, ...) tensor."""
    return mask.view(-1, *([1] * (like.dim() - 1)))
