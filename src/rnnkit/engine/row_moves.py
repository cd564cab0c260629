"""Moving rows between the padded (T·B, ...) layout and the packed rows, differentiably.

The gather (padded -> packed) and the scatter (packed -> padded, zero in the padding) are
autograd functions, each the other's backward, in two forms: one that ``torch.func``
transforms and forward-mode AD can run (torch ops, a separate ``setup_context``, a ``jvp``, a
generated vmap rule), and eager twins for every other call, which move their rows through the
compiled library's one-pass copies where they can (:func:`take`, :func:`place`). The maps they
take come from a plan (:mod:`rnnkit.engine.packing`).
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from . import native, native_memory
from ._tracing import jit_tracing, under_functorch


def _scatter(rows: Tensor, source: Tensor, padding: Tensor) -> Tensor:
    """(N, ...) rows -> (T·B, ...): position p takes row ``source[p]``, the padding is zeroed.

    A gather through the inverse map, not ``out[index] = rows``: index_put_ writes rows one at a
    time and cost about 10 % of a whole Elman training step with lengths; index_select and
    index_fill_ run in parallel at memory speed.
    """
    return rows.index_select(0, source).index_fill_(0, padding, 0.0)


class _RowMove(torch.autograd.Function):
    """The transform-ready form shared by :class:`_Gather` and :class:`_Scatter`: a separate
    ``setup_context`` that keeps the maps for the backward pass and for ``jvp``, so that
    forward-mode AD and ``torch.func`` transforms (grad, vmap with a generated rule, jacrev, jvp)
    can run them."""

    generate_vmap_rule = True

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs[1:])
        ctx.save_for_forward(*inputs[1:])


class _Gather(_RowMove):
    """(T·B, ...) -> packed rows (N, ...); its backward scatters, and zeroes only the padding."""

    @staticmethod
    def forward(flat: Tensor, index: Tensor, source: Tensor, padding: Tensor) -> Tensor:
        return flat.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, source, padding = ctx.saved_tensors
        return scatter_rows(grad, index, source, padding), None, None, None

    @staticmethod
    def jvp(ctx, tangent: Tensor, *_):
        index, _, _ = ctx.saved_tensors
        return tangent.index_select(0, index)


class _Scatter(_RowMove):
    """Packed rows (N, ...) -> (T·B, ...), zero in the padding; its backward gathers."""

    @staticmethod
    def forward(rows: Tensor, index: Tensor, source: Tensor, padding: Tensor) -> Tensor:
        return _scatter(rows, source, padding)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, source, padding = ctx.saved_tensors
        return gather_rows(grad, index, source, padding), None, None, None

    @staticmethod
    def jvp(ctx, tangent: Tensor, *_):
        _, source, padding = ctx.saved_tensors
        return _scatter(tangent, source, padding)


# torch's Function.apply binds the arguments of a Function that has a separate setup_context
# through inspect.signature at every call (about 17 µs; four calls per layer-direction in a
# training step with lengths). Outside torch.func transforms and forward-mode AD, which need
# that form, these twins with the context set in forward do the same work without it: an Elman
# step with lengths at B = 8, H = 64 went from 1.66-1.68 to 1.33-1.35 times its full-length
# step (python benchmarks/lengths_overheads.py).
class _GatherEager(torch.autograd.Function):
    @staticmethod
    def forward(ctx, flat: Tensor, index: Tensor, source: Tensor, padding: Tensor) -> Tensor:
        ctx.save_for_backward(index, source, padding)
        return take(flat, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, source, padding = ctx.saved_tensors
        return scatter_rows(grad, index, source, padding), None, None, None


class _ScatterEager(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows: Tensor, index: Tensor, source: Tensor, padding: Tensor) -> Tensor:
        ctx.save_for_backward(index, source, padding)
        return place(rows, source, padding)

    @staticmethod
    def backward(ctx, grad: Tensor):
        index, source, padding = ctx.saved_tensors
        return gather_rows(grad, index, source, padding), None, None, None


class _GatherTwoEager(torch.autograd.Function):
    """(T·B, ...) -> the packed rows of two plans of the same lengths (a bidirectional layer's
    two directions: forwards and each sequence reversed). Its backward scatters the first
    gradient into the padded layout and adds the second one's rows into it, in place: one
    padded gradient, where two gathers would make one each and autograd would add them."""

    @staticmethod
    def forward(ctx, flat: Tensor, a: tuple[Tensor, Tensor, Tensor], b: tuple[Tensor, ...]):
        ctx.a, ctx.b = a, b
        return take(flat, a[0]), take(flat, b[0])

    @staticmethod
    def backward(ctx, da: Tensor, db: Tensor):
        if torch.is_grad_enabled():  # create_graph: differentiable, through the two scatters
            return scatter_rows(da, *ctx.a) + scatter_rows(db, *ctx.b), None, None
        out = place(da.contiguous(), ctx.a[1], ctx.a[2])
        db = db.contiguous()
        if compiled_rows(db, ctx.b[0], out):
            native_memory.add_rows(db, ctx.b[0], out, trusted=True)
        else:
            out.index_add_(0, ctx.b[0], db)
        return out, None, None


def gather_two(
    flat: Tensor, a: tuple[Tensor, Tensor, Tensor], b: tuple[Tensor, Tensor, Tensor]
) -> tuple[Tensor, Tensor]:
    """(T·B, ...) -> (packed rows by the maps ``a``, packed rows by the maps ``b``), each
    (index, source, padding) of a plan of the same lengths; differentiable. Outside
    ``torch.func`` transforms and forward-mode AD (and with the eager twins on), one autograd
    node whose backward makes one padded gradient; else two gathers."""
    if _transforms_active():
        return gather_rows(flat, *a), gather_rows(flat, *b)
    return _GatherTwoEager.apply(flat, a, b)


# The eager twins and the native path's own row moves use the compiled library's one-pass row
# copies where they can (native_memory.take_rows, place_rows, zero_rows): torch's scatter passes
# over the padding twice (a gather from a dummy row, then index_fill_), theirs once. Elman at
# B = 32, H = 256 with lengths: 0.906-0.912 -> 0.871-0.874 of its full step; within the noise
# elsewhere (python benchmarks/lengths_overheads.py --pieces "native rows"). False: torch's ops
# everywhere (for measurements).
NATIVE_ROWS = True


def compiled_rows(*tensors: Tensor) -> bool:
    """Whether ``tensors`` can take the compiled row copies: contiguous, on the CPU, outside
    ``torch.compile``'s tracing and ``torch.func`` transforms, with the compiled library loaded
    (and ``NATIVE_ROWS``)."""
    if not NATIVE_ROWS or torch.compiler.is_compiling() or under_functorch() or jit_tracing():
        return False
    for t in tensors:  # (a loop, not all() over a generator: this runs a few times a step)
        if not (t.is_cpu and t.is_contiguous()):
            return False
    return native.load() is not None  # (is_compiling is ruled out: no need for available())


def take(flat: Tensor, index: Tensor, out: Tensor | None = None) -> Tensor:
    """``flat.index_select(0, index)`` (into ``out`` when given), through the compiled copy
    where :func:`compiled_rows` allows; not recorded by autograd. ``index`` is one of the
    engine's own maps."""
    if out is None:
        out = flat.new_empty(len(index), *flat.shape[1:])
    if compiled_rows(flat, index, out):
        return native_memory.take_rows(flat, index, out, trusted=True)
    return torch.index_select(flat, 0, index, out=out)


