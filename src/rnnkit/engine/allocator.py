"""Keep freed memory in the process, so that every training step does not page-fault anew.

torch's CPU tensors come from the C library's ``malloc``. glibc serves a large block with a
fresh ``mmap`` (above a threshold that adapts up to 32 MiB) and gives freed memory back to the
operating system (``munmap``, or trimming the heap). A training step allocates and frees the
same large buffers every time (activations, gradients, oneDNN's workspace), so every step
touches freshly mapped pages, and each first touch of a 4 KiB page is a page fault that the
kernel serves by zeroing the page. On the machine of ``docs/benchmarks.md`` that costs 8-22 %
of a recurrent layer's training step at T = 100, B = 128, H = 256, ``torch.nn.LSTM``'s included
(``python benchmarks/allocator.py``).

:func:`reuse_freed_memory` raises glibc's thresholds (``mallopt``) so that large blocks come
from the heap and freed memory stays there for the next step. The price: the process keeps its
high-water mark of memory instead of returning it between steps. It changes the whole process,
so the library never calls it on import; ``rnnkit train`` calls it
(``trainer.reuse_freed_memory``, on by default), as do the benchmarks that say so.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_MOST = 2**31 - 1  # mallopt takes an int: blocks up to 2 GiB come from the heap

_applied = False


def reuse_freed_memory() -> bool:
    """Make glibc's ``malloc`` serve large blocks from the heap and keep freed memory for
    reuse (the whole process, from now on). Returns whether it applies: True on Linux with
    glibc, False elsewhere (other C libraries: nothing is changed). Calling it again is free."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)  # the C library the process already runs on
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False  # not glibc (musl, for one, has no such thresholds)
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _applied = bool(libc.mallopt(M_MMAP_THRESHOLD, _MOST)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, _MOST)
    )
    return _applied
