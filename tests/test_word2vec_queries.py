"""Queries and benchmarks of word vectors against gensim's KeyedVectors and hand-made vectors."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models import KeyedVectors
from scipy import stats

from rnnkit.embeddings import WordVectors
from rnnkit.word2vec import (
    analogy,
    bias_direction,
    bias_projection,
    evaluate_analogies,
    evaluate_word_pairs,
    gensim_test_file,
    most_similar,
    similarity,
)
from rnnkit.word2vec.evaluate import rankdata, spearman


@pytest.fixture(scope="module")
def lee_vectors():
    path = str(gensim_test_file("lee_fasttext.vec"))
    return WordVectors.load_word2vec_format(path), KeyedVectors.load_word2vec_format(path)


def to_gensim(wv: WordVectors) -> KeyedVectors:
    kv = KeyedVectors(vector_size=wv.vector_size)
    kv.add_vectors(list(wv.words), wv.vectors)
    return kv


def test_most_similar_and_similarity_equal_gensims(lee_vectors):
    ours, theirs = lee_vectors
    for pos, neg in [(["government"], []), (["police", "fire"], ["the"]), ([], ["war"])]:
        got = most_similar(ours, pos, neg, topn=8)
        want = theirs.most_similar(positive=pos, negative=neg, topn=8)
        assert [w for w, _ in got] == [w for w, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-5, atol=1e-6)
    got = most_similar(ours, "police", topn=5, restrict_vocab=300)
    want = theirs.most_similar("police", topn=5, restrict_vocab=300)
    assert [w for w, _ in got] == [w for w, _ in want]
    assert similarity(ours, "police", "officers") == pytest.approx(
        float(theirs.similarity("police", "officers")), rel=1e-6
    )


def test_the_lectures_analogy_excludes_the_query_words():
    # e_queen = e_king + e_woman - e_man exactly; king itself is closer to the query than any
    # other word, so it must be excluded for queen to come first
    words = ["man", "woman", "king", "queen", "apple"]
    vectors = [[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, -1]]
    wv = WordVectors(words, vectors)
    [(best, score)] = analogy(wv, "man", "king", "woman")
    assert best == "queen"
    u = wv.unit_vectors()
    q = u[2] + u[1] - u[0]
    assert score == pytest.approx(float(u[3] @ q / np.linalg.norm(q)), rel=1e-6)
    assert most_similar(wv, ["king", "woman"], ["man"], topn=2)[1][0] == "apple"


def test_bias_projection_hand_made():
    wv = WordVectors(
        ["he", "she", "nurse", "engineer", "table"],
        [[2, 0], [-1, 0], [-0.6, 0.8], [1.6, 1.2], [0, 5]],
    )
    np.testing.assert_allclose(bias_direction(wv), [1.0, 0.0])
    got = bias_projection(wv, ["nurse", "table", "engineer"])
    assert list(got) == ["engineer", "table", "nurse"]
    np.testing.assert_allclose(list(got.values()), [0.8, 0.0, -0.6], atol=1e-7)
    with pytest.raises(ValueError, match="zero direction"):
        bias_direction(wv, [("he", "he")])


def synthetic_analogy_vectors():
    """Vectors for the words of questions-words.txt where capital = country + a shared offset
    (so "capital-common-countries" questions are mostly right and the rest mostly wrong), plus
    a capitalised duplicate to exercise the case-insensitive rules."""
    rng = np.random.default_rng(0)
    path = gensim_test_file("questions-words.txt")
    words, capital_of = [], {}
    for line in path.read_text().splitlines():
        if line.startswith(":"):
            section = line
            continue
        for w in line.split():
            if w not in words:
                words.append(w)
        if section == ": capital-common-countries":
            a, b = line.split()[:2]
            capital_of[a] = b
    E = 30
    vec = {w: rng.normal(size=E) for w in words}
    offset = rng.normal(size=E) * 2
    for capital, country in capital_of.items():
        vec[capital] = vec[country] + offset + rng.normal(size=E) * 0.3
    words = words + ["ATHENS"]
    vec["ATHENS"] = vec["Athens"] * 1.01
    return WordVectors(words, np.array([vec[w] for w in words]))


@pytest.mark.parametrize("restrict_vocab", [300_000, 400])
def test_analogy_evaluation_equals_gensims(tmp_path, restrict_vocab):
    wv = synthetic_analogy_vectors()
    # every 8th question of every section keeps the test quick (gensim answers one at a time)
    lines = gensim_test_file("questions-words.txt").read_text().splitlines()
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(s for k, s in enumerate(lines) if s[0] == ":" or k % 8 == 0))
    ours = evaluate_analogies(wv, questions, restrict_vocab=restrict_vocab)
    score, sections = to_gensim(wv).evaluate_word_analogies(
        str(questions), restrict_vocab=restrict_vocab
    )
    total = sections[-1]
    assert ours["correct"] == len(total["correct"])
    assert ours["answered"] == len(total["correct"]) + len(total["incorrect"])
    assert ours["accuracy"] == pytest.approx(score)
    theirs = {s["section"]: (len(s["correct"]), len(s["correct"]) + len(s["incorrect"]))
              for s in sections[:-1] if s["correct"] or s["incorrect"]}  # fmt: skip
    assert ours["sections"] == theirs
    assert 0.02 < ours["accuracy"] < 0.9  # neither all right nor all wrong: a real check


@pytest.mark.parametrize("name", ["wordsim353.tsv", "simlex999.txt"])
def test_word_pair_evaluation_equals_gensims(lee_vectors, name):
    ours_wv, theirs_kv = lee_vectors
    path = gensim_test_file(name)
    ours = evaluate_word_pairs(ours_wv, path)
    pearson, spearman_result, oov = theirs_kv.evaluate_word_pairs(str(path))
    assert ours["pearson"] == pytest.approx(pearson[0], rel=1e-6)
    assert ours["spearman"] == pytest.approx(spearman_result[0], rel=1e-6)
    assert 100 * ours["skipped"] / (ours["skipped"] + ours["pairs"]) == pytest.approx(oov)


def test_rank_statistics_equal_scipys():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=50).astype(float)  # many ties
    y = x + rng.normal(size=50)
    np.testing.assert_array_equal(rankdata(x), stats.rankdata(x))
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], rel=1e-12)


def test_query_errors(lee_vectors):
    wv = lee_vectors[0]
    with pytest.raises(ValueError, match="at least one positive or negative word"):
        most_similar(wv, [], [])
    with pytest.raises(ValueError, match="topn must be an int >= 1, got 0"):
        most_similar(wv, "the", topn=0)
    with pytest.raises(KeyError, match="'qwertyuiop' is not in these 1762 word vectors"):
        most_similar(wv, "qwertyuiop")
