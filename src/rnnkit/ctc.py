r"""Decoding CTC outputs, and the word error rate.

A CTC model (Graves et al. 2006) outputs, at each of T steps, log-probabilities over V
symbols, one of them the *blank* b. A path π (one symbol per step) maps to a labelling by
B(π): merge runs of equal symbols, then drop blanks ("aa-ab-" -> "aab"). The probability of a
labelling ℓ is the sum over its paths, P(ℓ | x) = Σ_{π: B(π) = ℓ} Π_t p_t(π_t), the quantity
whose negative log ``torch.nn.CTCLoss`` computes.

* :func:`greedy_decode`: B(arg max path), the most probable *path*'s labelling.
* :func:`prefix_beam_search`: the most probable *labelling* found by the prefix beam search of
  Hannun et al. (2014) (without a language model). For each prefix it keeps two
  log-probabilities over the steps so far: p_b, of the paths that map to the prefix and end in
  a blank, and p_nb, of those that end in the prefix's last symbol. At step t, with
  y_t = p_t(·):

  - blank:            p_b'(ℓ)   += (p_b(ℓ) + p_nb(ℓ)) · y_t(b)
  - the last symbol c: p_nb'(ℓ)  += p_nb(ℓ) · y_t(c)          (the run goes on)
                       p_nb'(ℓc) += p_b(ℓ) · y_t(c)           (a new c after a blank)
  - another symbol c:  p_nb'(ℓc) += (p_b(ℓ) + p_nb(ℓ)) · y_t(c)

  and the ``beam_size`` prefixes of largest p_b + p_nb are kept. Without pruning (a beam at
  least as large as the number of prefixes) p_b + p_nb at the end is P(ℓ | x) exactly.
* :func:`word_error_rate`: (substitutions + deletions + insertions) / reference words, summed
  over a corpus (Levenshtein distance on word sequences).

Shapes: log-probabilities (T, V) for one sequence or (B, T, V) with lengths (B,).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

NEG_INF = float("-inf")


def _log_probs(log_probs: Any, ndim: int) -> np.ndarray:
    try:
        import torch

        if isinstance(log_probs, torch.Tensor):
            log_probs = log_probs.detach().to("cpu", torch.float64).numpy()
    except ImportError:  # pragma: no cover - torch is a dependency of rnnkit
        pass
    if not isinstance(log_probs, np.ndarray):
        raise TypeError(
            f"log_probs must be a NumPy array or a torch Tensor, got {type(log_probs).__name__}"
        )
    if log_probs.ndim != ndim:
        want = "(T, V)" if ndim == 2 else "(B, T, V)"
        raise ValueError(f"log_probs must have shape {want}, got {log_probs.shape}")
    return log_probs.astype(np.float64, copy=False)


def _check_blank(blank: int, V: int) -> int:
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < V:
        raise ValueError(f"blank must be an int in [0, V={V}), got {blank!r}")
    return blank


def collapse(path: Sequence[int], blank: int = 0) -> list[int]:
    """B(π): merge runs of equal symbols, then drop blanks."""
    out: list[int] = []
    previous = None
    for s in path:
        s = int(s)
        if s != previous and s != blank:
            out.append(s)
        previous = s
    return out


def _lengths(lengths: Any, B: int, T: int) -> list[int]:
    if lengths is None:
        return [T] * B
    values = [int(n) for n in np.asarray(lengths).reshape(-1)]
    if len(values) != B or any(not 0 <= n <= T for n in values):
        raise ValueError(f"lengths must be {B} ints in [0, T={T}], got {values}")
    return values


def greedy_decode(log_probs: Any, lengths: Any = None, *, blank: int = 0) -> list[list[int]]:
    """B(arg max path) of each sequence: ``log_probs`` (B, T, V), ``lengths`` (B,) or None."""
    lp = _log_probs(log_probs, 3)
    B, T, V = lp.shape
    _check_blank(blank, V)
    best = lp.argmax(axis=2)  # (B, T)
    return [collapse(best[b, :n], blank) for b, n in enumerate(_lengths(lengths, B, T))]


def _logaddexp(a: float, b: float) -> float:
    """log(e^a + e^b) of two log-probabilities."""
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def _add(
    beams: dict[tuple[int, ...], list[float]], prefix: tuple[int, ...], which: int, value: float
) -> None:
    """Add probability ``value`` (log) to p_b (``which`` 0) or p_nb (1) of ``prefix``."""
    entry = beams.get(prefix)
    if entry is None:
        beams[prefix] = [NEG_INF, NEG_INF]
        beams[prefix][which] = value
    else:
        entry[which] = _logaddexp(entry[which], value)


def prefix_beam_search(
    log_probs: Any, *, beam_size: int = 8, blank: int = 0, prune: float = 0.0
) -> list[tuple[tuple[int, ...], float]]:
    """The ``beam_size`` best labellings of one sequence (T, V) with their log P(ℓ | x) as the
    search scores them, best first (module docstring).

    ``prune`` > 0 skips, at each step, the symbols whose probability is below it (as Hannun et
    al.'s implementation does, for speed); 0 keeps every symbol, and the search is then exact
    for a large enough beam.
    """
    lp = _log_probs(log_probs, 2)
    T, V = lp.shape
    _check_blank(blank, V)
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be a positive int, got {beam_size!r}")
    if not isinstance(prune, (int, float)) or not 0.0 <= prune < 1.0:
        raise ValueError(f"prune must be a probability in [0, 1), got {prune!r}")
    cutoff = math.log(prune) if prune > 0 else NEG_INF
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}  # ℓ -> (p_b, p_nb)
    for t in range(T):
        y = lp[t].tolist()  # Python floats: the loop below is scalar arithmetic
        symbols = [c for c in range(V) if c != blank and y[c] >= cutoff]
        grown: dict[tuple[int, ...], list[float]] = {}
        for prefix, (p_b, p_nb) in beams.items():
            p = _logaddexp(p_b, p_nb)
            _add(grown, prefix, 0, p + y[blank])
            last = prefix[-1] if prefix else None
            for c in symbols:
                if c == last:
                    _add(grown, prefix, 1, p_nb + y[c])
                    _add(grown, prefix + (c,), 1, p_b + y[c])
                else:
                    _add(grown, prefix + (c,), 1, p + y[c])
            if last is not None and last not in symbols:  # the run of `last` may go on
                _add(grown, prefix, 1, p_nb + y[last])
        # prefixes no path reaches (P = 0) take no place in the beam
        scored = [(_logaddexp(*v), prefix, v) for prefix, v in grown.items()]
        ranked = sorted((s for s in scored if s[0] > NEG_INF), key=lambda s: -s[0])
        beams = {prefix: (v[0], v[1]) for _, prefix, v in ranked[:beam_size]}
        if not beams:
            return [((), NEG_INF)]
    return [(prefix, _logaddexp(*v)) for prefix, v in beams.items()]


def beam_decode(
    log_probs: Any,
    lengths: Any = None,
    *,
    beam_size: int = 8,
    blank: int = 0,
    prune: float = 0.0,
) -> list[list[int]]:
    """The best labelling of each sequence of a batch (B, T, V) by :func:`prefix_beam_search`."""
    lp = _log_probs(log_probs, 3)
    B, T, _ = lp.shape
    return [
        list(prefix_beam_search(lp[b, :n], beam_size=beam_size, blank=blank, prune=prune)[0][0])
        for b, n in enumerate(_lengths(lengths, B, T))
    ]


def edit_distance(reference: Sequence[Any], hypothesis: Sequence[Any]) -> int:
    """The Levenshtein distance: fewest substitutions, deletions and insertions turning
    ``reference`` into ``hypothesis``."""
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, start=1):
        current = [i]
        for j, h in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def word_error_rate(
    references: Sequence[Sequence[Any]], hypotheses: Sequence[Sequence[Any]]
) -> float:
    """Σ edit distance / Σ reference length over a corpus of word (or token) sequences."""
    if len(references) != len(hypotheses):
        raise ValueError(
            f"references and hypotheses must pair up, got {len(references)} and {len(hypotheses)}"
        )
    words = sum(len(r) for r in references)
    if words == 0:
        raise ValueError("references hold no words: the word error rate is undefined")
    return sum(edit_distance(r, h) for r, h in zip(references, hypotheses)) / words
