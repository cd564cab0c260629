"""Cells with torch.nn's exact math on torch's fused kernels: oneDNN on the CPU, cuDNN on the GPU.

Three rnnkit cells have the math and parameter layout of a torch.nn layer, so their weights go
to the op behind that layer unchanged:

* :class:`~rnnkit.cells.LSTMCell` without peepholes (projection ``weight_hr`` included):
  ``torch._VF.lstm``, as ``torch.nn.LSTM``;
* :class:`~rnnkit.cells.GRUCell` with ``reset_after=True``: ``torch._VF.gru``
  (``torch.nn.GRU``);
* :class:`~rnnkit.cells.ElmanCell`: ``torch._VF.rnn_tanh`` / ``rnn_relu`` (``torch.nn.RNN``).

"auto" sends the LSTM here on every device (oneDNN is the fastest LSTM on the CPU), but the GRU
and Elman cells only off the CPU (cuDNN) or when the compiled loops are missing: on the CPU
torch has no oneDNN path for them and rnnkit's compiled loops are faster
(:mod:`rnnkit.engine.sequence`).

With lengths, torch's own answer (a ``PackedSequence``) runs on a slower generic kernel on the
CPU: oneDNN has no variable-length mode. Here the sequences are sorted by length once and the
fused kernel is called once per run of steps with the same active rows ("segment"), on the
rows still running; each call is a view into the packed input, and finished rows leave the
batch. Each call pays a fixed cost (oneDNN prepares its weights), so with more than
``FUSED_SEGMENT_LIMIT`` distinct lengths only the first segment, where every row is still
running, goes to the fused kernel, and the compiled loop (:mod:`rnnkit.engine.sequence`)
takes the shrinking batch from there (:func:`fused_route` says which). For the same reason a
sequence shorter than ``HEAD_MIN_STEPS`` steps (streaming one step at a time, say) takes the
compiled loop whole: there the weight preparation costs more than the steps.

A layer whose every layer-direction would take one fused call of the whole sequence runs as a
single call over all its layers and directions (:func:`run_fused_stack`), the call
``torch.nn.LSTM`` makes; :func:`stack_supported` says when.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.autograd import forward_ad as fwAD

from ..cells import ElmanCell, GRUCell, LSTMCell
from ..cells.base import RecurrentCell, State
from ._tracing import under_functorch
from .packing import Plan, make_plan, pack, sort_rows, tail_plan, unpack, unsort_rows
from .sequence import LOOP_DTYPES, loops_run, native_supports, run_native_packed

# More distinct lengths than this: one fused call per segment costs more than the compiled loop.
FUSED_SEGMENT_LIMIT = 8
# The fused head must cover at least this many steps to pay for its call (else: compiled loop).
HEAD_MIN_STEPS = 8


def fused_kind(cell: RecurrentCell) -> str | None:
    """The torch op that computes ``cell``'s math ("lstm", "gru", "rnn_tanh", "rnn_relu"), or
    None when torch.nn has no layer with it."""
    kind = type(cell)
    if kind is LSTMCell and not cell.peephole:
        return "lstm"
    if kind is GRUCell and cell.reset_after:
        return "gru"
    if kind is ElmanCell:
        return "rnn_" + cell.nonlinearity
    return None


def fused_supports(cell: RecurrentCell, x: Tensor) -> bool:
    """True when a torch fused op computes ``cell`` and ``x`` is floating point."""
    return fused_kind(cell) is not None and x.dtype.is_floating_point


def _weights(cell: RecurrentCell) -> list[Tensor]:
    """torch.nn's flat weight list for one layer and direction."""
    weights = [cell.weight_ih, cell.weight_hh]
    if cell.bias:
        weights += [cell.bias_ih, cell.bias_hh]
    if getattr(cell, "proj_size", 0):
        weights.append(cell.weight_hr)
    return weights


def fused_route(cell: RecurrentCell, x: Tensor, lengths: Tensor | None) -> str:
    """How "auto" runs ``cell`` on ``x`` (T, B, I) when torch has a fused kernel for it:
    "whole" (one call, no lengths), "segments" (one call per run of equal active rows), "head"
    (the first segment fused, the rest in the compiled loop) or "native" (the compiled loop:
    fewer than ``HEAD_MIN_STEPS`` steps, or many segments and a short first one)."""
    if x.shape[0] < HEAD_MIN_STEPS and native_supports(cell, x):
        return "native"
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


def stack_supported(cells: tuple[RecurrentCell, ...], x: Tensor, engine: str) -> bool:
    """Whether every layer and direction of a stack of ``cells`` would take one fused call of
    the whole sequence ``x`` (T, B, I) (no lengths) under path ``engine``, so that the stack
    can be one call of torch's op over all layers and both directions, as torch.nn's layers
    make it: one call's fixed cost instead of one per layer-direction and the stacking of
    their states.

    The caller checks what the stack adds to the cells: no lengths, "concat" merging, no
    residual connections, no dropout between layers in training, no recomputation."""
    if engine not in ("auto", "fused") or not x.dtype.is_floating_point:
        return False
    first = cells[0]
    kind = fused_kind(first)
    if kind is None:
        return False
    if engine == "auto" and kind != "lstm" and x.is_cpu and x.dtype in LOOP_DTYPES:
        return False  # most likely the compiled loops' (run() decides; this costs nothing)
    for cell in cells[1:]:
        if fused_kind(cell) != kind or cell.bias != first.bias:
            return False
        if getattr(cell, "proj_size", 0) != getattr(first, "proj_size", 0):
            return False
    if getattr(fwAD, "_current_level", 0) >= 0 or under_functorch():
        return False  # "auto" takes the autograd loop there; leave the choice to run()
    if torch.jit.is_tracing():
        return False  # exporters see the layer-by-layer calls, as before
    if engine == "fused":
        return True
    if kind == "lstm" and x.shape[0] >= HEAD_MIN_STEPS:
        return True
    return not loops_run(first, x)  # where "auto" prefers the compiled loops


