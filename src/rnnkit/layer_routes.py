"""Which path a whole layer (:class:`rnnkit.Recurrent`) takes, before its layer-directions
reach :func:`rnnkit.engine.run`: one call of torch's fused op for the whole stack, the packed
rows handed from layer to layer, one gather shared by a bidirectional layer's two directions,
and a batch of one length run without lengths. Each rule reads the layer's options and
returns whether it applies; :class:`~rnnkit.recurrent.Recurrent` carries them out.

Shapes use the glossary of :mod:`rnnkit.cells.base`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import engine as _engine
from .cells.base import RecurrentCell
from .engine._tracing import jit_tracing
from .engine.fused import fused_kind
from .engine.fused_stack import stack_supported
from .engine.masked import make_masked_plan
from .engine.packed_stack import packed_stack_runs, shared_gather_runs
from .engine.packing import split_pays
from .engine.sequence import runs_masked

if TYPE_CHECKING:
    from .recurrent import Recurrent

# A batch whose sequences all have the same length L runs as the batch without lengths over
# its first L steps, its outputs padded with zeros to T: the same values as the sorted,
# shrinking-batch path, without its layout work, which on a small layer cost more than the
# steps it skips (Elman, one sequence of 50 steps, H = 64: 1.33 times the 100-step batch's
# training step before, 1.08 with the slice; python benchmarks/lengths_overheads.py --pieces
# "one length"; docs/engine.md). Larger layers on the CPU keep the sorted path
# (:func:`drops_lengths`). False: every batch with lengths takes the sorted path (for
# measurements and tests).
UNIFORM_LENGTHS = True


def engine_name(layer: Recurrent) -> str:
    """The layer's path name: its own ``engine``, or the engine's default (checked)."""
    return _engine._check(layer.engine or _engine.get_default())


def _traced() -> bool:
    """Whether a tracer records this call: the slice would enter ``torch.jit.trace``'s graph,
    or ``torch.compile``'s guards, as a constant drawn from the lengths' values."""
    return jit_tracing() or torch.compiler.is_compiling()


def drops_lengths(layer: Recurrent, x: Tensor, length: int) -> bool:
    """Whether a batch ``x`` (T, B, ...) whose sequences are all ``length`` steps long runs
    without lengths over its first steps (``UNIFORM_LENGTHS``); always when the length is T.
    On the CPU, with a length short of T, not where the sorted path does no layout work for
    such a batch: a layer whose first steps' rows are enough to be read where they lie
    (``packing.split_pays``, where every row of a uniform batch is), which writes its padded
    output in place, where the slice copies it once more (B = 32, H = 256 and B = 128, H = 64:
    the slice at 0.99-1.03 of the sorted path). Nor for a plain LSTM under "auto": without
    lengths it runs on oneDNN, with them in the compiled loop, and neither is the faster
    everywhere (the slice over the sorted path, training step, L = 75 of T = 100, scratch
    paired timings: 0.95 at B = 1 and at B = 32, H = 64; 1.04-1.09 at B = 8 and at B = 128,
    H = 64)."""
    if not UNIFORM_LENGTHS or _traced():
        return False
    if length == x.shape[0] or not x.is_cpu:
        return True
    if split_pays(length * x.shape[1], math.prod(x.shape[2:])):
        return False
    if engine_name(layer) != "auto":
        return True
    cells = layer._modules["cells"]._modules.values()
    return not any(fused_kind(cell) == "lstm" for cell in cells)  # type: ignore[arg-type]


def one_call(
    layer: Recurrent, cells: tuple[RecurrentCell, ...], x: Tensor, lengths: Tensor | None
) -> bool:
    """Whether the whole stack runs as one call of torch's fused op (a plain LSTM, say):
    only where each layer-direction would run on that op in one call (with lengths: off the
    CPU, its variable-length mode), and the stack adds nothing torch's op lacks."""
    if layer.checkpoint is not None or layer.residual:
        return False
    if layer.num_directions == 2 and layer.merge_mode != "concat":
        return False
    if layer.dropout and layer.training and layer.num_layers > 1:
        return False  # rnnkit's own dropout between layers (its random stream)
    return stack_supported(cells, x, engine_name(layer), lengths)


def packed_stack(
    layer: Recurrent, cells: tuple[RecurrentCell, ...], x: Tensor, lengths: Tensor | None
) -> bool:
    """Whether the layers hand their packed rows on to each other
    (:mod:`rnnkit.engine.packed_stack`): one direction, several layers, lengths, no
    ``checkpoint``, every cell on the compiled loops."""
    if lengths is None or layer.num_layers < 2 or layer.num_directions != 1:
        return False
    if layer.checkpoint is not None:
        return False
    return packed_stack_runs(cells, x, lengths, engine_name(layer))


def shared_gather(
    layer: Recurrent, pair: tuple[RecurrentCell, ...], x: Tensor, lengths: Tensor
) -> bool:
    """Whether a bidirectional layer's two directions share one gather of their input
    (:func:`rnnkit.engine.packed_stack.run_bidirectional_layer`): lengths, no ``checkpoint``,
    both cells on the compiled loops."""
    if layer.checkpoint is not None:
        return False
    small = all(runs_masked(cell, x, bidirectional=True) for cell in pair)
    if small and make_masked_plan(*x.shape[:2], lengths):
        return False  # a small layer: each direction masked, no layout work to share
    return shared_gather_runs(pair, x, lengths, engine_name(layer))
