"""Corpus statistics for skip-gram training: counts, sub-sampling, the noise distribution, and
the corpus as one flat array of word ids.

Sub-sampling of frequent words (Mikolov et al. 2013, as implemented in word2vec.c and gensim):
an occurrence of word w with count f_w, in a corpus of T retained words, is kept with
probability

    keep(w) = min(1, (sqrt(f_w / (t T)) + 1) * t T / f_w)

with threshold t (``sample``, e.g. 1e-3; 0 keeps everything). Noise words are drawn from the
unigram distribution raised to the power 3/4: P_n(w) = f_w^0.75 / sum_v f_v^0.75.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

#: Longer sentences are cut into pieces of this many words (as gensim does).
MAX_SENTENCE_LENGTH = 10_000


class Encoded(NamedTuple):
    """A corpus as word ids: sentence k is ``ids[ends[k-1]:ends[k]]`` (``ends[-1] == len(ids)``).

    ``ids`` (N,) int32 holds in-vocabulary words only; ``raw_words`` counts every token read.
    """

    ids: np.ndarray
    ends: np.ndarray
    raw_words: int


def _sentences(corpus: Iterable[Sequence[str]]) -> Iterable[Sequence[str]]:
    if isinstance(corpus, (str, bytes)):
        raise TypeError("sentences must be an iterable of token lists, got a single str")
    for k, sentence in enumerate(corpus):
        if isinstance(sentence, (str, bytes)):
            raise TypeError(
                f"sentences[{k}] must be a list of tokens, got a str ({sentence[:30]!r}); "
                "tokenise it first, e.g. with rnnkit.text.word_tokens"
            )
        yield sentence


def count_words(sentences: Iterable[Sequence[str]]) -> tuple[Counter[str], int]:
    """Token counts and the number of sentences."""
    counts: Counter[str] = Counter()
    n = 0
    for sentence in _sentences(sentences):
        counts.update(sentence)
        n += 1
    return counts, n


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """keep(w) of the module docstring for every word, float32 (V,)."""
    f = np.asarray(counts, dtype=np.float64)
    if sample == 0:
        return np.ones(f.shape, dtype=np.float32)
    threshold = sample * f.sum()
    keep = (np.sqrt(f / threshold) + 1.0) * threshold / f
    return np.minimum(keep, 1.0).astype(np.float32)


def noise_distribution(counts: np.ndarray, exponent: float = 0.75) -> np.ndarray:
    """P_n(w) proportional to count^exponent, float64 (V,)."""
    weights = np.asarray(counts, dtype=np.float64) ** exponent
    return weights / weights.sum()


def alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias table of a distribution ``p`` (V,) (Vose's construction).

    Draw i uniform in [0, V) and u uniform in [0, 1): the sample is i if u < prob[i], else
    alias[i]. Word i then has probability (prob[i] + sum over j with alias[j] = i of
    (1 - prob[j])) / V = p[i]. Returns (prob float32, alias int32).
    """
    p = np.asarray(p, dtype=np.float64)
    V = p.size
    scaled = p * V / p.sum()
    prob = np.ones(V, dtype=np.float64)
    alias = np.arange(V, dtype=np.int32)
    small = [int(i) for i in np.flatnonzero(scaled < 1.0)]
    large = [int(i) for i in np.flatnonzero(scaled >= 1.0)]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    # what is left has scaled == 1 up to rounding: it keeps itself
    return prob.astype(np.float32), alias


def encode(
    sentences: Iterable[Sequence[str]],
    index: dict[str, int],
    *,
    max_sentence_length: int = MAX_SENTENCE_LENGTH,
) -> Encoded:
    """Map every token to its id, dropping out-of-vocabulary tokens and empty sentences."""
    get = index.get
    ids: list[int] = []
    ends: list[int] = []
    raw = 0
    for sentence in _sentences(sentences):
        raw += len(sentence)
        known = [i for i in map(get, sentence) if i is not None]
        for start in range(0, len(known), max_sentence_length):
            ids.extend(known[start : start + max_sentence_length])
            ends.append(len(ids))
    return Encoded(np.asarray(ids, dtype=np.int32), np.asarray(ends, dtype=np.int64), raw)


def job_bounds(ends: np.ndarray, batch_words: int) -> list[tuple[int, int]]:
    """Split sentences into jobs of about ``batch_words`` words: [(first, stop), ...] indices."""
    if ends.size == 0:
        return []
    total = int(ends[-1])
    cuts = np.searchsorted(ends, np.arange(batch_words, total, batch_words), side="left") + 1
    cuts = np.unique(np.concatenate([[0], cuts, [ends.size]]))
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
