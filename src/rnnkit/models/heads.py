r"""Class outputs shared by the tagger and the classifier: the lecture's output layer
ŷ = g_y(W_ya a + b_y) with its loss.

* ``num_classes == 1``: binary (like/dislike, trigger word heard or not). g_y is the sigmoid
  and the loss the lecture's ℓ = -y log ŷ - (1 - y) log(1 - ŷ), computed from the logit.
* ``num_classes >= 2``: g_y is the softmax over C classes and the loss -log ŷ_y.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def check_class_targets(
    y: object, shape: tuple[int, ...], num_classes: int, mask: Tensor | None = None
) -> Tensor:
    """Validate targets: class ids in [0, C) for C >= 2; 0/1 values (any dtype) for C = 1.

    With ``mask`` (same shape, bool), only the entries it marks must be valid class ids.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a Tensor, got {type(y).__name__}")
    if tuple(y.shape) != shape:
        raise ValueError(f"y must have shape {shape}, got {tuple(y.shape)}")
    if num_classes == 1:
        return y.to(torch.get_default_dtype()) if not y.dtype.is_floating_point else y
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class ids, got dtype {y.dtype}")
    used = y if mask is None else y[mask]
    if used.numel() and (int(used.min()) < 0 or int(used.max()) >= num_classes):
        raise ValueError(
            f"y must hold class ids in [0, {num_classes}), got values from {int(used.min())} "
            f"to {int(used.max())}"
        )
    return y


def class_losses(logits: Tensor, y: Tensor) -> Tensor:
    """Per-item loss: ``logits`` (N, C), ``y`` (N,) -> (N,)."""
    if logits.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(
            logits.squeeze(-1), y.to(logits.dtype), reduction="none"
        )
    return F.cross_entropy(logits, y, reduction="none")


def class_probabilities(logits: Tensor) -> Tensor:
    """(..., C) logits -> (..., C) softmax probabilities, or (...,) sigmoid for C = 1."""
    if logits.shape[-1] == 1:
        return torch.sigmoid(logits.squeeze(-1))
    return torch.softmax(logits, dim=-1)


def class_predictions(logits: Tensor) -> Tensor:
    """(..., C) logits -> (...,) class ids (0/1 for C = 1, by the sign of the logit)."""
    if logits.shape[-1] == 1:
        return (logits.squeeze(-1) > 0).long()
    return logits.argmax(dim=-1)
