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

import numpy as np
import torch
from torch import Tensor

from . import native_memory
from ._tracing import run_eagerly, under_functorch
from .row_moves import compiled_rows, gather_rows, scatter_rows


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
        source: (T·B,) int64, the packed row that lands at each flat position t·B + b (0 at
            the padding, which is zeroed after), or None without lengths.
        previous: (N - B,) int64, the packed row holding the previous step of packed rows
            B..N-1 (rows 0..B-1 are step 0, which starts from the initial state), or None.
        reverse: True for the backward direction.
        turn: 0, or the step at which the rows go from the batch's order to the sorted order: a
            plan made with ``turn=True`` keeps steps 0..turn-1 (every row still running) in the
            batch's order, so that their packed rows are the first turn·B rows of the padded
            (T, B) layout as they are, and sorts only the rows of the later steps. The initial
            states then enter in the batch's order (:func:`sort_rows`), and the loops gather the
            previous step's rows into the sorted order once, at step ``turn``.
        lengths: a masked plan's lengths (B,) int64
            (:func:`~rnnkit.engine.masked.make_masked_plan`), else None.
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
    source: Tensor | None
    previous: Tensor | None
    reverse: bool
    turn: int = 0
    lengths: Tensor | None = None
    memo: dict = field(default_factory=dict, repr=False)  # per-plan values the kernels reuse

    @property
    def masked(self) -> bool:
        """True for a masked plan: every step runs the whole batch in its own order, each row
        frozen from its length on (:func:`~rnnkit.engine.masked.make_masked_plan`)."""
        return self.lengths is not None

    def moved(self, name: str, device: torch.device) -> Tensor:
        """The plan's tensor ``name`` (an index array such as "previous" or "padding") on
        ``device``, moved once per plan and device."""
        key = (name, device)
        found = self.memo.get(key)
        if found is None:
            found = getattr(self, name)
            assert found is not None
            found = self.memo[key] = found.to(device)
        return found

    @property
    def packed(self) -> bool:
        """True when the rows were gathered (the batch has lengths)."""
        return self.index is not None

    def saved_rows(self, full: bool) -> int:
        """Rows of a saved-activation buffer: every packed row when every step is kept
        (``full``); else two alternating blocks of B rows, and with a turn a third for the last
        step before it, whose finished rows lie among the others (the batch's order) and must
        outlive the steps after it."""
        if full:
            return self.rows
        return (3 if self.turn else 2) * self.B

    def last_saved(self, full: bool) -> Tensor:
        """(B,) row of each sequence's last step in a saved-activation buffer: the packed row
        when every step is kept (``full``), else its row in the two alternating blocks."""
        if full:
            return self.last
        if self.masked:  # a frozen row's state is carried into every later step's block
            return ((self.steps - 1) % 2) * self.B + torch.arange(self.B)
        saved = (self.last_step % 2) * self.B + torch.arange(self.B)
        if self.turn and self.perm is not None:  # ending before the turn: the third block
            saved = torch.where(self.last_step < self.turn, 2 * self.B + self.perm, saved)
        return saved

    def segments(self) -> tuple[tuple[int, int, int], ...]:
        """Runs of steps with the same active rows: (first step, end step, rows); one run per
        distinct length. Computed once per plan."""
        found = self.memo.get("segments")
        if found is None:
            out: list[tuple[int, int, int]] = []
            start = 0
            for s in range(1, self.steps + 1):
                if s == self.steps or self.n_list[s] != self.n_list[start]:
                    out.append((start, s, self.n_list[start]))
                    start = s
            found = self.memo["segments"] = tuple(out)
        return found


@lru_cache(maxsize=64)
def unpacked_plan(T: int, B: int, reverse: bool) -> Plan:
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
        source=None,
        previous=None,
        reverse=reverse,
    )


