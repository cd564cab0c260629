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

With lengths on the GPU, an LSTM's rows go to cuDNN's own variable-length mode: one call of
torch's op on the packed rows (the call ``torch.nn.LSTM`` makes for a ``PackedSequence``), route
"packed". GRU and Elman cells take route "masked" there instead: one padded call over all T
steps (each valid part reversed first for the backward direction), outputs zeroed past each
length and the final state read from the output at each sequence's last step. That is exact
for a cell whose state is its output, because a step reads only the steps before it; it does
the padded work, but cuDNN's padded kernels are faster than its variable-length ones. On the
CPU, torch's ``PackedSequence`` path runs on a slower generic kernel: oneDNN has
no variable-length mode. There "auto" runs a plain LSTM with lengths in the compiled loop
when it can (``LOOP_WITH_LENGTHS``: the fastest route measured). ``engine="fused"``, and "auto"
where the loop cannot run (a projected LSTM, no C++ compiler), take the fused routes: the
sequences are sorted by length once and the fused kernel is
called once per run of steps with the same active rows ("segment"), on the rows still running;
each call is a view into the packed input, and finished rows leave the batch. Each call pays
a fixed cost (oneDNN prepares its weights), so with more than ``FUSED_SEGMENT_LIMIT`` distinct
lengths only the first segment, where every row is still running, goes to the fused kernel,
and the compiled loop (:mod:`rnnkit.engine.sequence`) takes the shrinking batch from there
(:func:`fused_route` says which). For the same reason a sequence shorter than
``HEAD_MIN_STEPS`` steps (streaming one step at a time, say) takes the compiled loop whole:
there the weight preparation costs more than the steps. Forwards, the first segment of both
routes reads its rows from the padded input as they are, and only the rows after it are sorted
and packed (:mod:`rnnkit.engine.head`).

A layer whose every layer-direction would take one fused call of the whole sequence (or, with
lengths, one call of the variable-length op) runs as a single call over all its layers and
directions, the call ``torch.nn.LSTM`` makes (:mod:`rnnkit.engine.fused_stack`).

A long LSTM sequence trained on oneDNN runs as several calls of torch's op, each over a run of
consecutive steps ("chunks", :func:`chunk_steps`), the state of one handed to the next. One
call over T steps makes its backward pass allocate buffers for all T steps next to the saved
ones; chunks of at least ``CHUNK_ROWS`` rows (steps times batch) keep those to one chunk's worth.
The values are the same (the weight gradients summed chunk by chunk, so their float32
rounding differs); the peak memory of a training step at T = 500, B = 128, H = 512 drops by
about half, for 1.0-1.5 % more time: the extra calls' fixed cost and two copies that join the
chunks' outputs and input gradients (docs/benchmarks.md, "Long LSTM sequences in chunks")."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ..cells import ElmanCell, GRUCell, LSTMCell
from ..cells.base import RecurrentCell, State
from ._tracing import jit_tracing
from .checkpoint import needs_grad
from .head import run_head_tail
from .packing import Plan, make_plan, pack, sort_rows, tail_plan, unpack, unsort_rows
from .sequence import (
    native_supports,
    parameters_by_name,
    run_native_packed,
)

