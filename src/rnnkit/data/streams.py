"""One long sequence -> B parallel streams cut into windows of k steps (the lecture's "split to
equal length chunk"), for truncated backpropagation through time.

A stream ``s`` of N steps is laid out as B rows of L = (N - 1) // B consecutive steps::

    inputs  (B, L) = s[0 : B*L].view(B, L)          row b holds s[b*L : (b+1)*L]
    targets (B, L) = s[1 : B*L + 1].view(B, L)      the next step of every input

and windows ``inputs[:, i:i+k]``, ``targets[:, i:i+k]`` are yielded for i = 0, k, 2k, ...
Row b of window j+1 continues row b of window j, so a stateful model can carry its final state
from one window into the next (detached with :func:`detach_state`, which is what makes the
backpropagation truncated).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .padding import as_tensor_sequence


class StreamWindow(NamedTuple):
    """``inputs`` and ``targets`` of one window: (B, k[, I]), or (k, B[, I]) time first."""

    inputs: Tensor
    targets: Tensor


def chunk_stream(
    stream: object,
    batch_size: int,
    steps: int,
    *,
    batch_first: bool = True,
    drop_last: bool = False,
) -> StreamChunks:
    """The windows of ``stream`` as an iterable of :class:`StreamWindow` (see the module
    docstring; arguments as :class:`StreamChunks`)."""
    return StreamChunks(stream, batch_size, steps, batch_first=batch_first, drop_last=drop_last)


class StreamChunks:
    """Iterate ``StreamWindow`` s of ``steps`` time steps over ``batch_size`` parallel streams.

    Args:
        stream: the sequence, (N,) ids or (N, I) features (list, NumPy array or tensor).
        batch_size: B, the number of parallel streams.
        steps: k, the window length (the truncation length of BPTT).
        batch_first: windows are (B, k[, I]); False gives (k, B[, I]) (the runner's default).
        drop_last: drop the last window when it is shorter than ``steps``.

    ``len()`` is the number of windows; iterating again yields the same windows.
    """

    def __init__(
        self,
        stream: object,
        batch_size: int,
        steps: int,
        *,
        batch_first: bool = True,
        drop_last: bool = False,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("steps", steps)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        s = as_tensor_sequence("stream", stream)
        N, B = s.shape[0], int(batch_size)
        L = (N - 1) // B
        if L < 1:
            raise ValueError(
                f"stream must hold at least batch_size + 1 = {B + 1} steps (inputs and their "
                f"next-step targets), got {N}"
            )
        rest = s.shape[1:]
        self.inputs = s[: B * L].reshape(B, L, *rest)  # (B, L[, I])
        self.targets = s[1 : B * L + 1].reshape(B, L, *rest)  # (B, L[, I])
        self.steps = int(steps)
        self.batch_first = bool(batch_first)
        self.drop_last = bool(drop_last)

    @property
    def steps_per_stream(self) -> int:
        """L, the number of input steps in each of the B streams."""
        return self.inputs.shape[1]

    def __len__(self) -> int:
        full, rest = divmod(self.steps_per_stream, self.steps)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[StreamWindow]:
        for w in range(len(self)):
            i = w * self.steps
            x = self.inputs[:, i : i + self.steps]  # (B, k[, I])
            y = self.targets[:, i : i + self.steps]
            if not self.batch_first:
                x, y = x.transpose(0, 1), y.transpose(0, 1)  # (k, B[, I])
            yield StreamWindow(x, y)


def detach_state(state: object) -> object:
    """The same state with every tensor detached from the graph (nested tuples, lists, dicts).

    Call it on the state carried between windows of :class:`chunk_stream`: gradients then
    stop at the window boundary (truncated BPTT) while the values flow on.
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    raise TypeError(
        f"state must be a tensor or a tuple/list/dict of tensors, got {type(state).__name__}"
    )


def concat_windows(windows: list[StreamWindow], *, batch_first: bool = True) -> StreamWindow:
    """Join windows back along time: the inverse of :func:`chunk_stream`."""
    dim = 1 if batch_first else 0
    return StreamWindow(
        torch.cat([w.inputs for w in windows], dim), torch.cat([w.targets for w in windows], dim)
    )