@run_eagerly  # host-side bookkeeping (NumPy, a cache): nothing to trace
def make_plan(T: int, B: int, lengths: Tensor | None, reverse: bool, turn: bool = False) -> Plan:
    """The layout for a (T, B) batch with optional ``lengths`` (B,) (already validated).

    ``turn``: keep the steps that every row runs in the batch's order (:attr:`Plan.turn`; the
    forward direction only, and only for callers that handle the turn: the compiled loops and
    :func:`~rnnkit.engine.sequence.step_loop`).

    Plans are cached by their lengths (the last few), so the layers and directions of one batch
    share one.
    """
    T, B = int(T), int(B)  # (under torch.jit.trace, sizes come as tensors)
    if lengths is None:
        return unpacked_plan(T, B, reverse)
    key = lengths_key(lengths)
    return _packed_plan(T, B, key, reverse, TURN and turn and not reverse)


# A batch of at most this many lengths in a plain CPU tensor is read as a Python list
# (Tensor.tolist) instead of through NumPy: inside a training step NumPy's reductions run cold
# and cost 10-40 µs each, a tenth of a small layer's step; the list costs about 1 µs
# (``python benchmarks/lengths_overheads.py --pieces "lengths as a list"``). 0: always NumPy.
LIST_READ_MAX = 256


def listed_lengths(lengths: Tensor) -> list[int] | None:
    """The values of ``lengths`` as a list of ints when it is a plain 1-D CPU tensor of at most
    ``LIST_READ_MAX`` elements read outside every ``torch.func`` transform; else None (read it
    with :func:`lengths_values`)."""
    if (
        type(lengths) is not Tensor
        or not lengths.is_cpu
        or lengths.dim() != 1
        or not 0 < lengths.shape[0] <= LIST_READ_MAX
        or under_functorch()
        or torch._C._functorch.is_functorch_wrapped_tensor(lengths)
    ):
        return None
    return lengths.tolist()


@run_eagerly  # NumPy on the host, and functorch's C++ helpers, which Dynamo cannot trace
def lengths_values(lengths: Tensor) -> tuple[np.ndarray, bool]:
    """The values of ``lengths`` as an int64 NumPy array (on the host), read under any
    ``torch.func`` wrappers (inside grad, vmap or jacrev even a constant comes wrapped), and
    whether ``vmap`` batched them (then the array holds every mapped sample's lengths)."""
    functorch = torch._C._functorch
    if not under_functorch() and not functorch.is_functorch_wrapped_tensor(lengths):
        return lengths.to(device="cpu", dtype=torch.int64).contiguous().numpy(), False
    batched = False
    while functorch.is_functorch_wrapped_tensor(lengths):
        batched = batched or functorch.is_batchedtensor(lengths)
        lengths = functorch.get_unwrapped(lengths)
    with torch._C._DisableFuncTorch():
        return lengths.to(device="cpu", dtype=torch.int64).numpy().copy(), batched


def key_values(key: tuple[int, ...] | bytes) -> np.ndarray:
    """The lengths of a plan cache key (:func:`lengths_key`) as a new int64 array."""
    if isinstance(key, bytes):
        return np.frombuffer(key, dtype=np.int64).copy()
    return np.array(key, dtype=np.int64)


def lengths_key(lengths: Tensor) -> tuple[int, ...] | bytes:
    """The plan cache's key: the lengths as a tuple of ints (a small batch,
    :func:`listed_lengths`), or their bytes as int64. Lengths batched by ``vmap`` (a different
    length per mapped sample) cannot share one plan."""
    listed = listed_lengths(lengths)
    if listed is not None:
        return tuple(listed)
    values, batched = lengths_values(lengths)
    if batched:
        raise ValueError(
            "lengths batched by torch.func.vmap (a different length per mapped sample) need "
            "engine 'auto' or 'reference', which mask each sample instead of sorting the batch"
        )
    return values.tobytes()


# make_plan(turn=True) keeps the first steps in the batch's order (False: every step sorted;
# for measurements: benchmarks/lengths_overheads.py --pieces "batch-order head").
TURN = True

