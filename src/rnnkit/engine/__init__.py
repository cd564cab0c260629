"""The engine: runs one layer-direction of a cell over a whole sequence, fast.

:class:`rnnkit.Recurrent` hands every layer and direction to :func:`run`; the cells state only
their math. The engine picks one of these paths (``engine=`` names them):

* ``"fused"``: a cell with torch.nn's exact math (a plain :class:`~rnnkit.cells.LSTMCell`, a
  :class:`~rnnkit.cells.GRUCell` with ``reset_after=True``, an
  :class:`~rnnkit.cells.ElmanCell`) runs on torch's own fused kernel with the same weights
  (oneDNN on the CPU, cuDNN on the GPU); with lengths, once per run of steps with the same
  active rows; a long LSTM training pass on oneDNN in chunks of steps, for about half the
  memory (:mod:`rnnkit.engine.fused`).
* ``"native"``: every other built-in cell on the CPU (float32, float64) runs in a compiled
  loop with a hand-written BPTT backward (:mod:`rnnkit.engine.sequence`,
  :mod:`rnnkit.engine.kernels`, ``_loops.cpp``).
* ``"autograd"``: any cell, any device: the same sorted, shrinking-batch loop over
  ``cell.step``, differentiated by autograd.
* ``"graph"``: the autograd loop recorded once per shape as two CUDA graphs (forward, and its
  backward) and replayed: one launch from Python per pass instead of a few dozen per step
  (:mod:`rnnkit.engine.graphs`). "auto" takes it on the GPU for the cells without a cuDNN
  kernel, from a shape's second call on; with lengths, every row over all T steps, masked.
* ``"reference"``: :func:`rnnkit.loop.run_cell`, the plain masked loop; the oracle.
* ``"auto"`` (the default): one time step of a small batch on the CPU (streaming,
  generation) with torch.nn's math as torch's one-step op (:mod:`rnnkit.engine.single_step`);
  otherwise for a plain LSTM fused, else native, else fused (GRU and Elman
  off the CPU, where cuDNN beats a loop of small kernels), else autograd, which on the GPU is
  recorded as CUDA graphs from a shape's second call. A plain LSTM with many
  distinct lengths runs its first steps (every row still running) fused and the shrinking
  batch after them in the compiled loop; when the shortest sequence is short, all of it in
  the compiled loop, which costs less than many fused calls. Inside a ``torch.func``
  transform (grad, vmap, jacrev...) or under forward-mode AD always autograd, which both can
  trace.

Any path can run with ``checkpoint=K`` (``layer.checkpoint = K``): segments of K steps whose
activations are recomputed in the backward pass, for a fraction of the memory
(:mod:`rnnkit.engine.checkpoint`).

Choose with ``rnnkit.engine.set_default("reference")``, ``with rnnkit.engine.use("native"):``
or per layer with ``layer.engine = "reference"``. Every path gives the reference's results:
outputs zero past each length, final states at each sequence's last valid step, the backward
direction reversed within each valid part.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from ..cells.base import RecurrentCell, State, cast_state, under_cpu_autocast
from . import native
from ._tracing import jit_tracing, under_functorch
from .allocator import reuse_freed_memory
from .checkpoint import check_checkpoint, run_checkpointed
from .fused import FUSED_SEGMENT_LIMIT, fused_kind, fused_route, fused_supports, run_fused
from .graphs import graph_problem, graphs_run, run_graphed
from .packing import lengths_values
from .sequence import (
    forward_ad_on,
    loops_run,
    native_supports,
    parameters_by_name,
    run_autograd,
    run_native,
)
from .single_step import run_single_step, single_step_runs

__all__ = [
    "ENGINES",
    "FUSED_SEGMENT_LIMIT",
    "get_default",
    "native_available",
    "reuse_freed_memory",
    "run",
    "set_default",
    "use",
]

ENGINES = ("auto", "fused", "native", "autograd", "graph", "reference")

_default = "auto"


def _check(name: object) -> str:
    if name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}; got {name!r}")
    return name  # type: ignore[return-value]


def set_default(name: str) -> None:
    """Make ``name`` (one of :data:`ENGINES`) the engine of every layer that names none."""
    global _default
    _default = _check(name)


def get_default() -> str:
    """The engine used by layers that name none."""
    return _default


@contextmanager
def use(name: str) -> Iterator[None]:
    """``with rnnkit.engine.use("reference"): ...`` sets the default engine for a block."""
    global _default
    previous, _default = _default, _check(name)
    try:
        yield
    finally:
        _default = previous


def native_available() -> bool:
    """Whether the compiled loops could be built and loaded on this machine."""
    return native.available()


def choose(cell: RecurrentCell, x: Tensor, lengths: Tensor | None) -> str:
    """The path "auto" takes for ``cell`` on ``x`` with ``lengths``."""
    if under_functorch() or forward_ad_on(cell, x):  # plain torch ops: every transform and
        return "autograd"  # forward-mode AD trace them
    if single_step_runs(cell, x):  # one step of torch's one-step op: no sequence path's costs
        return "step"
    kind = fused_kind(cell)
    if kind is not None and x.dtype.is_floating_point:  # torch has a fused op for the math
        # the LSTM prefers oneDNN/cuDNN; GRU and Elman prefer the compiled loops where they run
        if kind == "lstm" or not loops_run(cell, x):
            return "native" if fused_route(cell, x, lengths) == "native" else "fused"
        return "native"
    return "native" if loops_run(cell, x) else "autograd"


def run(
    cell: RecurrentCell,
    x: Tensor,
    state: State,
    lengths: Tensor | None = None,
    *,
    reverse: bool = False,
    engine: str | None = None,
    checkpoint: int | None = None,
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` (T, B, ...) from ``state`` (tuple of (B, ...)).

    ``lengths`` (B,) int64 in [1, T] (validated by the caller); ``reverse`` reads each sequence
    backwards within its valid part. Returns (outputs (T, B, O), final state), outputs zero
    past each length and the final state taken at each sequence's last valid step.

    ``checkpoint=K`` runs the sequence in segments of K steps whose activations are recomputed
    in the backward pass (:mod:`rnnkit.engine.checkpoint`): the same results, less memory,
    one more forward pass of compute.
    """
    name = _check(engine or _default)
    steps = check_checkpoint(checkpoint)
    if under_cpu_autocast(x):
        return _run_outside_autocast(cell, x, state, lengths, reverse, name, steps)
    if name == "auto":
        path = _auto if steps is None else _auto_without_graphs
    else:
        path = _PATHS[name]
        if name in _CHECKS:  # fail before any segment runs
            _CHECKS[name](cell, x)
    if steps is None:
        return path(cell, x, state, lengths, reverse)
    return run_checkpointed(path, cell, x, state, lengths, reverse, steps)


