"""Input projections made of column blocks, written into one buffer.

Most cells project their input with one matrix product. The MUT cells mix products with
elementwise blocks: MUT1 (I = H) is [W_zr x + b_zr | tanh(x) + b_h] and MUT2 (I = H) is
[W_z x + b_z | x + b_r | W_xh x + b_h]. Written as torch ops, each block is a tensor of its own
and a concatenation copies them all once more into the (N, 3H) projection; its backward splits
the gradient and sums the input's parts. :func:`block_projection` allocates the projection once
and writes each block straight into its columns: the products through the BLAS (``addmm`` into
a column block), the elementwise blocks through the compiled library (``native_memory.block_fill``).
The backward pass reads each block's gradient where it lies, starts the input's gradient from
the elementwise blocks' (``native_memory.block_grad``) and adds each product's in place.

On 2 threads of an Intel Xeon (H = 256, three runs of ``python benchmarks/block_projection.py``,
docs/engine.md), the projection's forward and backward passes took 0.90-1.00 of the composed
form's time, and a MUT1 or MUT2 layer's training step (T = 100, B = 32 and 128) 0.88-0.99.

The composed form (:func:`composed_projection`, torch ops and a concatenation) runs wherever
the fast one cannot: without the compiled library, off the CPU, for dtypes other than
float32 and float64, under ``torch.func`` transforms, forward-mode AD, ``torch.compile``,
``torch.export`` (the ONNX export), ``torch.jit`` tracing or autocast. A backward pass asked
for a differentiable result (``create_graph=True``) computes the same gradients with
differentiable torch ops.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.autograd.forward_ad as fwAD
from torch import Tensor

from . import native, native_memory
from ._tracing import under_functorch

# A block: ("linear", width, first row of the weight) or (activation, width) with activation
# in native_memory.BLOCK_ACTIVATIONS ("identity", "tanh"); the blocks in the projection's
# column order.
Block = tuple
ELEMENTWISE = {"identity": lambda x: x, "tanh": torch.tanh}


@lru_cache(maxsize=64)
def check_blocks(blocks: tuple[Block, ...], input_size: int, weight_rows: int) -> None:
    """Raise if ``blocks`` is not a valid layout: known kinds, elementwise blocks as wide as
    the input, and the products' weight rows tiling the weight in order."""
    row = 0
    for block in blocks:
        kind, width = block[0], block[1]
        if kind == "linear":
            if block[2] != row:
                raise ValueError(f"linear blocks must take the weight's rows in order: {blocks}")
            row += width
        elif kind in ELEMENTWISE:
            if width != input_size:
                raise ValueError(f"a {kind} block must be {input_size} wide, got {width}")
        else:
            raise ValueError(f"unknown block kind {kind!r}; expected 'linear', 'identity', 'tanh'")
    if row != weight_rows:
        raise ValueError(f"the linear blocks cover {row} weight rows of {weight_rows}")


def _spans(blocks):
    """(kind, columns, weight rows) of each block: slices of the projection's columns and, for
    a product, of the weight's rows (None for an elementwise block)."""
    col = 0
    for block in blocks:
        kind, width = block[0], block[1]
        yield (
            kind,
            slice(col, col + width),
            (slice(block[2], block[2] + width) if kind == "linear" else None),
        )
        col += width


def composed_projection(x: Tensor, weight: Tensor, bias: Tensor, blocks) -> Tensor:
    """The projection in torch ops (one tensor a block, then a concatenation): any device,
    dtype and transform."""
    parts = []
    for kind, cols, rows in _spans(blocks):
        if kind == "linear":
            parts.append(torch.nn.functional.linear(x, weight[rows], bias[cols]))
        else:
            parts.append(ELEMENTWISE[kind](x) + bias[cols])
    return torch.cat(parts, dim=-1)


# False: the composed ops everywhere (for measurements: benchmarks/block_projection.py).
IN_ONE_BUFFER = True


def _fast(x: Tensor, weight: Tensor, bias: Tensor) -> bool:
    """Whether :class:`_BlockProjection` can run these tensors."""
    if not IN_ONE_BUFFER or under_functorch() or getattr(fwAD, "_current_level", -1) >= 0:
        return False
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
        return False  # a graph cannot hold the compiled library's calls
    if torch.is_autocast_enabled("cpu"):
        return False
    if x.dtype not in (torch.float32, torch.float64):
        return False
    tensors = (x, weight, bias)
    if any(t.device.type != "cpu" or t.dtype != x.dtype for t in tensors):
        return False
    return native.available()


def block_projection(x: Tensor, weight: Tensor, bias: Tensor, blocks) -> Tensor:
    """``x`` (..., I) -> (..., G): each block of columns a product with its rows of ``weight``
    or an elementwise function of x, plus its part of ``bias`` (G,). See the module's
    docstring for which form runs."""
    blocks = tuple(blocks)
    check_blocks(blocks, x.shape[-1], weight.shape[0])
    if bias.shape != (sum(block[1] for block in blocks),):
        raise ValueError(f"bias must have one entry a projected column, got {tuple(bias.shape)}")
    if not _fast(x, weight, bias):
        return composed_projection(x, weight, bias, blocks)
    flat = x.reshape(-1, x.shape[-1])
    if flat.stride(-1) != 1:
        flat = flat.contiguous()
    out = _BlockProjection.apply(flat, weight, bias, blocks)
    return out if x.dim() == 2 else out.view(*x.shape[:-1], out.shape[-1])


class _BlockProjection(torch.autograd.Function):
    """(N, I) -> (N, G), one buffer; see :func:`block_projection`."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, blocks):
        G = sum(block[1] for block in blocks)
        out = x.new_empty(x.shape[0], G)
        for kind, cols, rows in _spans(blocks):
            if kind == "linear":
                torch.addmm(bias[cols], x, weight[rows].t(), out=out[:, cols])
            else:
                native_memory.block_fill(kind, x, bias[cols].contiguous(), out[:, cols])
        ctx.blocks = blocks
        ctx.save_for_backward(x, weight)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        blocks = ctx.blocks
        if grad.stride(-1) != 1:  # the blocks' gradients are read as rows
            grad = grad.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph=True: differentiable ops only
            return (*_differentiable_grads(x, weight, grad, blocks, ctx.needs_input_grad), None)
        dx = dw = None
        if need_w:
            dw = torch.empty_like(weight)
        for kind, cols, rows in _spans(blocks):
            g = grad[:, cols]
            if kind == "linear":
                if need_x:
                    dx = g.mm(weight[rows]) if dx is None else dx.addmm_(g, weight[rows])
                if need_w:
                    torch.mm(g.t(), x, out=dw[rows])
            elif need_x:
                part = native_memory.block_grad(kind, g, x)
                dx = part if dx is None else dx.add_(part)
        db = grad.sum(0) if need_b else None
        return dx, dw, db, None


def _differentiable_grads(x, weight, grad, blocks, needs):
    """The gradients of :class:`_BlockProjection` in differentiable torch ops."""
    dx_parts, dw_parts = [], []
    for kind, cols, rows in _spans(blocks):
        g = grad[:, cols]
        if kind == "linear":
            dx_parts.append(g.mm(weight[rows]))
            dw_parts.append(g.t().mm(x))
        elif kind == "tanh":
            dx_parts.append(g * (1 - torch.tanh(x) ** 2))
        else:
            dx_parts.append(g)
    dx = sum(dx_parts[1:], dx_parts[0]) if needs[0] else None
    dw = torch.cat(dw_parts) if needs[1] else None
    db = grad.sum(0) if needs[2] else None
    return dx, dw, db
