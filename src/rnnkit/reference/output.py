r"""The lecture's output layer y^<t> = g_y(W_ya a^<t> + b_y), its affine part, in NumPy float64.

:func:`forward` returns the logits W_ya a^<t> + b_y for every step; g_y (sigmoid or softmax)
is applied by the loss in :mod:`rnnkit.reference.losses`, which then hands back dl/dlogits.
With :func:`backward` this closes the lecture's chain

    dl/da^<t> = dl/dy-hat^<t> * dy-hat^<t>/da^<t> = (dl/dlogits^<t>) W_ya

whose result is the ``dys`` that a cell's ``backward`` takes.

Lecture -> code (the layout of ``torch.nn.Linear``): W_ya = ``params["weight"]`` (K, H);
b_y = ``params["bias"]`` (K,); K output features (V for a vocabulary).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._common import Params, as_array


def _check(params: Mapping[str, ArrayLike]) -> Params:
    if set(params) != {"weight", "bias"}:
        raise ValueError(f"params must hold exactly 'weight' and 'bias', got {sorted(params)}")
    W_ya = as_array("weight", params["weight"], (None, None), "K, H")
    b_y = as_array("bias", params["bias"], (W_ya.shape[0],), "K")
    return {"weight": W_ya, "bias": b_y}


def forward(params: Mapping[str, ArrayLike], a: ArrayLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Logits W_ya a^<t> + b_y for every step.

    Args:
        params: ``weight`` (K, H) and ``bias`` (K,).
        a: the states a^<1..T>, (T, B, H), e.g. a cell's ``ys``.

    Returns:
        logits (T, B, K) and the cache that :func:`backward` needs.
    """
    p = _check(params)
    a = as_array("a", a, (None, None, p["weight"].shape[1]), "T, B, H")
    logits = a @ p["weight"].T + p["bias"]  # (T, B, K)
    return logits, {"a": a}


def backward(params: Mapping[str, ArrayLike], cache: dict[str, Any], dlogits: ArrayLike) -> Params:
    """Gradients of the output layer from dl/dlogits, (T, B, K).

    Returns:
        ``"weight"`` (K, H), ``"bias"`` (K,), and ``"a"`` (T, B, H): dl/da^<t> from the
        outputs, the ``dys`` of a cell's backward.
    """
    p = _check(params)
    a = cache["a"]
    T, B, _ = a.shape
    dlogits = as_array("dlogits", dlogits, (T, B, p["weight"].shape[0]), "T, B, K")
    return {
        # dl/dW_ya and dl/db_y, summed over every step and batch row (the layer is shared)
        "weight": np.einsum("tbk,tbh->kh", dlogits, a),
        "bias": dlogits.sum(axis=(0, 1)),
        # dl/da^<t> through W_ya
        "a": dlogits @ p["weight"],
    }
