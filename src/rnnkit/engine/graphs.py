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

import contextlib
import itertools
import math
import warnings
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.func import functional_call

from ..cells.base import RecurrentCell, State
from ._tracing import jit_tracing, under_functorch
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
# Plain calls on a side stream before a capture (cuBLAS workspaces, lazy initialisation).
WARMUP = 2

# "cuda": real CUDA graphs. "eager": a stand-in whose replay reruns the recorded function and
# copies its results into the recorded outputs; the tests run the path's bookkeeping (static
# buffers, ownership, re-replays, the cache) with it on the CPU.
_BACKEND = "cuda"

_captures = 0  # graphs captured in this process (tests read it through capture_count)


def capture_count() -> int:
    """How many shapes have been captured in this process (forward and backward count once)."""
    return _captures


@dataclass
class _Entry:
    """The graphs of one shape of one cell, and their static buffers."""

    replay_forward: Callable[[], None]
    replay_backward: Callable[[], None] | None  # None: recorded without gradients
    x: Tensor  # (steps, B, ...) static input, steps >= the calls' T (a bucket's)
    states: tuple[Tensor, ...]  # (B, ·) static initial state
    lengths: Tensor | None  # (B,) int64 static lengths (None: recorded without)
    outputs: tuple[Tensor, ...]  # out (steps, B, O), *final state: the forward graph's results
    grad_outputs: tuple[Tensor | None, ...]  # their gradients, read by the backward graph
    grads: tuple[Tensor | None, ...]  # d x, d states..., d params... (None: none asked for)
    owner: object = None  # the call whose input the forward graph last ran (None: nobody's)
    nbytes: int = 0  # device memory the recording reserved (its pool and static buffers)
    used: int = 0  # when it last ran (a tick of _clock)


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
    if not GRAPHS or not x.is_cuda or _transformed(cell, x, state):
        return False
    if torch.cuda.is_current_stream_capturing() or torch.is_autocast_enabled("cuda"):
        return False
    graphs = _cells.get(cell)
    if graphs is not None and graphs.broken is not None:
        return False
    return all(t.device == x.device for t in (*state, *_params(cell)))


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
            with _on(x.device):
                before = _reserved(x.device)
                entry = _capture(cell, x, state, lengths, reverse, training, steps, masked)
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
        _load(entry, x, state, lengths)
        with _on(x.device):
            entry.replay_forward()
        entry.owner = None
        out, *final = _outputs(entry, T)
        return out, tuple(final)
    out, *final = _Replay.apply(entry, lengths, x, *state, *params)
    return out, tuple(final)


def _on(device: torch.device):
    """The recording's device as the current one (a graph is captured and launched on the
    current device's streams), for a tensor on another GPU than the current one."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


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


def _make_room(newest: _Entry) -> None:
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


def _load(entry: _Entry, x: Tensor, state: State, lengths: Tensor | None) -> None:
    """Copy a call's input in. A bucketed recording's steps past the call's T keep what an
    earlier call left there; the masked loop zeroes every row's steps past its length."""
    T = x.shape[0]
    with torch.no_grad():
        entry.x[:T].copy_(x)
        for static, s in zip(entry.states, state):
            static.copy_(s)
        if entry.lengths is not None:
            if lengths is None:  # (a bucketed call without lengths: every row runs T steps)
                entry.lengths.fill_(T)
            else:
                entry.lengths.copy_(lengths)


def _outputs(entry: _Entry, T: int) -> tuple[Tensor, ...]:
    """Copies of the call's outputs: the first T steps of out, and the final states."""
    out, *final = entry.outputs
    return (out[:T].clone(), *(f.clone() for f in final))


class _Replay(torch.autograd.Function):
    """(entry, lengths, x, *states, *params) -> (out, *final state), from the entry's graphs."""

    @staticmethod
    def forward(ctx, entry: _Entry, lengths: Tensor | None, x: Tensor, *rest: Tensor):
        n = len(entry.states)
        _load(entry, x, rest[:n], lengths)
        with _on(x.device):
            entry.replay_forward()
        token = object()
        entry.owner = token
        ctx.entry, ctx.token, ctx.n = entry, token, n
        ctx.lengths = None if lengths is None else lengths.clone()
        ctx.save_for_backward(x, *rest)  # the input for a re-replay; params: version checks
        return _outputs(entry, x.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs: Tensor):
        entry: _Entry = ctx.entry
        saved = ctx.saved_tensors
        with _on(entry.x.device):
            if entry.owner is not ctx.token:  # another call ran the graphs since this one
                _load(entry, saved[0], saved[1 : 1 + ctx.n], ctx.lengths)
                entry.replay_forward()
            T = saved[0].shape[0]
            for k, (static, g) in enumerate(zip(entry.grad_outputs, grad_outputs)):
                if static is not None:  # (out's gradient: its first T steps)
                    (static[:T] if k == 0 else static).copy_(g)
            assert entry.replay_backward is not None  # a training call records both
            entry.replay_backward()
        # the backward graph's temporaries may lie where the saved activations were
        entry.owner = None
        dx, *rest = entry.grads
        return (
            None,
            None,
            None if dx is None else dx[:T].clone(),
            *(None if g is None else g.clone() for g in rest),
        )


