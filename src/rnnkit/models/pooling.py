r"""Masked pooling over time: many-to-one from a (B, T, H) sequence of encoder outputs.

The lecture's many-to-one slides: the *causal* form reads the state at the last step,
ŷ = g(W_ya a^<T_b>); the *non-causal* forms look at every step ("better balanced for all time
steps"). Every form here uses only steps t < n_b of sequence b, so a padded batch pools exactly
as each sequence alone.

* ``"last"``: h_b = a^<n_b>, the output at the last valid step (causal with a causal encoder).
* ``"mean"``: h_b = (1/n_b) Σ_{t≤n_b} a^<t>.
* ``"max"``: h_b = max_{t≤n_b} a^<t>, feature by feature.
* ``"attention"``: e_t = v^T tanh(W a^<t> + b), α = softmax over the valid steps of e,
  h_b = Σ_t α_t a^<t> (Bahdanau-style additive scores against one learned query v;
  ``weight`` W (A, H), ``bias`` b (A,), ``query`` v (A,)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .checks import check_choice, check_int, exporting

POOLINGS = ("last", "mean", "max", "attention")


def valid_mask(
    lengths: Tensor | None, batch_size: int, max_len: int, device: torch.device
) -> Tensor:
    """(B, T) bool, True at the valid steps t < n_b (all True without lengths)."""
    t = torch.arange(max_len, device=device).unsqueeze(0)  # (1, T)
    if lengths is None:
        return t.expand(batch_size, max_len) >= 0
    return t < lengths.unsqueeze(1)


def _sum_to_length(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Σ_{t<n_b} x[b, t] for (B, T, H) -> (B, H), added in time order.

    A running sum read at each sequence's last step adds exactly the same numbers in the same
    order as the sequence alone would, so pooling a padded batch is bit-identical to pooling
    each sequence by itself (a plain ``sum`` over T blocks its additions by T).
    """
    prefix = x.cumsum(dim=1)  # (B, T, H)
    if lengths is None:
        return prefix[:, -1]
    index = (lengths - 1).view(-1, 1, 1).expand(-1, 1, x.shape[2])
    return prefix.gather(1, index).squeeze(1)


class Pooling(nn.Module):
    """Pool (B, T, H) encoder outputs to (B, H) over each sequence's valid steps.

    Args:
        kind: "last", "mean", "max" or "attention" (see the module docstring).
        input_size: H, needed by "attention" (its W is (A, H), v is (A,)).
        attention_size: A, width of the attention scorer.
    """

    def __init__(self, kind: str, input_size: int, attention_size: int = 32) -> None:
        super().__init__()
        self.kind = check_choice("pooling", kind, POOLINGS)
        check_int("input_size", input_size, low=1)
        if kind == "attention":
            check_int("attention_size", attention_size, low=1)
            bound = 1.0 / math.sqrt(input_size)
            self.weight = nn.Parameter(
                torch.empty(attention_size, input_size).uniform_(-bound, bound)
            )
            self.bias = nn.Parameter(torch.zeros(attention_size))
            bound = 1.0 / math.sqrt(attention_size)
            self.query = nn.Parameter(torch.empty(attention_size).uniform_(-bound, bound))  # v

    def forward(self, h: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``h`` (B, T, H), ``lengths`` (B,) or None -> (B, H)."""
        return self.pool(h, lengths)[0]

    def pool(self, h: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """(pooled (B, H), attention weights (B, T) for "attention", else None)."""
        B, T, _ = h.shape
        mask = valid_mask(lengths, B, T, h.device)  # (B, T)
        if self.kind == "last":
            if lengths is None:
                return h[:, -1], None
            index = (lengths - 1).view(B, 1, 1).expand(B, 1, h.shape[2])
            return h.gather(1, index).squeeze(1), None
        if self.kind == "mean":
            count = mask.sum(dim=1, keepdim=True).to(h.dtype)  # (B, 1)
            return _sum_to_length(h, lengths) / count, None
        if self.kind == "max":
            return h.masked_fill(~mask.unsqueeze(2), float("-inf")).amax(dim=1), None
        scores = self.scores(h).masked_fill(~mask, float("-inf"))
        e = torch.exp(scores - scores.amax(dim=1, keepdim=True))  # (B, T), 0 at padding
        weights = e / _sum_to_length(e.unsqueeze(2), lengths)  # (B, T)
        pooled = _sum_to_length(weights.unsqueeze(2) * h, lengths)  # (B, H)
        return pooled, weights

    def scores(self, h: Tensor) -> Tensor:
        """e_t = v^T tanh(W a^<t> + b) for (B, T, H) -> (B, T).

        Written as products summed over features, one step at a time, rather than a matrix
        product over all B·T rows: a BLAS product rounds a row differently depending on how
        many rows come with it, and pooling must not depend on the batch a sequence sits in.
        An exported graph takes the matrix form instead: a loop would fix T in the graph.
        """
        if exporting():
            a = torch.tanh(torch.nn.functional.linear(h, self.weight, self.bias))  # (B, T, A)
            return a @ self.query  # (B, T)
        out = []
        for h_t in h.unbind(1):  # (B, H)
            a_t = torch.tanh((h_t.unsqueeze(1) * self.weight).sum(dim=2) + self.bias)  # (B, A)
            out.append((a_t * self.query).sum(dim=1))  # (B,)
        return torch.stack(out, dim=1)  # (B, T)

    def extra_repr(self) -> str:
        return repr(self.kind)
