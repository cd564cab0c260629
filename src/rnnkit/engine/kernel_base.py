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
  matrix product over all steps (:func:`~rnnkit.engine.weight_grad.recurrent_weight_grad`).

Memory: a training forward pass writes its widest saved buffer (the gates, branches or
normalised gate inputs, G values a row) over the input projection ``gx``, which nothing reads
after the loop, and the backward pass writes dgx over that same buffer, row by row, as the loop
passes each step (``in_place``). So one (N, G) block serves the projection, the saved
activations and their gradient, where each of a training step's two peaks (the end of the
forward loop, the backward loop) held two before: each peak falls by G/H blocks of the
output's size (see docs/engine.md).
The backward pass thereby spends its saved buffers; a second backward pass through the same
graph (``retain_graph=True``) reruns the forward loop first.

Shapes: N packed rows, B batch, H hidden, G the width of the input projection.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells.base import RecurrentCell
from .packing import Plan, padded_index

Params = tuple[Tensor | None, ...]


def geometry(plan: Plan, H: int, full: bool, variant: tuple[int, ...] = ()) -> Tensor:
    """The int64 block the loops read: header, then n[steps] and off[steps], and for a plan with
    a turn (:attr:`~rnnkit.engine.packing.Plan.turn`) each sorted row's batch row, for a masked
    plan (turn -1 in the header) each row's length."""
    v = list(variant) + [0] * (5 - len(variant))
    # -1, -2: a masked plan (forwards, backwards), its lengths at the end
    turn = -(1 + int(plan.reverse)) if plan.masked else plan.turn
    head = (plan.steps, plan.B, H, int(full), torch.get_num_threads(), *v, turn)
    block = plan.memo.get(head)
    if block is None:
        parts = [torch.tensor(head, dtype=torch.int64), plan.n, plan.off]
        if plan.turn:
            assert plan.perm is not None
            parts.append(plan.perm)
        elif plan.lengths is not None:
            parts.append(plan.lengths)
        block = torch.cat(parts)
        plan.memo[head] = block
    return block


def padded_rows(plan: Plan, out: Tensor | None) -> tuple[Tensor, Tensor] | None:
    """The loops' ``rows`` argument of a forward call that also writes its outputs into
    ``out`` (T·B, H), the padded layout (None: packed outputs only)."""
    if out is None:
        return None
    if not plan.packed or out.shape[0] != plan.T * plan.B:
        raise ValueError(f"out must have T·B = {plan.T * plan.B} rows of a batch with lengths")
    return padded_index(plan, out.device), out


def grad_rows(plan: Plan, dy: Tensor) -> tuple[Tensor, None] | None:
    """The loops' ``rows`` argument of a backward call: ``dy`` has either the packed rows
    (None) or, for a batch with lengths, the T·B rows of the padded layout."""
    if dy.shape[0] == plan.rows:
        return None
    if not plan.packed or dy.shape[0] != plan.T * plan.B:
        raise ValueError(
            f"dy must have the {plan.rows} packed rows or the T·B = {plan.T * plan.B} padded "
            f"rows, got {dy.shape[0]}"
        )
    return padded_index(plan, dy.device), None


def folded(b: Tensor | None, extra: tuple) -> Tensor | None:
    """The loops' bias: the kernel's own ``b`` plus the folded input bias, when the
    parameters carried one after the kernel's own (``extra``, :attr:`Kernel.folds_input_bias`)."""
    b_ih = extra[0] if extra else None
    if b_ih is None:
        return b
    return b_ih if b is None else b + b_ih


def bias_grads(dgx: Tensor, present: tuple[bool, ...], own: int) -> tuple:
    """The kernel's bias's gradient (``present[1]``) followed, when the parameters carry a
    folded input bias after the kernel's ``own`` ones, by its gradient: both are Σ dgx over the
    rows, summed once (the second a copy: two parameters must not share a gradient's storage).
    """
    fold = len(present) > own
    wanted = present[1], fold and present[own]
    db = dgx.sum(0) if any(wanted) else None
    first = db if wanted[0] else None
    if not fold:
        return (first,)
    return first, (None if not wanted[1] else db.clone() if wanted[0] else db)


def _or(t: Tensor | None, like: Tensor, size: int) -> Tensor:
    """``t`` (contiguous), or zeros of ``size`` where the cell has no such parameter."""
    return like.new_zeros(size) if t is None else t.contiguous()


class Kernel:
    """Base class: one cell family's buffers around its compiled loop."""

    name: str
    n_states: int
    # whether backward writes over the saved buffers (a second backward pass must rerun forward)
    in_place: bool = True
    # The largest step, in multiply-adds of its recurrent product (B·numel(W_hh)), that runs
    # a batch with lengths masked rather than sorted (masked.MASKED_MAX): up to where the
    # masked loop was as fast or faster in paired timings at T = 100, lengths over [T/2, T]
    # (python benchmarks/lengths_overheads.py --pieces "masked small layers"). The cheaper a
    # row's pointwise work and the dearer the sorted layout, the larger the step it pays on.
    masked_max: int = 0
    # The same for each direction of a bidirectional layer, whose sorted route shares one gather
    # of the input between its directions and so pays from smaller layers on (masked over the
    # shared gather, paired, scratch; the rows of lengths_overheads.py's piece).
    masked_max_bidirectional: int = 0
    # Whether the loops add the input projection's bias themselves (turn_input.folded_input_bias):
    # gx is then formed without it, and the bias passed as one more parameter after the
    # kernel's own. Elman, the LSTMs and the reset-before family add it to their own bias
    # (params[1], added where gx is, to every gate's input); the GRU and NAS, whose b_hh sits
    # inside a product in one gate or branch, take it as a vector of its own added to gx.
    folds_input_bias: bool = False

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
        out: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, ...], list[Tensor]]:
        """Returns (y (N, H), final states (B, ·) sorted, tensors to save); with ``out``
        (T·B, H), a batch with lengths also gets its outputs there, at their padded
        positions (:func:`padded_rows`; the caller zeroes the padding)."""
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
        cell has parameter k (its gradient is None otherwise). ``dy`` has the packed rows or,
        for a batch with lengths, the padded ones (:func:`grad_rows`)."""
        raise NotImplementedError


def saved_buffer(gx: Tensor, full: bool, rows: int) -> Tensor:
    """The buffer for the activations a forward pass saves, as wide as ``gx`` (N, G): in a
    training pass (``full``), ``gx`` itself, which the loop overwrites row by row after reading
    it (a projection that is a view of some other tensor gets a buffer of its own); otherwise
    ``rows`` rows of scratch."""
    if full and gx._base is None and gx.is_contiguous():
        return gx
    return gx.new_empty(rows, gx.shape[1])


def _grad_buffer(d: Tensor) -> Tensor:
    return d.clone(memory_format=torch.contiguous_format)
