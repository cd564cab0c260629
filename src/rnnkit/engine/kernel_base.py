"""What the compiled loops need from each cell: its recurrent parameters, the buffers its
forward pass saves, and the weight gradients after the backward loop.

A :class:`Kernel` plugs one cell class into the generic sequence function
(:mod:`rnnkit.engine.sequence`). Its math, forward and hand-written derivative, is the
matching section of ``_loops.cpp``; this file owns only the bookkeeping around it:

* ``params(cell)``: the tensors the loop reads besides the input projection (W_hh, the
  biases that are not folded into ``project_input``, peepholes, layer-norm gains);
* ``forward``: allocate the outputs and the saved activations, run the loop;
* ``backward``: run the BPTT loop, which leaves the gradient of every step's input
  projection (dgx) and of the recurrent products; then every weight gradient is one large
  matrix product over all steps (:func:`~rnnkit.engine.packing.recurrent_weight_grad`).

Shapes: N packed rows, B batch, H hidden, G the width of the input projection.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells.base import RecurrentCell
from .packing import Plan

Params = tuple[Tensor | None, ...]


def geometry(plan: Plan, H: int, full: bool, variant: tuple[int, ...] = ()) -> Tensor:
    """The int64 block the loops read: header, then n[steps] and off[steps]."""
    v = list(variant) + [0] * (5 - len(variant))
    head = (plan.steps, plan.B, H, int(full), torch.get_num_threads(), *v)
    block = plan.memo.get(head)
    if block is None:
        block = torch.cat([torch.tensor(head, dtype=torch.int64), plan.n, plan.off])
        plan.memo[head] = block
    return block


def _or(t: Tensor | None, like: Tensor, size: int) -> Tensor:
    """``t`` (contiguous), or zeros of ``size`` where the cell has no such parameter."""
    return like.new_zeros(size) if t is None else t.contiguous()


class Kernel:
    """Base class: one cell family's buffers around its compiled loop."""

    name: str
    n_states: int

    def params(self, cell: RecurrentCell) -> Params:
        raise NotImplementedError

    def variant(self, cell: RecurrentCell) -> tuple[int, ...]:
        return ()

    def scalars(self, cell: RecurrentCell) -> tuple[float, ...]:
        return (0.0,)

    def forward(
        self,
        cfg: tuple,
        plan: Plan,
        gx: Tensor,
        states: tuple[Tensor, ...],
        params: Params,
        full: bool,
    ) -> tuple[Tensor, tuple[Tensor, ...], list[Tensor]]:
        """Returns (y (N, H), final states (B, ·) sorted, tensors to save)."""
        raise NotImplementedError

    def backward(
        self,
        cfg: tuple,
        plan: Plan,
        saved: tuple[Tensor, ...],
        dy: Tensor,
        dfinal: tuple[Tensor, ...],
        present: tuple[bool, ...],
    ) -> tuple[Tensor, tuple[Tensor, ...], tuple[Tensor | None, ...]]:
        """Returns (dgx (N, G), d initial states, d params); ``present[k]`` says whether the
        cell has parameter k (its gradient is None otherwise)."""
        raise NotImplementedError


def _grad_buffer(d: Tensor) -> Tensor:
    return d.clone(memory_format=torch.contiguous_format)
