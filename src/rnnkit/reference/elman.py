r"""Elman (vanilla) RNN: forward pass and backprop through time in NumPy float64.

The lecture's recurrence, one step for t = 1, ..., T:

    z^<t> = W_aa a^<t-1> + W_ax x^<t> + b_a
    a^<t> = g_a(z^<t>)

Lecture -> code (same names and layouts as :class:`rnnkit.cells.ElmanCell`):

    a^<t>   a[t]   with a[0] = a^<0> = h0            (B, H)
    x^<t>   xs[t - 1]                                (B, I)
    W_ax    params["weight_ih"]                      (H, I)
    W_aa    params["weight_hh"]                      (H, H)
    b_a     params["bias_ih"] + params["bias_hh"]    (H,) each: torch keeps two bias vectors
    g_a     ``nonlinearity``: "tanh" or "relu"

Python counts steps from 0 and the lecture from 1, so loop iteration ``t`` reads a[t] = a^<t-1>
and writes a[t + 1] = a^<t>; the comments inside the loops use the lecture's names.

BPTT (the lecture's backprop-through-time slides, written as a recurrence run from t = T down
to 1; what arrives at step T from "step T+1" is ``dstate_T``, zero by default):

    dL/da^<t>   = dL/dy^<t> + (dL/da^<t> arriving from step t+1)
    dL/dz^<t>   = dL/da^<t> * g_a'(z^<t>)
    dL/dW_ax   += dL/dz^<t>^T x^<t>         dL/dW_aa += dL/dz^<t>^T a^<t-1>
    dL/db_a    += sum over the batch of dL/dz^<t>
    dL/dx^<t>   = dL/dz^<t> W_ax            dL/da^<t-1> (to step t-1) = dL/dz^<t> W_aa
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._common import Params, as_array, biases, check_params, parameter_grads

NONLINEARITIES = ("tanh", "relu")


def forward(
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    h0: ArrayLike,
    nonlinearity: str = "tanh",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run the Elman recurrence over a sequence.

    Args:
        params: ``weight_ih`` (H, I), ``weight_hh`` (H, H), optional ``bias_ih``, ``bias_hh`` (H,).
        xs: inputs x^<1..T>, (T, B, I).
        h0: initial state a^<0>, (B, H).
        nonlinearity: g_a, ``"tanh"`` or ``"relu"``.

    Returns:
        ys: the states a^<1..T>, (T, B, H), and the cache that :func:`backward` needs.
    """
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, got {nonlinearity!r}")
    p, I, H = check_params(params, gates=1)
    xs = as_array("xs", xs, (None, None, I), "T, B, I")
    T, B, _ = xs.shape
    a0 = as_array("h0", h0, (B, H), "B, H")
    W_ax, W_aa = p["weight_ih"], p["weight_hh"]
    b_ih, b_hh = biases(p, H)

    a = np.zeros((T + 1, B, H))  # a[t] = a^<t>
    a[0] = a0
    for t in range(T):
        z = xs[t] @ W_ax.T + b_ih + a[t] @ W_aa.T + b_hh  # (B, H): z^<t>
        a[t + 1] = np.tanh(z) if nonlinearity == "tanh" else np.maximum(z, 0.0)
    cache = {"xs": xs, "a": a, "nonlinearity": nonlinearity}
    return a[1:].copy(), cache


def backward(
    params: Mapping[str, ArrayLike],
    cache: dict[str, Any],
    dys: ArrayLike,
    dstate_T: ArrayLike | None = None,
) -> Params:
    """Backprop through time for :func:`forward`.

    Args:
        params: the parameters given to :func:`forward`.
        cache: the cache :func:`forward` returned.
        dys: dL/dy^<t> for every step, (T, B, H).
        dstate_T: dL/da^<T> from beyond the sequence (e.g. a loss on the final state), (B, H);
            zero when None. It adds to ``dys[-1]``, since y^<T> = a^<T>.

    Returns:
        dL/d(every parameter in ``params``) with the parameter's shape, ``"xs"`` (T, B, I)
        and ``"h0"`` (B, H).
    """
    p, _, H = check_params(params, gates=1)
    xs, a = cache["xs"], cache["a"]
    T, B, _ = xs.shape
    dys = as_array("dys", dys, (T, B, H), "T, B, H")
    W_ax, W_aa = p["weight_ih"], p["weight_hh"]

    dW_ax, dW_aa, db_a = np.zeros_like(W_ax), np.zeros_like(W_aa), np.zeros(H)
    dxs = np.zeros_like(xs)
    # dL/da^<T> arriving from beyond the last step
    if dstate_T is None:
        da_next = np.zeros((B, H))
    else:
        da_next = as_array("dstate_T", dstate_T, (B, H), "B, H")
    for t in reversed(range(T)):
        a_prev, a_t = a[t], a[t + 1]  # a^<t-1>, a^<t>
        # dL/da^<t>: from the output y^<t> = a^<t> and from step t+1 through W_aa
        da = dys[t] + da_next
        # dL/dz^<t> through g_a (tanh' = 1 - a^2, relu' = [z > 0] = [a > 0])
        if cache["nonlinearity"] == "tanh":
            dz = da * (1.0 - a_t**2)
        else:
            dz = da * (a_t > 0.0)
        # dL/dW_ax, dL/dW_aa, dL/db_a: each step adds its share, the weights being shared
        dW_ax += dz.T @ xs[t]
        dW_aa += dz.T @ a_prev
        db_a += dz.sum(axis=0)
        # dL/dx^<t> through W_ax
        dxs[t] = dz @ W_ax
        # dL/da^<t-1> through W_aa, handed to step t-1
        da_next = dz @ W_aa

    grads = parameter_grads(p, weight_ih=dW_ax, weight_hh=dW_aa, bias_ih=db_a, bias_hh=db_a.copy())
    grads["xs"] = dxs
    grads["h0"] = da_next
    return grads
