"""Load and call ``_loops.cpp``, the engine's compiled time loops (built by
:mod:`rnnkit.engine.native_build`; the switches and counters for measurements and tests are in
:mod:`rnnkit.engine.native_switches`). Its memory routines (the row copies between layouts and
the column blocks of a projection) are called through :mod:`rnnkit.engine.native_memory`.

Why a plain C++ file through ctypes and not ``torch.utils.cpp_extension``: the loops need no
torch header. They take raw pointers, call the BLAS that torch already carries (its
``sgemm_``/``dgemm_`` symbols, handed over once at load time) and OpenMP (torch's own
``libgomp``, which the dynamic loader shares), so the file compiles in seconds with the system
C++ compiler instead of the tens of seconds that torch's headers cost, and it does not depend on
torch's C++ ABI. A compiled loop removes the Python interpreter from the time loop (about
25 µs per step of a Python loop, which dominates at small batch sizes) and fuses each step's
pointwise math into one pass over memory. Built with AVX2 and FMA or with AVX-512, the loops
compute the recurrent products with their own kernel instead of the BLAS (``OWN_MIN_ROWS``,
``OWN_MAX_ROWS``, docs/engine.md "The recurrent products: rnnkit's own kernel").

The library is built on first use into the rnnkit cache (:mod:`~rnnkit.engine.native_build`).
:func:`load` returns None
when there is no compiler, the build fails or torch's BLAS symbols are missing; the engine then
falls back to a loop recorded by autograd.
``RNNKIT_NO_NATIVE=1`` switches the compiled loops off.
"""

from __future__ import annotations

import ctypes
import logging
import os
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from ._tracing import run_eagerly
from .native_build import build

log = logging.getLogger(__name__)

KERNELS = ("elman", "lstm", "gru", "rb", "nas", "lnlstm")
HEADER = 11  # int64 entries before the per-step arrays in a geometry block
# Recurrent products of up to this many rows split W_hh's columns over the threads in the loops
# (each core keeps its slice in cache across steps; see split_columns in _loops.cpp).
SPLIT_ROWS = 256
# A step's pointwise pass splits its rows over the threads from this many values (rows times
# width: G for the gated cells, H for Elman), (gated cells, Elman); see for_rows in _loops_geo.h.
ROWS_SPLIT = (8192, 4096)
# The compiled loops' on/off switches (set_<name> and <name> below), each on by default.
SWITCHES = ("split_by_call", "live_rows", "turn_back", "one_row", "few_rows", "units")
# A call whose steps times batch rows reach this takes the loops' own kernel for the recurrent
# products (AVX2 + FMA or AVX-512 builds; a batch of one row too, unless set_one_row(False); see
# _loops.cpp): enough rows to pay for packing W_hh once per call.
OWN_MIN_ROWS = 64
# The most rows (the step's active batch) a recurrent product may have to take the own kernel,
# by its vector width in bits: with AVX2 it beat MKL up to 128 rows and more (AMD EPYC); with
# AVX-512, MKL's own AVX-512 kernels are faster from about 64 rows on (Intel Xeon), so there the
# products of more rows go to the BLAS (``python benchmarks/rnn_products.py``, "loops").
OWN_MAX_ROWS = {512: 48, 256: 256}


def _blas_symbols() -> tuple[int, int]:
    """Addresses of torch's Fortran ``sgemm_`` and ``dgemm_`` (32-bit integer interface)."""
    lib_dir = Path(torch.__file__).parent / "lib"
    for name in ("libtorch_cpu.so", "libtorch_cpu.dylib"):
        path = lib_dir / name
        if path.exists():
            lib = ctypes.CDLL(str(path))
            sgemm, dgemm = lib.sgemm_, lib.dgemm_  # AttributeError when absent
            return ctypes.cast(sgemm, ctypes.c_void_p).value, ctypes.cast(
                dgemm, ctypes.c_void_p
            ).value
    raise OSError(f"libtorch_cpu not found in {lib_dir}")


