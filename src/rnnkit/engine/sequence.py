"""The generic sequence engine: one autograd node for a whole sequence of any cell.

For a cell with a :class:`~rnnkit.engine.kernel_base.Kernel`:

1. the input half of every step, ``cell.project_input``, is one matrix product over all packed
   rows, recorded by autograd as usual (its backward is two more large products);
2. :class:`SequenceFunction` runs the recurrent half in the compiled loop, saving the few
   activations the derivative needs;
3. its backward runs the hand-written BPTT loop (per step: the pointwise derivative and the
   product with W_hh) and then forms every weight gradient as one large product over all steps.

The saved activations are written over the input projection, and their gradient over them
(:mod:`~rnnkit.engine.kernel_base`): a backward pass spends them, so a second one through the
same graph (``retain_graph=True``) first reruns the forward loop from the saved packed input.

Without a kernel (a user's own cell, a GPU tensor, a dtype the loops do not handle), or without
a C++ compiler, :func:`run_autograd` runs the same sorted, shrinking-batch loop over
``cell.step`` and lets autograd derive the backward pass.

Second derivatives (``create_graph=True``: gradient penalties, Hessian-vector products,
``gradgradcheck``) go through the same node: its backward, asked for a differentiable result,
recomputes the sequence with that autograd loop from the saved packed input and initial
states, and differentiates the recomputation instead of running the compiled BPTT loop. A
first-order backward pass never pays for this.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor
from torch.func import functional_call

from ..cells.base import RecurrentCell, State
from . import masked as masked_layout
from . import native
from ._tracing import jit_tracing, run_eagerly, under_functorch
from .kernels import Kernel, kernel_for
from .masked import make_masked_plan, masked_input, masked_step_loop
from .packing import (
    Plan,
    make_plan,
    pack,
    padded_index,
    padded_output,
    sort_rows,
    unpack,
    unsort_rows,
)
from .turn_input import folded_input_bias, turn_input_rows

# The dtypes the compiled loops run.
LOOP_DTYPES = (torch.float32, torch.float64)

# With lengths, the compiled loops write their outputs into the padded (T, B) layout and read
# the output gradient from it (False: packed outputs, then a scatter and, in the backward pass,
# a gather; for measurements: benchmarks/lengths_overheads.py).
PADDED_OUTPUT = True


class SequenceFunction(torch.autograd.Function):
    """(xp (N, I), gx (N, G), states (B, ·)..., params...) -> (y, final states (B, ·)...).

    y is (N, H) in the packed rows, or with ``padded`` (a batch with lengths) (T·B, H) in the
    padded layout, zero past each length: the loops write it there as they go, and read the
    gradient from there, which spares a scatter and a gather of N rows outside them.

    ``gx`` is ``cell.project_input(xp)`` and ``params`` the kernel's parameters. ``xp``, the
    initial states and ``every`` (the cell's parameters by name, as they were during the forward
    pass: ``functional_call`` may have swapped them) are only kept, as references to tensors
    autograd or the model keeps anyway, for a second-order backward pass, which recomputes the
    sequence from them.
    """

    @staticmethod
    def forward(
        ctx,
        kernel: Kernel,
        cfg: tuple,
        plan: Plan,
        cell: RecurrentCell,
        padded: bool,
        every: dict[str, Tensor],
        *inputs: Tensor,
    ):
        xp, gx = inputs[0], inputs[1]
        states, params = inputs[2 : 2 + kernel.n_states], inputs[2 + kernel.n_states :]
        out = padded_output(gx, plan, states[0].shape[-1]) if padded else None
        y, finals, saved = kernel.forward(cfg, plan, gx, states, params, True, out=out)
        ctx.kernel, ctx.cfg, ctx.plan, ctx.cell, ctx.padded = kernel, cfg, plan, cell, padded
        # inputs, not outputs, of this node: holding them makes no reference cycle
        ctx.every = every
        where = {id(t): name for name, t in every.items()}
        ctx.param_names = [None if p is None else where[id(p)] for p in params]
        ctx.present = tuple(p is not None for p in params)
        ctx.spent = False  # whether a backward pass has written over the saved buffers
        ctx.save_for_backward(xp, *states, *saved)
        return (y if out is None else out, *finals)

    @staticmethod
    def backward(ctx, dy: Tensor, *dfinal: Tensor):
        kernel: Kernel = ctx.kernel
        xp, *rest = ctx.saved_tensors
        states, saved = tuple(rest[: kernel.n_states]), tuple(rest[kernel.n_states :])
        # the forward pass ran outside autocast (engine.run); a backward pass called inside an
        # autocast block must not round the products into the float32 buffers to bfloat16
        if torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                dgx, dstates, dparams = _backward(ctx, xp, states, saved, dy, dfinal)
        else:  # (entering and leaving the block costs a few microseconds a call)
            dgx, dstates, dparams = _backward(ctx, xp, states, saved, dy, dfinal)
        return (None, None, None, None, None, None, None, dgx, *dstates, *dparams)


def _backward(ctx, xp, states, saved, dy, dfinal):
    """:class:`SequenceFunction`'s backward pass: the compiled BPTT loop, or the recomputed
    autograd loop when the result must be differentiable (``create_graph=True``)."""
    kernel: Kernel = ctx.kernel
    if torch.is_grad_enabled():
        if ctx.padded:  # the recomputation's outputs are the packed rows
            dy = dy.index_select(0, padded_index(ctx.plan, dy.device))
        xp = _packed_input(xp, ctx.plan)
        return _recomputed_backward(
            ctx.cell, ctx.plan, xp, states, ctx.every, ctx.param_names, dy, dfinal
        )
    if ctx.spent:  # retain_graph=True, and this is a second pass
        saved = _rerun_forward(ctx, _packed_input(xp, ctx.plan), states)
    result = kernel.backward(ctx.cfg, ctx.plan, saved, _rows_in_place(dy), dfinal, ctx.present)
    ctx.spent = kernel.in_place
    return result


# The backward loops read the output gradient's rows where they lie when only the rows are
# contiguous (False: a contiguous copy first; for measurements: benchmarks/bidirectional_rows.py).
DY_IN_PLACE = True


def _rows_in_place(dy: Tensor) -> Tensor:
    """``dy`` as the loops read it: as it is when its rows are contiguous, however far apart
    (each direction's half of a bidirectional layer's gradient, a view: the loops read its rows
    where they lie, ``native.call(strided=...)``), else a contiguous copy."""
    if DY_IN_PLACE and dy.dim() == 2 and dy.stride(1) == 1 and dy.stride(0) >= dy.shape[1]:
        return dy
    return dy.contiguous()


def _packed_input(xp: Tensor, plan: Plan) -> Tensor:
    """The packed input rows: ``xp`` itself, or gathered from it when the forward pass kept
    the padded (T·B, I) input (its projection formed on the turn: :mod:`.turn_input`)."""
    if plan.packed and xp.shape[0] != plan.rows:
        return xp.index_select(0, padded_index(plan, xp.device))
    return xp


def _rerun_forward(ctx, xp: Tensor, states: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The buffers :class:`SequenceFunction`'s forward pass saved, computed again from the
    packed input and the initial states with the parameters of that pass (by name, as
    ``functional_call`` may have swapped them): the same loop on the same values."""
    every = ctx.every
    params = tuple(None if name is None else every[name] for name in ctx.param_names)
    # with a folded input bias (the parameters one longer than the kernel's own), the same
    # projection without it, so that the loops add the same sums as the first time
    fold = len(params) > len(ctx.kernel.params(ctx.cell))
    project = (_ProjectUnbiased if fold else _Project)(ctx.cell)
    with torch.no_grad():
        gx = _with_parameters(project, every, (xp,)).contiguous()
        _, _, saved = ctx.kernel.forward(ctx.cfg, ctx.plan, gx, states, params, True)
    return tuple(saved)


