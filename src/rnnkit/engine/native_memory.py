"""The compiled library's memory routines, called through ctypes like its loops
(:mod:`rnnkit.engine.native`): the row copies between the padded (T·B) layout and the packed
rows (:func:`take_rows`, :func:`place_rows`, :func:`zero_rows`, :func:`add_rows`;
``row_moves.py`` and ``packing.py`` use them), the check that padded rows are finite
(:func:`rows_finite`, for the masked loops' input) and the elementwise column blocks of an input
projection (:func:`block_fill`, :func:`block_grad`; ``projection.py``). Each checks its
arguments and names the one that is wrong.
"""

from __future__ import annotations

import math
from functools import cache

import torch
from torch import Tensor

from ._tracing import run_eagerly
from .native import dtype_suffix, loaded, threads


def _trusted_bytes(t: Tensor) -> int:
    """Bytes of one row of ``t``, contiguous (the caller's promise; no check), also when ``t``
    has no rows (a scatter of no rows still zeroes its padding)."""
    return math.prod(t.shape[1:]) * t.element_size()


def _row_bytes(t: Tensor, what: str) -> int:
    if t.is_cuda or not t.is_contiguous() or t.dim() == 0:
        raise ValueError(f"{what} must be a contiguous tensor on the CPU with rows along dim 0")
    return _trusted_bytes(t)


def _row_index(index: Tensor, what: str, rows: int | None = None) -> Tensor:
    """``index`` checked: a contiguous 1-d int64 tensor and, with ``rows``, every entry a row
    in [0, rows) (two reductions; the engine's own maps skip them)."""
    if index.dtype != torch.int64 or index.dim() != 1 or not index.is_contiguous():
        raise ValueError(f"{what} must be a contiguous 1-d int64 tensor, got {index.dtype}")
    if rows is not None and len(index) and (int(index.min()) < 0 or int(index.max()) >= rows):
        raise ValueError(
            f"{what} must hold rows in [0, {rows}), got [{int(index.min())}, {int(index.max())}]"
        )
    return index


def _out_rows(out: Tensor, src: Tensor, bytes_: int, count: int) -> None:
    if out.dtype != src.dtype or _row_bytes(out, "out") != bytes_ or out.shape[0] != count:
        raise ValueError(f"out must hold {count} rows like src's, got {tuple(out.shape)}")


@run_eagerly  # torch.compile: a ctypes call, run eagerly
def take_rows(src: Tensor, index: Tensor, out: Tensor, trusted: bool = False) -> Tensor:
    """``out[p] = src[index[p]]``: ``src.index_select(0, index)`` into ``out`` (contiguous, one
    dtype, on the CPU). Returns ``out``. ``trusted`` skips every check of the arguments (for
    the engine's own tensors and maps, valid by construction: on a small layer the checks
    cost about a third of the call)."""
    if trusted:
        bytes_ = _trusted_bytes(src)
    else:
        bytes_ = _row_bytes(src, "src")
        _row_index(index, "index", src.shape[0])
        _out_rows(out, src, bytes_, len(index))
    loaded().rnnkit_take_rows(
        src.data_ptr(), index.data_ptr(), out.data_ptr(), len(index), bytes_, threads()
    )
    return out


@run_eagerly
def place_rows(
    src: Tensor, source: Tensor, padding: Tensor, out: Tensor, trusted: bool = False
) -> Tensor:
    """``out[p] = src[source[p]]``, and zero at the positions listed in ``padding`` (ascending):
    ``src.index_select(0, source).index_fill_(0, padding, 0)`` in one pass into ``out``. A
    ``padding`` out of order leaves some of its rows copied instead of zeroed. ``trusted``: as
    :func:`take_rows`."""
    if trusted:
        bytes_ = _trusted_bytes(src)
    else:
        bytes_ = _row_bytes(src, "src")
        _row_index(source, "source", src.shape[0])
        _row_index(padding, "padding")
        _out_rows(out, src, bytes_, len(source))
    loaded().rnnkit_place_rows(
        src.data_ptr(),
        source.data_ptr(),
        padding.data_ptr(),
        len(padding),
        out.data_ptr(),
        len(source),
        bytes_,
        threads(),
    )
    return out


@run_eagerly
def zero_rows(out: Tensor, at: Tensor, trusted: bool = False) -> Tensor:
    """``out.index_fill_(0, at, 0)``: rows ``at`` of ``out`` set to zero. Returns ``out``.
    ``trusted``: as :func:`take_rows`."""
    if trusted:
        bytes_ = _trusted_bytes(out)
    else:
        bytes_ = _row_bytes(out, "out")
        _row_index(at, "at", out.shape[0])
    loaded().rnnkit_zero_rows(out.data_ptr(), at.data_ptr(), len(at), bytes_, threads())
    return out


