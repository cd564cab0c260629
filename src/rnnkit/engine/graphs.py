"""CUDA graphs around the autograd loop: the GPU path of the cells without a cuDNN kernel.

On the GPU the cells without torch.nn's math (peephole and LayerNorm LSTM, the GRU with the
reset before, MGU, MUT1-3, NAS, ConvLSTM, a user's own cell) run the autograd loop over
``cell.step``: per step a product and its pointwise ops (MUT1: 15 forwards, 15 backwards),
each launched from Python. At the sizes of recurrent layers the GPU waits for the
launches, not for the arithmetic.

This path records the whole training step of one layer-direction once per shape as two CUDA
graphs, and replays them:

* the forward graph: the input projection and the loop over ``cell.step`` on static buffers,
  with autograd recording as usual, so the activations the backward pass reads live in the
  graphs' memory pool;
* the backward graph: ``torch.autograd.grad`` of that recording, from static output
  gradients to the gradients of the input, the initial state and every parameter.

A call copies its input and state into the static buffers and replays the forward graph; its
backward copies the output gradients in and replays the backward graph. Both are one launch
from Python whatever T is. The parameters are read where they live, so an optimizer's
in-place step is seen by the next replay.

Safety: a graph's buffers are shared by every call of its shape. A call's backward checks that
the forward graph last ran its own input; if another call of the same shape ran since (two
forward passes before one backward, or a second backward with ``retain_graph=True``, whose
first replay may have reused the saved activations' memory for its temporaries), it replays
the forward graph again from its own saved input first. Autograd's version counters reject a
backward after a parameter or the input changed in place, as they do for any saved tensor.

Lengths: a recording is made for a shape, not for lengths; with lengths it is the masked loop
over all T steps (each row's state frozen past its length, its outputs zero there, the
backward direction reversed within each valid part), with the lengths copied in at each call
like the input. It does the padded work, which on the GPU costs far less than the launches a
shrinking batch would save.

When: "auto" takes this path for a cell that would run the autograd loop on a CUDA tensor,
outside autocast and outside another graph's capture, from the ``CAPTURE_AFTER``-th call of a
shape on (the first calls run the autograd loop: a capture costs a few plain calls, which a
shape called once never repays). ``engine="graph"`` forces it from the first call. Each cell
keeps ``CACHE_SIZE`` recordings, and all cells together at most ``MEMORY_FRACTION`` of the
device's memory, the least recently replayed dropped first. A cell
whose step cannot be captured (a host synchronisation, a data-dependent branch) warns once and
keeps the autograd loop. Second derivatives (``create_graph=True``) are refused with an error:
use ``engine="autograd"`` for them.
"""

from __future__ import annotations

import itertools
import math
import warnings
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..cells.base import RecurrentCell, State
from ._tracing import jit_tracing, under_functorch
from .graph_record import Recording, Replay, capture, load, on, outputs
from .sequence import forward_ad_on, run_autograd

__all__ = [
    "CACHE_SIZE",
    "CAPTURE_AFTER",
    "GRAPHS",
    "MEMORY_FRACTION",
    "MEMORY_LIMIT",
    "capture_count",
    "clear",
    "graphs_run",
    "memory_held",
    "run_graphed",
    "steps_bucket",
]

# "auto" uses graphs on the GPU (False: never; engine="graph" still forces them).
GRAPHS = True
# A shape's graphs are captured at its CAPTURE_AFTER-th call; the calls before run the loop.
CAPTURE_AFTER = 2
# Graphs kept per cell, the least recently used dropped first: each holds the activations of
# one training step of its shape in its own memory pool.
CACHE_SIZE = 4
# A cell whose recordings have been dropped this many times cycles through more shapes than
# the cache keeps (each recording costs a few plain calls): "auto" stops recording it.
DROP_LIMIT = 4 * CACHE_SIZE
# The recordings of all cells together hold at most this share of a device's memory in their
# pools (the activations of a training step each), the least recently replayed dropped first;
# MEMORY_LIMIT, in bytes, overrides it.
MEMORY_FRACTION = 0.25
MEMORY_LIMIT: int | None = None
# A cell called with more distinct sequence lengths T than CACHE_SIZE in its last STEPS_WINDOW
# calls (batches padded to their longest sequence, say) records T rounded up to a grid about
# sqrt(2) apart (steps_bucket), as the masked loop with each call's lengths (its T for a batch
# without them), and keeps BUCKETED_CACHE_SIZE such recordings: a few shapes in all, at most
# half again the steps. With CACHE_SIZE // 2 or fewer distinct T there, it records T again.
BUCKETED_CACHE_SIZE = 3 * CACHE_SIZE
STEPS_WINDOW = 32
# Shapes counted towards CAPTURE_AFTER per cell (the least recent forgotten first).
SEEN_SIZE = 64
# "cuda": real CUDA graphs. "eager": graph_record.record_eager, the stand-in whose replay
# reruns the recorded function; the tests run the path's bookkeeping with it on the CPU.
_BACKEND = "cuda"

