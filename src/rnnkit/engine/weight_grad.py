"""The recurrent weight gradient Σ over packed rows of dzᵀ·h_prev, after the backward loop.

Without lengths, two large products on views. With lengths, the first run of steps (every
sequence still running: at least the shortest length's steps) is the (T, B) layout again, so
its h_prev are views too, and only the later rows' h_prev are gathered, once (or, for a batch
with very few runs of equal rows, two products per run on views).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .masked import masked_starts
from .packing import Plan, split_pays
from .row_moves import take

# Above this many runs of equal active rows, Σ dzᵀ·h_prev gathers h_prev once and does one
# product; else two products per run, on views. With 8 runs the gathered product was faster or
# even everywhere measured (GRU B=32 H=64: 1.02 -> 0.94 of the full batch's step; python
# benchmarks/lengths_overheads.py), so it takes every batch with more than one run.
GATHER_SEGMENTS = 1


# True: with lengths, the first run of full steps takes its h_prev as views and only the rows
# after it are gathered; False: every row's h_prev is gathered (for measurements:
# benchmarks/lengths_overheads.py --pieces "views for the full steps").
HEAD_VIEWS = True


class PreviousOutputs:
    """h_prev of every packed row, for the weight gradient Σ over rows of dzᵀ·h_prev.

    ``h0`` (B, H) is the initial state (sorted), ``y`` (N, H) the packed outputs. Build one per
    backward pass and call :meth:`weight_grad` for each product h_prev · Wᵀ of the cell.
    """

    def __init__(self, h0: Tensor, y: Tensor, plan: Plan) -> None:
        self.h0, self.y, self.plan = h0, y, plan
        self.segments = plan.segments() if plan.packed else ()
        self.gathered: Tensor | None = None
        # packed rows before `head` take their h_prev as views: h0 for step 0, then y shifted
        # by B rows (the first run's steps hold every row of the batch)
        self.head = 0
        if len(self.segments) > GATHER_SEGMENTS:
            assert plan.previous is not None
            B = plan.B
            head = plan.off_list[self.segments[0][1]]
            # (a small layer gathers every row: one product costs less than three there)
            if HEAD_VIEWS and split_pays(head, y.shape[1]):
                self.head = head
                # (N - head, H): the previous step's row of every later packed row
                self.gathered = take(y, plan.moved("previous", y.device)[self.head - B :])
            else:
                # (N, H): h0 for step 0, then the gathered rows (in place, not concatenated:
                # one pass over N·H instead of two)
                gathered = y.new_empty(plan.rows, *y.shape[1:])
                gathered[:B].copy_(h0)
                take(y, plan.moved("previous", y.device), out=gathered[B:])
                self.gathered = gathered

    def weight_grad(self, dz: Tensor, out: Tensor | None = None) -> Tensor:
        """Σ over packed rows of dzᵀ·h_prev, (K, H), for ``dz`` (N, K), the gradient at the
        product's output; written into ``out`` (K, H, contiguous) when given, so that a cell
        with several products fills the row blocks of one weight gradient without copies.

        Without lengths: two large products on views (reversed, the initial state feeds the
        last block of rows). With lengths and many runs of equal active rows: the first run on
        views, then one product against the gathered previous outputs of the rows after it.
        With a few runs, the previous outputs of each run are contiguous too: two products per
        run and no copy.
        """
        plan, h0, y = self.plan, self.h0, self.y
        N, B = plan.rows, plan.B
        if not plan.packed:
            first, rest = (dz[N - B :], dz[: N - B]) if plan.reverse else (dz[:B], dz[B:])
            dW = torch.mm(first.t(), h0, out=out)  # the initial state's rows
            dW.addmm_(rest.t(), y[B:] if plan.reverse else y[: N - B])
            starts = masked_starts(plan, dz.device) if plan.masked and plan.reverse else None
            if starts is not None:  # (backwards, a shorter sequence starts from h0, not y's 0)
                at, rows = starts
                dW.addmm_(dz.index_select(0, at).t(), h0.index_select(0, rows))
            return dW
        if self.gathered is not None:
            head = self.head
            if head == 0:
                return torch.mm(dz.t(), self.gathered, out=out)
            dW = torch.mm(dz[:B].t(), h0, out=out)
            if head > B:
                dW.addmm_(dz[B:head].t(), y[: head - B])
            return dW.addmm_(dz[head:].t(), self.gathered)
        off = plan.off_list
        dW = torch.mm(dz[:B].t(), h0, out=out)  # step 0 holds every row
        for s0, s1, n in self.segments:
            if plan.turn and s0 == plan.turn:  # the previous rows in the batch's order: gathered
                rows = plan.moved("previous", y.device)[off[s0] - B : off[s0] - B + n]
                dW.addmm_(dz[off[s0] : off[s0] + n].t(), take(y, rows))
            elif s0 > 0:  # the run's first step reads the first n rows of a larger block
                dW.addmm_(dz[off[s0] : off[s0] + n].t(), y[off[s0 - 1] : off[s0 - 1] + n])
            if s1 - s0 > 1:  # the rest: blocks of n rows on both sides
                rows = (s1 - s0 - 1) * n
                dW.addmm_(dz[off[s0 + 1] : off[s0 + 1] + rows].t(), y[off[s0] : off[s0] + rows])
        return dW


def recurrent_weight_grad(dz: Tensor, h0: Tensor, y: Tensor, plan: Plan) -> Tensor:
    """Σ over packed rows of dzᵀ·h_prev, (K, H): :meth:`PreviousOutputs.weight_grad` once."""
    return PreviousOutputs(h0, y, plan).weight_grad(dz)
