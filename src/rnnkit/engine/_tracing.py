"""What tracers see of the engine: ``run_eagerly`` keeps a function out of ``torch.compile``'s
graphs at no cost in eager mode; ``under_functorch`` says whether a ``torch.func`` transform is
running."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)


def run_eagerly(fn: F) -> F:
    """``fn`` as is in eager mode; under ``torch.compile``, ``torch.compiler.disable(fn)`` (a
    graph break, the call run eagerly). Dynamo cannot trace what these functions do (ctypes
    calls into the compiled loops, NumPy bookkeeping, caches), and ``torch.compiler.disable``
    alone costs about 4 µs on every eager call, a few per layer and direction."""
    disabled = torch.compiler.disable(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if torch.compiler.is_compiling():
            return disabled(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def under_functorch() -> bool:
    """Whether a ``torch.func`` transform (grad, vmap, jacrev, jvp...) is running: its wrapped
    tensors have no memory of their own for the compiled loops, so they take the autograd loop,
    which every transform can trace."""
    peek = getattr(torch._C._functorch, "peek_interpreter_stack", None)
    return peek is not None and peek() is not None


def jit_tracing() -> bool:
    """Whether ``torch.jit.trace`` is recording: it records torch ops only, so a call into the
    compiled library through ctypes would come out of the trace as a constant. The engine then
    runs torch ops alone (the fused ops, or the autograd loop over ``cell.step``)."""
    return torch.jit.is_tracing()