# With lengths on the CPU, "auto" runs a plain LSTM in the compiled loop whenever the loop can
# run it: it was the fastest route on both CPUs measured (python benchmarks/lengths_routes.py;
# Intel Xeon, T = 100, H = 256: 0.68 / 0.70 of the full batch's step at B = 32 / 128, against
# 0.73 / 0.79 for "head"; AMD EPYC: 0.76 / 0.69 against 0.74 / 0.73). False: the fused routes
# below, as before (for measurements, and for the tests of those routes).
LOOP_WITH_LENGTHS = True
# A forward-only pass (inference) takes the compiled loop with lengths up to this batch only:
# oneDNN's forward kernel needs no saved activations and runs ahead of the loop's forward on
# more rows (Intel Xeon, forward with lengths over the full batch's forward: at B = 64 and 128
# the fused routes 0.81-0.86, the loop 0.87-0.92; at B = 8 and 32 the loop 0.84-0.91, the fused
# routes 0.89-1.44; python benchmarks/lengths_overheads.py --pieces "loop in inference").
LOOP_INFERENCE_MAX_BATCH = 32
# More distinct lengths than this: one fused call per segment costs more than the compiled loop.
FUSED_SEGMENT_LIMIT = 8
# The fused head must cover at least this many steps to pay for its call (else: compiled loop).
HEAD_MIN_STEPS = 8
# Forwards, the first segment of the "head" and "segments" routes reads the padded input as it
# is (engine.head); False packs it too, as before (for measurements:
# benchmarks/lengths_overheads.py).
PADDED_HEAD = True
# The kinds whose state is their output: with lengths, one padded call is exact (route "masked").
STATE_IS_OUTPUT = frozenset({"gru", "rnn_tanh", "rnn_relu"})
# A training call on oneDNN whose output has at least CHUNK_MIN_OUTPUT elements (T·B·H: a step
# whose peak memory would pass about 1 GB) runs in chunks of consecutive steps, each of at
# least CHUNK_ROWS rows (steps times batch): its backward pass's buffers then cover one chunk
# instead of the whole sequence (about half the peak memory), and the fixed cost of each extra
# call stays small against the chunk's work; with the copies that join the chunks' outputs and
# input gradients, 1.0-1.5 % more time at these sizes. CHUNK_ROWS = 0: one call (torch.nn.LSTM's
# bits).
CHUNK_ROWS = 8192
CHUNK_MIN_OUTPUT = 2**24
# The dtypes on which torch's CPU LSTM runs on oneDNN (elsewhere its generic kernel, whose
# memory does not come from one call's buffers).
CHUNK_DTYPES = (torch.float32,)


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


def fused_weights(cell: RecurrentCell) -> list[Tensor]:
    """torch.nn's flat weight list for one layer and direction (the parameters as the cell's
    forward pass would read them, under ``functional_call`` too)."""
    p = parameters_by_name(cell)
    weights = [p["weight_ih"], p["weight_hh"]]
    if cell.bias:
        weights += [p["bias_ih"], p["bias_hh"]]
    if isinstance(cell, LSTMCell) and cell.proj_size:
        weights.append(p["weight_hr"])
    return weights


def variable_length_op(x: Tensor) -> bool:
    """Whether torch's fused op on ``x``'s device has a variable-length mode that runs the
    shrinking batch in one call: cuDNN's (any device but the CPU: torch's packed op); oneDNN
    has none, and torch's CPU fallback for it is slower than one oneDNN call per segment."""
    return not x.is_cpu


def fused_route(cell: RecurrentCell, x: Tensor, lengths: Tensor | None) -> str:
    """How "auto" runs ``cell`` on ``x`` (T, B, I) when torch has a fused kernel for it:
    "whole" (one call, no lengths), "packed" (an LSTM with lengths off the CPU: one call of the
    variable-length op), "masked" (a GRU or Elman cell with lengths off the CPU: one padded
    call, masked), "segments" (one call per run of equal active rows), "head" (the first
    segment fused, the rest in the compiled loop) or "native" (the compiled loop: fewer than
    ``HEAD_MIN_STEPS`` steps, lengths on the CPU with ``LOOP_WITH_LENGTHS`` in a training pass
    or a batch of at most ``LOOP_INFERENCE_MAX_BATCH`` rows, or else many segments and a short
    first one)."""
    if x.shape[0] < HEAD_MIN_STEPS and native_supports(cell, x):
        return "native"
    if lengths is None:
        return "whole"
    plan = make_plan(x.shape[0], x.shape[1], lengths, False)
    on_loop = LOOP_WITH_LENGTHS and plan.packed and not variable_length_op(x)
    if on_loop and (x.shape[1] <= LOOP_INFERENCE_MAX_BATCH or needs_grad(cell, x, ())):
        if native_supports(cell, x):
            return "native"
    return _route(cell, x, plan)


# One step (T = 1) on the CPU: "auto" runs torch's one-step op (engine.single_step) up to this
# many rows times hidden features (B·H); above it, the compiled loop's one pass over the step's
# pointwise math costs less than torch's separate ops
# (``python benchmarks/call_overhead.py --single-step``).
SINGLE_STEP_MAX = 8192


def one_step_kind(cell: RecurrentCell) -> str | None:
    """:func:`fused_kind` where torch also has a one-step op for it (``torch.lstm_cell``,
    ``gru_cell``, ``rnn_tanh_cell``, ``rnn_relu_cell``: no projection), else None."""
    kind = fused_kind(cell)
    return None if kind == "lstm" and cell.proj_size else kind


