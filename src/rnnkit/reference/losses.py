r"""The lecture's sequence losses, with their gradients, in NumPy float64.

Both losses take **logits**, the output layer's pre-activations W_ya a^<t> + b_y (see
:mod:`rnnkit.reference.output`), and apply g_y themselves: y-hat^<t> = sigmoid(logits) for the
binary cross-entropy, softmax(logits) for the categorical one. Folding g_y into the loss keeps
both finite for saturated outputs (no log(0)) and gives the gradient its simple form
dl/dlogits = y-hat - y.

Reduction, the same for both: the lecture's l = sum_t l^<t>, summed over time, then averaged
over the batch (so the loss does not grow with B):

    l = (1/B) sum_b sum_t l^<t>_b

Each function returns ``(loss, dlogits)`` with ``dlogits`` the gradient of that ``loss``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ._common import as_array, sigmoid


def binary_cross_entropy_with_logits(
    logits: ArrayLike, targets: ArrayLike
) -> tuple[float, np.ndarray]:
    """The lecture's binary cross-entropy per step, summed over time and over K labels.

        l^<t> = -y^<t> log y-hat^<t> - (1 - y^<t>) log(1 - y-hat^<t>),  y-hat = sigmoid(logits)

    computed as softplus(logits) - y * logits, which never takes the log of 0.

    Args:
        logits: (T, B, K), K independent binary outputs per step (K = 1 for one label).
        targets: y^<t>, (T, B, K), in [0, 1] (0/1 labels or soft targets).

    Returns:
        The loss (summed over T and K, averaged over B) and dloss/dlogits, (T, B, K).
    """
    z = as_array("logits", logits, (None, None, None), "T, B, K")
    y = as_array("targets", targets, z.shape, "T, B, K")
    if np.any((y < 0.0) | (y > 1.0)):
        raise ValueError(f"targets must lie in [0, 1], got values in [{y.min()}, {y.max()}]")
    B = z.shape[1]
    # log(1 + e^z) - y z  ==  -y log sigmoid(z) - (1 - y) log(1 - sigmoid(z))
    loss = np.sum(np.logaddexp(0.0, z) - y * z) / B
    dlogits = (sigmoid(z) - y) / B  # (T, B, K)
    return float(loss), dlogits


def softmax_cross_entropy(logits: ArrayLike, targets: ArrayLike) -> tuple[float, np.ndarray]:
    """The multi-class cross-entropy per step, summed over time.

        l^<t> = -log y-hat^<t>[y^<t>],  y-hat^<t> = softmax(logits^<t>)

    Args:
        logits: (T, B, V), one score per class.
        targets: y^<t>, (T, B), integer class indices in [0, V).

    Returns:
        The loss (summed over T, averaged over B) and dloss/dlogits, (T, B, V).
    """
    z = as_array("logits", logits, (None, None, None), "T, B, V")
    T, B, V = z.shape
    y = np.asarray(targets)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"targets must hold integer class indices, got dtype {y.dtype}")
    if y.shape != (T, B):
        raise ValueError(f"targets must have shape (T={T}, B={B}), got {tuple(y.shape)}")
    if y.size and (y.min() < 0 or y.max() >= V):
        raise ValueError(f"targets must lie in [0, V={V}), got values in [{y.min()}, {y.max()}]")
    # log softmax, shifted by the max so that exp never overflows
    shifted = z - z.max(axis=2, keepdims=True)  # (T, B, V)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=2, keepdims=True))  # (T, B, V)
    picked = np.take_along_axis(log_probs, y[..., None], axis=2)  # (T, B, 1)
    loss = -picked.sum() / B
    # dl/dlogits = y-hat - one_hot(y)
    one_hot = np.zeros((T, B, V))
    np.put_along_axis(one_hot, y[..., None], 1.0, axis=2)
    dlogits = (np.exp(log_probs) - one_hot) / B  # (T, B, V)
    return float(loss), dlogits