@run_eagerly
def add_rows(src: Tensor, at: Tensor, out: Tensor, trusted: bool = False) -> Tensor:
    """``out[at[p]] += src[p]``: ``out.index_add_(0, at, src)`` for distinct rows ``at``, in
    place, both contiguous, one floating dtype, on the CPU. Returns ``out``. ``trusted``: as
    :func:`take_rows` (the rows must be distinct all the same: the threads add without
    locks)."""
    suffix = dtype_suffix(src.dtype, "add_rows")
    bytes_ = _row_bytes(src, "src")
    _row_index(at, "at", None if trusted else out.shape[0])
    if out.dtype != src.dtype or _row_bytes(out, "out") != bytes_ or len(at) != src.shape[0]:
        raise ValueError(
            f"out must hold rows like src's {tuple(src.shape[1:])} {src.dtype}, and at one "
            f"entry per row of src, got out {tuple(out.shape)} {out.dtype}, at {len(at)}"
        )
    getattr(loaded(), f"rnnkit_add_rows_{suffix}")(
        src.data_ptr(),
        at.data_ptr(),
        out.data_ptr(),
        len(at),
        bytes_ // src.element_size(),
        threads(),
    )
    return out


def rows_finite(src: Tensor, at: Tensor) -> bool:
    """Whether rows ``at`` of ``src`` (a contiguous (N, W) float32 or float64 matrix on the
    CPU) hold no infinite or NaN value. For the engine's own tensors: nothing is checked (a
    small layer calls this once a step, where each Python-level call counts)."""
    fn = _finite(src.dtype)
    return bool(fn(src.data_ptr(), at.data_ptr(), at.shape[0], src.shape[1]))


@cache
def _finite(dtype: torch.dtype):
    return getattr(loaded(), f"rnnkit_rows_finite_{dtype_suffix(dtype, 'rows_finite')}")


# The elementwise blocks block_fill and block_grad compute.
BLOCK_ACTIVATIONS = ("identity", "tanh")


def _block(t: Tensor, what: str, rows: int, width: int, dtype: torch.dtype) -> int:
    """``t`` checked as a (rows, width) matrix on the CPU whose rows are contiguous (a column
    block of a wider matrix will do); returns its row stride in elements."""
    strided = t.dim() == 2 and width > 1 and t.stride(1) != 1 and t.numel() > 0
    if t.is_cuda or t.dim() != 2 or strided or t.dtype != dtype:
        raise ValueError(
            f"{what} must be a 2-d {dtype} CPU matrix with contiguous rows, got "
            f"{tuple(t.shape)} {t.dtype} with strides {t.stride() if t.dim() else ()}"
        )
    if tuple(t.shape) != (rows, width):
        raise ValueError(f"{what} must be ({rows}, {width}), got {tuple(t.shape)}")
    return t.stride(0)


def _activation(act: str) -> int:
    if act not in BLOCK_ACTIVATIONS:
        raise ValueError(f"act must be one of {BLOCK_ACTIVATIONS}, got {act!r}")
    return BLOCK_ACTIVATIONS.index(act)


@run_eagerly
def block_fill(act: str, src: Tensor, bias: Tensor, dst: Tensor) -> Tensor:
    """``dst[:] = act(src) + bias`` for (N, W) matrices with contiguous rows (``dst`` typically
    a column block of a wider projection, written in place) and ``bias`` (W,); ``act`` is
    "identity" or "tanh". Returns ``dst``."""
    code = _activation(act)
    rows, width = src.shape if src.dim() == 2 else (-1, -1)
    suffix = dtype_suffix(src.dtype, "the block routines")
    lds = _block(src, "src", rows, width, src.dtype)
    ldd = _block(dst, "dst", rows, width, src.dtype)
    if bias.dtype != src.dtype or tuple(bias.shape) != (width,) or not bias.is_contiguous():
        raise ValueError(f"bias must be a contiguous ({width},) {src.dtype} vector")
    getattr(loaded(), f"rnnkit_block_fill_{suffix}")(
        code, src.data_ptr(), lds, bias.data_ptr(), dst.data_ptr(), ldd, rows, width, threads()
    )
    return dst


@run_eagerly
def block_grad(act: str, grad: Tensor, src: Tensor) -> Tensor:
    """The gradient of :func:`block_fill`'s ``dst`` with respect to ``src``: a new contiguous
    (N, W) matrix ``grad · act'(src)`` (1 - tanh(src)² for "tanh"), from (N, W) matrices with
    contiguous rows."""
    code = _activation(act)
    rows, width = src.shape if src.dim() == 2 else (-1, -1)
    suffix = dtype_suffix(src.dtype, "the block routines")
    ldx = _block(src, "src", rows, width, src.dtype)
    ldg = _block(grad, "grad", rows, width, src.dtype)
    out = src.new_empty(rows, width)
    getattr(loaded(), f"rnnkit_block_grad_{suffix}")(
        code, grad.data_ptr(), ldg, src.data_ptr(), ldx, out.data_ptr(), rows, width, threads()
    )
    return out
