"""Helpers shared by the reference cells: input validation and the logistic sigmoid.

Every array that enters the reference goes through :func:`as_array`, which returns a float64
array (the same object when it already is one, so a gradient checker can perturb it in place)
and raises ``ValueError`` with the expected shape when it does not fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

Params = dict[str, np.ndarray]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function 1 / (1 + e^-x), computed without overflow for any x."""
    return np.exp(-np.logaddexp(0.0, -x))


def as_array(name: str, value: ArrayLike, shape: Sequence[int | None], symbols: str) -> np.ndarray:
    """``value`` as a float64 array of ``shape`` (None: any size); ``ValueError`` otherwise.

    ``symbols`` names the axes for the message, e.g. ``"T, B, I"``.
    """
    array = np.asarray(value, dtype=np.float64)
    fits = array.ndim == len(shape) and all(n is None or n == m for n, m in zip(shape, array.shape))
    if not fits:
        axes = [s if n is None else f"{s}={n}" for s, n in zip(symbols.split(", "), shape)]
        raise ValueError(f"{name} must have shape ({', '.join(axes)}), got {tuple(array.shape)}")
    return array


def check_params(
    params: Mapping[str, ArrayLike], gates: int, extra: tuple[str, ...] = ()
) -> tuple[Params, int, int]:
    """Validate a cell's parameter dict; return it as float64 arrays, with I and H.

    Every cell has ``weight_ih`` (G*H, I) and ``weight_hh`` (G*H, H) for G = ``gates``;
    ``bias_ih`` and ``bias_hh`` (G*H,) come together or not at all (torch's ``bias=False``);
    the ``extra`` names (the LSTM peepholes, each (H,)) also come all together or not at all.
    """
    allowed = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", *extra)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unexpected parameter(s) {unknown}; expected names among {allowed}")
    for name in ("weight_ih", "weight_hh"):
        if name not in params:
            raise ValueError(f"params must hold {name!r}, got keys {sorted(params)}")
    W_hh = np.asarray(params["weight_hh"], dtype=np.float64)
    if W_hh.ndim != 2 or W_hh.shape[0] != gates * W_hh.shape[1]:
        raise ValueError(f"weight_hh must have shape ({gates}H, H), got {tuple(W_hh.shape)}")
    H = W_hh.shape[1]
    W_ih = np.asarray(params["weight_ih"], dtype=np.float64)
    if W_ih.ndim != 2 or W_ih.shape[0] != gates * H:
        raise ValueError(
            f"weight_ih must have shape ({gates}H={gates * H}, I), got {tuple(W_ih.shape)}"
        )
    checked = {"weight_ih": W_ih, "weight_hh": W_hh}
    for group, size in ((("bias_ih", "bias_hh"), gates * H), (extra, H)):
        present = [name for name in group if name in params]
        if present and len(present) != len(group):
            raise ValueError(f"parameters {group} come together or not at all, got only {present}")
        for name in present:
            checked[name] = as_array(name, params[name], (size,), "G*H" if size != H else "H")
    return checked, W_ih.shape[1], H


def biases(params: Params, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(bias_ih, bias_hh), zeros of length ``size`` for a cell without biases."""
    if "bias_ih" in params:
        return params["bias_ih"], params["bias_hh"]
    return np.zeros(size), np.zeros(size)


def parameter_grads(params: Params, **grads: np.ndarray) -> Params:
    """The gradients of the parameters ``params`` holds (a bias-free cell has no bias grads)."""
    return {name: grad for name, grad in grads.items() if name in params}
