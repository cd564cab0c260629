"""The compiled loops built for 512-bit vectors (``-mprefer-vector-width=512``, the default
``engine.native.FLAGS``) against the same source built for 256-bit vectors, in one process.

On an AVX-512 machine GCC prefers 256-bit vectors unless told otherwise, and glibc's vector exp
and tanh (libmvec) then run 8 floats at a time; with the flag the pointwise loops run 16 at a
time. The own product kernel uses its intrinsics either way, so only the pointwise loops differ.
This builds the 256-bit library beside the default one, loads both, and points the engine's
entry points at one or the other for each call (``native._entry``): each model's training step
and forward pass are timed with both libraries back to back in every round, in alternating
order, and the median of the rounds' ratios (512-bit over 256-bit) is printed.

    python benchmarks/vector_width.py              # about a minute on 2 cores
    python benchmarks/vector_width.py --quick      # two models
"""

from __future__ import annotations

import ctypes
import statistics

import torch
from machine import paired_ratios, paired_setup, print_header
from rnn_speed import _input, build, step_fns

from rnnkit.engine import native

T = 100
FLAG = "-mprefer-vector-width=512"
CASES = (
    ("Elman", 32, 64),
    ("Elman", 128, 256),
    ("GRU", 32, 256),
    ("GRU", 128, 256),
    ("GRU reset before", 32, 256),
    ("LSTM [native loop]", 1, 256),
    ("LSTM [native loop]", 128, 256),
    ("LSTM peephole", 32, 256),
    ("LayerNorm LSTM", 32, 256),
    ("MGU", 32, 256),
    ("MUT1", 128, 256),
    ("MUT3", 128, 256),
    ("NAS", 32, 256),
)


def narrow_library(wide: ctypes.CDLL) -> ctypes.CDLL:
    """The same source built without the flag, set up as ``native.load`` sets up the default
    library (the BLAS, the own kernel's row limits)."""
    kept = native.FLAGS
    native.FLAGS = tuple(f for f in kept if f != FLAG)
    try:
        lib = ctypes.CDLL(str(native.build()))
    finally:
        native.FLAGS = kept
    sgemm, dgemm = native._blas_symbols()
    lib.rnnkit_set_blas.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.rnnkit_set_blas(sgemm, dgemm)
    for name, value in (
        ("split_rows", native.SPLIT_ROWS),
        ("own_min_rows", native.OWN_MIN_ROWS),
        ("own_max_rows", native.OWN_MAX_ROWS.get(wide.rnnkit_own_vector_bits(), 0)),
    ):
        setter = getattr(lib, f"rnnkit_set_{name}")
        setter.argtypes = [ctypes.c_longlong]
        setter(value)
    return lib


class Switch:
    """Points the engine's kernel entry points (``native._entry``) at one of two libraries."""

    def __init__(self, libraries: dict[str, ctypes.CDLL]) -> None:
        self.libraries, self.current, self.found = libraries, next(iter(libraries)), {}

    def __call__(self, kernel: str, direction: str, dtype: torch.dtype):
        key = (self.current, kernel, direction, dtype)
        if key not in self.found:
            suffix = native.dtype_suffix(dtype, f"{kernel}: the compiled loops")
            fn = getattr(self.libraries[self.current], f"rnnkit_{kernel}_{direction}_{suffix}")
            fn.argtypes, fn.restype = [ctypes.c_void_p] * 4, None
            self.found[key] = fn
        return self.found[key]


def measure(switch: Switch, name: str, B: int, H: int, rounds: int) -> dict[str, float]:
    torch.manual_seed(0)
    forward, train = step_fns(build(name, H), _input(T, B, H))
    for which in ("256", "512"):
        switch.current = which
        for fn in (train, forward, train):
            fn()  # warm-up: packed copies, allocator

    def use(wide: bool) -> None:
        switch.current = "512" if wide else "256"

    return {
        key: statistics.median(paired_ratios(fn, use, rounds))
        for key, fn in (("train", train), ("forward", forward))
    }


def main() -> None:
    parser, args = paired_setup(__doc__, 15, "two models")
    if FLAG not in native.FLAGS:
        parser.error(f"native.FLAGS has no {FLAG}: nothing to compare")
    wide = native.load()
    switch = Switch({"256": narrow_library(wide), "512": wide})
    native._entry = switch  # every call of the loops below goes through the switch
    print_header(
        "The loops built for 512-bit vectors over the same loops built for 256-bit ones",
        args.threads,
        f"T = {T}, I = H, float32",
        f"{args.rounds} rounds, both libraries back to back in alternating order; median of "
        "the rounds' ratios",
    )
    print("| model | B | H | training step 512 / 256 | forward pass 512 / 256 |")
    print("|---|---|---|---|---|")
    for name, B, H in CASES[:2] if args.quick else CASES:
        r = measure(switch, name, B, H, args.rounds)
        print(f"| {name} | {B} | {H} | {r['train']:.3f} | {r['forward']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
