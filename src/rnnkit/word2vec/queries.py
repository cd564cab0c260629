"""Questions to a table of word vectors: neighbours, similarity, analogies, bias.

All work on :class:`rnnkit.embeddings.WordVectors` with cosine similarity,
cos(x, y) = x.y / (|x| |y|), on the unit-length rows ``wv.unit_vectors()`` (written û below).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..embeddings import WordVectors


def _words(name: str, words: str | Sequence[str]) -> list[str]:
    if isinstance(words, str):
        return [words]
    if not all(isinstance(w, str) for w in words):
        raise TypeError(f"{name} must be a word or a list of words, got {words!r}")
    return list(words)


def similarity(wv: WordVectors, a: str, b: str) -> float:
    """cos(e_a, e_b)."""
    unit = wv.unit_vectors()
    return float(unit[wv.index(a)] @ unit[wv.index(b)])


def most_similar(
    wv: WordVectors,
    positive: str | Sequence[str] = (),
    negative: str | Sequence[str] = (),
    *,
    topn: int = 10,
    restrict_vocab: int | None = None,
) -> list[tuple[str, float]]:
    """The ``topn`` words w maximising cos(e_w, q), excluding the query words.

    q = (sum of û over ``positive`` - sum of û over ``negative``) / count, the 3CosAdd query
    of Mikolov et al. (2013): ``most_similar(["king", "woman"], ["man"])`` asks for
    e_king + (e_woman - e_man). ``restrict_vocab`` searches only the first (most frequent) rows.
    """
    pos, neg = _words("positive", positive), _words("negative", negative)
    if not pos and not neg:
        raise ValueError("most_similar needs at least one positive or negative word, got none")
    if isinstance(topn, bool) or not isinstance(topn, int) or topn < 1:
        raise ValueError(f"topn must be an int >= 1, got {topn!r}")
    unit = wv.unit_vectors()
    query_rows = [wv.index(w) for w in pos + neg]
    weights = np.array([1.0] * len(pos) + [-1.0] * len(neg), dtype=np.float32)
    q = (weights[:, None] * unit[query_rows]).mean(axis=0)
    norm = np.linalg.norm(q)
    q = q / norm if norm > 0 else q
    limit = len(wv) if restrict_vocab is None else min(int(restrict_vocab), len(wv))
    scores = unit[:limit] @ q  # (R,)
    scores[[r for r in query_rows if r < limit]] = -np.inf
    k = min(topn, limit - len({r for r in query_rows if r < limit}))
    if k <= 0:
        return []
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(wv.words[i], float(scores[i])) for i in best]


def analogy(wv: WordVectors, a: str, b: str, c: str, *, topn: int = 1) -> list[tuple[str, float]]:
    """ "a is to b as c is to ?": 3CosAdd e_b - e_a + e_c, the query words excluded.

    ``analogy(wv, "man", "king", "woman")`` is the lecture's e_king + (e_woman - e_man).
    """
    return most_similar(wv, positive=[b, c], negative=[a], topn=topn)


def bias_direction(
    wv: WordVectors, pairs: Sequence[tuple[str, str]] = (("he", "she"),)
) -> np.ndarray:
    """The unit vector g along the mean of û_x - û_y over the ``pairs`` (x, y): for the single
    pair ("he", "she"), the lecture's he-she direction (Bolukbasi et al. 2016)."""
    if not pairs:
        raise ValueError("pairs must hold at least one (x, y) word pair, got none")
    unit = wv.unit_vectors()
    diff = np.mean([unit[wv.index(x)] - unit[wv.index(y)] for x, y in pairs], axis=0)
    norm = float(np.linalg.norm(diff))
    if norm == 0:
        raise ValueError(f"the pairs {list(pairs)} give a zero direction (equal vectors)")
    return (diff / norm).astype(np.float32)


def bias_projection(
    wv: WordVectors,
    words: Sequence[str],
    pairs: Sequence[tuple[str, str]] = (("he", "she"),),
) -> dict[str, float]:
    """cos(e_w, g) for each word w, with g = :func:`bias_direction`; most positive first.

    A positive value leans to the first word of the pairs ("he"), a negative one to the
    second ("she"); words the vectors lack raise ``KeyError``.
    """
    g = bias_direction(wv, pairs)
    unit = wv.unit_vectors()
    values = {w: float(unit[wv.index(w)] @ g) for w in _words("words", words)}
    return dict(sorted(values.items(), key=lambda kv: -kv[1]))