class _Project(torch.nn.Module):
    """The cell's input projection as a module, for ``functional_call``."""

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, xp: Tensor) -> Tensor:
        return self.cell.project_input(xp)


class _ProjectUnbiased(_Project):
    """The cell's affine input projection without its bias, which the loops add with theirs
    (:func:`~rnnkit.engine.turn_input.folded_input_bias`)."""

    def forward(self, xp: Tensor) -> Tensor:
        found = folded_input_bias(self.cell)
        assert found is not None
        return torch.nn.functional.linear(xp, found[0])


def _with_parameters(module: _Project, named: dict[str, Tensor], args: tuple):
    """``module(*args)`` with its cell's parameters replaced by ``named`` (by name)."""
    return functional_call(module, {f"cell.{k}": v for k, v in named.items()}, args)


def _recomputed_backward(
    cell: RecurrentCell,
    plan: Plan,
    xp: Tensor,
    states: tuple[Tensor, ...],
    every: dict[str, Tensor],
    param_names: list[str | None],
    dy: Tensor,
    dfinal: tuple[Tensor, ...],
) -> tuple[Tensor, tuple[Tensor | None, ...], tuple[Tensor | None, ...]]:
    """:class:`SequenceFunction`'s backward pass as a differentiable graph: the sequence again,
    input projection included, through :func:`step_loop` with the cell's parameters as the
    forward pass saw them (``every``, by name), differentiated with ``create_graph=True``.

    The recomputation runs on fresh aliases of the initial states and the parameters, and is
    differentiated with respect to those aliases, not the tensors themselves: an initial state
    may itself depend on the same parameters (the previous segment or chunk of the same layer),
    and asking for the parameters' gradient would then also run the graph behind the state,
    which the caller's backward pass runs again.
    """
    alias = {name: t.view_as(t) for name, t in every.items()}
    state_alias = tuple(s.view_as(s) for s in states)
    gx, y, finals = _with_parameters(_Recompute(cell), alias, (xp, state_alias, plan))
    wanted = [name for name in param_names if name is not None]
    inputs = [gx, *state_alias, *(alias[name] for name in wanted)]
    needed = [t.requires_grad for t in inputs]
    grads = iter(
        torch.autograd.grad(
            (y, *finals),
            [t for t, n in zip(inputs, needed) if n],
            grad_outputs=(dy, *dfinal),
            create_graph=True,
            allow_unused=True,
        )
    )
    dgx, *found = [next(grads) if n else None for n in needed]
    dstates = tuple(found[: len(states)])
    dnamed = dict(zip(wanted, found[len(states) :]))
    dparams = tuple(None if name is None else dnamed[name] for name in param_names)
    return dgx, dstates, dparams  # type: ignore[return-value]


