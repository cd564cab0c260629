"""Recomputation in time segments: training memory that does not grow with the activations.

A recurrent layer's backward pass needs, for every step, the activations its derivative reads
(the LSTM's four gates and cell state, NAS's eight branches...). Saved for all T steps they are
most of a training step's peak memory. With ``checkpoint=K`` the sequence runs as segments of
K steps, each under :func:`torch.utils.checkpoint.checkpoint`: the forward pass keeps only the
state at each segment's start and the outputs; the backward pass reruns one segment's forward
(input projection included) just before it is differentiated, so only one segment's activations
exist at a time. The price is one more forward pass of every segment but the last one run (the
first one differentiated, whose activations are simply kept).

Segments cut every sequence at the same time steps. With lengths, a segment gives each row the
part of its sequence that falls inside it (``lengths - t0`` clipped to [0, K]); rows with
nothing there (finished, or, read backwards, not yet started) keep their state and output
zeros. The backward direction runs the segments last first, each reversed within its valid
part, which reads every sequence exactly as one reversed pass does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as _checkpoint

from ..cells.base import RecurrentCell, State
from ._tracing import under_functorch

PathRun = Callable[[RecurrentCell, Tensor, State, "Tensor | None", bool], tuple[Tensor, State]]


def check_checkpoint(value: object, name: str = "checkpoint") -> int | None:
    """Validate a ``checkpoint`` setting (called ``name`` in the message): None (off) or a
    positive number of steps."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be None or a positive int (steps per segment), got {type(value).__name__}"
        )
    if value < 1:
        raise ValueError(f"{name} must be a positive number of steps, got {value}")
    return value


def needs_grad(cell: RecurrentCell, x: Tensor, state: State) -> bool:
    """Whether a call of ``cell`` on ``x`` from ``state`` is a training pass: gradients enabled
    and the input, the state or a parameter requiring one."""
    if not torch.is_grad_enabled():
        return False
    tensors = [x, *state, *cell.parameters()]
    return any(t.requires_grad for t in tensors)


def _segment(
    path: PathRun,
    cell: RecurrentCell,
    reverse: bool,
    x: Tensor,
    lengths: Tensor | None,
    *state: Tensor,
) -> tuple[Tensor, ...]:
    """One segment: (outputs (K, B, O), *final state); rows of length 0 pass through."""
    if lengths is None:
        out, final = path(cell, x, state, None, reverse)
        return (out, *final)
    active = (lengths > 0).nonzero().squeeze(1)
    n = active.numel()
    if n == lengths.numel():
        out, final = path(cell, x, state, lengths, reverse)
        return (out, *final)
    if n == 0:  # state[0] is the output h_t (the cell contract)
        return (x.new_zeros(x.shape[0], x.shape[1], *state[0].shape[1:]), *state)
    out_a, final_a = path(
        cell,
        x.index_select(1, active),
        tuple(s.index_select(0, active) for s in state),
        lengths.index_select(0, active),
        reverse,
    )
    out = out_a.new_zeros(x.shape[0], x.shape[1], *out_a.shape[2:]).index_copy(1, active, out_a)
    final = tuple(s.index_copy(0, active, f) for s, f in zip(state, final_a))
    return (out, *final)


def run_checkpointed(
    path: PathRun,
    cell: RecurrentCell,
    x: Tensor,
    state: State,
    lengths: Tensor | None,
    reverse: bool,
    steps: int,
) -> tuple[Tensor, State]:
    """Run ``path`` (one of the engine's paths) over ``x`` (T, B, ...) in segments of ``steps``
    time steps, recomputing each segment's activations in the backward pass.

    Without gradients to compute, or when T <= ``steps``, this is ``path`` itself; also inside a
    ``torch.func`` transform (grad, vmap...), which does not support the saved-tensor hooks
    that recomputation relies on: there every activation is kept.
    """
    T = x.shape[0]
    if T <= steps or under_functorch() or not needs_grad(cell, x, state):
        return path(cell, x, state, lengths, reverse)
    pieces = x.split(steps)  # one SplitBackward node: no full-size gradient per segment
    starts = range(0, T, steps)
    order = list(zip(starts, pieces))
    if reverse:
        order.reverse()
    outs: dict[int, Tensor] = {}
    for k, (t0, piece) in enumerate(order):
        seg_len = None
        if lengths is not None:
            seg_len = (lengths - t0).clamp(0, piece.shape[0])
        args = (path, cell, reverse, piece, seg_len, *state)
        if k == len(order) - 1:
            # the backward pass starts with this segment: its activations would be recomputed
            # at once, so keep them (the peak is the same: one segment's activations)
            out, *final = _segment(*args)
        else:
            out, *final = _checkpoint(_segment, *args, use_reentrant=False)
        outs[t0] = out
        state = tuple(final)
    return torch.cat([outs[t0] for t0 in starts]), state
