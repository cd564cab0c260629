"""A whole stack in one call of torch's fused op, and its weights in one cuDNN buffer.

torch's ops run all layers and both directions of a stack in one call (``num_layers``,
``bidirectional``), as ``torch.nn.LSTM`` calls them. When every layer-direction of an
:class:`rnnkit.Recurrent` would take the fused op over the whole sequence
(:mod:`rnnkit.engine.fused`) and the stack adds nothing the op lacks
(:func:`stack_supported`), the layer makes that single call (:func:`run_fused_stack`): one
call's fixed cost instead of one per layer-direction, and no stacking of their states. On the
GPU, :func:`flatten_for_cudnn` keeps the stack's weights as views into one buffer in cuDNN's
layout, as torch.nn's layers do, so that cuDNN does not copy them at every call.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.autograd import forward_ad as fwAD

from ..cells.base import RecurrentCell, State
from . import fused  # (its rules and op by module attribute: tests and measurements patch them)
from ._tracing import under_functorch
from .fused import HEAD_MIN_STEPS, STATE_IS_OUTPUT, fused_kind, fused_weights, single_step_runs
from .packing import make_plan, pack, unpack
from .sequence import LOOP_DTYPES, loops_run


def _stack_kind(cells: tuple[RecurrentCell, ...]) -> str | None:
    """The fused kind every cell of a stack shares, with the same bias and projection, which
    torch's op needs for one call over all of them; None otherwise."""
    first = cells[0]
    kind = fused_kind(first)
    if kind is None:
        return None
    proj = getattr(first, "proj_size", 0)
    for cell in cells[1:]:
        if fused_kind(cell) != kind or cell.bias != first.bias:
            return None
        if getattr(cell, "proj_size", 0) != proj:
            return None
    return kind


def stack_supported(
    cells: tuple[RecurrentCell, ...], x: Tensor, engine: str, lengths: Tensor | None = None
) -> bool:
    """Whether every layer and direction of a stack of ``cells`` would take one fused call of
    the whole sequence ``x`` (T, B, I) under path ``engine`` (with ``lengths``: one call of the
    variable-length op, so an LSTM off the CPU only), so that the stack can be one call of
    torch's op over all layers and both directions, as torch.nn's layers make it: one call's
    fixed cost instead of one per layer-direction and the stacking of their states.

    The caller checks what the stack adds to the cells: "concat" merging, no residual
    connections, no dropout between layers in training, no recomputation."""
    if engine not in ("auto", "fused") or not x.dtype.is_floating_point:
        return False
    if engine == "auto" and single_step_runs(cells[0], x):
        return False  # one step: each layer as torch's one-step op (engine.single_step)
    if lengths is not None and not fused.variable_length_op(x):
        return False
    kind = fused_kind(cells[0])
    if kind is None or (lengths is not None and kind in STATE_IS_OUTPUT):
        return False  # (a GRU or Elman stack with lengths: a masked call per layer-direction)
    if engine == "auto" and kind != "lstm" and x.is_cpu and x.dtype in LOOP_DTYPES:
        return False  # most likely the compiled loops' (run() decides; this costs nothing)
    if _stack_kind(cells) is None:
        return False
    if getattr(fwAD, "_current_level", 0) >= 0 or under_functorch():
        return False  # "auto" takes the autograd loop there; leave the choice to run()
    if torch.jit.is_tracing():
        return False  # exporters see the layer-by-layer calls, as before
    if fused.chunk_steps(cells, x) is not None:
        return False  # a long training pass: layer by layer, each in chunks of steps
    if engine == "fused":
        return True
    if kind == "lstm" and x.shape[0] >= HEAD_MIN_STEPS:
        return True
    return not loops_run(cells[0], x)  # where "auto" prefers the compiled loops


def run_fused_stack(
    cells: tuple[RecurrentCell, ...],
    x: Tensor,
    hx: State,
    num_layers: int,
    bidirectional: bool,
    lengths: Tensor | None = None,
) -> tuple[Tensor, State]:
    """The whole stack in one call of torch's op: ``x`` (T, B, I), ``hx`` a tuple of
    (D·L, B, ·) -> (output (T, B, D·O), final states (D·L, B, ·)), as torch.nn's layers.

    With ``lengths`` (B,) (validated), the variable-length op on the packed rows, as torch.nn's
    layers run a ``PackedSequence``: outputs zero past each length, final states at each
    sequence's last step, the backward direction within each valid part."""
    weights = [w for cell in cells for w in fused_weights(cell)]
    first = cells[0]
    train = torch.is_grad_enabled()
    plan = None if lengths is None else make_plan(x.shape[0], x.shape[1], lengths, False)
    if plan is None or not plan.packed:
        args = (weights, first.bias, num_layers, 0.0, train, bidirectional, False)
        return fused._op(first, x, hx, args)
    assert plan.perm is not None and plan.unperm is not None
    perm, unperm = plan.perm.to(x.device), plan.unperm.to(x.device)
    states = tuple(h.index_select(1, perm) for h in hx)
    args = (weights, first.bias, num_layers, 0.0, train, bidirectional)
    out, finals = fused._op(first, pack(x, plan), states, args, plan.n)
    return unpack(out, plan), tuple(f.index_select(1, unperm) for f in finals)


_CUDNN_MODES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN_TANH", "rnn_relu": "RNN_RELU"}


def flatten_for_cudnn(cells: tuple[RecurrentCell, ...], input_size: int, bidirectional: bool):
    """Make the weights of a stack of ``cells`` (layer by layer, the directions within a
    layer, each layer's input the concatenated outputs of the one below) views into one buffer
    in cuDNN's layout, in place, as ``torch.nn``'s layers keep theirs: cuDNN then reads them
    where they are instead of copying them into one buffer at every call (forward and
    backward). A no-op off the GPU, for cells without torch.nn's math, for a stack of another
    shape (directions merged by sum, say), and where parameters share memory; the calls are
    right either way."""
    kind = _stack_kind(cells)
    if kind is None:
        return
    first, D = cells[0], 2 if bidirectional else 1
    proj = getattr(first, "proj_size", 0)
    out = proj or first.hidden_size
    for k, cell in enumerate(cells):
        if cell.hidden_size != first.hidden_size:
            return
        if cell.weight_ih.shape[1] != (input_size if k < D else D * out):
            return
    weights = [w for cell in cells for w in fused_weights(cell)]
    dtype = weights[0].dtype
    if any(
        not w.is_cuda or w.dtype != dtype or not torch.backends.cudnn.is_acceptable(w)
        for w in weights
    ):
        return
    if len({w.data_ptr() for w in weights}) != len(weights) or not (
        torch._use_cudnn_rnn_flatten_weight()
    ):
        return
    from torch.backends.cudnn import rnn as cudnn_rnn

    try:
        with torch.cuda.device_of(weights[0]), torch.no_grad():
            torch._cudnn_rnn_flatten_weight(
                weights,
                len(fused_weights(first)),
                input_size,
                cudnn_rnn.get_cudnn_mode(_CUDNN_MODES[kind]),
                first.hidden_size,
                proj,
                len(cells) // D,
                False,
                bidirectional,
            )
    except RuntimeError as e:  # the layer still runs, on cuDNN's copy of its weights
        warnings.warn(f"could not keep the weights in one cuDNN buffer: {e}", stacklevel=3)