class _Recompute(_Project):
    """The input projection and :func:`step_loop` as a module, so that ``functional_call`` can
    give the cell the parameters of the forward pass."""

    def forward(self, xp: Tensor, states: State, plan: Plan):  # type: ignore[override]
        gx = self.cell.project_input(xp)
        return (gx, *step_loop(self.cell, gx, states, plan))


def forward_ad_on(cell: RecurrentCell, x: Tensor, state: State = ()) -> bool:
    """Whether forward-mode AD (``torch.autograd.forward_ad``) carries a tangent on ``x``,
    ``state`` or the cell's parameters: the compiled loops have no forward-mode derivative, so
    such a call takes the autograd loop."""
    if getattr(fwAD, "_current_level", 0) < 0:  # no dual level open: nothing to look at
        return False
    tensors = (x, *state, *parameters_by_name(cell).values())
    return any(fwAD.unpack_dual(t).tangent is not None for t in tensors)


def parameters_by_name(cell: RecurrentCell) -> dict[str, Tensor]:
    """The cell's parameters by name, as its forward pass would read them now (under
    ``functional_call``, the swapped-in tensors). A cell without submodules (every built-in
    one) is read directly, a few microseconds less per call than ``named_parameters``."""
    if not cell._modules:
        return {k: v for k, v in cell._parameters.items() if v is not None}
    return dict(cell.named_parameters())


def native_supports(cell: RecurrentCell, x: Tensor) -> bool:
    """Whether the compiled loops can run ``cell`` on ``x``."""
    if under_functorch() or forward_ad_on(cell, x):
        return False
    return loops_run(cell, x)


