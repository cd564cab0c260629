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

from dataclasses import dataclass, field
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
        padding: flat positions t·B + b past each sequence's length, or None.
        reverse: True for the backward direction.
        memo: values derived from the plan (the loops' geometry blocks), kept with it.
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
    padding: Tensor | None
    reverse: bool
    memo: dict = field(default_factory=dict, repr=False)  # per-plan values the kernels reuse

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
        padding=None,
        reverse=reverse,
    )


def _padding(T: int, B: int, lengths: Tensor) -> Tensor:
    """Flat positions t·B + b with t >= lengths[b], ascending."""
    t = torch.arange(T, dtype=torch.int64).unsqueeze(1)  # (T, 1)
    flat = t * B + torch.arange(B)  # (T, B)
    return flat[t >= lengths.unsqueeze(0)]


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
        padding=_padding(T, B, lengths),
        reverse=reverse,
    )


def _scatter(rows: Tensor, index: Tensor, padding: Tensor, total: int) -> Tensor:
    """(N, ...) rows -> (total, ...) with row k at index[k] and zeros at ``padding``."""
    out = rows.new_empty(total, *rows.shape[1:])
    out[index] = rows  # index_put_: faster than index_copy_ on the CPU
    out[padding] = 0.0  # only the padding is zeroed, not everything first
    return out


class _Gather(torch.autograd.Function):
    """(T·B, ...) -> packed rows (N, ...); its backward scatters, and zeroes only the padding."""

    @staticmethod
    def forward(ctx, flat: Tensor, index: Tensor, padding: Tensor) -> Tensor:
        ctx.save_for_backward(index, padding)
        return flat.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, padding = ctx.saved_tensors
        return _Scatter.apply(grad, index, padding), None, None


class _Scatter(torch.autograd.Function):
    """Packed rows (N, ...) -> (T·B, ...), zero in the padding; its backward gathers."""

    @staticmethod
    def forward(ctx, rows: Tensor, index: Tensor, padding: Tensor) -> Tensor:
        ctx.save_for_backward(index, padding)
        return _scatter(rows, index, padding, index.numel() + padding.numel())

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, padding = ctx.saved_tensors
        return _Gather.apply(grad, index, padding), None, None


def pack(x: Tensor, plan: Plan) -> Tensor:
    """(T, B, ...) -> (N, ...) packed rows (a view when the plan has no lengths)."""
    flat = x.reshape(plan.T * plan.B, *x.shape[2:])
    if plan.index is None:
        return flat
    return _Gather.apply(flat, plan.index.to(x.device), plan.padding.to(x.device))


def unpack(y: Tensor, plan: Plan) -> Tensor:
    """(N, ...) packed rows -> (T, B, ...), zero past each sequence's length."""
    shape = (plan.T, plan.B, *y.shape[1:])
    if plan.index is None:
        return y.view(shape)
    return _Scatter.apply(y, plan.index.to(y.device), plan.padding.to(y.device)).view(shape)


def sort_rows(t: Tensor, plan: Plan) -> Tensor:
    """Original batch order -> sorted order (dim 0)."""
    return t if plan.perm is None else t.index_select(0, plan.perm.to(t.device))


def unsort_rows(t: Tensor, plan: Plan) -> Tensor:
    """Sorted batch order -> original order (dim 0)."""
    return t if plan.unperm is None else t.index_select(0, plan.unperm.to(t.device))


def recurrent_weight_grad(dz: Tensor, h0: Tensor, y: Tensor, plan: Plan) -> Tensor:
    """Σ over packed rows of dzᵀ·h_prev, (K, H), for the product h_prev · Wᵀ of every step.

    ``dz`` (N, K) is the gradient at the product's output, ``h0`` (B, H) the initial state
    (sorted), ``y`` (N, H) the packed outputs. Without lengths: two large products on views
    (reversed, the initial state feeds the last block of rows). With lengths: within a run of
    steps with the same active rows, the previous outputs are contiguous too, so two products
    per run and no gathered copy.
    """
    N, B = plan.rows, plan.B
    if not plan.packed:
        if plan.reverse:
            return dz[N - B :].t() @ h0 + dz[: N - B].t() @ y[B:]
        return dz[:B].t() @ h0 + dz[B:].t() @ y[: N - B]
    off = plan.off_list
    dW = dz[:B].t() @ h0  # step 0 holds every row
    for s0, s1, n in plan.segments():
        if s0 > 0:  # the run's first step reads the first n rows of a larger block
            dW.addmm_(dz[off[s0] : off[s0] + n].t(), y[off[s0 - 1] : off[s0 - 1] + n])
        if s1 - s0 > 1:  # the rest: blocks of n rows on both sides
            rows = (s1 - s0 - 1) * n
            dW.addmm_(dz[off[s0 + 1] : off[s0 + 1] + rows].t(), y[off[s0] : off[s0] + rows])
    return dW