def single_step_runs(cell: RecurrentCell, x: Tensor) -> bool:
    """Whether "auto" runs ``cell`` on ``x`` (T, B, ...) as one step of torch's one-step op:
    T = 1 on the CPU, a cell with one (:func:`one_step_kind`), B·H at most
    :data:`SINGLE_STEP_MAX`. The other cells' steps are several torch ops, which cost more than
    the compiled loop's one pass."""
    if x.shape[0] != 1 or not x.is_cpu or x.shape[1] * cell.hidden_size > SINGLE_STEP_MAX:
        return False
    return one_step_kind(cell) is not None


def _route(cell: RecurrentCell, x: Tensor, plan: Plan) -> str:
    """:func:`fused_route` from the batch's plan (a run of equal rows per distinct length)."""
    if not plan.packed:
        return "whole"
    if variable_length_op(x):
        return "masked" if fused_kind(cell) in STATE_IS_OUTPUT else "packed"
    segments = plan.segments()
    if len(segments) <= FUSED_SEGMENT_LIMIT or not native_supports(cell, x):
        return "segments"
    return "head" if segments[0][1] >= HEAD_MIN_STEPS else "native"


def chunk_steps(cells: tuple[RecurrentCell, ...], x: Tensor, states: State = ()) -> int | None:
    """The steps per call when a fused call of ``cells`` (one layer-direction, or a stack) over
    ``x`` (T, n, I) from ``states`` runs in chunks, or None for one call: a plain LSTM without
    projection on oneDNN (CPU, float32) in a training pass (gradients enabled and something
    requiring one) over at least ``2 * CHUNK_ROWS`` rows, whose output has at least
    ``CHUNK_MIN_OUTPUT`` elements. The T steps are cut into ``T * n // CHUNK_ROWS`` nearly
    equal chunks."""
    T, n = x.shape[0], x.shape[1]
    if CHUNK_ROWS <= 0 or T * n < 2 * CHUNK_ROWS:  # (first: the short calls pay nothing more)
        return None
    if not x.is_cpu or x.dtype not in CHUNK_DTYPES:
        return None
    first = cells[0]
    if fused_kind(first) != "lstm" or getattr(first, "proj_size", 0):
        return None
    if T * n * first.hidden_size < CHUNK_MIN_OUTPUT:
        return None
    if not any(needs_grad(cell, x, states) for cell in cells):
        return None
    return -(-T // ((T * n) // CHUNK_ROWS))


def _train_flag(cell: RecurrentCell) -> bool:
    """torch's "train" argument (no dropout here: whether oneDNN keeps a workspace for a
    backward pass): whether gradients are on; under torch.jit.trace the module's mode, as
    torch.nn's layers pass it, so that the trace does not depend on the grad mode it was
    recorded in."""
    return cell.training if jit_tracing() else torch.is_grad_enabled()


def _call(cell: RecurrentCell, x: Tensor, states: State) -> tuple[Tensor, State]:
    """One fused call: x (steps, n, I), states (1, n, ·) each -> (out, final states (1, n, ·)).
    A long training call runs as chunks of consecutive steps (:func:`chunk_steps`)."""
    args = (fused_weights(cell), cell.bias, 1, 0.0, _train_flag(cell), False, False)
    steps = chunk_steps((cell,), x, states)
    if steps is None:
        return _op(cell, x, states, args)
    outputs = []
    for piece in x.split(steps):
        out, states = _op(cell, piece, states, args)
        outputs.append(out)
    return torch.cat(outputs), states


def _op(
    cell: RecurrentCell, x: Tensor, states: State, args: tuple, batch_sizes: Tensor | None = None
) -> tuple[Tensor, State]:
    """torch's op for ``cell``'s kind on ``x`` from ``states`` with torch's trailing ``args``
    (flat weights, bias, layers, dropout, train, bidirectional, batch_first). With
    ``batch_sizes`` (steps,) int64 on the CPU, the variable-length op: ``x`` (N, I) holds the
    packed rows, step s the first ``batch_sizes[s]`` sequences, and ``args`` ends at
    bidirectional."""
    kind = fused_kind(cell)
    if not x.is_cuda and not (kind == "lstm" and getattr(cell, "proj_size", 0)):
        return _raw_op(kind, x, states, args, batch_sizes)  # (no warnings block: faster)
    with warnings.catch_warnings():
        # torch's note that oneDNN has no projection (the generic kernel runs it instead)
        warnings.filterwarnings("ignore", "LSTM with projections", UserWarning)
        # cuDNN wants the weights in one buffer, as torch.nn's layers keep them; the cells own
        # theirs, so cuDNN copies them into one at each call (a copy of the weights, no more)
        warnings.filterwarnings("ignore", "RNN module weights are not part of single", UserWarning)
        return _raw_op(kind, x, states, args, batch_sizes)


def _raw_op(
    kind: str, x: Tensor, states: State, args: tuple, batch_sizes: Tensor | None
) -> tuple[Tensor, State]:
    lead = (x,) if batch_sizes is None else (x, batch_sizes)
    if kind == "lstm":
        out, h, c = torch._VF.lstm(*lead, states, *args)
        return out, (h, c)
    out, h = getattr(torch._VF, kind)(*lead, states[0], *args)  # type: ignore[arg-type]
    return out, (h,)


def run_fused(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool
) -> tuple[Tensor, State]:
    """``x`` (T, B, I), ``state`` tuple of (B, ·) -> ((T, B, O), final state)."""
    T, B = x.shape[0], x.shape[1]
    plan = make_plan(T, B, lengths, reverse)
    route = _route(cell, x, plan)
    if route == "whole":
        seq = x.flip(0) if reverse else x
        out, finals = _call(cell, seq, tuple(s.unsqueeze(0) for s in state))
        return (out.flip(0) if reverse else out), tuple(f[0] for f in finals)
    if route == "masked":
        assert lengths is not None
        return _masked(cell, x, state, lengths, reverse)
    segments = plan.segments()
    if (
        route in ("head", "segments")
        and not reverse
        and len(segments) > 1
        and PADDED_HEAD
        and not jit_tracing()  # (its row moves take a layout, which a trace cannot record)
    ):
        # the first segment (every row running) reads the padded input as it is (engine.head);
        # the rest runs in the compiled loop ("head") or one fused call per segment
        m = segments[0][1]
        tail = run_native_packed if route == "head" else _segments
        return run_head_tail(
            x,
            state,
            plan,
            m,
            lambda xh, st: _fused_head(cell, xh.view(m, B, xh.shape[-1]), st),
            lambda xt, st, later: tail(cell, xt, st, later),
        )
    xp = pack(x, plan)  # (N, I)
    states = tuple(sort_rows(s, plan) for s in state)
    if route == "packed":
        y, finals = _packed(cell, xp, states, plan)
    elif route == "head":
        y, finals = _head_then_loop(cell, xp, states, plan)
    else:
        y, finals = _segments(cell, xp, states, plan)
    return unpack(y, plan), tuple(unsort_rows(f, plan) for f in finals)


def _masked(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor, reverse: bool
) -> tuple[Tensor, State]:
    """One padded call over all T steps for a cell whose state is its output (GRU, Elman): the
    outputs before each length do not depend on the padding after it, so they are exact; the
    rest is zeroed, and the final state is the output at each sequence's last step. Backwards,
    each valid part is reversed first (the padding stays last), then the outputs back."""
    from ..loop import reverse_padded, valid_steps  # it imports this package

    T, B = x.shape[0], x.shape[1]
    lengths = lengths.to(x.device)
    seq = reverse_padded(x, lengths) if reverse else x
    out, _ = _call(cell, seq, tuple(s.unsqueeze(0) for s in state))
    last = (lengths - 1).view(1, B, 1).expand(1, B, out.shape[-1])
    final = out.gather(0, last)[0]
    out = out.masked_fill(~valid_steps(T, lengths).unsqueeze(-1), 0.0)
    return (reverse_padded(out, lengths) if reverse else out), (final,)


def _packed(cell: RecurrentCell, xp: Tensor, states: State, plan: Plan) -> tuple[Tensor, State]:
    """One call of the variable-length op on the packed rows (the plan's layout is torch's
    ``PackedSequence`` layout; reversed, each valid part is reversed in it, so the op steps
    forwards); returns (y (N, ·), sorted finals)."""
    args = (fused_weights(cell), cell.bias, 1, 0.0, _train_flag(cell), False)
    out, finals = _op(cell, xp, tuple(s.unsqueeze(0) for s in states), args, plan.n)
    return out, tuple(f[0] for f in finals)


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


def _fused_head(cell: RecurrentCell, x: Tensor, states: State) -> tuple[Tensor, State]:
    """One fused call over ``x`` (steps, B, I) from ``states`` (B, ·) -> (outputs
    (steps·B, O), final states (B, ·))."""
    out, finals = _call(cell, x, tuple(s.unsqueeze(0) for s in states))
    return out.reshape(-1, out.shape[-1]), tuple(f[0] for f in finals)


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