def loops_run(cell: RecurrentCell, x: Tensor) -> bool:
    """:func:`native_supports` for a caller that has ruled out ``torch.func`` transforms and
    forward-mode AD already (the path choice checks them once, first). Never under
    ``torch.jit.trace``, which would record the loops' results as constants."""
    if jit_tracing():
        return False
    dtype = x.dtype
    if not x.is_cpu or dtype not in LOOP_DTYPES:
        return False
    if any(p.dtype != dtype or not p.is_cpu for p in parameters_by_name(cell).values()):
        return False
    return kernel_for(cell) is not None and native.available()


def run_native(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool
) -> tuple[Tensor, State]:
    """The compiled loop: ``x`` (T, B, I), ``state`` tuple of (B, ·) -> ((T, B, H), finals)."""
    if lengths is not None and runs_masked(cell, x):
        masked = make_masked_plan(x.shape[0], x.shape[1], lengths, reverse)
        if masked is not None:  # every row in place, frozen past its length: no layout work
            return run_native_rows(cell, masked_input(x, masked), state, masked)
    plan = make_plan(x.shape[0], x.shape[1], lengths, reverse, turn=True)
    # with a turn, the first steps' rows projected where they lie: no gather of them
    rows, gx = turn_input_rows(cell, x, plan)
    return run_native_rows(cell, rows, state, plan, gx=gx)


def runs_masked(cell: RecurrentCell, x: Tensor, bidirectional: bool = False) -> bool:
    """Whether a batch with lengths of ``x`` (T, B, I) is small enough to run masked rather
    than sorted: the multiply-adds of one step's recurrent product, B·numel(W_hh), at most the
    kernel's ``masked_max``, or for a direction of a ``bidirectional`` layer, whose two
    directions share one gather on the sorted path, its ``masked_max_bidirectional``
    (:data:`~rnnkit.engine.masked.MASKED_MAX` overrides the first, and half of it the
    second)."""
    if torch.compiler.is_compiling() or jit_tracing():  # (the plan would enter as constants)
        return False
    found = kernel_for(cell)
    if found is None:
        return False
    limit = masked_layout.MASKED_MAX
    if limit is None:
        kernel = found[0]
        limit = kernel.masked_max_bidirectional if bidirectional else kernel.masked_max
    elif bidirectional:
        limit //= 2
    return x.shape[1] * cell.weight_hh.numel() <= limit


def run_native_rows(
    cell: RecurrentCell, xp: Tensor, state: State, plan: Plan, gx: Tensor | None = None
) -> tuple[Tensor, State]:
    """:func:`run_native` on input rows already laid out by ``plan``: ``xp`` (N, I) packed, or
    the (T·B, I) rows of the input when the plan has no lengths; ``state`` in the batch's
    order -> ((T, B, H) zero past each length, finals in the batch's order). ``gx``: the
    input projection of the packed rows, when the caller formed it (then ``xp`` may be the
    padded (T·B, I) input: :func:`run_native_packed`)."""
    T, B = plan.T, plan.B
    if not plan.packed:  # xp's rows are the padded rows: views only
        y, finals = run_native_packed(cell, xp, state, plan, gx=gx)
        return y.view(T, B, *y.shape[1:]), finals
    states = tuple(sort_rows(s, plan) for s in state)
    # the loops write y straight into the padded layout (and read its gradient from there)
    y, finals = run_native_packed(cell, xp, states, plan, padded=PADDED_OUTPUT, gx=gx)
    y = y.view(T, B, *y.shape[1:]) if PADDED_OUTPUT else unpack(y, plan)
    return y, tuple(unsort_rows(f, plan) for f in finals)