_captures = 0  # graphs captured in this process (tests read it through capture_count)


def capture_count() -> int:
    """How many shapes have been captured in this process (forward and backward count once)."""
    return _captures


@dataclass
class _CellGraphs:
    entries: OrderedDict = field(default_factory=OrderedDict)
    seen: dict = field(default_factory=dict)
    dropped: int = 0  # recordings dropped from the cache
    # T of its last STEPS_WINDOW calls: more distinct ones than CACHE_SIZE turn the buckets on,
    # CACHE_SIZE // 2 or fewer off again
    recent_steps: deque = field(default_factory=lambda: deque(maxlen=STEPS_WINDOW))
    bucketed: bool = False  # records T rounded up to steps_bucket(T)
    broken: str | None = None  # why "auto" stopped recording the cell: it keeps the loop


_cells: weakref.WeakKeyDictionary[RecurrentCell, _CellGraphs] = weakref.WeakKeyDictionary()
_clock = itertools.count()


def memory_held(device: torch.device | str | None = None) -> int:
    """Bytes of device memory the recordings keep (on ``device``, or on every device)."""
    want = None if device is None else torch.device(device)
    if want is not None and want.type == "cuda" and want.index is None:
        want = torch.device("cuda", torch.cuda.current_device())  # ("cuda": the current one)
    return sum(
        e.nbytes
        for g in list(_cells.values())
        for e in g.entries.values()
        if want is None or e.x.device == want
    )


def clear(cell: RecurrentCell | None = None) -> None:
    """Drop the graphs (and their memory) of ``cell``, or of every cell."""
    if cell is None:
        _cells.clear()
    else:
        _cells.pop(cell, None)


def _params(cell: RecurrentCell) -> list[Tensor]:
    return [p for _, p in cell.named_parameters()]


