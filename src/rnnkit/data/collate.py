"""Collate functions: a list of dataset items -> what :class:`rnnkit.Recurrent` takes.

The runner takes ``x`` (T, B, ·) (or (B, T, ·) with ``batch_first``) with ``lengths`` (B,), or a
``PackedSequence``. :class:`PadCollate` builds either from variable-length items, padding at
the end (post-padding), which is where the runner expects it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from .padding import as_tensor_sequence, pad_batch

Inputs = tuple[Tensor, Tensor] | PackedSequence


class PadCollate:
    """Pad a list of items into one batch (use as ``DataLoader(..., collate_fn=PadCollate())``).

    Items are either sequences (T_b,) / (T_b, I), or ``(sequence, target)`` pairs where the
    target is a scalar label or a sequence of the same length as its input.

    Returns ``inputs`` for sequence items and ``(inputs, targets)`` for pairs, where

    * ``inputs`` is ``(x, lengths)``: x (T, B[, I]) (or (B, T[, I]) with ``batch_first``),
      lengths (B,) int64; or, with ``packed=True``, a ``PackedSequence``;
    * ``targets`` is (B,) for scalar labels, or laid out like x for sequence targets: padded
      with ``target_padding_value`` (-100, the value ``cross_entropy`` ignores by default),
      or packed alongside a packed x (so ``out.data`` and ``targets.data`` line up).

    Args:
        padding_value: value of the padded input steps (0 = ``<pad>``).
        target_padding_value: value of the padded target steps.
        batch_first: (B, T, ·) instead of the runner's default (T, B, ·).
        packed: return a ``PackedSequence`` (batch order kept: ``enforce_sorted=False``).
    """

    def __init__(
        self,
        *,
        padding_value: float = 0,
        target_padding_value: float = -100,
        batch_first: bool = False,
        packed: bool = False,
    ) -> None:
        self.padding_value = padding_value
        self.target_padding_value = target_padding_value
        self.batch_first = bool(batch_first)
        self.packed = bool(packed)

    def __call__(self, batch: Sequence[object]) -> Inputs | tuple[Inputs, Tensor | PackedSequence]:
        if not isinstance(batch, Sequence) or len(batch) == 0:
            raise ValueError(f"batch must be a non-empty list of items, got {batch!r:.60}")
        pairs = all(isinstance(item, tuple) and len(item) == 2 for item in batch)
        sequences = [item[0] for item in batch] if pairs else list(batch)
        x, lengths, _ = pad_batch(sequences, value=self.padding_value)  # (B, T[, I])
        if int(lengths.min()) < 1:
            k = int(torch.argmin(lengths))
            raise ValueError(f"batch[{k}] is an empty sequence; the runner needs length >= 1")
        inputs = self._layout(x, lengths)
        if not pairs:
            return inputs
        return inputs, self._targets([item[1] for item in batch], lengths)

    def _layout(self, x: Tensor, lengths: Tensor) -> Inputs:
        if self.packed:
            return pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        if not self.batch_first:
            x = x.transpose(0, 1).contiguous()  # (T, B[, I])
        return x, lengths

    def _targets(self, targets: list[object], lengths: Tensor) -> Tensor | PackedSequence:
        first = targets[0]
        scalar = not isinstance(first, (list, tuple)) and (
            not hasattr(first, "shape") or len(first.shape) == 0
        )
        if scalar:
            return torch.as_tensor([t.item() if hasattr(t, "item") else t for t in targets])
        seqs = [as_tensor_sequence(f"targets[{k}]", t) for k, t in enumerate(targets)]
        for k, (t, n) in enumerate(zip(seqs, lengths.tolist())):
            if t.shape[0] != n:
                raise ValueError(
                    f"targets[{k}] must have the length of its input ({n} steps), got {t.shape[0]}"
                )
        y = pad_batch(seqs, value=self.target_padding_value).padded  # (B, T[, ·])
        if self.packed:
            return pack_padded_sequence(y, lengths, batch_first=True, enforce_sorted=False)
        if self.batch_first:
            return y
        return y.transpose(0, 1).contiguous()  # (T, B[, ·])