# torch.compile runs these eagerly: the loops are already compiled C++, called through ctypes
@run_eagerly
def run_native_packed(
    cell: RecurrentCell,
    xp: Tensor,
    states: State,
    plan: Plan,
    padded: bool = False,
    gx: Tensor | None = None,
) -> tuple[Tensor, State]:
    """The compiled loop on packed rows: ``xp`` (N, I) laid out by ``plan``, ``states`` (B, ·)
    in the order of the plan's first step -> (y, final states (B, ·) sorted), y (N, H) packed
    or, with ``padded`` (a plan with lengths), (T·B, H) in the padded layout, zero in the
    padding. ``gx``: ``cell.project_input`` of the packed rows, formed by the caller; ``xp`` may
    then be the padded (T·B, I) input, from which a second-order backward pass gathers them."""
    found = kernel_for(cell)
    if found is None:
        raise TypeError(f"no compiled loop for {type(cell).__name__}")
    kernel, cfg = found
    fold = folded_input_bias(cell, kernel)  # (the input bias then goes to the loops)
    if gx is None:  # (N, G): one product for all steps
        gx = project_rows(cell, xp) if fold is None else torch.nn.functional.linear(xp, fold[0])
    gx = gx.contiguous()
    states = tuple(s.contiguous() for s in states)
    params = kernel.params(cell) if fold is None else (*kernel.params(cell), fold[1])
    inputs = (gx, *states, *(p for p in params if p is not None))
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        every = parameters_by_name(cell)
        y, *finals = SequenceFunction.apply(
            kernel, cfg, plan, cell, padded, every, xp, gx, *states, *params
        )
    else:  # nothing here requires a gradient, so nothing below is recorded
        out = padded_output(gx, plan, states[0].shape[-1]) if padded else None
        y, finals, _ = kernel.forward(cfg, plan, gx, states, params, False, out=out)
        y = y if out is None else out
    return y, tuple(finals)


def project_rows(cell: RecurrentCell, xp: Tensor) -> Tensor:
    """``cell.project_input`` of the packed rows ``xp`` (a function of its own, which
    ``benchmarks/rnn_lengths_bound.py --parts`` times)."""
    return cell.project_input(xp)


def run_autograd(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None, reverse: bool
) -> tuple[Tensor, State]:
    """The same layout as :func:`run_native`, stepping ``cell.step`` under autograd."""
    T, B = x.shape[0], x.shape[1]
    plan = make_plan(T, B, lengths, reverse)
    gx = cell.project_input(pack(x, plan))  # (N, G)
    state = tuple(sort_rows(s, plan) for s in state)
    y, finals = step_loop(cell, gx, state, plan)
    return unpack(y, plan), tuple(unsort_rows(f, plan) for f in finals)


def step_loop(cell: RecurrentCell, gx: Tensor, state: State, plan: Plan) -> tuple[Tensor, State]:
    """``cell.step`` over packed projected inputs ``gx`` (N, G) laid out by ``plan``, from
    ``state`` (B, ·) in the order of the plan's first step (:func:`sort_rows`) -> (y (N, H)
    packed, final states (B, ·) sorted)."""
    B = plan.B
    if plan.masked:
        return masked_step_loop(cell, gx, state, plan)
    # split, never slicing in a loop: a slice's backward writes a full-size gradient (O(T^2))
    if plan.packed:
        blocks = gx.split(list(plan.n_list))
    else:
        blocks = gx.split(B)
        if plan.reverse:
            blocks = blocks[::-1]
    outputs: list[Tensor] = []
    done: list[State] = []  # final states of finished rows, last rows first
    active = B
    turn = plan.turn  # (a plan whose first steps keep the batch's order sorts its rows there)
    for s, (n, gx_s) in enumerate(zip(plan.n_list, blocks)):
        if turn and s == turn:
            assert plan.perm is not None
            state = tuple(t.index_select(0, plan.perm.to(t.device)) for t in state)
        if n < active:
            done.append(tuple(s[n:] for s in state))
            state = tuple(s[:n] for s in state)
            active = n
        h, state = cell.step(gx_s, state)
        outputs.append(h)
    done.append(state)
    finals = tuple(torch.cat([part[k] for part in reversed(done)]) for k in range(len(state)))
    if plan.reverse and not plan.packed:
        outputs = outputs[::-1]
    return torch.cat(outputs), finals  # y (N, H) in packed row order
