"""The "c" engine: ``_sgns.c`` compiled on first use with the system C compiler, called via
ctypes.

Why C and not a torch extension: the skip-gram update touches 1 + K rows of E floats per
pair, a few hundred floating-point operations. Batched tensor operations pay a dispatch and
memory round trip per op that costs more than the arithmetic, and summing many pairs' updates
into one step changes the algorithm; a plain C loop does exactly word2vec.c's sequential SGD at
memory speed. ``torch.utils.cpp_extension`` would need ninja and compiles torch's headers
(tens of seconds); this file needs only ``cc`` and compiles in about a second. ctypes releases
the GIL during the call, so Python threads run jobs in parallel.

The library is cached in ``<rnnkit cache>/build`` under a name that hashes the source, the
flags and the CPU model (``-march=native`` code must not run on another CPU).
:func:`load` returns None when no compiler is available or the build fails; the model then
falls back to the torch engine.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from functools import cache
from pathlib import Path

import numpy as np

from .._compiled import cache_key, find_compiler, publish
from ..datasets._cache import cache_dir

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_sgns.c")
FLAGS = ("-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-shared", "-fPIC")
PORTABLE_FLAGS = tuple(f for f in FLAGS if f != "-march=native")  # if the compiler lacks it
_p = ctypes.c_void_p
_i64 = ctypes.c_int64


def _compiler() -> str | None:
    return find_compiler("CC", ("cc", "gcc", "clang"))


def build(source: Path = SOURCE) -> Path:
    """Compile ``source`` into the cache (if not there yet) and return the library's path."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (tried $CC, cc, gcc, clang)")
    suffix = ".dll" if sys.platform == "win32" else ".so"
    target = cache_dir("build") / f"sgns-{cache_key(source.read_bytes(), FLAGS, cc)}{suffix}"
    return publish(cc, (FLAGS, PORTABLE_FLAGS), source, target, libraries=("-lm",))


@cache
def load() -> ctypes.CDLL | None:
    """The compiled kernel, or None (with the reason logged) when it cannot be built."""
    if os.environ.get("RNNKIT_NO_C_ENGINE"):
        return None
    try:
        lib = ctypes.CDLL(str(build()))
    except (OSError, RuntimeError) as e:
        log.info("word2vec: the C engine is unavailable (%s); using the torch engine", e)
        return None
    lib.sgns_train.restype = ctypes.c_int
    lib.sgns_train.argtypes = [
        _p, _p, _i64, _i64, _p, _p, _i64, _i64, _p, _p, _p, _i64, _i64,
        ctypes.c_float, ctypes.c_uint64, ctypes.c_int, _p,
    ]  # fmt: skip
    lib.sgns_sample_noise.restype = None
    lib.sgns_sample_noise.argtypes = [_p, _p, _i64, _i64, ctypes.c_uint64, _p]
    return lib


def available() -> bool:
    return load() is not None


def _ptr(array: np.ndarray, dtype: type, name: str) -> int:
    if array.dtype != dtype or not array.flags.c_contiguous:
        raise TypeError(f"{name} must be a C-contiguous {np.dtype(dtype)} array")
    return array.ctypes.data


def sample_noise(prob: np.ndarray, alias: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` draws from the alias table (the sampler the kernel uses)."""
    lib = load()
    if lib is None:
        raise RuntimeError("the C engine is unavailable")
    out = np.empty(n, dtype=np.int32)
    lib.sgns_sample_noise(
        _ptr(prob, np.float32, "prob"), _ptr(alias, np.int32, "alias"), len(prob), n, seed,
        out.ctypes.data,
    )  # fmt: skip
    return out


def train_job(
    syn0: np.ndarray,
    syn1: np.ndarray,
    ids: np.ndarray,
    ends: np.ndarray,
    start: int,
    keep: np.ndarray,
    prob: np.ndarray,
    alias: np.ndarray,
    *,
    window: int,
    negative: int,
    alpha: float,
    seed: int,
    want_loss: bool,
) -> np.ndarray:
    """Run the kernel over the sentences ending at ``ends`` (the first starts at ``start``).

    ``syn0``/``syn1`` (V, E) float32 are updated in place. Returns the job's statistics
    [loss sum, pairs, noise words used, words kept] as float64.
    """
    lib = load()
    if lib is None:
        raise RuntimeError("the C engine is unavailable")
    V, E = syn0.shape
    stats = np.zeros(4, dtype=np.float64)
    rc = lib.sgns_train(
        _ptr(syn0, np.float32, "syn0"), _ptr(syn1, np.float32, "syn1"), E, V,
        _ptr(ids, np.int32, "ids"), _ptr(ends, np.int64, "ends"), len(ends), start,
        _ptr(keep, np.float32, "keep"), _ptr(prob, np.float32, "prob"),
        _ptr(alias, np.int32, "alias"), window, negative, alpha, seed, int(want_loss),
        stats.ctypes.data,
    )  # fmt: skip
    if rc != 0:
        raise MemoryError("the word2vec kernel could not allocate its buffers")
    return stats
