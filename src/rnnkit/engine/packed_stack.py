"""A stack of layers with lengths on the compiled loops, in the packed layout from end to end.

With lengths, each layer on its own sorts the batch by length, gathers its input into the
packed rows (:mod:`rnnkit.engine.packing`), runs the loop and writes its outputs back into the
padded (T, B) layout, zero past each length; the next layer then gathers those outputs again.
The backward pass does the same to the gradients, in the other direction. But every layer of a
unidirectional stack uses the same plan (the same lengths, forwards), so one layer's packed
outputs are the next layer's packed input, row for row.

:func:`run_packed_stack` therefore gathers the input once, hands each layer's packed outputs
to the next, and only the last layer writes the padded outputs. Between two layers it spares
four passes over the rows: the padded outputs and their zero fill, the next layer's gather, and
in the backward pass the scatter of that layer's input gradient. With dropout between the
layers (training), the mask is still drawn over the padded outputs, from the same random
stream, and gathered into the packed rows: three of the four passes are spared. The values are
the same bits as layer by layer: each layer runs the same loop on the same rows.

Residual connections add each layer's packed input rows to its packed output rows (the
padding, which the packed rows do not hold, stays zero).

A bidirectional layer's two directions pack the same input by two plans (forwards, and each
sequence reversed), and in the backward pass each would scatter its input gradient into a
padded tensor of its own for autograd to add: :func:`run_bidirectional_layer` gathers both
from one autograd node, whose backward makes one padded gradient and adds the second
direction's rows into it (``row_moves.gather_two``).

:func:`packed_stack_runs` says when a stack can take it (:func:`shared_gather_runs` when a
bidirectional layer can share its gather): lengths, one direction, no
``checkpoint``, no autocast, no tracing (``torch.compile``, ``torch.export``,
``torch.jit.trace``), and every cell on the compiled loops (what "auto" or "native" would pick
for it, layer by layer).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from ..cells.base import RecurrentCell, State, under_cpu_autocast
from . import sequence
from .packing import Plan, _indices, make_plan, pack, sort_rows, unpack, unsort_rows
from .row_moves import gather_two, take
from .sequence import native_supports, run_native_packed, run_native_rows
from .turn_input import turn_input_rows, turn_projection

# False: every layer runs on its own, through the padded layout (for measurements:
# benchmarks/lengths_overheads.py --pieces "packed stack").
PACKED_STACK = True
# False: a bidirectional layer's two directions gather their input each on its own (for
# measurements: benchmarks/lengths_overheads.py --pieces "shared gather").
SHARED_GATHER = True


def packed_stack_runs(
    cells: tuple[RecurrentCell, ...], x: Tensor, lengths: Tensor | None, engine: str
) -> bool:
    """Whether the cells of a unidirectional stack (one per layer, in order), under ``engine``
    ("auto" or "native"; any other keeps the layers apart), run as one packed stack on ``x``
    (T, B, I) with ``lengths``. The caller rules out bidirectional stacks and ``checkpoint``."""
    return PACKED_STACK and len(cells) >= 2 and on_the_loops(cells, x, lengths, engine)


def shared_gather_runs(
    cells: tuple[RecurrentCell, ...], x: Tensor, lengths: Tensor | None, engine: str
) -> bool:
    """Whether a bidirectional layer's two cells (forwards, backwards) gather their input once
    (:func:`run_bidirectional_layer`). The caller rules out ``checkpoint``."""
    return SHARED_GATHER and len(cells) == 2 and on_the_loops(cells, x, lengths, engine)


def on_the_loops(
    cells: tuple[RecurrentCell, ...], x: Tensor, lengths: Tensor | None, engine: str
) -> bool:
    """Whether every cell runs on the compiled loops with ``lengths`` under ``engine`` (what
    "auto" or "native" would pick for it), outside tracing and autocast."""
    if lengths is None or engine not in ("auto", "native"):
        return False
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return False  # tracers and exporters see the layer-by-layer calls, as before
    if under_cpu_autocast(x):
        return False
    if engine == "auto":
        from . import choose  # (the package imports this module)

        return all(choose(cell, x, lengths) == "native" for cell in cells)
    return all(native_supports(cell, x) for cell in cells)


def run_packed_stack(
    cells: tuple[RecurrentCell, ...],
    x: Tensor,
    states: list[State],
    lengths: Tensor,
    dropout: float = 0.0,
    residual: bool = False,
) -> tuple[Tensor, list[State]]:
    """``x`` (T, B, I) through the cells in order, each from its state in ``states`` (tuples of
    (B, ·), the batch's order) -> (the last layer's outputs (T, B, O), zero past each length;
    each layer's final state, the batch's order).

    ``dropout`` > 0 drops each output of every layer but the last, as ``Recurrent`` does
    between its layers in training, with the same random draws: the mask is drawn over the
    padded (T, B, O) outputs, as ``F.dropout`` on them would draw it, and only its packed rows
    are applied, so the values are the same bits as layer by layer. ``residual`` adds each
    layer's input rows to its output rows wherever their sizes agree (before the dropout, as
    ``Recurrent`` does); the padding, which the packed rows do not hold, stays zero."""
    T, B = x.shape[0], x.shape[1]
    plan: Plan = make_plan(T, B, lengths, False, turn=True)
    if residual and x.dim() == 3 and cells[0].output_size == x.shape[2]:
        # the first layer's residual sum needs the packed input rows: the one gather
        rows = pack(x, plan)
        gx = turn_projection(cells[0], rows, plan, packed=True)
    else:  # the one gather, or the first layer's projection on the turn and no gather
        rows, gx = turn_input_rows(cells[0], x, plan)
    finals: list[State] = []
    padded = sequence.PADDED_OUTPUT and plan.packed  # (lengths all T: the layout is packed)
    for k, cell in enumerate(cells):
        last = k == len(cells) - 1
        sorted_states = tuple(sort_rows(s, plan) for s in states[k])
        skip = residual and rows.dim() == 2 and cell.output_size == rows.shape[1]
        if last and skip:
            padded = False  # the sum is formed on the packed rows, then unpacked
        if k:  # the packed rows: two products all the same, for the same sums as layer by layer
            gx = turn_projection(cell, rows, plan, packed=True)
        out, found = run_native_packed(
            cell, rows, sorted_states, plan, padded=last and padded, gx=gx
        )
        finals.append(tuple(unsort_rows(f, plan) for f in found))
        rows = out + rows if skip else out
        if dropout and not last:
            rows = rows * _packed_mask(rows, plan, dropout)
    if padded or not plan.packed:
        return rows.view(T, B, *rows.shape[1:]), finals
    return unpack(rows, plan), finals


def _packed_mask(rows: Tensor, plan: Plan, p: float) -> Tensor:
    """The packed rows of ``F.dropout(ones(T, B, O), p)``: 0 or 1/(1-p), drawn from the same
    random stream, in the same order, as ``F.dropout`` on the padded outputs would draw it."""
    with torch.no_grad():
        ones = rows.new_ones(plan.T * plan.B, *rows.shape[1:])
        mask = F.dropout(ones, p, training=True)
        return mask if not plan.packed else take(mask, _indices(plan, rows.device)[0])


def run_bidirectional_layer(
    cells: tuple[RecurrentCell, RecurrentCell], x: Tensor, states: list[State], lengths: Tensor
) -> tuple[list[Tensor], list[State]]:
    """One bidirectional layer with lengths on the compiled loops: ``x`` (T, B, I), the
    forward and backward cells and their states (tuples of (B, ·), the batch's order) ->
    ([forward outputs, backward outputs], each (T, B, O) zero past each length; [their final
    states]), as :func:`rnnkit.engine.run` gives them direction by direction, from one shared
    gather of ``x``."""
    T, B = x.shape[0], x.shape[1]
    plans = (make_plan(T, B, lengths, False, turn=True), make_plan(T, B, lengths, True))
    if not plans[0].packed:  # every length is T: the rows are the padded input's, no gather
        rows = (x.reshape(T * B, *x.shape[2:]),) * 2
    else:
        maps = tuple(_indices(plan, x.device) for plan in plans)
        rows = gather_two(x.reshape(T * B, *x.shape[2:]), *maps)
    # the forward direction's projection in the same two products as on its own (turn_input)
    gx = turn_projection(cells[0], rows[0], plans[0], packed=True) if plans[0].packed else None
    done = [
        run_native_rows(cell, xp, s, plan, gx=g)
        for cell, xp, s, plan, g in zip(cells, rows, states, plans, (gx, None))
    ]
    return [y for y, _ in done], [f for _, f in done]
