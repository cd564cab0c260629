"""The compiled loops as built now against another build of them, in one process: the same
source without one of the build flags (``--without-flag``), or the source of another revision
(``--against REV``).

The other library is built beside the default one (``engine.native_build.build``), both
are loaded, and the engine's kernel entry points (``native._entry``) are pointed at one or the
other for each call. Each model's training step (forward, then the gradients with respect to the
input and every parameter) and forward pass are timed with both libraries back to back in every
round, in alternating order, and the median of the rounds' ratios (now over the other) is
printed.

    python benchmarks/loops_against.py --without-flag=-mprefer-vector-width=512   # 512-bit vectors
    python benchmarks/loops_against.py --against 915db2d --cases "LayerNorm LSTM:32:256"
    python benchmarks/loops_against.py --quick --without-flag=-mprefer-vector-width=512
"""

from __future__ import annotations

import ctypes
import statistics
import subprocess
import tempfile
from pathlib import Path

import torch
from machine import paired_ratios, paired_setup, print_header
from rnn_speed import _input, build, step_fns

from rnnkit.engine import native, native_build

T = 100
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


def other_source(rev: str, into: Path) -> Path:
    """The loops' source (``_loops.cpp`` and its parts) of git revision ``rev``, written into
    ``into``; returns the main file."""
    root = native_build.SOURCE.parents[3]
    folder = native_build.SOURCE.relative_to(root).parent.as_posix()
    names = subprocess.run(
        ["git", "-C", str(root), "ls-tree", "--name-only", rev, f"{folder}/"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    for name in names:
        if Path(name).name.startswith("_loops"):
            text = subprocess.run(
                ["git", "-C", str(root), "show", f"{rev}:{name}"],
                check=True,
                capture_output=True,
            ).stdout
            (into / Path(name).name).write_bytes(text)
    return into / native_build.SOURCE.name


def other_library(now: ctypes.CDLL, source: Path, without: str | None) -> ctypes.CDLL:
    """``source`` built with the library's flags less ``without``, set up as ``native.load``
    sets up the default library (the BLAS, the own kernel's row limits)."""
    flags = tuple(f for f in native_build.FLAGS if f != without)
    lib = ctypes.CDLL(str(native_build.build(source, flags)))
    sgemm, dgemm = native._blas_symbols()
    lib.rnnkit_set_blas.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.rnnkit_set_blas(sgemm, dgemm)
    for name, value in (
        ("split_rows", native.SPLIT_ROWS),
        ("own_min_rows", native.OWN_MIN_ROWS),
        ("own_max_rows", native.OWN_MAX_ROWS.get(now.rnnkit_own_vector_bits(), 0)),
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
    for which in ("other", "now"):
        switch.current = which
        for fn in (train, forward, train):
            fn()  # warm-up: packed copies, allocator

    def use(now: bool) -> None:
        switch.current = "now" if now else "other"

    return {
        key: statistics.median(paired_ratios(fn, use, rounds))
        for key, fn in (("train", train), ("forward", forward))
    }


def parse_cases(text: str) -> list[tuple[str, int, int]]:
    cases = []
    for item in text.split(";"):
        name, B, H = item.rsplit(":", 2)
        cases.append((name, int(B), int(H)))
    return cases


def main() -> None:
    parser, args = paired_setup(
        __doc__,
        15,
        "two models",
        extra=lambda p: (
            p.add_argument("--without-flag", help="the other build: the build flags less this"),
            p.add_argument("--against", help="the other build: the loops of this git revision"),
            p.add_argument("--cases", help='"model:B:H;..." (default: thirteen shapes)'),
        ),
    )
    if (args.without_flag is None) == (args.against is None):
        parser.error("give one of --without-flag and --against")
    if args.without_flag is not None and args.without_flag not in native_build.FLAGS:
        parser.error(f"native_build.FLAGS has no {args.without_flag}: nothing to compare")
    now = native.load()
    with tempfile.TemporaryDirectory() as folder:
        source = (
            native_build.SOURCE
            if args.against is None
            else other_source(args.against, Path(folder))
        )
        switch = Switch({"other": other_library(now, source, args.without_flag), "now": now})
    native._entry = switch  # every call of the loops below goes through the switch
    other = f"without {args.without_flag}" if args.without_flag else f"the loops of {args.against}"
    print_header(
        f"The compiled loops now over the same {other}",
        args.threads,
        f"T = {T}, I = H, float32",
        f"{args.rounds} rounds, both libraries back to back in alternating order; median of "
        "the rounds' ratios",
    )
    print("| model | B | H | training step now / other | forward pass now / other |")
    print("|---|---|---|---|---|")
    cases = parse_cases(args.cases) if args.cases else list(CASES)
    for name, B, H in cases[:2] if args.quick else cases:
        r = measure(switch, name, B, H, args.rounds)
        print(f"| {name} | {B} | {H} | {r['train']:.3f} | {r['forward']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
