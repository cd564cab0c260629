"""The generic sequence engine: one autograd node for a whole sequence of any cell.

For a cell with a :class:`~rnnkit.engine.kernel_base.Kernel`:

1. the input half of every step, ``cell.project_input``, is one matrix product over all packed
   rows, recorded by autograd as usual (its backward is two more large products);
2. :class:`SequenceFunction` runs the recurrent half in the compiled loop, saving the few
   activations the derivative needs;
3. its backward runs the hand-written BPTT loop (per step: the pointwise derivative and the
   product with W_hh) and then forms every weight gradient as one large product over all steps.

Without a kernel (a user's own cell, a GPU tensor, a dtype the loops do not handle), or without
a C++ compiler, :func:`run_autograd` runs the same sorted, shrinking-batch loop over
``cell.step`` and lets autograd derive the backward pass.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells.base import RecurrentCell, State
from . import native
from .kernels import Kernel, kernel_for
from .packing import Plan, make_plan, pack, sort_rows, unpack, unsort_rows


class SequenceFunction(torch.autograd.Function):
    """(gx (N, G), states (B, ·)..., params...) -> (y (N, H), final states (B, ·)...)."""

    @staticmethod
    def forward(ctx, kernel: Kernel, cfg: tuple, plan: Plan, gx: Tensor, *inputs: Tensor):
        states, params = inputs[: kernel.n_states], inputs[kernel.n_states :]
        y, finals, saved = kernel.forward(cfg, plan, gx, states, params, True)
        ctx.kernel, ctx.cfg, ctx.plan = kernel, cfg, plan
        ctx.present = tuple(p is not None for p in params)
        ctx.save_for_backward(*saved)
        return (y, *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: Tensor, *dfinal: Tensor):
        kernel: Kernel = ctx.kernel
        dgx, dstates, dparams = kernel.backward(
            ctx.cfg, ctx.plan, ctx.saved_tensors, dy.contiguous(), dfinal, ctx.present
        )
        return (None, None, None, dgx, *dstates, *dparams)


def native_supports(cell: RecurrentCell, x: Tensor) -> bool:
    """Whether the compiled loops can run ``cell`` on ``x``."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return False
    if torch.is_autocast_enabled("cpu"):  # project_input's dtype would differ from W_hh's
        return False
    if any(p.dtype != x.dtype or p.device.type != "cpu" for p in cell.parameters()):
        return False
    return kernel_for(cell) is not None and native.available()


def run_native(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool
) -> tuple[Tensor, State]:
    """The compiled loop: ``x`` (T, B, I), ``state`` tuple of (B, ·) -> ((T, B, H), finals)."""
    T, B = x.shape[0], x.shape[1]
    plan = make_plan(T, B, lengths, reverse)
    states = tuple(sort_rows(s, plan) for s in state)
    y, finals = run_native_packed(cell, pack(x, plan), states, plan)
    return unpack(y, plan), tuple(unsort_rows(f, plan) for f in finals)


# torch.compile runs these eagerly: the loops are already compiled C++, called through ctypes
@torch.compiler.disable
def run_native_packed(
    cell: RecurrentCell, xp: Tensor, states: State, plan: Plan
) -> tuple[Tensor, State]:
    """The compiled loop on packed rows: ``xp`` (N, I) laid out by ``plan``, ``states`` (B, ·)
    in sorted order -> (y (N, H) packed, final states (B, ·) sorted)."""
    found = kernel_for(cell)
    if found is None:
        raise TypeError(f"no compiled loop for {type(cell).__name__}")
    kernel, cfg = found
    gx = cell.project_input(xp).contiguous()  # (N, G): one product for all steps
    states = tuple(s.contiguous() for s in states)
    params = kernel.params(cell)
    inputs = (gx, *states, *(p for p in params if p is not None))
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        y, *finals = SequenceFunction.apply(kernel, cfg, plan, gx, *states, *params)
    else:
        with torch.no_grad():
            y, finals, _ = kernel.forward(cfg, plan, gx, states, params, False)
    return y, tuple(finals)


def run_autograd(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool
) -> tuple[Tensor, State]:
    """The same layout as :func:`run_native`, stepping ``cell.step`` under autograd."""
    T, B = x.shape[0], x.shape[1]
    plan = make_plan(T, B, lengths, reverse)
    gx = cell.project_input(pack(x, plan))  # (N, G)
    state = tuple(sort_rows(s, plan) for s in state)
    # split, never slicing in a loop: a slice's backward writes a full-size gradient (O(T^2))
    if plan.packed:
        blocks = gx.split(list(plan.n_list))
    else:
        blocks = gx.split(B)
        if reverse:
            blocks = blocks[::-1]
    outputs: list[Tensor] = []
    done: list[State] = []  # final states of finished rows, last rows first
    active = B
    for n, gx_s in zip(plan.n_list, blocks):
        if n < active:
            done.append(tuple(s[n:] for s in state))
            state = tuple(s[:n] for s in state)
            active = n
        h, state = cell.step(gx_s, state)
        outputs.append(h)
    done.append(state)
    finals = tuple(torch.cat([part[k] for part in reversed(done)]) for k in range(len(state)))
    if reverse and not plan.packed:
        outputs = outputs[::-1]
    y = torch.cat(outputs)  # (N, H) in packed row order
    return unpack(y, plan), tuple(unsort_rows(f, plan) for f in finals)