def run_fused_stack(
    cells: tuple[RecurrentCell, ...],
    x: Tensor,
    hx: State,
    num_layers: int,
    bidirectional: bool,
) -> tuple[Tensor, State]:
    """The whole stack in one call of torch's op: ``x`` (T, B, I), ``hx`` a tuple of
    (D·L, B, ·) -> (output (T, B, D·O), final states (D·L, B, ·)), as torch.nn's layers."""
    weights = [w for cell in cells for w in _weights(cell)]
    first = cells[0]
    args = (weights, first.bias, num_layers, 0.0, torch.is_grad_enabled(), bidirectional, False)
    return _op(first, x, hx, args)


def _call(cell: RecurrentCell, x: Tensor, states: State) -> tuple[Tensor, State]:
    """One fused call: x (steps, n, I), states (1, n, ·) each -> (out, final states (1, n, ·))."""
    args = (_weights(cell), cell.bias, 1, 0.0, torch.is_grad_enabled(), False, False)
    return _op(cell, x, states, args)


def _op(cell: RecurrentCell, x: Tensor, states: State, args: tuple) -> tuple[Tensor, State]:
    """torch's op for ``cell``'s kind on ``x`` from ``states`` with torch's trailing ``args``
    (flat weights, bias, layers, dropout, train, bidirectional, batch_first)."""
    kind = fused_kind(cell)
    if not x.is_cuda and not (kind == "lstm" and getattr(cell, "proj_size", 0)):
        return _raw_op(kind, x, states, args)  # (no warnings block: microseconds a call)
    with warnings.catch_warnings():
        # torch's note that oneDNN has no projection (the generic kernel runs it instead)
        warnings.filterwarnings("ignore", "LSTM with projections", UserWarning)
        # cuDNN wants the weights in one buffer, as torch.nn's layers keep them; the cells own
        # theirs, so cuDNN copies them into one at each call (a copy of the weights, no more)
        warnings.filterwarnings("ignore", "RNN module weights are not part of single", UserWarning)
        return _raw_op(kind, x, states, args)


def _raw_op(kind: str, x: Tensor, states: State, args: tuple) -> tuple[Tensor, State]:
    if kind == "lstm":
        out, h, c = torch._VF.lstm(x, states, *args)
        return out, (h, c)
    out, h = getattr(torch._VF, kind)(x, states[0], *args)  # type: ignore[arg-type]
    return out, (h,)


def run_fused(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool
) -> tuple[Tensor, State]:
    """``x`` (T, B, I), ``state`` tuple of (B, ·) -> ((T, B, O), final state)."""
    T, B = x.shape[0], x.shape[1]
    plan = make_plan(T, B, lengths, reverse)
    if not plan.packed:
        seq = x.flip(0) if reverse else x
        out, finals = _call(cell, seq, tuple(s.unsqueeze(0) for s in state))
        return (out.flip(0) if reverse else out), tuple(f[0] for f in finals)
    xp = pack(x, plan)  # (N, I)
    states = tuple(sort_rows(s, plan) for s in state)
    if _route(cell, x, plan) == "head":
        y, finals = _head_then_loop(cell, xp, states, plan)
    else:
        y, finals = _segments(cell, xp, states, plan)
    return unpack(y, plan), tuple(unsort_rows(f, plan) for f in finals)


def _segments(cell: RecurrentCell, xp: Tensor, states: State, plan: Plan) -> tuple[Tensor, State]:
    """One fused call per segment on packed rows; returns (y (N, ·), sorted finals)."""
    segments = plan.segments()
    xs = xp.split([(s1 - s0) * n for s0, s1, n in segments])  # (rows, I) by segment
    current = tuple(s.unsqueeze(0) for s in states)
    outputs, done = [], []
    for (s0, s1, n), x_seg in zip(segments, xs):
        if n < current[0].shape[1]:  # rows n.. have ended: their state is final
            done.append(tuple(s[0, n:] for s in current))
            current = tuple(s[:, :n] for s in current)
        out, current = _call(cell, x_seg.view(s1 - s0, n, xp.shape[-1]), current)
        outputs.append(out.reshape((s1 - s0) * n, out.shape[-1]))
    done.append(tuple(s[0] for s in current))
    finals = tuple(torch.cat([d[k] for d in reversed(done)]) for k in range(len(states)))
    return torch.cat(outputs), finals


def _head_then_loop(
    cell: RecurrentCell, xp: Tensor, states: State, plan: Plan
) -> tuple[Tensor, State]:
    """The first segment (all B rows) in one fused call, the rest in the compiled loop."""
    s1 = plan.segments()[0][1]  # the first step at which some row has ended
    head, B, n1 = plan.off_list[s1], plan.B, plan.n_list[s1]
    x_head = xp[:head].view(s1, B, xp.shape[-1])
    out, mid = _call(cell, x_head, tuple(s.unsqueeze(0) for s in states))
    y_tail, tail_finals = run_native_packed(
        cell, xp[head:], tuple(s[0, :n1] for s in mid), tail_plan(plan, s1)
    )
    y = torch.cat([out.reshape(head, out.shape[-1]), y_tail])
    return y, tuple(torch.cat([t, s[0, n1:]]) for t, s in zip(tail_finals, mid))
