"""A fused first segment on the padded input: the "head" and "segments" routes with lengths.

Sorting a batch by length and gathering its rows into the packed layout
(:mod:`rnnkit.engine.packing`) costs passes over memory: the input is gathered, the outputs
are scattered back to (T, B) and zeroed past each length, and the backward pass does the same
to the output gradient and the input gradient.

But until the shortest sequence ends, at step m, every row is running, and the (T, B) layout
already holds those m·B rows in step order: the packed layout is needed only from step m on.
The fused routes with lengths (:mod:`rnnkit.engine.fused`: a cell with torch.nn's math on the
CPU, "head" for many distinct lengths, "segments" for a few) therefore run, forwards, as

* the head: steps 0..m-1 in one fused call on the first m·B rows of the padded input, a view,
  in the batch's own order, from the initial state; its outputs become the first m·B rows of
  the output;
* the tail: the n_m rows still running at step m, sorted by length, from the head's final
  state of those rows, on the packed rows of steps m onwards
  (:func:`~rnnkit.engine.packing.tail_plan`): the compiled loop ("head") or one fused call per
  run of equal active rows ("segments"); its outputs are scattered after the head's.

Each part is an ordinary call, so the gradients and second derivatives of those paths hold as
they are; the two autograd functions here only move the rows. For lengths spread over
[T/2, T], the rows that go through a gather or a scatter fall from about 4.25·T·B (every row
gathered and scattered, and for "head" the parts' outputs joined by one more copy) to 1.5·T·B,
plus a plain copy of the head rows each way. A plain LSTM's training step with such lengths
took 0.83-0.86 of the full batch's time at B = 32, H = 256, against 0.91-0.92 with the first
segment packed (``python benchmarks/lengths_overheads.py``; docs/engine.md).

The compiled loop alone does not gain from a split into two calls: its head would be a second
call of the loop, whose fixed costs (packing W_hh, the input projection and the weight-gradient
products as calls of their own) ate the saving in a measurement. It keeps the first steps in
the batch's order within one call instead (a plan with a turn, :mod:`.turn_input`). The
backward direction reads each sequence from its own last step, so its first steps are not a
block of the padded input; it keeps the packed layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .packing import Plan, tail_plan
from .row_moves import place, take


@dataclass(frozen=True, eq=False)
class HeadLayout:
    """Where the rows of a head and tail lie in the flat (T·B, ...) padded layout.

    Attributes:
        head: m·B, the head's rows (the first flat positions).
        total: T·B.
        index: (N_t,) flat position of each packed tail row (all ≥ ``head``).
        source: (total - head,) the packed tail row at each flat position from ``head`` on (0
            in the padding, which is zeroed after).
        padding: positions, counted from ``head``, past each sequence's length.
    """

    head: int
    total: int
    index: Tensor
    source: Tensor
    padding: Tensor


def head_layout(plan: Plan, m: int, device: torch.device) -> HeadLayout:
    """The :class:`HeadLayout` of ``plan`` split at step ``m``, on ``device`` (kept with the
    plan)."""
    key = ("head", m, device)
    found = plan.memo.get(key)
    if found is None:
        assert plan.index is not None and plan.source is not None and plan.padding is not None
        head = m * plan.B  # every row runs in steps 0..m-1, so off[m] = m·B
        found = HeadLayout(
            head=head,
            total=plan.T * plan.B,
            index=plan.index[head:].to(device),
            source=(plan.source[head:] - head).clamp_(min=0).to(device),
            padding=(plan.padding - head).to(device),
        )
        plan.memo[key] = found
    return found


def _join(yh: Tensor, yt: Tensor, layout: HeadLayout) -> Tensor:
    out = yt.new_empty(layout.total, *yt.shape[1:])
    out[: layout.head].copy_(yh)
    place(yt, layout.source, layout.padding, out=out[layout.head :])
    return out


class _Join(torch.autograd.Function):
    """(head rows (m·B, ...), packed tail rows (N_t, ...)) -> (T·B, ...): the head rows first as
    they are, then the tail rows at their flat positions, zero in the padding. Its backward is
    :class:`_Split`."""

    @staticmethod
    def forward(ctx, yh: Tensor, yt: Tensor, layout: HeadLayout) -> Tensor:
        ctx.layout = layout
        return _join(yh, yt, layout)

    @staticmethod
    def backward(ctx, grad: Tensor):
        dh, dt = _Split.apply(grad, ctx.layout)
        return dh, dt, None


class _Split(torch.autograd.Function):
    """(T·B, ...) -> (its first m·B rows (a view), the packed tail rows (N_t, ...)). Its
    backward is :class:`_Join`."""

    @staticmethod
    def forward(ctx, flat: Tensor, layout: HeadLayout):
        ctx.layout = layout
        return flat[: layout.head], take(flat, layout.index)

    @staticmethod
    def backward(ctx, dh: Tensor, dt: Tensor):  # (autograd gives zeros for an unused part)
        return _Join.apply(dh, dt, ctx.layout), None


Head = Callable[[Tensor, tuple[Tensor, ...]], tuple[Tensor, tuple[Tensor, ...]]]
Tail = Callable[[Tensor, tuple[Tensor, ...], Plan], tuple[Tensor, tuple[Tensor, ...]]]


def run_head_tail(
    x: Tensor, state: tuple[Tensor, ...], plan: Plan, m: int, head: Head, tail: Tail
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``x`` (T, B, I) with a packed forward ``plan`` split at step ``m`` (every row runs in
    steps 0..m-1; some sequence is longer than m), from ``state`` (B, ·) in the batch's order
    -> ((T, B, O) zero past each length, final states (B, ·) in the batch's order).

    ``head(xh, state)`` runs steps 0..m-1 on ``xh`` (m·B, I), rows in the batch's order, and
    returns (outputs (m·B, O), final states (B, ·)); ``tail(xt, states, plan)`` runs a packed
    ``plan`` (the sorted rows still running at step m) and returns (packed outputs, sorted
    final states).
    """
    T, B = plan.T, plan.B
    layout = head_layout(plan, m, x.device)
    xh, xt = _Split.apply(x.reshape(T * B, *x.shape[2:]), layout)
    yh, mid = head(xh, state)
    later = plan.memo.get(("tail", m))
    if later is None:
        later = plan.memo[("tail", m)] = tail_plan(plan, m)
    rows = _tail_rows(later, x.device)  # (n_m,) the original row of each sorted tail row
    yt, finals = tail(xt, tuple(s.index_select(0, rows) for s in mid), later)
    y = _Join.apply(yh, yt, layout).view(T, B, *yt.shape[1:])
    # rows that end at step m-1 keep the head's final state; the others take the tail's
    return y, tuple(s.index_copy(0, rows, f) for s, f in zip(mid, finals))


def _tail_rows(later: Plan, device: torch.device) -> Tensor:
    assert later.perm is not None
    key = ("rows", device)
    found = later.memo.get(key)
    if found is None:
        found = later.memo[key] = later.perm.to(device)
    return found