def _run_outside_autocast(cell, x, state, lengths, reverse, name, steps):
    """Under CPU autocast: the whole recurrence in the cell's parameter dtype, autocast off.

    The compiled loops and oneDNN's LSTM have float32/float64 kernels only (oneDNN's bfloat16
    LSTM needs a CPU with bfloat16 instructions, and fails elsewhere), and a state rounded to
    bfloat16 at every step carries the rounding on to every later step. The input and the
    initial state are cast to the parameters' dtype; the outputs come out in it.
    """
    params = parameters_by_name(cell)
    dtype = next(iter(params.values())).dtype if params else x.dtype
    with torch.autocast("cpu", enabled=False):
        x, state = x.to(dtype), cast_state(state, dtype)
        return run(cell, x, state, lengths, reverse=reverse, engine=name, checkpoint=steps)


def _auto(cell, x, state, lengths, reverse, graphs=True):
    if forward_ad_on(cell, x, state):  # a tangent on the initial state alone
        return run_autograd(cell, x, state, lengths, reverse)
    if lengths is not None and under_functorch() and lengths_values(lengths)[1]:
        # a length per sample mapped by vmap: no shared plan, so mask instead of sorting
        return _reference(cell, x, state, lengths, reverse)
    if lengths is not None and jit_tracing():
        # torch.jit.trace: the masked loop, whose masks the trace records as ops on the
        # lengths (a plan would enter it as constants: the trace would hold for these lengths
        # alone, and the plan caches make two traces differ)
        return _reference(cell, x, state, lengths, reverse)
    name = choose(cell, x, lengths)
    if graphs and name == "autograd" and graphs_run(cell, x, state):
        return run_graphed(cell, x, state, lengths, reverse)
    return _PATHS[name](cell, x, state, lengths, reverse)


def _auto_without_graphs(cell, x, state, lengths, reverse):
    """The path "auto" takes in the segments of ``checkpoint=K``: no graphs, since each
    segment's activations are recomputed in the backward pass anyway, and a graph's pool would
    keep one segment's for good."""
    return _auto(cell, x, state, lengths, reverse, graphs=False)


def _run_graph(cell, x, state, lengths, reverse):
    problem = graph_problem(cell, x, state)
    if problem is not None:
        raise ValueError(f"engine 'graph' cannot run {type(cell).__name__} on {problem}")
    return run_graphed(cell, x, state, lengths, reverse, force=True)


def _reference(cell, x, state, lengths, reverse):
    from ..loop import reverse_padded, run_cell  # it imports this package

    if not reverse:
        return run_cell(cell, x, state, lengths)
    out, final = run_cell(cell, reverse_padded(x, lengths), state, lengths)
    return reverse_padded(out, lengths), final


def _check_fused(cell, x):
    if not fused_supports(cell, x):
        raise ValueError(
            f"engine 'fused' runs the cells with torch.nn's math only (LSTMCell without "
            f"peepholes, GRUCell with reset_after=True, ElmanCell) on floating-point input; "
            f"got {cell!r} on {x.dtype}"
        )


def _check_native(cell, x):
    if under_functorch():
        raise ValueError(
            "engine 'native' cannot run inside a torch.func transform (grad, vmap, jacrev...): "
            "the compiled loops need real tensors; use engine 'auto' or 'autograd' there"
        )
    if forward_ad_on(cell, x):
        raise ValueError(
            "engine 'native' has no forward-mode derivative (torch.autograd.forward_ad): "
            "use engine 'auto' or 'autograd' for Jacobian-vector products"
        )
    if jit_tracing():
        raise ValueError(
            "engine 'native' cannot run under torch.jit.trace: the compiled loops are called "
            "through ctypes, which a trace does not record; use engine 'auto' or 'autograd'"
        )
    if not native_supports(cell, x):
        raise ValueError(
            f"engine 'native' cannot run {type(cell).__name__} on a {x.dtype} tensor on "
            f"{x.device} (compiled loops available: {native.available()})"
        )


_PATHS = {
    "fused": run_fused,
    "native": run_native,
    "autograd": run_autograd,
    "graph": _run_graph,
    "reference": _reference,
    "step": run_single_step,  # (taken by "auto" only)
}
_CHECKS = {"fused": _check_fused, "native": _check_native}
