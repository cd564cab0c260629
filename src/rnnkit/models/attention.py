r"""Attention of a decoder state over the encoder's outputs (for :class:`Seq2Seq`).

With encoder outputs h_j (B, S, H_enc), a query s (B, Q) from the decoder and a mask of the
valid source steps:

.. math::
    e_j = \mathrm{score}(s, h_j), \qquad
    \alpha = \mathrm{softmax}_{j \le n}(e), \qquad
    c = \sum_j \alpha_j h_j

* ``"additive"`` (Bahdanau, Cho & Bengio 2015): score(s, h) = v^T tanh(W_q s + W_k h).
* ``"multiplicative"`` (Luong, Pham & Manning 2015, "general"): score(s, h) = s^T W h.

The key transform (W_k h or W h) reads only the encoder outputs, so it is computed once per
source with :meth:`keys` and reused at every decoder step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .checks import check_choice, check_int

ATTENTIONS = ("additive", "multiplicative", "none")


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis of ``scores`` (B, S) restricted to ``mask`` (B, S): exactly
    zero weight on the masked-out steps."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)


class Attention(nn.Module):
    """Additive or multiplicative attention (module docstring).

    Args:
        kind: "additive" or "multiplicative".
        query_size: Q, features of the decoder query s.
        key_size: H_enc, features of each encoder output h_j.
        attention_size: A, the width of the additive scorer (unused by "multiplicative").
    """

    def __init__(self, kind: str, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        self.kind = check_choice("attention", kind, ATTENTIONS[:2])
        check_int("query_size", query_size, low=1)
        check_int("key_size", key_size, low=1)
        if kind == "additive":
            check_int("attention_size", attention_size, low=1)
            self.query_proj = nn.Linear(query_size, attention_size, bias=False)  # W_q
            self.key_proj = nn.Linear(key_size, attention_size)  # W_k (and a bias)
            self.v = nn.Linear(attention_size, 1, bias=False)
        else:
            self.key_proj = nn.Linear(key_size, query_size, bias=False)  # W

    def keys(self, values: Tensor) -> Tensor:
        """Precompute the query-independent part: (B, S, H_enc) -> (B, S, A or Q)."""
        return self.key_proj(values)

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``query`` (B, Q), ``keys`` from :meth:`keys`, ``values`` (B, S, H_enc), ``mask``
        (B, S) -> (context c (B, H_enc), weights α (B, S))."""
        if self.kind == "additive":
            e = self.v(torch.tanh(keys + self.query_proj(query).unsqueeze(1))).squeeze(2)
        else:
            e = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)  # (B, S): s^T W h_j
        alpha = masked_softmax(e, mask)  # (B, S)
        context = torch.bmm(alpha.unsqueeze(1), values).squeeze(1)  # (B, H_enc)
        return context, alpha
