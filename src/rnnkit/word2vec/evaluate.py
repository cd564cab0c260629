"""Benchmarks for word vectors: the Google analogy set and word-similarity sets.

* :func:`evaluate_analogies`: "a b c d" questions (``questions-words.txt``, Mikolov et al.
  2013); a question is right when the best 3CosAdd answer to e_b - e_a + e_c, the three
  query words excluded, is d.
* :func:`evaluate_word_pairs`: Pearson and Spearman correlation between cosine similarity and
  human judgements (WordSim-353, SimLex-999).

Both follow gensim's ``evaluate_word_analogies`` / ``evaluate_word_pairs`` rules (the search is
restricted to the ``restrict_vocab`` most frequent words; questions with a word outside them
are skipped and counted; words compare case-insensitively by default), so the numbers are
comparable. :func:`gensim_test_file` finds the copies of these files in gensim's wheel.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from ..embeddings import WordVectors

GENSIM_TEST_FILES = ("questions-words.txt", "wordsim353.tsv", "simlex999.txt")


def gensim_test_file(name: str) -> Path:
    """Path of ``gensim/test/test_data/<name>`` in the installed gensim (not imported)."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{name} is read from gensim's test data, and gensim is not installed "
            "(pip install gensim), or pass the file's path yourself"
        )
    path = Path(next(iter(spec.submodule_search_locations)), "test", "test_data", name)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist in this gensim installation")
    return path


def _ok_vocab(wv: WordVectors, restrict_vocab: int, case_insensitive: bool) -> dict[str, int]:
    """Word -> row for the first ``restrict_vocab`` rows; upper-cased keys map to the most
    frequent (first) row that spells them."""
    words = wv.words[:restrict_vocab]
    ok: dict[str, int] = {}
    for i, w in enumerate(words):
        ok.setdefault(w.upper() if case_insensitive else w, i)
    return ok


def evaluate_analogies(
    wv: WordVectors,
    path: str | os.PathLike | None = None,
    *,
    restrict_vocab: int = 300_000,
    case_insensitive: bool = True,
    batch_size: int = 1024,
) -> dict:
    """Accuracy on analogy questions (default: gensim's copy of ``questions-words.txt``).

    Returns ``{"accuracy": correct / answered, "correct", "answered", "skipped" (a word
    outside the vocabulary), "sections": {name: (correct, answered)}}``.
    """
    path = gensim_test_file("questions-words.txt") if path is None else Path(path)
    ok = _ok_vocab(wv, restrict_vocab, case_insensitive)
    fold = str.upper if case_insensitive else str
    questions: list[tuple[str, tuple[str, ...]]] = []
    skipped = 0
    section = None
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(": "):
            section = line[2:].strip()
            continue
        parts = line.split()
        if len(parts) != 4:
            continue
        if section is None:
            raise ValueError(f"{path}: line {line_no} holds a question before any ': section'")
        quad = tuple(fold(w) for w in parts)
        if all(w in ok for w in quad):
            questions.append((section, quad))
        else:
            skipped += 1
    unit = wv.unit_vectors()[: min(restrict_vocab, len(wv))]
    sections: dict[str, list[int]] = {}
    for start in range(0, len(questions), batch_size):
        chunk = questions[start : start + batch_size]
        rows = np.array([[ok[w] for w in q[:3]] for _, q in chunk])  # (Q, 3): a, b, c
        query = (unit[rows[:, 1]] + unit[rows[:, 2]] - unit[rows[:, 0]]) / 3  # (Q, E)
        query /= np.maximum(np.linalg.norm(query, axis=1, keepdims=True), 1e-30)
        scores = query @ unit.T  # (Q, R)
        np.put_along_axis(scores, rows, -np.inf, axis=1)
        k = min(5, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # (Q, 5) unordered
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
        for (name, (a, b, c, expected)), candidates in zip(chunk, top):
            predicted = None
            for i in candidates:
                predicted = fold(wv.words[i])
                if predicted not in (a, b, c):
                    break
            tally = sections.setdefault(name, [0, 0])
            tally[0] += predicted == expected
            tally[1] += 1
    correct = sum(c for c, _ in sections.values())
    answered = sum(n for _, n in sections.values())
    return {
        "accuracy": correct / answered if answered else float("nan"),
        "correct": correct,
        "answered": answered,
        "skipped": skipped,
        "sections": {k: (c, n) for k, (c, n) in sections.items()},
    }


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``x``, ties given the mean of their ranks (as ``scipy.stats.rankdata``)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    stops = np.r_[starts[1:], x.size]
    for a, b in zip(starts, stops):
        ranks[order[a:b]] = (a + b + 1) / 2  # mean of ranks a+1 .. b
    return ranks


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    return float((x @ y) / np.sqrt((x @ x) * (y @ y)))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of the ranks."""
    return pearson(rankdata(x), rankdata(y))


def evaluate_word_pairs(
    wv: WordVectors,
    path: str | os.PathLike | None = None,
    *,
    restrict_vocab: int = 300_000,
    case_insensitive: bool = True,
    delimiter: str = "\t",
) -> dict:
    """Correlation of cos(e_a, e_b) with the human score of each "a b score" line.

    ``path`` defaults to gensim's ``wordsim353.tsv``; lines starting with ``#`` are comments.
    Returns ``{"pearson", "spearman", "pairs" (used), "skipped" (a word outside the
    vocabulary)}``.
    """
    path = gensim_test_file("wordsim353.tsv") if path is None else Path(path)
    ok = _ok_vocab(wv, restrict_vocab, case_insensitive)
    fold = str.upper if case_insensitive else str
    unit = wv.unit_vectors()
    gold, model = [], []
    skipped = 0
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(delimiter)
        if len(parts) != 3:
            continue
        try:
            score = float(parts[2])
        except ValueError:
            continue
        a, b = fold(parts[0]), fold(parts[1])
        if a not in ok or b not in ok:
            skipped += 1
            continue
        gold.append(score)
        model.append(float(unit[ok[a]] @ unit[ok[b]]))
    if len(gold) < 2:
        raise ValueError(f"{path}: fewer than 2 pairs have both words in the vocabulary")
    return {
        "pearson": pearson(gold, model),
        "spearman": spearman(gold, model),
        "pairs": len(gold),
        "skipped": skipped,
    }
