"""The masked layout of small layers with lengths: every row in place, frozen where it is not
running.

On a small layer a step costs about the same whatever its rows, so the sorted layout of
:mod:`~rnnkit.engine.packing` (a sort, a gather of the input, a scatter of its gradient) costs
more than the rows it skips. A masked plan runs every step on the whole batch in its own order,
as without lengths, and carries the lengths to the compiled loops, which freeze each row outside
its valid steps (``_loops.cpp``; docs/engine.md, "Small layers: masked loops"). This module
builds those plans, the input rows they read, and the torch-op recomputation of their steps for
second derivatives.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ..cells.base import RecurrentCell, State
from . import native_memory
from ._tracing import run_eagerly
from .packing import Plan, key_values, lengths_key, unpacked_plan
from .row_moves import compiled_rows

# A batch with lengths whose longest sequence is T runs masked (on the compiled loops) when its
# layer is small: one step's recurrent product, B·numel(W_hh) multiply-adds, at most
# its kernel's ``masked_max`` (kernel_base.Kernel), or at most this, when set (0: never; for
# measurements and tests). On such layers a step costs about the same whatever its rows, so
# sorting and gathering cost more than the rows they skip.
MASKED_MAX: int | None = None


@run_eagerly  # host-side bookkeeping (NumPy, a cache): nothing to trace
def make_masked_plan(T: int, B: int, lengths: Tensor, reverse: bool = False) -> Plan | None:
    """The masked layout for a (T, B) batch with ``lengths`` (validated): all T steps of the
    whole batch in its own order, ``n`` = B and ``off`` = t·B at every step, as without
    lengths, plus the lengths themselves, from which the compiled loops freeze each row
    (``_loops.cpp``): forwards from its length on (its outputs zero, its state kept),
    backwards (``reverse``) until its last valid step, where it starts from its initial state.
    None when no sequence runs all T steps (the sorted plan stops at the longest)."""
    return _masked_plan(int(T), int(B), lengths_key(lengths), bool(reverse))


@lru_cache(maxsize=8)
def _masked_plan(T: int, B: int, key: tuple[int, ...] | bytes, reverse: bool) -> Plan | None:
    lengths = key_values(key)
    if int(lengths.max()) != T:
        return None
    padding = torch.from_numpy(np.flatnonzero(np.arange(T)[:, None] >= lengths[None, :]))
    unpacked = unpacked_plan(T, B, reverse)
    if reverse:  # every row ends at t = 0, as without lengths
        return replace(unpacked, padding=padding, lengths=torch.from_numpy(lengths), memo={})
    last_step = torch.from_numpy(lengths - 1)
    # the layout without lengths, and where each row ends (a memo of its own)
    return replace(
        unpacked,
        last=last_step * B + torch.arange(B),
        last_step=last_step,
        padding=padding,
        lengths=torch.from_numpy(lengths),
        memo={},
    )


def masked_starts(plan: Plan, device: torch.device) -> tuple[Tensor, Tensor] | None:
    """A masked plan of the backward direction: (the padded row t·B + b of each sequence's
    first step, t = length - 1, and its batch row b) for the sequences shorter than T, whose
    previous state is the initial one rather than the row before them in the outputs; None
    when there are none."""
    key = ("starts", device)
    if key not in plan.memo:
        assert plan.lengths is not None and plan.reverse
        rows = (plan.lengths < plan.T).nonzero().squeeze(1)
        found = None
        if rows.numel():
            found = ((plan.lengths[rows] - 1) * plan.B + rows).to(device), rows.to(device)
        plan.memo[key] = found
    return plan.memo[key]


def masked_input(x: Tensor, plan: Plan) -> Tensor:
    """The (T·B, I) rows of ``x`` (T, B, I) for a masked plan, with finite padding: the input
    projection runs on every row, and its weight's gradient Σ dgxᵀ·x must not meet an infinite
    or NaN value in the padding (0·NaN is NaN), though every padded row's dgx is zero. Finite
    padding is read as it is; otherwise a copy with the padding zeroed."""
    flat = x.reshape(plan.T * plan.B, *x.shape[2:])
    assert plan.padding is not None
    if plan.padding.numel() == 0:
        return flat
    # finite padding (zeros, as padding usually is) meets the weight's gradient as 0·x = 0:
    # the rows as they are, checked in one pass over the padding (no copy, no autograd node;
    # the compiled loops run this layer, so a contiguous matrix is all the check needs)
    if flat.dim() == 2 and flat.is_contiguous():
        if native_memory.rows_finite(flat, plan.moved("padding", flat.device)):
            return flat
    return _ZeroPadding.apply(flat, plan)


class _ZeroPadding(torch.autograd.Function):
    """(flat (T·B, I), masked plan) -> a copy of ``flat`` with the plan's padding rows zero, in
    one pass (torch's ``masked_fill`` with a row mask took six times as long: 176 µs against
    29 µs at T = 100, B = 32, I = 64).

    Backward, the gradient passes as it is: it comes from the input projection of a masked
    loop, whose every padded row has a zero dgx, so its padded rows are zero already (the
    projection maps rows to rows); ``tests/test_masked_loops.py`` checks them."""

    @staticmethod
    def forward(ctx, flat: Tensor, plan: Plan) -> Tensor:
        key = ("rows", flat.device)
        rows = plan.memo.get(key)
        if rows is None:
            rows = plan.memo[key] = torch.arange(plan.T * plan.B, device=flat.device)
        padding = plan.moved("padding", flat.device)
        out = flat.new_empty(flat.shape)
        if compiled_rows(flat):
            return native_memory.place_rows(flat, rows, padding, out, trusted=True)
        return out.copy_(flat).index_fill_(0, padding, 0.0)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad, None


def masked_step_loop(cell: RecurrentCell, gx: Tensor, state: State, plan: Plan):
    """:func:`~rnnkit.engine.sequence.step_loop` for a masked plan: every step on the whole
    batch, a row's state kept and its output zero wherever it is frozen (forwards from its
    length on, backwards until its last valid step), as the compiled loops do; y in the padded
    (T·B, H) order."""
    assert plan.lengths is not None
    lengths = plan.lengths.to(gx.device)
    T = plan.T
    blocks = gx.split(plan.B)
    outputs = []
    for s in range(T):
        t = T - 1 - s if plan.reverse else s
        h, new = cell.step(blocks[t], state)
        running = lengths > t
        state = tuple(torch.where(_rows(running, n), n, o) for n, o in zip(new, state))
        outputs.append(torch.where(_rows(running, h), h, torch.zeros_like(h)))
    if plan.reverse:
        outputs = outputs[::-1]
    return torch.cat(outputs), state


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    """``mask`` (B,) shaped to broadcast over ``like`` (B, ...)."""
    return mask.view(-1, *([1] * (like.dim() - 1)))
