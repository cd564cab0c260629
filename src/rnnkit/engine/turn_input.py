"""The input projection of a batch with lengths, its first steps read where they lie.

Forwards, a plan with a turn (:attr:`~rnnkit.engine.packing.Plan.turn`) keeps the steps that
every sequence runs (0..m-1, m the shortest length) in the batch's order, so their m·B packed
rows are the first m·B rows of the padded (T·B, I) input as they are. For a cell whose input
projection is an affine map (:meth:`~rnnkit.cells.base.RecurrentCell.input_affine`),
:class:`_TurnProjection` therefore gathers only the later rows, and forms the projection as
two products written into one (N, G) buffer:

* forwards, gx[:m·B] = x[:m·B]·Wᵀ + b on a view of the input, gx[m·B:] = x_tail·Wᵀ + b on the
  gathered tail rows;
* backwards, the input's gradient dgx[:m·B]·W straight into the first m·B rows of the padded
  gradient, and the tail's placed after it, zero in the padding; the weight's gradient as
  dgx[:m·B]ᵀ·x[:m·B] + dgx_tailᵀ·x_tail, again on the view.

For lengths spread over [T/2, T] that is a gather and a scatter of about a third of the rows
instead of all of them (``python benchmarks/lengths_overheads.py --pieces "input on the turn"``;
docs/engine.md). Other cells gather every row and project them as before.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells.base import RecurrentCell
from .head import head_layout
from .kernels import Kernel, kernel_for
from .packing import Plan, pack, padded_index, split_pays
from .row_moves import place, take

# A plan with a turn projects its first steps' rows from the padded input, for cells with an
# affine input projection (False: every row gathered first; for measurements:
# benchmarks/lengths_overheads.py --pieces "input on the turn").
TURN_INPUT = True


def input_affine(cell: RecurrentCell) -> tuple[Tensor, Tensor | None] | None:
    """``cell.input_affine()``, trusted only when the class that says the projection is affine
    also defines ``project_input`` (a subclass with a projection of its own gets None), and the
    cell has no ``project_input`` of its own set on the instance."""
    if "project_input" in vars(cell):
        return None
    cls = type(cell)
    for owner in cls.__mro__:
        if "input_affine" in vars(owner):
            break
    else:  # pragma: no cover (the base class defines it)
        return None
    if cls.project_input is not owner.project_input:  # type: ignore[attr-defined]
        return None
    return cell.input_affine()


# The input projection's bias of a cell whose kernel adds its own bias where gx is
# (Kernel.folds_input_bias) is added in the loops instead, with theirs: addmm copies a
# broadcast bias into its output before the product, and autograd sums dgx for it a second
# time (a projection of (12800, 256) by (256, 1024) trained in 80.8 ms with its bias, 74.0
# without; False: the bias in the projection, for measurements and tests).
FOLD_INPUT_BIAS = True


def folded_input_bias(
    cell: RecurrentCell, kernel: Kernel | None = None
) -> tuple[Tensor, Tensor] | None:
    """(weight_ih, bias_ih) when the compiled loops take ``cell``'s input bias with their own:
    its projection is affine (:func:`input_affine`) with a bias, and its kernel (``kernel``
    when the caller has looked it up already) folds one; gx is then ``x·weight_ihᵀ`` alone.
    Else None."""
    if not FOLD_INPUT_BIAS:
        return None
    if kernel is None:
        found = kernel_for(cell)
        kernel = None if found is None else found[0]
    if kernel is None or not kernel.folds_input_bias:
        return None
    affine = input_affine(cell)
    if affine is None or affine[1] is None:
        return None
    return affine[0], affine[1]


def turn_projection(
    cell: RecurrentCell, x: Tensor, plan: Plan, packed: bool = False
) -> Tensor | None:
    """``cell.project_input`` of the packed rows of ``x`` (T, B, I) laid out by ``plan``, (N, G),
    with the first turn·B rows projected where they lie; None where that does not apply (no
    turn, switched off, a layer too small for a second product to pay,
    :func:`~rnnkit.engine.packing.split_pays`, or a projection that is not affine): gather,
    then project.

    ``packed``: ``x`` is already the packed rows (N, I) (a later layer of a stack); the same
    two products then give the weight's gradient the same sums, so a stack packed from layer
    to layer gets the same bits as its layers run one by one."""
    if not (TURN_INPUT and plan.turn and plan.packed):
        return None
    flat = x if packed else x.reshape(plan.T * plan.B, *x.shape[2:])
    # a small layer gathers every row: one product costs less than two there (split_pays)
    if flat.dim() != 2 or not split_pays(plan.turn * plan.B, flat.shape[1]):
        return None
    found = input_affine(cell)
    if found is None:
        return None
    weight, bias = found
    if folded_input_bias(cell) is not None:
        bias = None  # the loops add it (run_native_packed passes it to them)
    return _TurnProjection.apply(flat, weight, bias, plan, packed)


def turn_input_rows(cell: RecurrentCell, x: Tensor, plan: Plan) -> tuple[Tensor, Tensor | None]:
    """The input rows of ``x`` (T, B, I) for the loops, and their projection where it is formed
    here: (the padded input's (T·B, I) rows, the projection on the turn), or (the packed rows,
    None) for the caller to project."""
    gx = turn_projection(cell, x, plan)
    if gx is None:
        return pack(x, plan), None
    return x.reshape(plan.T * plan.B, *x.shape[2:]), gx


def _project(head: Tensor, tail: Tensor, weight: Tensor, bias: Tensor | None, gx: Tensor):
    """gx = [head; tail]·weightᵀ + bias, as two products into the rows of ``gx`` (N, G)."""
    wt = weight.t()
    for rows, out in ((head, gx[: head.shape[0]]), (tail, gx[head.shape[0] :])):
        if bias is None:
            torch.mm(rows, wt, out=out)
        else:
            torch.addmm(bias, rows, wt, out=out)
    return gx


class _TurnProjection(torch.autograd.Function):
    """(flat (T·B, I) padded input, weight (G, I), bias (G,) or None, plan, packed) -> (N, G),
    the projection of the plan's packed rows, its first turn·B rows read from ``flat`` in
    place (with ``packed``, ``flat`` is the packed rows (N, I) themselves)."""

    @staticmethod
    def forward(
        ctx, flat: Tensor, weight: Tensor, bias: Tensor | None, plan: Plan, packed: bool
    ) -> Tensor:
        layout = head_layout(plan, plan.turn, flat.device)
        head = layout.head
        # (N - head, I): the rows after the turn
        tail = flat[head:] if packed else take(flat, layout.index)
        gx = _project(flat[:head], tail, weight, bias, flat.new_empty(plan.rows, weight.shape[0]))
        ctx.plan, ctx.layout, ctx.has_bias, ctx.packed = plan, layout, bias is not None, packed
        ctx.save_for_backward(flat, tail, weight)
        return gx

    @staticmethod
    def backward(ctx, dgx: Tensor):
        # the forward pass ran outside autocast (engine.run); a backward pass called inside an
        # autocast block must not round the products to bfloat16
        if torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return _TurnProjection._backward(ctx, dgx)
        return _TurnProjection._backward(ctx, dgx)

    @staticmethod
    def _backward(ctx, dgx: Tensor):
        flat, tail, weight = ctx.saved_tensors
        plan, layout = ctx.plan, ctx.layout
        head = layout.head
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dgx = dgx.contiguous()
        if torch.is_grad_enabled():  # create_graph=True: the same sums as differentiable ops
            rows = flat
            if not ctx.packed:
                index = padded_index(plan, dgx.device)
                rows = flat.index_select(0, index)
            dx = dw = db = None
            if need_x:
                dx = dgx @ weight
                if not ctx.packed:
                    dx = dgx.new_zeros(flat.shape).index_copy(0, index, dx)
            if need_w:
                dw = dgx.t() @ rows
            if need_b and ctx.has_bias:
                db = dgx.sum(0)
            return dx, dw, db, None, None
        dx = dw = db = None
        if need_x:
            dx = flat.new_empty(flat.shape)
            torch.mm(dgx[:head], weight, out=dx[:head])  # the first steps: where they lie
            if ctx.packed:  # (two products either way: the same sums for the same rows)
                torch.mm(dgx[head:], weight, out=dx[head:])
            else:
                place(dgx[head:] @ weight, layout.source, layout.padding, out=dx[head:])
        if need_w:
            dw = torch.mm(dgx[:head].t(), flat[:head])
            dw.addmm_(dgx[head:].t(), tail)
        if need_b and ctx.has_bias:
            db = dgx.sum(0)
        return dx, dw, db, None, None