@cache
def load() -> ctypes.CDLL | None:
    """The compiled loops, or None (with the reason logged) when they cannot be had."""
    if os.environ.get("RNNKIT_NO_NATIVE"):
        return None
    try:
        sgemm, dgemm = _blas_symbols()
        lib = ctypes.CDLL(str(build()))
    except (OSError, RuntimeError, AttributeError) as e:
        log.info("rnnkit.engine: compiled loops unavailable (%s); using the autograd loop", e)
        return None
    lib.rnnkit_set_blas.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.rnnkit_set_blas.restype = None
    lib.rnnkit_set_blas(sgemm, dgemm)
    lib.rnnkit_set_split_rows.argtypes = [ctypes.c_longlong]
    lib.rnnkit_set_split_rows.restype = None
    lib.rnnkit_set_split_rows(SPLIT_ROWS)
    lib.rnnkit_set_own_min_rows.argtypes = [ctypes.c_longlong]
    lib.rnnkit_set_own_min_rows.restype = None
    lib.rnnkit_set_own_min_rows(OWN_MIN_ROWS)
    lib.rnnkit_own_vector_bits.argtypes = []
    lib.rnnkit_own_vector_bits.restype = ctypes.c_int
    lib.rnnkit_set_own_max_rows.argtypes = [ctypes.c_longlong]
    lib.rnnkit_set_own_max_rows.restype = None
    lib.rnnkit_set_own_max_rows(OWN_MAX_ROWS.get(lib.rnnkit_own_vector_bits(), 0))
    lib.rnnkit_set_rows_split.argtypes = [ctypes.c_longlong, ctypes.c_longlong]
    lib.rnnkit_set_rows_split.restype = None
    lib.rnnkit_set_rows_split(*ROWS_SPLIT)
    lib.rnnkit_rows_split.argtypes = [ctypes.c_int]
    lib.rnnkit_rows_split.restype = ctypes.c_longlong
    for name in SWITCHES:  # rnnkit_set_<name>(int) and rnnkit_<name>() -> int
        put, get = getattr(lib, f"rnnkit_set_{name}"), getattr(lib, f"rnnkit_{name}")
        put.argtypes, put.restype = [ctypes.c_int], None
        get.argtypes, get.restype = [], ctypes.c_int
    lib.rnnkit_live_product_count.argtypes = []
    lib.rnnkit_live_product_count.restype = ctypes.c_ulonglong
    lib.rnnkit_own_products.argtypes = []
    lib.rnnkit_own_products.restype = ctypes.c_int
    lib.rnnkit_own_product_count.argtypes = []
    lib.rnnkit_own_product_count.restype = ctypes.c_ulonglong
    lib.rnnkit_units_count.argtypes = []
    lib.rnnkit_units_count.restype = ctypes.c_ulonglong
    i64, ptr, nthreads = ctypes.c_longlong, ctypes.c_void_p, ctypes.c_int
    lib.rnnkit_take_rows.argtypes = [ptr, ptr, ptr, i64, i64, nthreads]
    lib.rnnkit_place_rows.argtypes = [ptr, ptr, ptr, i64, ptr, i64, i64, nthreads]
    lib.rnnkit_zero_rows.argtypes = [ptr, ptr, i64, i64, nthreads]
    for name in ("rnnkit_take_rows", "rnnkit_place_rows", "rnnkit_zero_rows"):
        getattr(lib, name).restype = None
    for suffix in ("f32", "f64"):
        add = getattr(lib, f"rnnkit_add_rows_{suffix}")
        add.argtypes = [ptr, ptr, ptr, i64, i64, nthreads]
        add.restype = None
        fill = getattr(lib, f"rnnkit_block_fill_{suffix}")
        fill.argtypes = [nthreads, ptr, i64, ptr, ptr, i64, i64, i64, nthreads]
        grad = getattr(lib, f"rnnkit_block_grad_{suffix}")
        grad.argtypes = [nthreads, ptr, i64, ptr, i64, ptr, i64, i64, nthreads]
        fill.restype = grad.restype = None
        finite = getattr(lib, f"rnnkit_rows_finite_{suffix}")
        finite.argtypes = [ptr, ptr, i64, i64]
        finite.restype = ctypes.c_int
    for kernel in KERNELS:
        for direction in ("forward", "backward"):
            for suffix in ("f32", "f64"):
                fn = getattr(lib, f"rnnkit_{kernel}_{direction}_{suffix}")
                fn.argtypes = [ctypes.c_void_p] * 4
                fn.restype = None
    return lib


