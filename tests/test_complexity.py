"""Acceptance 8: the backward pass is O(T). A time loop that indexes a tensor requiring grad
(x[t]) makes backward O(T^2): 4x the steps then cost 16x the time or more. The sizes are
chosen so that the quadratic term shows: with x[t] in the loop this ratio measured 32x, with
unbind 4.5-5.5x (on a loaded 2-core machine)."""

from __future__ import annotations

import time

import pytest
import torch

import rnnkit


def _train_step_seconds(layer, x):
    start = time.perf_counter()
    out, _ = layer(x)
    out.sum().backward()
    return time.perf_counter() - start


@pytest.mark.parametrize(
    "make",
    [lambda: rnnkit.GRU(8, 64), lambda: rnnkit.Recurrent(rnnkit.MUT2Cell, 8, 64)],
    ids=["gru", "mut2"],
)
def test_training_step_scales_linearly_in_T(make):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: less exposed to other processes on the machine
    try:
        layer = make()
        short_x = torch.randn(100, 128, 8, requires_grad=True)  # (T, B, I)
        long_x = torch.randn(400, 128, 8, requires_grad=True)
        _train_step_seconds(layer, short_x)  # warm-up
        short, long = float("inf"), float("inf")
        for _ in range(4):  # interleaved, best of each: noise only ever adds time
            short = min(short, _train_step_seconds(layer, short_x))
            long = min(long, _train_step_seconds(layer, long_x))
    finally:
        torch.set_num_threads(threads)
    assert long / short < 8.0, f"T=400 took {long / short:.1f}x the time of T=100"
