"""Acceptance 8: the backward pass is O(T). A time loop that indexes a tensor requiring grad
(x[t]) makes backward O(T^2): 4x the steps would then cost 16x the time or more. The sizes
are chosen so that the quadratic term shows: with x[t] in the loop this ratio measured 14x,
with unbind 4.5x."""

from __future__ import annotations

import time

import pytest
import torch

import rnnkit


def _train_step_seconds(layer, T, repeats=3):
    x = torch.randn(T, 64, 8, requires_grad=True)  # (T, B, I)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out, _ = layer(x)
        out.sum().backward()
        best = min(best, time.perf_counter() - start)
    return best


@pytest.mark.parametrize(
    "make", [lambda: rnnkit.GRU(8, 64), lambda: rnnkit.Recurrent(rnnkit.MUT2Cell, 8, 64)]
)
def test_training_step_scales_linearly_in_T(make):
    layer = make()
    _train_step_seconds(layer, 50, repeats=1)  # warm-up
    short = _train_step_seconds(layer, 100)
    long = _train_step_seconds(layer, 400)
    assert long / short < 8.0, f"T=400 took {long / short:.1f}x the time of T=100"
