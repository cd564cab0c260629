"""What the benchmarks print about the machine they ran on, and how they set it up."""

from __future__ import annotations

import argparse
import datetime
import platform
import time
from collections.abc import Callable

import torch

import rnnkit


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def add_allocator_flag(parser: argparse.ArgumentParser, note: str = "") -> None:
    """``--reuse-freed-memory``: time under ``rnnkit.engine.reuse_freed_memory()``."""
    parser.add_argument(
        "--reuse-freed-memory",
        action="store_true",
        help="time under rnnkit.engine.reuse_freed_memory() (what `rnnkit train` uses)" + note,
    )


def print_header(title: str, threads: int, *lines: str) -> None:
    """A report's heading: ``title``, the CPU and thread count, the torch and Python versions,
    today's date, then each of ``lines`` as an item of the same list, and a blank line."""
    print(f"## {title}\n")
    print(f"- CPU: {cpu_name()}, {threads} threads (torch.set_num_threads)")
    print(f"- torch {torch.__version__}, Python {platform.python_version()}")
    print(f"- date: {datetime.date.today().isoformat()}")
    for line in lines:
        print(f"- {line}")
    print(flush=True)


def apply_machine_args(args: argparse.Namespace) -> None:
    """Set up the process as ``args`` ask: ``--threads`` for torch and the compiled loops,
    and ``--reuse-freed-memory`` (:func:`add_allocator_flag`)."""
    torch.set_num_threads(args.threads)
    if args.reuse_freed_memory:
        rnnkit.engine.reuse_freed_memory()


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def paired_ratios(
    fn: Callable[[], object], use: Callable[[bool], None], rounds: int
) -> list[float]:
    """Each round's time of ``fn`` with ``use(True)`` over its time with ``use(False)``, the two
    calls back to back in alternating order (on a shared machine the second call of a pair
    often reads faster, whichever it is); ``use(True)`` is left in force."""
    ratios = []
    for r in range(rounds):
        got = {}
        for form in (True, False) if r % 2 == 0 else (False, True):
            use(form)
            got[form] = timed(fn)
        ratios.append(got[True] / got[False])
    use(True)
    return ratios


def paired_setup(
    doc: str,
    rounds: int,
    quick: str,
    own_kernel: bool = False,
    extra: Callable[[argparse.ArgumentParser], object] | None = None,
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line of a benchmark that times two forms of the compiled loops in one
    process (``--threads``, ``--rounds``, ``--quick``, ``--reuse-freed-memory``, and what
    ``extra`` adds to the parser), parsed and applied; the parser is returned for further
    checks. ``own_kernel``: the benchmark needs the loops' own product kernel, not only the
    loops."""
    from rnnkit.engine import native, native_switches

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--quick", action="store_true", help=quick)
    add_allocator_flag(parser)
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if not native.available():
        parser.error("needs the compiled loops")
    if own_kernel and not native_switches.own_products():
        parser.error("needs the compiled loops with their own product kernel (AVX2 + FMA)")
    apply_machine_args(args)
    return parser, args
