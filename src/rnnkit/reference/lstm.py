r"""LSTM, with or without peepholes: forward pass and backprop through time in NumPy float64.

The lecture's LSTM, one step for t = 1, ..., T (* is the element-wise product):

    U       = sigma(W_ua a^<t-1> + W_ux x^<t> + b_u [+ w_uc * c^<t-1>])   update gate
    F       = sigma(W_fa a^<t-1> + W_fx x^<t> + b_f [+ w_fc * c^<t-1>])   forget gate
    c~^<t>  = tanh (W_ca a^<t-1> + W_cx x^<t> + b_c)                        candidate
    c^<t>   = U * c~^<t> + F * c^<t-1>
    O       = sigma(W_oa a^<t-1> + W_ox x^<t> + b_o [+ w_oc * c^<t>])     output gate
    a^<t>   = O * tanh(c^<t>)

The bracketed peephole terms (Gers et al. 2002) are present when ``params`` holds
``weight_ci``, ``weight_cf`` and ``weight_co``: the update and forget gates look at c^<t-1>,
the output gate at the new c^<t>. Like :class:`rnnkit.cells.LSTMCell`, the state is squashed
before the output gate (the lecture's slide writes a^<t> = O * c^<t>).

Lecture -> code (same names and layouts as :class:`rnnkit.cells.LSTMCell`, gate order
**i, f, g, o** = U, F, c~, O):

    a^<t>, c^<t>         a[t], c[t]; a[0] = h0, c[0] = c0              (B, H)
    x^<t>                xs[t - 1]                                      (B, I)
    [W_ux; W_fx; W_cx; W_ox]   params["weight_ih"]                      (4H, I)
    [W_ua; W_fa; W_ca; W_oa]   params["weight_hh"]                      (4H, H)
    [b_u; b_f; b_c; b_o]       params["bias_ih"] + params["bias_hh"]    (4H,) each
    w_uc, w_fc, w_oc     params["weight_ci"], ["weight_cf"], ["weight_co"]  (H,) each

Python counts steps from 0 and the lecture from 1, so loop iteration ``t`` reads a[t], c[t]
(a^<t-1>, c^<t-1>) and writes a[t + 1], c[t + 1] (a^<t>, c^<t>).

BPTT, from t = T down to 1 (z_u, z_f, z_c, z_o are the four pre-activations):

    dL/da^<t>  = dL/dy^<t> + (from step t+1 through W_ua, W_fa, W_ca, W_oa)
    dL/dz_o    = dL/da^<t> * tanh(c^<t>) * O (1 - O)
    dL/dc^<t>  = (from step t+1: dL/dc^<t+1> * F^<t+1> and the peepholes)
                 + dL/da^<t> * O * (1 - tanh^2(c^<t>)) [+ dL/dz_o * w_oc]
    dL/dz_u    = dL/dc^<t> * c~^<t> * U (1 - U)
    dL/dz_f    = dL/dc^<t> * c^<t-1> * F (1 - F)
    dL/dz_c    = dL/dc^<t> * U * (1 - c~^<t>^2)
    dL/dc^<t-1> (to step t-1) = dL/dc^<t> * F [+ dL/dz_u * w_uc + dL/dz_f * w_fc]

The path dL/dc^<t-1> = dL/dc^<t> * F has no weight matrix and no squashing: this is the
"skip connection" through time that keeps the LSTM's gradient from vanishing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._common import Params, as_array, biases, check_params, parameter_grads, sigmoid

PEEPHOLES = ("weight_ci", "weight_cf", "weight_co")


def forward(
    params: Mapping[str, ArrayLike],
    xs: ArrayLike,
    state0: tuple[ArrayLike, ArrayLike],
) -> tuple[np.ndarray, dict[str, Any]]:
    """Run the LSTM over a sequence.

    Args:
        params: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), optional ``bias_ih``, ``bias_hh``
            (4H,), optional peepholes ``weight_ci``, ``weight_cf``, ``weight_co`` (H,).
        xs: inputs x^<1..T>, (T, B, I).
        state0: (h0, c0) = (a^<0>, c^<0>), each (B, H).

    Returns:
        ys: the outputs a^<1..T>, (T, B, H), and the cache that :func:`backward` needs
        (``cache["c"][-1]`` is the final memory cell c^<T>).
    """
    p, I, H = check_params(params, gates=4, extra=PEEPHOLES)
    xs = as_array("xs", xs, (None, None, I), "T, B, I")
    T, B, _ = xs.shape
    if not isinstance(state0, tuple | list) or len(state0) != 2:
        raise ValueError(f"state0 must be a pair (h0, c0), got {type(state0).__name__}")
    a0 = as_array("h0", state0[0], (B, H), "B, H")
    c0 = as_array("c0", state0[1], (B, H), "B, H")
    peephole = "weight_ci" in p
    b_ih, b_hh = biases(p, 4 * H)

    a, c = np.zeros((T + 1, B, H)), np.zeros((T + 1, B, H))  # a[t] = a^<t>, c[t] = c^<t>
    a[0], c[0] = a0, c0
    U, F, O, c_tilde, tanh_c = (np.zeros((T, B, H)) for _ in range(5))
    for t in range(T):
        z = xs[t] @ p["weight_ih"].T + b_ih + a[t] @ p["weight_hh"].T + b_hh  # (B, 4H)
        z_u, z_f, z_c, z_o = np.split(z, 4, axis=1)  # each (B, H), packed i, f, g, o
        if peephole:
            z_u = z_u + p["weight_ci"] * c[t]
            z_f = z_f + p["weight_cf"] * c[t]
        U[t], F[t], c_tilde[t] = sigmoid(z_u), sigmoid(z_f), np.tanh(z_c)
        c[t + 1] = U[t] * c_tilde[t] + F[t] * c[t]
        if peephole:
            z_o = z_o + p["weight_co"] * c[t + 1]
        O[t], tanh_c[t] = sigmoid(z_o), np.tanh(c[t + 1])
        a[t + 1] = O[t] * tanh_c[t]
    cache = {"xs": xs, "a": a, "c": c, "U": U, "F": F, "O": O, "c_tilde": c_tilde}
    cache["tanh_c"] = tanh_c
    return a[1:].copy(), cache


def backward(
    params: Mapping[str, ArrayLike],
    cache: dict[str, Any],
    dys: ArrayLike,
    dstate_T: tuple[ArrayLike, ArrayLike] | None = None,
) -> Params:
    """Backprop through time for :func:`forward`.

    Args:
        params: the parameters given to :func:`forward`.
        cache: the cache :func:`forward` returned.
        dys: dL/dy^<t> = dL/da^<t> from the outputs, (T, B, H).
        dstate_T: (dL/da^<T>, dL/dc^<T>) from beyond the sequence, each (B, H); zero when None.

    Returns:
        dL/d(every parameter in ``params``) with the parameter's shape, ``"xs"`` (T, B, I),
        ``"h0"`` and ``"c0"`` (B, H).
    """
    p, _, H = check_params(params, gates=4, extra=PEEPHOLES)
    xs, a, c = cache["xs"], cache["a"], cache["c"]
    U, F, O, c_tilde, tanh_c = (cache[k] for k in ("U", "F", "O", "c_tilde", "tanh_c"))
    T, B, _ = xs.shape
    dys = as_array("dys", dys, (T, B, H), "T, B, H")
    peephole = "weight_ci" in p
    W_x, W_a = p["weight_ih"], p["weight_hh"]

    dW_x, dW_a, db = np.zeros_like(W_x), np.zeros_like(W_a), np.zeros(4 * H)
    dw_uc, dw_fc, dw_oc = np.zeros(H), np.zeros(H), np.zeros(H)
    dxs = np.zeros_like(xs)
    # dL/da^<T> and dL/dc^<T> arriving from beyond the last step
    if dstate_T is None:
        da_next, dc_next = np.zeros((B, H)), np.zeros((B, H))
    else:
        da_next = as_array("dstate_T[0]", dstate_T[0], (B, H), "B, H")
        dc_next = as_array("dstate_T[1]", dstate_T[1], (B, H), "B, H")
    for t in reversed(range(T)):
        c_prev, c_t = c[t], c[t + 1]  # c^<t-1>, c^<t>
        # dL/da^<t>: from the output y^<t> = a^<t> and from step t+1 through W_a
        da = dys[t] + da_next
        # a^<t> = O * tanh(c^<t>): dL/dz_o through the output gate's sigmoid
        dz_o = da * tanh_c[t] * O[t] * (1.0 - O[t])
        # dL/dc^<t>: from step t+1 (through F^<t+1>), and from a^<t> through tanh
        dc = dc_next + da * O[t] * (1.0 - tanh_c[t] ** 2)
        if peephole:
            # O looks at c^<t> through w_oc
            dc += dz_o * p["weight_co"]
            dw_oc += (dz_o * c_t).sum(axis=0)
        # c^<t> = U * c~^<t> + F * c^<t-1>: dL/dz through each gate's nonlinearity
        dz_u = dc * c_tilde[t] * U[t] * (1.0 - U[t])
        dz_f = dc * c_prev * F[t] * (1.0 - F[t])
        dz_c = dc * U[t] * (1.0 - c_tilde[t] ** 2)
        # dL/dc^<t-1> through the forget gate: the additive path
        dc_next = dc * F[t]
        if peephole:
            # U and F look at c^<t-1> through w_uc, w_fc
            dc_next += dz_u * p["weight_ci"] + dz_f * p["weight_cf"]
            dw_uc += (dz_u * c_prev).sum(axis=0)
            dw_fc += (dz_f * c_prev).sum(axis=0)
        dz = np.concatenate([dz_u, dz_f, dz_c, dz_o], axis=1)  # (B, 4H), packed i, f, g, o
        # dL/dW_x, dL/dW_a, dL/db: each step adds its share, the weights being shared
        dW_x += dz.T @ xs[t]
        dW_a += dz.T @ a[t]
        db += dz.sum(axis=0)
        # dL/dx^<t> through W_x
        dxs[t] = dz @ W_x
        # dL/da^<t-1> through W_a, handed to step t-1
        da_next = dz @ W_a

    grads = parameter_grads(
        p,
        weight_ih=dW_x,
        weight_hh=dW_a,
        bias_ih=db,
        bias_hh=db.copy(),
        weight_ci=dw_uc,
        weight_cf=dw_fc,
        weight_co=dw_oc,
    )
    grads["xs"] = dxs
    grads["h0"] = da_next
    grads["c0"] = dc_next
    return grads