def _training(x: Tensor, state: State, params: list[Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in (x, *state, *params))


def graphs_run(cell: RecurrentCell, x: Tensor, state: State) -> bool:
    """Whether "auto" may run ``cell`` on ``x`` in graphs (see the module's docstring)."""
    if not GRAPHS or not x.is_cuda:
        return False
    graphs = _cells.get(cell)
    if graphs is not None and graphs.broken is not None:
        return False
    return graph_problem(cell, x, state) is None


def _transformed(cell: RecurrentCell, x: Tensor, state: State) -> bool:
    """Whether a transform that traces torch ops runs (torch.func, forward-mode AD,
    torch.jit.trace, torch.compile): they need the loop's ops, not a replay."""
    return (
        under_functorch()
        or forward_ad_on(cell, x, state)
        or jit_tracing()
        or torch.compiler.is_compiling()
    )


def graph_problem(cell: RecurrentCell, x: Tensor, state: State) -> str | None:
    """Why ``engine="graph"`` cannot run this call, or None."""
    if _transformed(cell, x, state):
        return (
            "a call inside torch.func, forward-mode AD, torch.jit.trace or torch.compile (they "
            "trace the loop's ops; use engine 'auto' or 'autograd')"
        )
    if _BACKEND == "cuda" and not x.is_cuda:
        return f"a tensor on {x.device} (CUDA graphs need a CUDA tensor)"
    if _BACKEND == "cuda" and torch.cuda.is_current_stream_capturing():
        return "a call inside another CUDA graph's capture"
    if torch.is_autocast_enabled("cuda"):
        return "a call under torch.autocast (its cast cache cannot be recorded)"
    wrong = [t.device for t in (*state, *_params(cell)) if t.device != x.device]
    if wrong:
        return f"a state or parameter on {wrong[0]} while x is on {x.device}"
    return None


def steps_bucket(T: int) -> int:
    """The steps a bucketed cell records for a call of T steps: the least of 8, 16, 24, 32,
    48, 64, 96, 128, 184, 256, 368, 512, ... (8·ceil(2^(k/2))) that is at least T."""
    k = 0
    while (steps := 8 * math.ceil(2 ** (k / 2))) < T:
        k += 1
    return steps


def _key(cell, x, state, steps, masked, reverse, params, training) -> tuple:
    return (
        (steps, *x.shape[1:]),
        x.dtype,
        x.device,
        bool(reverse),
        masked,  # the lengths are an input of the recording, not part of it
        tuple((tuple(s.shape), s.dtype) for s in state),
        training,
        torch.is_inference_mode_enabled(),
        x.requires_grad,
        tuple(s.requires_grad for s in state),
        tuple((p.data_ptr(), tuple(p.shape), p.dtype, p.requires_grad) for p in params),
        cell.training,  # a step with dropout records its training-mode kernels
    )


def run_graphed(
    cell: RecurrentCell,
    x: Tensor,
    state: State,
    lengths: Tensor | None,
    reverse: bool,
    force: bool = False,
) -> tuple[Tensor, State]:
    """``cell`` over ``x`` (T, B, ...) from ``state`` (tuple of (B, ·)) with optional
    ``lengths`` (B,) (validated), replayed from graphs of this shape: without lengths the
    autograd loop, with them the masked loop over all T steps (for a cell called with many T,
    the masked loop over ``steps_bucket(T)`` steps). The first calls of a shape run the
    autograd loop itself unless ``force``."""
    global _captures
    params = _params(cell)
    training = _training(x, state, params)
    graphs = _cells.setdefault(cell, _CellGraphs())
    T = x.shape[0]
    graphs.recent_steps.append(T)
    distinct = len(set(graphs.recent_steps))
    if distinct > CACHE_SIZE if not graphs.bucketed else distinct <= CACHE_SIZE // 2:
        graphs.bucketed = not graphs.bucketed  # (the margin between the two: no flapping)
        graphs.dropped = 0
        graphs.entries.clear()
        graphs.seen.clear()
    steps = steps_bucket(T) if graphs.bucketed else T
    masked = lengths is not None or graphs.bucketed
    key = _key(cell, x, state, steps, masked, reverse, params, training)
    entry = graphs.entries.get(key)
    if entry is None:
        seen = graphs.seen.pop(key, 0) + 1
        if not force and (graphs.broken is not None or seen < CAPTURE_AFTER):
            if graphs.broken is None:
                graphs.seen[key] = seen  # (the most recent last: the oldest go first)
                while len(graphs.seen) > SEEN_SIZE:
                    del graphs.seen[next(iter(graphs.seen))]
            return run_autograd(cell, x, state, lengths, reverse)
        try:
            with on(x.device):
                before = _reserved(x.device)
                eager = _BACKEND != "cuda"
                entry = capture(cell, x, state, lengths, reverse, training, steps, masked, eager)
                entry.nbytes = max(0, _reserved(x.device) - before)
        except Exception as err:  # noqa: BLE001 - any failure to record keeps the plain loop
            if force:
                raise
            graphs.broken = f"{type(err).__name__}: {err}"
            graphs.entries.clear()
            warnings.warn(
                f"rnnkit.engine: {type(cell).__name__}'s step could not be recorded as a CUDA "
                f"graph ({graphs.broken}); it keeps the autograd loop",
                RuntimeWarning,
                stacklevel=2,
            )
            return run_autograd(cell, x, state, lengths, reverse)
        _captures += 1
        graphs.entries[key] = entry
        capacity = BUCKETED_CACHE_SIZE if graphs.bucketed else CACHE_SIZE
        while len(graphs.entries) > capacity:
            graphs.entries.popitem(last=False)
            graphs.dropped += 1
        entry.used = next(_clock)
        _make_room(entry)
        if not force and graphs.dropped >= DROP_LIMIT:
            graphs.broken = f"more shapes in turn than its {capacity} recordings keep"
            graphs.entries.clear()
    else:
        graphs.entries.move_to_end(key)
        entry.used = next(_clock)
    if not training:
        load(entry, x, state, lengths)
        with on(x.device):
            entry.replay_forward()
        entry.owner = None
        out, *final = outputs(entry, T)
        return out, tuple(final)
    out, *final = Replay.apply(entry, lengths, x, *state, *params)
    return out, tuple(final)


def _memory_limit(device: torch.device) -> int:
    if MEMORY_LIMIT is not None:
        return MEMORY_LIMIT
    if _BACKEND != "cuda":
        return 2**62
    return int(MEMORY_FRACTION * torch.cuda.get_device_properties(device).total_memory)


def _reserved(device: torch.device) -> int:
    """Device memory reserved by torch's allocator, its free cached blocks released first (a
    capture releases them too)."""
    if _BACKEND != "cuda":
        return 0
    torch.cuda.empty_cache()
    return torch.cuda.memory_reserved(device)


def _make_room(newest: Recording) -> None:
    """Drop the least recently replayed recordings on ``newest``'s device (of any cell) while
    they hold more than the limit together; the newest stays."""
    device = newest.x.device
    limit = _memory_limit(device)
    while True:
        held = [
            (e.used, g, k, e)
            for g in list(_cells.values())
            for k, e in g.entries.items()
            if e.x.device == device
        ]
        if sum(h[3].nbytes for h in held) <= limit:
            return
        older = [h for h in held if h[3] is not newest]
        if not older:
            return
        _, g, k, _ = min(older, key=lambda h: h[0])
        del g.entries[k]
        g.dropped += 1
