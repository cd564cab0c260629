"""Build ``_loops.cpp``, the engine's compiled time loops, with the system C++ compiler.

The library is built on first use into ``<rnnkit cache>/build`` (``$RNNKIT_CACHE`` or
``~/.cache/rnnkit``) under a name that hashes the source (``_loops.cpp`` and its parts), the
flags, the compiler and the CPU (``-march=native`` code must not run on another CPU);
concurrent builders each publish a whole file with an atomic rename. When the flags fail, the
build tries :data:`FALLBACK_FLAGS` (no ``-march=native``: no own product kernel). Loading and
calling the library: :mod:`rnnkit.engine.native`.
"""

from __future__ import annotations

from pathlib import Path

from .._compiled import cache_key, find_compiler, publish
from ..datasets._cache import cache_dir

SOURCE = Path(__file__).with_name("_loops.cpp")  # which includes its parts, _loops_*.h
# -D__FAST_MATH__ only lets glibc declare its vector exp/tanh (libmvec) so that the fused loops
# vectorise; the arithmetic keeps IEEE semantics (no -ffast-math).
# -mprefer-vector-width=512: on an AVX-512 machine the pointwise loops use 512-bit vectors and
# glibc's 16-wide exp and tanh (GCC prefers 256-bit vectors there otherwise; elsewhere the flag
# changes nothing). Training steps paired against the 256-bit build, Intel Xeon, 2 threads:
# 0.965-0.995, forward passes 0.86-0.97, every loop cell (python benchmarks/loops_against.py
# --without-flag=-mprefer-vector-width=512).
FLAGS = (
    "-O3",
    "-march=native",
    "-mprefer-vector-width=512",
    "-std=c++17",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-D__FAST_MATH__",
    "--param=vect-max-version-for-alias-checks=200",
    "-fopenmp",
    "-shared",
    "-fPIC",
    "-Wl,-z,defs",
)
FALLBACK_FLAGS = ("-O2", "-std=c++17", "-fopenmp", "-shared", "-fPIC")


def _compiler() -> str | None:
    return find_compiler("CXX", ("c++", "g++", "clang++"))


def _parts(source: Path) -> list[Path]:
    """``source`` and the parts it includes (``<stem>_*.h`` beside it), the text the cached
    library is keyed on: a change in any part builds it anew."""
    return [source, *sorted(source.parent.glob(f"{source.stem}_*.h"))]


def build_key(source: Path, cxx: str, flags: tuple[str, ...] = FLAGS) -> str:
    """The cached library's name: a hash of the source and all its parts, the flags, the
    compiler and the CPU."""
    return cache_key(b"".join(path.read_bytes() for path in _parts(source)), flags, cxx)


def build(source: Path = SOURCE, flags: tuple[str, ...] = FLAGS) -> Path:
    """Compile ``source`` with ``flags`` (or, when they fail, :data:`FALLBACK_FLAGS`) into the
    cache, unless it is there already; return the library. Other flags or another source are
    for measurements (``benchmarks/loops_against.py``)."""
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (tried $CXX, c++, g++, clang++)")
    target = cache_dir("build") / f"rnnkit-loops-{build_key(source, cxx, flags)}.so"
    return publish(cxx, (flags, FALLBACK_FLAGS), source, target)
