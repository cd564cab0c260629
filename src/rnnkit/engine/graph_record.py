"""The recording of :mod:`rnnkit.engine.graphs`: one layer-direction's loop captured as a
forward and a backward CUDA graph over static buffers, and replayed as one autograd node.

* :func:`capture` runs the loop (:func:`~rnnkit.engine.sequence.run_autograd`, or with lengths
  the masked reference loop over all steps) on fresh leaf aliases of the parameters, the input
  and the state, warms it up on a side stream, and records it, then ``torch.autograd.grad`` of
  it, into one memory pool;
* :func:`load` copies a call's input in, :func:`outputs` copies its outputs out;
* :class:`Replay` is the autograd node of a training call: its backward replays the forward
  graph again from the call's own saved input when another call ran it since.

:func:`record_eager` stands in for :func:`record_cuda` on the CPU: its replay reruns the
recorded function and writes the results into the recorded outputs, as a graph's replay
rewrites them in place, so the tests run this bookkeeping without a GPU.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.func import functional_call

from ..cells.base import RecurrentCell, State
from .sequence import run_autograd

__all__ = ["Recording", "Replay", "capture", "load", "on", "outputs", "record_cuda", "record_eager"]

# Plain calls on a side stream before a capture (cuBLAS workspaces, lazy initialisation).
WARMUP = 2


@dataclass
class Recording:
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
    used: int = 0  # when it last ran (a tick of the graphs module's clock)


def on(device: torch.device):
    """The recording's device as the current one (a graph is captured and launched on the
    current device's streams), for a tensor on another GPU than the current one."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def load(entry: Recording, x: Tensor, state: State, lengths: Tensor | None) -> None:
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


def outputs(entry: Recording, T: int) -> tuple[Tensor, ...]:
    """Copies of the call's outputs: the first T steps of out, and the final states."""
    out, *final = entry.outputs
    return (out[:T].clone(), *(f.clone() for f in final))


class Replay(torch.autograd.Function):
    """(entry, lengths, x, *states, *params) -> (out, *final state), from the entry's graphs."""

    @staticmethod
    def forward(ctx, entry: Recording, lengths: Tensor | None, x: Tensor, *rest: Tensor):
        n = len(entry.states)
        load(entry, x, rest[:n], lengths)
        with on(x.device):
            entry.replay_forward()
        token = object()
        entry.owner = token
        ctx.entry, ctx.token, ctx.n = entry, token, n
        ctx.lengths = None if lengths is None else lengths.clone()
        ctx.save_for_backward(x, *rest)  # the input for a re-replay; params: version checks
        return outputs(entry, x.shape[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_outputs: Tensor):
        entry: Recording = ctx.entry
        saved = ctx.saved_tensors
        with on(entry.x.device):
            if entry.owner is not ctx.token:  # another call ran the graphs since this one
                load(entry, saved[0], saved[1 : 1 + ctx.n], ctx.lengths)
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


def capture(cell, x, state, lengths, reverse, training, steps, masked, eager) -> Recording:
    """Record the graphs of this call's shape, over ``steps`` >= T steps, as the masked loop
    if ``masked``; ``eager``: with :func:`record_eager`, the stand-in for CUDA graphs."""
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

    record = record_eager if eager else record_cuda
    if not eager:
        _warm_up(x.device, forward, backward, grad_outputs, training)
        live.clear()  # the warm-up's graph goes before the recording starts
    pool: list = []
    replay_forward, results = record(forward, pool)
    replay_backward, grads = None, tuple(None for _ in wants)
    if training:
        grad_outputs[:] = [torch.zeros_like(o) if o.requires_grad else None for o in results]
        replay_backward, grads = record(backward, pool)
    return Recording(
        replay_forward=replay_forward,
        replay_backward=replay_backward,
        x=static_x,
        states=static_states,
        lengths=static_lengths,
        outputs=tuple(o.detach() for o in results),
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
            results = forward()
            if training:
                grad_outputs[:] = [torch.ones_like(o) if o.requires_grad else None for o in results]
                backward()
            del results
    torch.cuda.current_stream(device).wait_stream(side)
    grad_outputs.clear()


def record_cuda(fn, pool: list):
    """Capture ``fn`` as a CUDA graph (sharing one memory pool per entry) -> (replay, result)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool[0] if pool else None):
        result = fn()
    if not pool:
        pool.append(graph.pool())
    return graph.replay, result


def record_eager(fn, pool: list):
    """The stand-in for :func:`record_cuda`: the replay reruns ``fn`` and writes its results
    into the first run's, as a graph's replay rewrites its outputs in place."""
    result = fn()

    def replay() -> None:
        again = fn()
        with torch.no_grad():
            for static, new in zip(result, again):
                if static is not None:
                    static.copy_(new)

    return replay, result
