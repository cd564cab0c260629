"""The sequence layout every engine path shares: sort by length once, shrink the batch.

A batch with ``lengths`` is processed like a ``PackedSequence``: the sequences are sorted by
decreasing length, so the rows still running at step s are always the first ``n[s]`` of the
batch, and the inputs are gathered into "packed" rows where step s owns rows
``off[s] .. off[s] + n[s]``. Finished sequences cost nothing. The backward direction is the same
gather with each sequence's valid part reversed (padding stays at the end), so every path steps
forwards. Without lengths nothing is gathered: the (T, B) layout already is packed, and the
backward direction simply visits its blocks from the last to the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Plan:
    """Where each step's rows live. Shapes: B batch, T time, N packed rows (sum of lengths).

    Attributes:
        T: time steps of the padded input.
        B: batch size.
        steps: steps to run (the longest length, or T).
        rows: N, the number of packed rows.
        n: (steps,) int64, rows active at each step; ``n_list`` as Python ints.
        off: (steps,) int64, first packed row of each step; ``off_list`` as Python ints.
        index: (N,) int64, flat position t·B + b of each packed row in the padded (T, B)
            input, or None without lengths.
        perm: (B,) sorted row -> original row, or None without lengths.
        unperm: (B,) original row -> sorted row, or None.
        last: (B,) packed row of each (sorted) sequence's last step.
        last_step: (B,) the step at which each (sorted) sequence ends.
        prev: (N - B,) for packed rows B.., the packed row holding the previous step's output,
            or None without lengths (then it is the row B before, or B after when reversed).
        reverse: True for the backward direction.
    """

    T: int
    B: int
    steps: int
    rows: int
    n: Tensor
    off: Tensor
    n_list: tuple[int, ...]
    off_list: tuple[int, ...]
    index: Tensor | None
    perm: Tensor | None
    unperm: Tensor | None
    last: Tensor
    last_step: Tensor
    prev: Tensor | None
    reverse: bool

    @property
    def packed(self) -> bool:
        """True when the rows were gathered (the batch has lengths)."""
        return self.index is not None

    def last_saved(self, full: bool) -> Tensor:
        """(B,) row of each sequence's last step in a saved-activation buffer: the packed row
        when every step is kept (``full``), else its row in the two alternating blocks."""
        if full:
            return self.last
        return (self.last_step % 2) * self.B + torch.arange(self.B)

    def segments(self) -> list[tuple[int, int, int]]:
        """Runs of steps with the same active rows: (first step, end step, rows)."""
        out: list[tuple[int, int, int]] = []
        start = 0
        for s in range(1, self.steps + 1):
            if s == self.steps or self.n_list[s] != self.n_list[start]:
                out.append((start, s, self.n_list[start]))
                start = s
        return out


@lru_cache(maxsize=64)
def _unpacked_plan(T: int, B: int, reverse: bool) -> Plan:
    t = torch.arange(T, dtype=torch.int64)
    off = (T - 1 - t if reverse else t) * B
    last_step = torch.full((B,), T - 1, dtype=torch.int64)
    return Plan(
        T=T,
        B=B,
        steps=T,
        rows=T * B,
        n=torch.full((T,), B, dtype=torch.int64),
        off=off,
        n_list=(B,) * T,
        off_list=tuple(off.tolist()),
        index=None,
        perm=None,
        unperm=None,
        last=int(off[-1]) + torch.arange(B),
        last_step=last_step,
        prev=None,
        reverse=reverse,
    )


def make_plan(T: int, B: int, lengths: Tensor | None, reverse: bool) -> Plan:
    """The layout for a (T, B) batch with optional ``lengths`` (B,) (already validated)."""
    if lengths is None:
        return _unpacked_plan(T, B, reverse)
    lengths = lengths.to(device="cpu", dtype=torch.int64)
    if bool((lengths == T).all()):
        return _unpacked_plan(T, B, reverse)
    sorted_len, perm = torch.sort(lengths, descending=True, stable=True)
    steps = int(sorted_len[0])
    step = torch.arange(steps, dtype=torch.int64)
    n = (sorted_len.unsqueeze(0) > step.unsqueeze(1)).sum(1)  # (steps,)
    off = torch.cumsum(n, 0) - n
    rows = int(n.sum())
    step_of = torch.repeat_interleave(step, n)  # (N,) the step of each packed row
    row_of = torch.arange(rows) - off[step_of]  # (N,) its (sorted) batch row
    time_of = sorted_len[row_of] - 1 - step_of if reverse else step_of
    index = time_of * B + perm[row_of]
    last_step = sorted_len - 1
    later = step_of[B:]
    return Plan(
        T=T,
        B=B,
        steps=steps,
        rows=rows,
        n=n,
        off=off,
        n_list=tuple(n.tolist()),
        off_list=tuple(off.tolist()),
        index=index,
        perm=perm,
        unperm=torch.argsort(perm),
        last=off[last_step] + torch.arange(B),
        last_step=last_step,
        prev=off[later - 1] + row_of[B:],
        reverse=reverse,
    )


def pack(x: Tensor, plan: Plan) -> Tensor:
    """(T, B, ...) -> (N, ...) packed rows (a view when the plan has no lengths)."""
    flat = x.reshape(plan.T * plan.B, *x.shape[2:])
    return flat if plan.index is None else flat.index_select(0, plan.index.to(x.device))


def unpack(y: Tensor, plan: Plan) -> Tensor:
    """(N, ...) packed rows -> (T, B, ...), zero past each sequence's length."""
    shape = (plan.T, plan.B, *y.shape[1:])
    if plan.index is None:
        return y.view(shape)
    out = y.new_zeros(plan.T * plan.B, *y.shape[1:])
    return out.index_copy(0, plan.index.to(y.device), y).view(shape)


def sort_rows(t: Tensor, plan: Plan) -> Tensor:
    """Original batch order -> sorted order (dim 0)."""
    return t if plan.perm is None else t.index_select(0, plan.perm.to(t.device))


def unsort_rows(t: Tensor, plan: Plan) -> Tensor:
    """Sorted batch order -> original order (dim 0)."""
    return t if plan.unperm is None else t.index_select(0, plan.unperm.to(t.device))


def previous_rows(y: Tensor, plan: Plan) -> Tensor:
    """(N - B, F): for packed rows B.., the previous step's output of the same sequence."""
    N, B = plan.rows, plan.B
    if plan.prev is not None:
        return y.index_select(0, plan.prev.to(y.device))
    return y[B:] if plan.reverse else y[: N - B]


def recurrent_weight_grad(dz: Tensor, h0: Tensor, y: Tensor, plan: Plan) -> Tensor:
    """Σ over packed rows of dzᵀ·h_prev, (K, H), for the product h_prev · Wᵀ of every step.

    ``dz`` (N, K) is the gradient at the product's output, ``h0`` (B, H) the initial state
    (sorted), ``y`` (N, H) the packed outputs. Two large matrix products, no copies without
    lengths: without lengths and reversed, the initial state feeds the last block of rows.
    """
    N, B = plan.rows, plan.B
    if plan.reverse and plan.prev is None:
        return dz[N - B :].t() @ h0 + dz[: N - B].t() @ y[B:]
    return dz[:B].t() @ h0 + dz[B:].t() @ previous_rows(y, plan)
