"""The "torch" engine: skip-gram with negative sampling as minibatched tensor operations.

It runs wherever torch does (CPU without a C compiler, CUDA). A job's pairs are generated all
at once, shuffled, and trained ``minibatch`` pairs at a time: gather the rows, one batched dot
product, and ``index_add_`` of the sparse updates. The update of a minibatch is the sum of its
pairs' word2vec updates computed from the same starting vectors (word2vec.c applies them one
after another), so a word that appears many times in one minibatch takes one large step;
keep ``minibatch`` modest.

Shapes: P pairs, M minibatch, K noise words, E embedding size.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def make_pairs(
    ids: Tensor, sentence: Tensor, keep: Tensor, window: int, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Sub-sample a job and list its (centre, context) pairs with dynamic window shrinking.

    ``ids`` (N,) word ids, ``sentence`` (N,) the sentence of each word, ``keep`` (V,) the
    keep probabilities. Returns (centres (P,), contexts (P,), number of words kept).
    """
    device = ids.device
    u = torch.rand(ids.shape, generator=generator, device=device)
    kept = u < keep[ids]
    w, s = ids[kept], sentence[kept]  # (n,)
    n = w.numel()
    reach = torch.randint(1, window + 1, (n,), generator=generator, device=device)  # (n,)
    centres, contexts = [], []
    for d in range(1, min(window, max(n - 1, 0)) + 1):
        same = s[:-d] == s[d:]  # positions i, i + d in one sentence
        right = same & (reach[:-d] >= d)  # centre i sees i + d
        left = same & (reach[d:] >= d)  # centre i + d sees i
        centres += [w[:-d][right], w[d:][left]]
        contexts += [w[d:][right], w[:-d][left]]
    if not centres:
        empty = torch.empty(0, dtype=ids.dtype, device=device)
        return empty, empty, torch.tensor(n)
    return torch.cat(centres), torch.cat(contexts), torch.tensor(n)


def train_job(
    syn0: Tensor,
    syn1: Tensor,
    ids: Tensor,
    sentence: Tensor,
    keep: Tensor,
    noise: Tensor,
    *,
    window: int,
    negative: int,
    alpha: float,
    generator: torch.Generator,
    minibatch: int,
    want_loss: bool,
) -> tuple[float, int, int, int]:
    """Train on one job; ``syn0``/``syn1`` (V, E) change in place.

    Returns (loss sum, pairs, noise words used, words kept), as the C engine does.
    """
    centres, contexts, n_kept = make_pairs(ids, sentence, keep, window, generator)
    P = centres.numel()
    order = torch.randperm(P, generator=generator, device=ids.device)
    centres, contexts = centres[order], contexts[order]
    loss = torch.zeros((), dtype=torch.float64, device=ids.device)
    used = 0
    for a in range(0, P, minibatch):
        o = centres[a : a + minibatch]  # (M,)
        c = contexts[a : a + minibatch]  # (M,)
        M = o.numel()
        if negative:
            draws = torch.multinomial(noise, M * negative, replacement=True, generator=generator)
        else:
            draws = o.new_empty(0)
        targets = torch.cat([o[:, None], draws.view(M, negative)], dim=1)  # (M, 1+K)
        live = torch.ones(M, 1 + negative, dtype=syn0.dtype, device=syn0.device)
        live[:, 1:] = (targets[:, 1:] != o[:, None]).to(syn0.dtype)  # skip draws equal to o
        label = torch.zeros_like(live)
        label[:, 0] = 1.0
        v = syn0[c]  # (M, E)
        u = syn1[targets]  # (M, 1+K, E)
        f = torch.einsum("me,mke->mk", v, u)  # (M, 1+K)
        g = (label - torch.sigmoid(f)) * live * alpha  # (M, 1+K)
        if want_loss:
            signed = torch.where(label > 0, f, -f)
            loss += (-F.logsigmoid(signed) * live).sum(dtype=torch.float64)
        used += int(live[:, 1:].sum())
        syn0.index_add_(0, c, torch.einsum("mk,mke->me", g, u))
        syn1.index_add_(
            0, targets.reshape(-1), (g[:, :, None] * v[:, None, :]).reshape(-1, v.shape[1])
        )
    return float(loss), P, used, int(n_kept)