# The fewest elements (rows times width) for which the rows of the first, full steps are read
# where they lie, with a product of their own, rather than gathered with the others into one
# product: the input projection on the turn (turn_input) and h_prev as views in the recurrent
# weight gradient (weight_grad). A split spares a gather and a scatter of those rows but adds a
# product call and its fixed costs: on a small layer the call costs more than the pass it
# spares. Measured paired on the lengths step, each split alone: at B = 32 and H = 64 or 128
# (about 10^5 to 2·10^5 elements) each cost 1-6 %, at B = 128, H = 64 (4·10^5) the input's
# was even, and at B = 32, H = 256 (4·10^5) it gained up to 4.5 % for Elman (docs/engine.md;
# python benchmarks/lengths_overheads.py --pieces "split on small layers"). 0: always split.
SPLIT_MIN_ELEMENTS = 2**18


def split_pays(rows: int, width: int) -> bool:
    """Whether ``rows`` rows of ``width`` values are enough to take a product of their own on
    views instead of being gathered with the other rows (``SPLIT_MIN_ELEMENTS``)."""
    return rows * width >= SPLIT_MIN_ELEMENTS


@lru_cache(maxsize=8)  # a plan holds a few (T·B,) index arrays
def _packed_plan(
    T: int, B: int, key: tuple[int, ...] | bytes, reverse: bool, turn: bool = False
) -> Plan:
    """:func:`make_plan` for lengths given as :func:`lengths_key` gives them (NumPy: a few
    small arrays, where torch's per-op overhead would dominate)."""
    lengths = key_values(key)
    if (lengths == T).all():
        return unpacked_plan(T, B, reverse)
    perm = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[perm]
    steps = int(sorted_len[0])
    # rows still running at step s: those with length > s
    n = B - np.cumsum(np.bincount(lengths, minlength=steps + 1))[:steps]
    off = np.cumsum(n) - n
    rows = int(n.sum())
    step_of = np.repeat(np.arange(steps), n)  # (N,) the step of each packed row
    row_of = np.arange(rows) - off[step_of]  # (N,) its (sorted) batch row
    time_of = sorted_len[row_of] - 1 - step_of if reverse else step_of
    # the steps before `m` hold their rows in the batch's order (turn), else in sorted order
    m = int(sorted_len[-1]) if turn else 0
    batch_row = perm[row_of]
    if m:
        batch_row = np.where(step_of < m, row_of, batch_row)
    index = time_of * B + batch_row
    source = np.zeros(T * B, dtype=np.int64)
    source[index] = np.arange(rows)
    # flat positions t·B + b with t >= lengths[b], ascending
    padding = np.flatnonzero(np.arange(T)[:, None] >= lengths[None, :])
    # the packed row of each row's previous step (rows of step 0 start from h0); up to the turn
    # a step's rows are those of the batch, so the previous row of step s <= m is (s-1)·B + b
    step, row = step_of[B:], row_of[B:]
    previous = off[step - 1] + row
    if m:
        previous = np.where(step <= m, (step - 1) * B + batch_row[B:], previous)
    last_step = sorted_len - 1
    last = off[last_step] + np.arange(B)
    if m:  # a sequence ending before the turn ends at its batch row
        last = np.where(last_step < m, last_step * B + perm, last)
    as_tensor = torch.from_numpy
    return Plan(
        T=T,
        B=B,
        steps=steps,
        rows=rows,
        n=as_tensor(n),
        off=as_tensor(off),
        n_list=tuple(n.tolist()),
        off_list=tuple(off.tolist()),
        index=as_tensor(index),
        perm=as_tensor(perm),
        unperm=as_tensor(np.argsort(perm)),
        last=as_tensor(last),
        last_step=as_tensor(last_step),
        padding=as_tensor(padding),
        source=as_tensor(source),
        previous=as_tensor(previous),
        reverse=reverse,
        turn=m,
    )


