"""Streaming for causal convolutions: one fixed-size buffer per convolution.

A causal convolution with kernel k and dilation d reads the P = (k-1)·d steps before each
output step. Running a sequence in chunks therefore needs, per convolution, only the last P
steps of that convolution's input: the *buffer*, (B, C_in, P). A chunk of n new steps is
convolved over ``[buffer, chunk]`` (B, C_in, P + n) without padding, which gives exactly the n
outputs the full sequence would give there; the new buffer is the last P steps of that window.
Starting from a zero buffer is the same as the zero left padding of a full-sequence run, so the
full run and the streamed run are one code path.

The buffer never grows: the cost of a step does not depend on how many steps came before (the
``pytorch-tcn`` package streams the same way but for a batch of one only; here every sequence of
the batch has its own buffer, and with ``lengths`` each keeps the window ending at its own last
valid step).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

TCNState = tuple[Tensor, ...]
"""One buffer per causal convolution, in the order the convolutions run: (B, C_in, P) each."""


def causal_window(x: Tensor, buffer: Tensor | None, context: int) -> Tensor:
    """The steps a causal convolution reads: ``[buffer, x]`` (B, C, P + n) for ``x`` (B, C, n);
    zeros stand in for a missing buffer (the start of a sequence)."""
    if buffer is None:
        return F.pad(x, (context, 0))
    return torch.cat([buffer, x], dim=2)


def last_window(window: Tensor, context: int, lengths: Tensor | None = None) -> Tensor:
    """The buffer to carry on: the last P steps of ``window`` (B, C, P + n), or, with
    ``lengths`` (B,), for sequence b the P steps that end at its last valid step."""
    if lengths is None:
        return window[:, :, window.shape[2] - context :]
    B, C = window.shape[0], window.shape[1]
    # window step j holds chunk step j - P, so the P steps ending at chunk step n - 1 are [n, n + P)
    index = lengths.view(B, 1, 1) + torch.arange(context, device=window.device)  # (B, 1, P)
    return window.gather(2, index.expand(B, C, context))


def check_state(state: object, shapes: list[tuple[int, int]], batch_size: int) -> TCNState:
    """Validate a streaming state against per-convolution (C_in, P) ``shapes``."""
    if not isinstance(state, (tuple, list)) or not all(isinstance(s, Tensor) for s in state):
        raise TypeError(
            f"state must be the tuple of buffers a previous call returned, "
            f"got {type(state).__name__}"
        )
    if len(state) != len(shapes):
        raise ValueError(
            f"state must hold {len(shapes)} buffers (one per convolution), got {len(state)}"
        )
    for k, (s, (c, p)) in enumerate(zip(state, shapes)):
        if tuple(s.shape) != (batch_size, c, p):
            raise ValueError(
                f"state[{k}] must have shape {(batch_size, c, p)} (B, C_in, (k-1)·d), "
                f"got {tuple(s.shape)}"
            )
    return tuple(state)
