"""Building rnnkit's compiled libraries (the engine's loops, word2vec's C engine): the system
compiler, a cache key that names the CPU, and a build published into the cache with an atomic
rename, so that concurrent first uses each see a whole library or none."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model line from /proc/cpuinfo (Linux), else what ``platform`` knows:
    ``-march=native`` code built for one CPU must not run on another."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def find_compiler(variable: str, names: Sequence[str]) -> str | None:
    """The compiler named by the environment ``variable``, else the first of ``names`` on the
    PATH; None when there is none."""
    for name in (os.environ.get(variable), *names):
        if name and shutil.which(name):
            return name
    return None


def cache_key(text: bytes, flags: Sequence[str], compiler: str) -> str:
    """16 hex digits hashing the source ``text``, the ``flags``, the compiler, the CPU and the
    platform."""
    key = hashlib.sha256(text + repr((tuple(flags), compiler, cpu_model(), sys.platform)).encode())
    return key.hexdigest()[:16]


def publish(
    compiler: str,
    flag_sets: Sequence[Sequence[str]],
    source: Path,
    target: Path,
    libraries: Sequence[str] = (),
) -> Path:
    """``target``, compiled from ``source`` with the first of ``flag_sets`` that works (and
    ``libraries`` to link) unless it exists already; written to a temporary file beside it and
    renamed into place. Raises RuntimeError with the compiler's last messages when every set
    fails."""
    if target.exists():
        return target
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        for flags in flag_sets:
            command = [compiler, *flags, "-o", tmp, str(source), *libraries]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode == 0:
                break
        else:
            raise RuntimeError(
                f"{compiler} failed to compile {source.name}:\n{result.stderr[-2000:]}"
            )
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target