@run_eagerly  # torch.compile: a host-side check, run eagerly
def available() -> bool:
    """Whether the compiled loops can be used in this process."""
    return load() is not None


@run_eagerly  # torch.compile: a ctypes call into the compiled loops, run eagerly
def call(
    kernel: str,
    direction: str,
    geometry: Tensor,
    tensors: list[Tensor],
    scalars: tuple[float, ...] = (0.0,),
    rows: tuple[Tensor, Tensor | None] | None = None,
    strided: Tensor | None = None,
) -> None:
    """Run ``rnnkit_<kernel>_<direction>_<f32|f64>`` on ``tensors`` (contiguous, one dtype).

    ``geometry`` is the int64 block [steps, B, H, full, threads, v0..v4, turn, n[steps],
    off[steps], (perm[B] when turn)] (see ``_loops.cpp``); the tensors are passed as raw
    pointers in the kernel's order.
    ``rows`` = (map, out) puts the outputs in the padded layout: ``map`` (N,) int64 is each
    packed row's flat position t·B + b; a forward loop also writes every output row there in
    ``out`` (T·B, H), and a backward loop (``out`` None) reads its ``dy`` (T·B, H) through it.
    ``strided``: a backward loop's ``dy``, the one tensor of ``tensors`` that may instead be a
    matrix of contiguous rows further apart than its width (a column block of a wider gradient,
    as each direction of a bidirectional layer gets); the loop reads its rows in place.
    """
    dtype = tensors[0].dtype
    fn = _entry(kernel, direction, dtype)
    row_stride = 0
    if strided is not None and not strided.is_contiguous() and _rows_contiguous(strided):
        row_stride = strided.stride(0)
    for t in tensors:
        if (
            t.dtype != dtype
            or t.is_cuda
            or not (t.is_contiguous() or (row_stride and t is strided))
        ):
            raise ValueError(f"{kernel}: every tensor must be contiguous {dtype} on the CPU")
    pointers = (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])
    values = (ctypes.c_double * len(scalars))(*scalars)
    mapped = None
    if rows is not None or row_stride:
        index, out = rows if rows is not None else (None, None)
        if index is not None and (
            index.dtype != torch.int64 or not index.is_contiguous() or index.is_cuda
        ):
            raise ValueError(f"{kernel}: the row map must be contiguous int64 on the CPU")
        if out is not None and (out.dtype != dtype or not out.is_contiguous() or out.is_cuda):
            raise ValueError(f"{kernel}: the padded output must be contiguous {dtype} on the CPU")
        mapped = (ctypes.c_void_p * 3)(
            None if index is None else index.data_ptr(),
            None if out is None else out.data_ptr(),
            row_stride or None,
        )
    fn(geometry.data_ptr(), pointers, values, mapped)


def _rows_contiguous(t: Tensor) -> bool:
    """Whether ``t`` is a matrix whose rows are contiguous, each at least a row's width after
    the one before (so that no two rows overlap)."""
    return t.dim() == 2 and (t.shape[1] <= 1 or t.stride(1) == 1) and t.stride(0) >= t.shape[1]


def threads() -> int:
    return torch.get_num_threads()


def loaded() -> ctypes.CDLL:
    lib = load()
    if lib is None:
        raise RuntimeError("the compiled loops are unavailable")
    return lib


def dtype_suffix(dtype: torch.dtype, what: str) -> str:
    """The suffix of the library's entry points for ``dtype`` ("f32" or "f64"); raises,
    naming ``what``, for any other dtype."""
    suffix = {torch.float32: "f32", torch.float64: "f64"}.get(dtype)
    if suffix is None:
        raise ValueError(f"{what} run float32 or float64, got {dtype}")
    return suffix


@cache
def _entry(kernel: str, direction: str, dtype: torch.dtype):
    """The library's ``rnnkit_<kernel>_<direction>_<f32|f64>`` (looked up once)."""
    lib = load()
    if lib is None:
        raise RuntimeError("the compiled loops are unavailable")
    suffix = dtype_suffix(dtype, f"{kernel}: the compiled loops")
    return getattr(lib, f"rnnkit_{kernel}_{direction}_{suffix}")
