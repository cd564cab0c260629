r"""Central finite differences, to check a hand-written backward pass.

For a scalar function f and one entry theta_k of an array,

    df/dtheta_k ~ (f(theta + eps e_k) - f(theta - eps e_k)) / (2 eps),

with an error of order eps^2 from the Taylor remainder plus about 1e-16 |f| / eps from
rounding; in float64 with eps = 1e-6 both are far below the 1e-6 relative error that tells a
correct gradient from a wrong one.

The function takes no arguments and reads the arrays it depends on; the checker perturbs those
arrays **in place** (and restores them), so pass the very arrays the function reads:

    arrays = {**params, "xs": xs, "h0": h0}
    def f():
        ys, _ = elman.forward(params, xs, h0)
        return float(np.sum(w * ys))
    errors = check_gradients(f, arrays, grads)   # {"weight_ih": 3e-10, ...}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np


def numerical_gradient(f: Callable[[], float], array: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of the scalar ``f()`` with respect to every entry of ``array``.

    ``array`` must be a writeable float64 ndarray that ``f`` reads; each entry is moved by
    +-``eps`` in place and put back. Costs 2 * array.size calls of ``f``.
    """
    if not isinstance(array, np.ndarray) or array.dtype != np.float64:
        raise TypeError(f"array must be a float64 numpy array, got {type(array).__name__}")
    if not array.flags.writeable:
        raise ValueError("array must be writeable: it is perturbed in place")
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        saved = array[index]
        array[index] = saved + eps
        f_plus = f()
        array[index] = saved - eps
        f_minus = f()
        array[index] = saved
        grad[index] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def relative_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |analytic - numeric| / max(max |analytic|, max |numeric|); 0.0 when both are zero.

    Measured against the array's largest entry rather than entry by entry, so that entries
    that are zero, or nearly, do not turn rounding noise into a large ratio.
    """
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    if analytic.shape != numeric.shape:
        raise ValueError(
            f"shapes differ: analytic {tuple(analytic.shape)}, numeric {tuple(numeric.shape)}"
        )
    if analytic.size == 0:
        return 0.0
    scale = max(np.abs(analytic).max(), np.abs(numeric).max())
    if scale == 0.0:
        return 0.0
    return float(np.abs(analytic - numeric).max() / scale)


def check_gradients(
    f: Callable[[], float],
    arrays: Mapping[str, np.ndarray],
    grads: Mapping[str, np.ndarray],
    eps: float = 1e-6,
) -> dict[str, float]:
    """Compare ``grads`` with central differences of ``f()`` for every named array.

    Args:
        f: the scalar loss, reading the arrays in ``arrays``.
        arrays: name -> the float64 array ``f`` reads (perturbed in place, then restored).
        grads: name -> the analytic gradient to check, one for every name in ``arrays``.
        eps: the finite-difference step.

    Returns:
        name -> :func:`relative_error` of the analytic gradient.
    """
    missing = sorted(set(arrays) - set(grads))
    if missing:
        raise ValueError(f"grads has no entry for {missing}")
    return {
        name: relative_error(grads[name], numerical_gradient(f, array, eps))
        for name, array in arrays.items()
    }