def place(rows: Tensor, source: Tensor, padding: Tensor, out: Tensor | None = None) -> Tensor:
    """Packed rows -> the padded layout, zero in the padding (into ``out`` when given), in one
    pass through the compiled copy where :func:`compiled_rows` allows; not recorded."""
    if out is None:
        out = rows.new_empty(len(source), *rows.shape[1:])
    if compiled_rows(rows, source, padding, out):
        return native_memory.place_rows(rows, source, padding, out, trusted=True)
    torch.index_select(rows, 0, source, out=out)
    return out.index_fill_(0, padding, 0.0)


# False: the transform-ready form on every call, as before the twins (for measurements:
# benchmarks/lengths_overheads.py).
EAGER_TWINS = True


def _transforms_active() -> bool:
    """Whether the gather and scatter need their transform-ready form: a torch.func transform
    runs or a forward-mode AD level is open (or the twins are switched off)."""
    return not EAGER_TWINS or under_functorch() or getattr(fwAD, "_current_level", -1) >= 0


# A padded input of fewer elements than this is gathered by torch's index_select, whose
# autograd node is C++: on a tiny layer the Python forward and backward of the autograd
# functions above cost more than the extra pass of index_select's backward (a zero fill, then
# an index_add). Training step with lengths, native over the functions, paired: Elman B = 2,
# H = 64 (12 800 elements) 0.955, B = 8 0.985, GRU B = 8 0.987; Elman B = 32, H = 64 (204 800)
# 1.01 (python benchmarks/lengths_overheads.py --pieces "small gathers"). 0: never.
NATIVE_GATHER_MAX = 2**16


def gather_rows(flat: Tensor, index: Tensor, source: Tensor, padding: Tensor) -> Tensor:
    """(T·B, ...) -> packed rows (N, ...), differentiable (twice, and by every transform)."""
    if flat.numel() < NATIVE_GATHER_MAX:
        return flat.index_select(0, index)
    fn = _Gather if _transforms_active() else _GatherEager
    return fn.apply(flat, index, source, padding)


def scatter_rows(rows: Tensor, index: Tensor, source: Tensor, padding: Tensor) -> Tensor:
    """Packed rows (N, ...) -> (T·B, ...), zero in the padding; differentiable."""
    fn = _Scatter if _transforms_active() else _ScatterEager
    return fn.apply(rows, index, source, padding)
