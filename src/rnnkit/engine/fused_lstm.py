"""Plain LSTMs on torch's fused kernel: oneDNN on the CPU, cuDNN on the GPU.

An :class:`~rnnkit.cells.LSTMCell` without peepholes has exactly ``torch.nn.LSTM``'s math and
parameter layout, so its weights go to ``torch._VF.lstm`` (the op behind ``nn.LSTM``) unchanged,
projection (``weight_hr``) included.

With lengths, torch's own answer (a ``PackedSequence``) runs on a slower generic kernel on the
CPU: oneDNN has no variable-length mode. Here the sequences are sorted by length once and the
fused kernel is called once per run of steps with the same active rows ("segment"), on the
rows still running; each call is a view into the packed input, and finished rows leave the
batch. Each call pays a fixed cost (oneDNN prepares its weights), so with more than
``FUSED_SEGMENT_LIMIT`` distinct lengths only the first segment, where every row is still
running, goes to the fused kernel, and the compiled loop (:mod:`rnnkit.engine.sequence`)
takes the shrinking batch from there (:func:`fused_route` says which).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells import LSTMCell
from ..cells.base import RecurrentCell, State
from .packing import Plan, make_plan, pack, sort_rows, tail_plan, unpack, unsort_rows
from .sequence import native_supports, run_native_packed

# More distinct lengths than this: one fused call per segment costs more than the compiled loop.
FUSED_SEGMENT_LIMIT = 8
# The fused head must cover at least this many steps to pay for its call (else: compiled loop).
HEAD_MIN_STEPS = 8


def fused_supports(cell: RecurrentCell, x: Tensor) -> bool:
    """True for a plain LSTM cell (no peepholes) and a floating-point input."""
    return type(cell) is LSTMCell and not cell.peephole and x.dtype.is_floating_point


def _weights(cell: LSTMCell) -> list[Tensor]:
    """torch.nn.LSTM's flat weight list for one layer and direction."""
    weights = [cell.weight_ih, cell.weight_hh]
    if cell.bias:
        weights += [cell.bias_ih, cell.bias_hh]
    if cell.proj_size:
        weights.append(cell.weight_hr)
    return weights


def fused_route(cell: RecurrentCell, x: Tensor, lengths: Tensor | None) -> str:
    """How the fused path runs a plain LSTM on ``x`` (T, B, I): "whole" (one call, no
    lengths), "segments" (one call per run of equal active rows), "head" (the first segment
    fused, the rest in the compiled loop) or "native" (many segments and a short first one:
    the compiled loop)."""
    if lengths is None:
        return "whole"
    return _route(cell, x, make_plan(x.shape[0], x.shape[1], lengths, False))


def _route(cell: RecurrentCell, x: Tensor, plan: Plan) -> str:
    """:func:`fused_route` from the batch's plan (a run of equal rows per distinct length)."""
    if not plan.packed:
        return "whole"
    segments = plan.segments()
    if len(segments) <= FUSED_SEGMENT_LIMIT or not native_supports(cell, x):
        return "segments"
    return "head" if segments[0][1] >= HEAD_MIN_STEPS else "native"


def _lstm(cell: LSTMCell, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One fused call: x (steps, n, I), h and c (1, n, ·) -> (out, h_n, c_n)."""
    train = torch.is_grad_enabled()
    return torch._VF.lstm(x, (h, c), _weights(cell), cell.bias, 1, 0.0, train, False, False)


def run_fused(
    cell: LSTMCell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool
) -> tuple[Tensor, State]:
    """``x`` (T, B, I), ``state`` (h (B, P or H), c (B, H)) -> ((T, B, P or H), (h_n, c_n))."""
    h0, c0 = state
    T, B = x.shape[0], x.shape[1]
    plan = make_plan(T, B, lengths, reverse)
    if not plan.packed:
        seq = x.flip(0) if reverse else x
        out, h, c = _lstm(cell, seq, h0.unsqueeze(0), c0.unsqueeze(0))
        return (out.flip(0) if reverse else out), (h[0], c[0])
    xp = pack(x, plan)  # (N, I)
    h, c = sort_rows(h0, plan), sort_rows(c0, plan)  # (B, P or H), (B, H)
    if _route(cell, x, plan) == "head":
        y, (h, c) = _head_then_loop(cell, xp, h, c, plan)
    else:
        y, (h, c) = _segments(cell, xp, h, c, plan)
    return unpack(y, plan), (unsort_rows(h, plan), unsort_rows(c, plan))


def _segments(
    cell: LSTMCell, xp: Tensor, h0: Tensor, c0: Tensor, plan: Plan
) -> tuple[Tensor, State]:
    """One fused call per segment on packed rows; returns (y (N, ·), sorted finals)."""
    segments = plan.segments()
    xs = xp.split([(s1 - s0) * n for s0, s1, n in segments])  # (rows, I) by segment
    h, c = h0.unsqueeze(0), c0.unsqueeze(0)
    outputs, done = [], []
    for (s0, s1, n), x_seg in zip(segments, xs):
        if n < h.shape[1]:  # rows n.. have ended: their state is final
            done.append((h[0, n:], c[0, n:]))
            h, c = h[:, :n], c[:, :n]
        out, h, c = _lstm(cell, x_seg.view(s1 - s0, n, xp.shape[-1]), h, c)
        outputs.append(out.reshape((s1 - s0) * n, out.shape[-1]))
    done.append((h[0], c[0]))
    h_n = torch.cat([d[0] for d in reversed(done)])
    c_n = torch.cat([d[1] for d in reversed(done)])
    return torch.cat(outputs), (h_n, c_n)


def _head_then_loop(
    cell: LSTMCell, xp: Tensor, h0: Tensor, c0: Tensor, plan: Plan
) -> tuple[Tensor, State]:
    """The first segment (all B rows) in one fused call, the rest in the compiled loop."""
    s1 = plan.segments()[0][1]  # the first step at which some row has ended
    head, B, n1 = plan.off_list[s1], plan.B, plan.n_list[s1]
    out, h, c = _lstm(cell, xp[:head].view(s1, B, xp.shape[-1]), h0.unsqueeze(0), c0.unsqueeze(0))
    y_tail, (h_t, c_t) = run_native_packed(
        cell, xp[head:], (h[0, :n1], c[0, :n1]), tail_plan(plan, s1)
    )
    y = torch.cat([out.reshape(head, out.shape[-1]), y_tail])
    return y, (torch.cat([h_t, h[0, n1:]]), torch.cat([c_t, c[0, n1:]]))