def tail_plan(plan: Plan, s1: int) -> Plan:
    """The steps ``s1`` onwards of a packed ``plan`` as a plan of their own: its batch is the
    n[s1] sorted rows still running at step s1, its packed rows those of ``plan`` from
    ``off[s1]`` on (renumbered from 0). ``index`` and ``perm`` keep their meaning; the plan
    has no padding layout of its own (unpack with ``plan``)."""
    if not plan.packed or not 0 < s1 < plan.steps:
        raise ValueError(f"s1 must split a packed plan's steps (1..{plan.steps - 1}), got {s1}")
    if plan.turn:
        raise ValueError("tail_plan takes a plan sorted from step 0 (made with turn=False)")
    assert plan.index is not None and plan.perm is not None and plan.previous is not None
    head, B = plan.off_list[s1], plan.n_list[s1]
    n, off = plan.n[s1:], plan.off[s1:] - head
    last_step = plan.last_step[:B] - s1
    return Plan(
        T=plan.T,
        B=B,
        steps=plan.steps - s1,
        rows=plan.rows - head,
        n=n,
        off=off,
        n_list=plan.n_list[s1:],
        off_list=tuple(o - head for o in plan.off_list[s1:]),
        index=plan.index[head:],
        perm=plan.perm[:B],
        unperm=None,
        last=off[last_step] + torch.arange(B),
        last_step=last_step,
        padding=None,
        source=None,
        previous=plan.previous[head + B - plan.B :] - head,
        reverse=plan.reverse,
    )


def _indices(plan: Plan, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(index, source, padding) on ``device``, moved once per plan and device."""
    key = ("indices", device)
    found = plan.memo.get(key)
    if found is None:
        assert plan.index is not None and plan.source is not None and plan.padding is not None
        found = tuple(t.to(device) for t in (plan.index, plan.source, plan.padding))
        plan.memo[key] = found
    return found


def padded_index(plan: Plan, device: torch.device) -> Tensor:
    """(N,) int64 on ``device``: the flat position t·B + b of each packed row (lengths only)."""
    return _indices(plan, device)[0]


def padded_output(y_like: Tensor, plan: Plan, width: int) -> Tensor:
    """An empty (T·B, ``width``) buffer for outputs in the padded layout, zero in the padding
    (the compiled loops fill the rest: ``rows`` in ``_loops.cpp``)."""
    out = y_like.new_empty(plan.T * plan.B, width)
    padding = _indices(plan, y_like.device)[2]
    if compiled_rows(out):
        return native_memory.zero_rows(out, padding, trusted=True)
    return out.index_fill_(0, padding, 0.0)


def pack(x: Tensor, plan: Plan) -> Tensor:
    """(T, B, ...) -> (N, ...) packed rows (a view when the plan has no lengths)."""
    flat = x.reshape(plan.T * plan.B, *x.shape[2:])
    if plan.index is None:
        return flat
    return gather_rows(flat, *_indices(plan, x.device))


def unpack(y: Tensor, plan: Plan) -> Tensor:
    """(N, ...) packed rows -> (T, B, ...), zero past each sequence's length."""
    shape = (plan.T, plan.B, *y.shape[1:])
    if plan.index is None:
        return y.view(shape)
    return scatter_rows(y, *_indices(plan, y.device)).view(shape)


def sort_rows(t: Tensor, plan: Plan) -> Tensor:
    """Original batch order -> the order of the plan's first step (dim 0): sorted, or as it is
    for a plan that keeps its first steps in the batch's order (:attr:`Plan.turn`)."""
    if plan.perm is None or plan.turn:
        return t
    return t.index_select(0, plan.perm.to(t.device))


def unsort_rows(t: Tensor, plan: Plan) -> Tensor:
    """Sorted batch order -> original order (dim 0)."""
    return t if plan.unperm is None else t.index_select(0, plan.unperm.to(t.device))
