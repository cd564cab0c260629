r"""Greedy decoding and beam search over any step function.

A decoder is seen through one function ``step(tokens, state) -> (log_probs, state, attention)``:
``tokens`` (N,) the previous token of each of N hypotheses, ``state`` a tuple of tensors with
N rows, ``log_probs`` (N, V) = log P(next token | hypothesis), ``attention`` (N, S) or None.

Greedy decoding takes the arg max at every step. Beam search keeps the K best prefixes
(Sutskever et al. 2014): each step extends every prefix by every token, ranks the K·V
candidates by their summed log-probability, and keeps the K best that do not end in <eos>.
A candidate ending in <eos> among the top K becomes a finished hypothesis (fairseq's rule; with
K = 1 this is greedy decoding exactly). Finished hypotheses are ranked by

.. math::
    \mathrm{score} = \frac{\log P(y_1, \ldots, y_n)}{n^{\alpha}}

with ``length_penalty`` α (0 = plain log-probability; α > 0 favours longer outputs). A batch
element stops when no live prefix can still beat its best finished hypothesis: a prefix's
log-probability only falls as it grows, so its best reachable score is
log P(prefix) / max_length^α. At ``max_length`` the live prefixes count as finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .checks import check_float, check_int

StepFn = Callable[[Tensor, tuple[Tensor, ...]], tuple[Tensor, tuple[Tensor, ...], Tensor | None]]


@dataclass
class Decoded:
    """The decoded outputs of a batch.

    tokens: (B, L) ids after <bos>, <eos> included, ``pad_id`` after it.
    lengths: (B,) tokens per sequence, <eos> included when it came.
    log_probs: (B,) log P(tokens) under the model.
    scores: (B,) ``log_probs / lengths ** length_penalty`` (what beam search ranks by).
    attention: (B, L, S) attention weights per output step, or None without attention.
    """

    tokens: Tensor
    lengths: Tensor
    log_probs: Tensor
    scores: Tensor
    attention: Tensor | None


def greedy_search(
    step: StepFn,
    state: tuple[Tensor, ...],
    *,
    batch_size: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_length: int,
    length_penalty: float = 0.0,
) -> Decoded:
    """Arg max decoding from ``state`` (B rows) for up to ``max_length`` tokens each."""
    check_int("max_length", max_length, low=1)
    device = state[0].device
    B = batch_size
    tokens = torch.full((B,), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    lengths = torch.zeros(B, dtype=torch.long, device=device)
    total = torch.zeros(B, dtype=torch.float64, device=device)
    outputs: list[Tensor] = []
    attentions: list[Tensor] = []
    for _ in range(max_length):
        log_probs, state, attn = step(tokens, state)  # (B, V)
        best = log_probs.argmax(dim=-1)  # (B,)
        gained = log_probs.gather(1, best.unsqueeze(1)).squeeze(1).double()
        total = total + torch.where(done, 0.0, gained)
        tokens = best.masked_fill(done, pad_id)
        outputs.append(tokens)
        if attn is not None:
            attentions.append(attn.masked_fill(done.unsqueeze(1), 0.0))
        lengths = lengths + (~done).long()
        done = done | (tokens == eos_id)
        if bool(done.all()):
            break
    scores = total / lengths.double() ** length_penalty
    attention = torch.stack(attentions, dim=1) if attentions else None
    return Decoded(torch.stack(outputs, dim=1), lengths, total, scores, attention)


@dataclass
class _Hypothesis:
    score: float
    log_prob: float
    tokens: list[int]
    attention: Tensor | None  # (n, S)


def beam_search(
    step: StepFn,
    state: tuple[Tensor, ...],
    *,
    batch_size: int,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_length: int,
    length_penalty: float = 0.0,
) -> Decoded:
    """Beam search from ``state`` (B·K rows: row b·K + k is beam k of element b, all K rows of
    an element equal at the start)."""
    K = check_int("beam_size", beam_size, low=1)
    check_int("max_length", max_length, low=1)
    alpha = check_float("length_penalty", length_penalty, low=0.0, high=float("inf"))
    B = batch_size
    N = B * K
    if state[0].shape[0] != N:
        raise ValueError(f"state must have B*K={N} rows, got {state[0].shape[0]}")
    device = state[0].device
    tokens = torch.full((N,), bos_id, dtype=torch.long, device=device)
    beam_lp = torch.full((B, K), float("-inf"), dtype=torch.float64, device=device)
    beam_lp[:, 0] = 0.0  # the K copies of <bos> are one prefix, not K
    history = torch.zeros(B, K, 0, dtype=torch.long, device=device)
    attn_history: Tensor | None = None  # (B, K, t, S)
    finished: list[list[_Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B

    def norm(log_prob: float, length: int) -> float:
        return log_prob / length**alpha

    for t in range(max_length):
        log_probs, state, attn = step(tokens, state)  # (N, V)
        V = log_probs.shape[1]
        cand = beam_lp.unsqueeze(2) + log_probs.double().view(B, K, V)  # (B, K, V)
        # a stable sort breaks ties towards the lower beam, then the lower token id, as
        # greedy's arg max does
        top_lp, top_idx = cand.view(B, K * V).sort(dim=1, descending=True, stable=True)
        top_lp, top_idx = top_lp[:, : 2 * K], top_idx[:, : 2 * K]  # (B, 2K)
        if attn is not None:
            attn = attn.view(B, K, -1)
            prev = (
                attn_history if attn_history is not None else attn.new_zeros(B, K, 0, attn.shape[2])
            )
        lp_rows, idx_rows = top_lp.tolist(), top_idx.tolist()
        new_lp = [[float("-inf")] * K for _ in range(B)]
        new_src = [[0] * K for _ in range(B)]
        new_tok = [[pad_id] * K for _ in range(B)]
        for b in range(B):
            if done[b]:
                continue
            alive = 0
            for r, (lp, idx) in enumerate(zip(lp_rows[b], idx_rows[b])):
                if lp == float("-inf") or alive == K:
                    break
                src, tok = divmod(idx, V)
                if tok == eos_id:
                    if r < K:
                        seq = history[b, src].tolist() + [eos_id]
                        a = None if attn is None else torch.cat([prev[b, src], attn[b, src, None]])
                        finished[b].append(_Hypothesis(norm(lp, t + 1), lp, seq, a))
                    continue
                new_lp[b][alive], new_src[b][alive], new_tok[b][alive] = lp, src, tok
                alive += 1
            if finished[b]:
                best = max(h.score for h in finished[b])
                reachable = new_lp[b][0] / max_length**alpha  # -inf when none is alive
                done[b] = best >= reachable
        if all(done) or t == max_length - 1:
            break
        src_t = torch.tensor(new_src, dtype=torch.long, device=device)  # (B, K)
        tok_t = torch.tensor(new_tok, dtype=torch.long, device=device)  # (B, K)
        rows = (torch.arange(B, device=device).unsqueeze(1) * K + src_t).view(N)
        state = tuple(s.index_select(0, rows) for s in state)
        history = torch.cat([history.gather(1, _expand(src_t, history)), tok_t.unsqueeze(2)], 2)
        if attn is not None:
            grown = torch.cat([prev, attn.unsqueeze(2)], dim=2)  # (B, K, t+1, S)
            attn_history = grown.gather(1, _expand(src_t, grown))
        beam_lp = torch.tensor(new_lp, dtype=torch.float64, device=device)
        tokens = tok_t.view(N)

    for b in range(B):  # prefixes still alive at max_length count as finished
        if done[b]:
            continue
        for lp, src, tok in zip(new_lp[b], new_src[b], new_tok[b]):
            if lp > float("-inf"):
                seq = history[b, src].tolist() + [tok]
                a = None if attn is None else torch.cat([prev[b, src], attn[b, src, None]])
                finished[b].append(_Hypothesis(norm(lp, len(seq)), lp, seq, a))
    return _collect([max(f, key=lambda h: h.score) for f in finished], pad_id, device)


def _expand(index: Tensor, like: Tensor) -> Tensor:
    """(B, K) beam indices broadcast to gather rows of ``like`` (B, K, ...)."""
    return index.view(*index.shape, *([1] * (like.dim() - 2))).expand(-1, -1, *like.shape[2:])


def _collect(best: list[_Hypothesis], pad_id: int, device: torch.device) -> Decoded:
    L = max(len(h.tokens) for h in best)
    tokens = torch.full((len(best), L), pad_id, dtype=torch.long, device=device)
    for b, h in enumerate(best):
        tokens[b, : len(h.tokens)] = torch.tensor(h.tokens, dtype=torch.long)
    lengths = torch.tensor([len(h.tokens) for h in best], dtype=torch.long, device=device)
    log_probs = torch.tensor([h.log_prob for h in best], dtype=torch.float64, device=device)
    scores = torch.tensor([h.score for h in best], dtype=torch.float64, device=device)
    attention = None
    if best[0].attention is not None:
        S = best[0].attention.shape[1]
        attention = torch.zeros(len(best), L, S, dtype=best[0].attention.dtype, device=device)
        for b, h in enumerate(best):
            attention[b, : len(h.tokens)] = h.attention
    return Decoded(tokens, lengths, log_probs, scores, attention)