class _Loop(torch.nn.Module):
    """The recorded loop as a module, so that ``functional_call`` can hand the cell fresh
    aliases of its parameters: leaves of the recording alone, whose gradient nodes are made
    on the capturing stream, not kept from the caller's graphs."""

    def __init__(self, cell: RecurrentCell, lengths: Tensor | None, reverse: bool) -> None:
        super().__init__()
        self.cell, self.lengths, self.reverse = cell, lengths, reverse

    def forward(self, x: Tensor, state: State):
        if self.lengths is None:
            return run_autograd(self.cell, x, state, None, self.reverse)
        # every row over all T steps, masked past its length: a recording for any lengths
        from ..loop import reverse_padded, run_cell, valid_steps  # (it imports this package)

        # the padding zeroed first: whatever lies there (NaN padding, or a longer call's steps
        # in a bucketed recording) would meet the input weight's gradient as 0·NaN = NaN
        valid = valid_steps(x.shape[0], self.lengths)  # (T, B)
        x = x.masked_fill(~valid.view(*valid.shape, *([1] * (x.dim() - 2))), 0.0)
        if not self.reverse:
            return run_cell(self.cell, x, state, self.lengths)
        out, final = run_cell(self.cell, reverse_padded(x, self.lengths), state, self.lengths)
        return reverse_padded(out, self.lengths), final


def _capture(cell, x, state, lengths, reverse, training, steps, masked) -> _Entry:
    """Record the graphs of this call's shape, over ``steps`` >= T steps, as the masked loop
    if ``masked`` (see the module's docstring)."""
    global _captures
    T = x.shape[0]
    static_x = x.new_zeros(steps, *x.shape[1:])
    static_x[:T] = x.detach()
    static_states = tuple(s.detach().clone() for s in state)
    static_lengths = None
    if masked:
        static_lengths = torch.full((x.shape[1],), T, dtype=torch.int64, device=x.device)
        if lengths is not None:
            static_lengths.copy_(lengths)
    named = dict(cell.named_parameters())
    wants = [training and t.requires_grad for t in (x, *state, *named.values())]
    # a weak reference: the recording is kept in a map weakly keyed by the cell, so nothing in
    # it may hold the cell
    cell_ref = weakref.ref(cell)
    live: dict[str, tuple[Tensor, ...]] = {}

    def forward() -> tuple[Tensor, ...]:
        # fresh leaves sharing the static buffers' and the parameters' memory
        xa = static_x.detach().requires_grad_(wants[0])
        sa = tuple(s.detach().requires_grad_(w) for s, w in zip(static_states, wants[1:]))
        pa = {
            f"cell.{k}": p.detach().requires_grad_(w)
            for (k, p), w in zip(named.items(), wants[1 + len(sa) :])
        }
        # the recording keeps its activations in the graphs' pool, whatever saved-tensor hooks
        # are around the call (recomputation, offloading): they would not be recorded
        loop = _Loop(cell_ref(), static_lengths, reverse)
        with torch.set_grad_enabled(training), _kept_as_they_are():
            out, final = functional_call(loop, pa, (xa, sa))
        live["inputs"] = (xa, *sa, *pa.values())
        live["outputs"] = (out, *final)
        return live["outputs"]

    grad_outputs: list[Tensor | None] = []

    def backward() -> tuple[Tensor | None, ...]:
        outs = [o for o, g in zip(live["outputs"], grad_outputs) if g is not None]
        gs = [g for g in grad_outputs if g is not None]
        asked = [t for t, w in zip(live["inputs"], wants) if w]
        got = iter(torch.autograd.grad(outs, asked, gs, allow_unused=True))
        return tuple(next(got) if w else None for w in wants)

    record = _record_cuda if _BACKEND == "cuda" else _record_eager
    if _BACKEND == "cuda":
        _warm_up(x.device, forward, backward, grad_outputs, training)
        live.clear()  # the warm-up's graph goes before the recording starts
    pool: list = []
    replay_forward, outputs = record(forward, pool)
    replay_backward, grads = None, tuple(None for _ in wants)
    if training:
        grad_outputs[:] = [torch.zeros_like(o) if o.requires_grad else None for o in outputs]
        replay_backward, grads = record(backward, pool)
    _captures += 1
    return _Entry(
        replay_forward=replay_forward,
        replay_backward=replay_backward,
        x=static_x,
        states=static_states,
        lengths=static_lengths,
        outputs=tuple(o.detach() for o in outputs),
        grad_outputs=tuple(grad_outputs) if training else (),
        grads=tuple(grads),
    )


def _kept_as_they_are():
    return torch.autograd.graph.saved_tensors_hooks(_same, _same)


def _same(t: Tensor) -> Tensor:
    return t


def _warm_up(device, forward, backward, grad_outputs, training) -> None:
    """Plain calls on a side stream, as a capture needs (lazy initialisation and cuBLAS
    workspaces happen here, not inside the graph)."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(WARMUP):
            outputs = forward()
            if training:
                grad_outputs[:] = [torch.ones_like(o) if o.requires_grad else None for o in outputs]
                backward()
            del outputs
    torch.cuda.current_stream(device).wait_stream(side)
    grad_outputs.clear()


def _record_cuda(fn, pool: list):
    """Capture ``fn`` as a CUDA graph (sharing one memory pool per entry) -> (replay, result)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool[0] if pool else None):
        result = fn()
    if not pool:
        pool.append(graph.pool())
    return graph.replay, result


def _record_eager(fn, pool: list):
    """The stand-in for :func:`_record_cuda`: the replay reruns ``fn`` and writes its results
    into the first run's, as a graph's replay rewrites its outputs in place."""
    result = fn()

    def replay() -> None:
        again = fn()
        with torch.no_grad():
            for static, new in zip(result, again):
                if static is not None:
                    static.copy_(new)

    return replay, result
