r"""GRU in both published forms: forward pass and backprop through time in NumPy float64.

The lecture's GRU, one step for t = 1, ..., T (* is the element-wise product; the GRU has no
separate memory cell, c^<t> = a^<t>):

    R       = sigma(W_ra a^<t-1> + W_rx x^<t> + b_r)                    relevance gate
    F       = sigma(W_fa a^<t-1> + W_fx x^<t> + b_f)                    forget gate, F = 1 - U
    c~^<t>  = tanh(W_cx x^<t> + b_cx + R * (W_ca a^<t-1> + b_ca))       reset_after=True
    c~^<t>  = tanh(W_cx x^<t> + b_cx + W_ca (R * a^<t-1>) + b_ca)       reset_after=False
    a^<t>   = U * c~^<t> + F * a^<t-1>                                  update gate U = 1 - F

``reset_after=False`` is the lecture's (and Cho et al.'s, and Keras's ``reset_after=False``)
form; ``reset_after=True`` is torch's and cuDNN's. The lecture writes one bias b_c; torch keeps
b_cx and b_ca apart, and in the reset_after=True form they are not interchangeable.

Lecture -> code (same names and layouts as :class:`rnnkit.cells.GRUCell`, gate order
**r, z, n** = R, F, c~):

    a^<t>                a[t]; a[0] = h0                             (B, H)
    x^<t>                xs[t - 1]                                   (B, I)
    R                    torch's r
    F = 1 - U            torch's z (it weighs the *old* state; the lecture's U weighs the new)
    c~^<t>               torch's n
    [W_rx; W_fx; W_cx]   params["weight_ih"]                         (3H, I)
    [W_ra; W_fa; W_ca]   params["weight_hh"]                         (3H, H)
    b_r, b_f             params["bias_ih"][:2H] + params["bias_hh"][:2H]   (2H,) each
    b_cx, b_ca           params["bias_ih"][2H:], params["bias_hh"][2H:]    (H,) each

Python counts steps from 0 and the lecture from 1, so loop iteration ``t`` reads a[t] = a^<t-1>
and writes a[t + 1] = a^<t>.

BPTT, from t = T down to 1 (z_r, z_f, z_c are the pre-activations of R, F and c~):

    dL/da^<t>   = dL/dy^<t> + (from step t+1)
    dL/dz_c     = dL/da^<t> * U * (1 - c~^2)
    dL/dz_f     = dL/da^<t> * (a^<t-1> - c~^<t>) * F (1 - F)
    dL/dz_r     = dL/dz_c * (W_ca a^<t-1> + b_ca) * R (1 - R)              reset_after=True
                = ((dL/dz_c W_ca) * a^<t-1>) * R (1 - R)                    reset_after=False
    dL/da^<t-1> = dL/da^<t> * F  (the direct path)  + the paths through W_ra, W_fa, W_ca
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._common import Params, as_array, biases, check_params, parameter_grads, sigmoid


def forward(
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    h0: ArrayLike,
    reset_after: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run the GRU over a sequence.

    Args:
        params: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H), optional ``bias_ih``, ``bias_hh``
            (3H,).
        xs: inputs x^<1..T>, (T, B, I).
        h0: initial state a^<0>, (B, H).
        reset_after: where the relevance gate R acts (see the module docstring).

    Returns:
        ys: the states a^<1..T>, (T, B, H), and the cache that :func:`backward` needs.
    """
    if not isinstance(reset_after, bool):
        raise TypeError(f"reset_after must be a bool, got {type(reset_after).__name__}")
    p, I, H = check_params(params, gates=3)
    xs = as_array("xs", xs, (None, None, I), "T, B, I")
    T, B, _ = xs.shape
    a0 = as_array("h0", h0, (B, H), "B, H")
    W_x, W_a = p["weight_ih"], p["weight_hh"]
    b_ih, b_hh = biases(p, 3 * H)

    a = np.zeros((T + 1, B, H))  # a[t] = a^<t>
    a[0] = a0
    R, F, c_tilde = np.zeros((T, B, H)), np.zeros((T, B, H)), np.zeros((T, B, H))
    # W_ca a^<t-1> + b_ca (reset_after=True) or R * a^<t-1> (reset_after=False)
    reset_in = np.zeros((T, B, H))
    for t in range(T):
        zx_r, zx_f, zx_c = np.split(xs[t] @ W_x.T + b_ih, 3, axis=1)  # each (B, H)
        za_r, za_f = np.split(a[t] @ W_a[: 2 * H].T + b_hh[: 2 * H], 2, axis=1)  # each (B, H)
        R[t], F[t] = sigmoid(zx_r + za_r), sigmoid(zx_f + za_f)
        if reset_after:
            reset_in[t] = a[t] @ W_a[2 * H :].T + b_hh[2 * H :]  # (B, H)
            c_tilde[t] = np.tanh(zx_c + R[t] * reset_in[t])
        else:
            reset_in[t] = R[t] * a[t]  # (B, H)
            c_tilde[t] = np.tanh(zx_c + reset_in[t] @ W_a[2 * H :].T + b_hh[2 * H :])
        a[t + 1] = (1.0 - F[t]) * c_tilde[t] + F[t] * a[t]
    cache = {"xs": xs, "a": a, "R": R, "F": F, "c_tilde": c_tilde, "reset_in": reset_in}
    cache["reset_after"] = reset_after
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
        dstate_T: dL/da^<T> from beyond the sequence, (B, H); zero when None.

    Returns:
        dL/d(every parameter in ``params``) with the parameter's shape, ``"xs"`` (T, B, I)
        and ``"h0"`` (B, H).
    """
    p, _, H = check_params(params, gates=3)
    xs, a, R, F, c_tilde = (cache[k] for k in ("xs", "a", "R", "F", "c_tilde"))
    reset_in, reset_after = cache["reset_in"], cache["reset_after"]
    T, B, _ = xs.shape
    dys = as_array("dys", dys, (T, B, H), "T, B, H")
    W_x, W_a = p["weight_ih"], p["weight_hh"]
    W_ca = W_a[2 * H :]  # (H, H)

    dW_x, dW_a = np.zeros_like(W_x), np.zeros_like(W_a)
    db_ih, db_hh = np.zeros(3 * H), np.zeros(3 * H)
    dxs = np.zeros_like(xs)
    # dL/da^<T> arriving from beyond the last step
    if dstate_T is None:
        da_next = np.zeros((B, H))
    else:
        da_next = as_array("dstate_T", dstate_T, (B, H), "B, H")
    for t in reversed(range(T)):
        a_prev = a[t]  # a^<t-1>
        # dL/da^<t>: from the output y^<t> = a^<t> and from step t+1
        da = dys[t] + da_next
        # a^<t> = (1 - F) * c~^<t> + F * a^<t-1>: dL/dc~^<t> and dL/dF
        dc_tilde = da * (1.0 - F[t])
        dF = da * (a_prev - c_tilde[t])
        # dL/da^<t-1> along the direct path, through the forget gate
        da_prev = da * F[t]
        # dL/dz_c, dL/dz_f through tanh and sigma
        dz_c = dc_tilde * (1.0 - c_tilde[t] ** 2)
        dz_f = dF * F[t] * (1.0 - F[t])
        if reset_after:
            # c~ = tanh(z_x + R * (W_ca a^<t-1> + b_ca)): dL/dR, and dL/d(W_ca a^<t-1> + b_ca)
            dz_r = dz_c * reset_in[t] * R[t] * (1.0 - R[t])
            dz_ca = dz_c * R[t]  # (B, H)
            dW_a[2 * H :] += dz_ca.T @ a_prev
            db_hh[2 * H :] += dz_ca.sum(axis=0)
            # dL/da^<t-1> through W_ca
            da_prev += dz_ca @ W_ca
        else:
            # c~ = tanh(z_x + W_ca (R * a^<t-1>) + b_ca): dL/d(R * a^<t-1>) through W_ca
            dW_a[2 * H :] += dz_c.T @ reset_in[t]
            db_hh[2 * H :] += dz_c.sum(axis=0)
            dreset_in = dz_c @ W_ca  # (B, H)
            dz_r = dreset_in * a_prev * R[t] * (1.0 - R[t])
            # dL/da^<t-1> through the relevance gate's product
            da_prev += dreset_in * R[t]
        dz_rf = np.concatenate([dz_r, dz_f], axis=1)  # (B, 2H), packed r, z
        # dL/dW_ra, dL/dW_fa and their biases; dL/da^<t-1> through W_ra, W_fa
        dW_a[: 2 * H] += dz_rf.T @ a_prev
        db_hh[: 2 * H] += dz_rf.sum(axis=0)
        da_prev += dz_rf @ W_a[: 2 * H]
        # dL/dW_x, dL/db_x: every gate sees x^<t> the same way
        dz_x = np.concatenate([dz_r, dz_f, dz_c], axis=1)  # (B, 3H), packed r, z, n
        dW_x += dz_x.T @ xs[t]
        db_ih += dz_x.sum(axis=0)
        # dL/dx^<t> through W_x
        dxs[t] = dz_x @ W_x
        # dL/da^<t-1>, handed to step t-1
        da_next = da_prev

    grads = parameter_grads(p, weight_ih=dW_x, weight_hh=dW_a, bias_ih=db_ih, bias_hh=db_hh)
    grads["xs"] = dxs
    grads["h0"] = da_next
    return grads
