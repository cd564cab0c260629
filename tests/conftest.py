"""Shared test set-up: fixed seeds, few threads, float64 helpers."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _fixed_seeds():
    """Every test starts from the same random state."""
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - code under test may use the legacy global generator
    try:
        import torch
    except ImportError:  # the torch-free tests still run
        yield
        return
    torch.manual_seed(0)
    yield
