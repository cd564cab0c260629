"""word2vec's corpus statistics against gensim and their formulas; the noise sampler."""

from __future__ import annotations

import numpy as np
import pytest
from gensim.models import Word2Vec as GensimWord2Vec

from rnnkit.word2vec import Word2Vec, Word2VecConfig, _cengine, gensim_test_file
from rnnkit.word2vec.corpus import (
    alias_table,
    encode,
    job_bounds,
    keep_probabilities,
    noise_distribution,
)


@pytest.fixture(scope="module")
def lee():
    lines = gensim_test_file("lee_background.cor").read_text(encoding="utf-8").splitlines()
    return [line.split() for line in lines]


def test_keep_probabilities_formula():
    counts = np.array([1000, 100, 10, 1])
    tT = 0.01 * 1111
    expected = [min(1.0, (np.sqrt(f / tT) + 1) * tT / f) for f in counts]
    np.testing.assert_allclose(keep_probabilities(counts, 0.01), expected, rtol=1e-6)
    assert keep_probabilities(counts, 0.01)[2:].tolist() == [1.0, 1.0]
    assert keep_probabilities(counts, 0.0).tolist() == [1.0] * 4


def test_vocabulary_and_tables_equal_gensims(lee):
    gensim = GensimWord2Vec(min_count=3, sample=1e-3, sg=1)
    gensim.build_vocab(lee)
    model = Word2Vec(Word2VecConfig(min_count=3, sample=1e-3))
    vocab = model.build_vocab(lee)
    assert sorted(vocab.itos) == sorted(gensim.wv.index_to_key)
    g_counts = [gensim.wv.get_vecattr(w, "count") for w in vocab.itos]
    assert model.counts.tolist() == g_counts
    # gensim stores keep(w) as round(keep * 2^32)
    g_keep = np.array([gensim.wv.get_vecattr(w, "sample_int") for w in vocab.itos]) / 2**32
    np.testing.assert_allclose(model.keep, g_keep, rtol=2e-7, atol=1e-9)
    # gensim's cumulative noise table over 2^31 - 1 holds the same distribution
    g_rows = [gensim.wv.get_index(w) for w in vocab.itos]
    g_p = np.diff(gensim.cum_table, prepend=0) / gensim.cum_table[-1]
    np.testing.assert_allclose(model.noise, g_p[g_rows], rtol=1e-6, atol=1e-9)


def test_noise_distribution():
    p = noise_distribution(np.array([16, 1, 81]), 0.75)
    np.testing.assert_allclose(p, np.array([8.0, 1.0, 27.0]) / 36.0)


@pytest.mark.parametrize("V", [1, 2, 7, 500])
def test_alias_table_encodes_the_distribution_exactly(V):
    p = np.random.default_rng(V).random(V) ** 3 + 1e-9
    p /= p.sum()
    prob, alias = alias_table(p)
    implied = prob.astype(np.float64).copy()
    np.add.at(implied, alias, 1.0 - prob)
    np.testing.assert_allclose(implied / V, p, rtol=1e-5, atol=1e-9)


@pytest.mark.skipif(not _cengine.available(), reason="no C compiler")
def test_c_sampler_draws_from_the_distribution():
    counts = np.random.default_rng(0).integers(1, 5000, size=40)
    p = noise_distribution(counts)
    prob, alias = alias_table(p)
    n = 2_000_000
    draws = _cengine.sample_noise(prob, alias, n, seed=123)
    freq = np.bincount(draws, minlength=p.size) / n
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) < 5 * sigma)


def test_encode_drops_unknown_words_and_cuts_long_sentences():
    index = {"a": 0, "b": 1, "c": 2}
    enc = encode([["a", "x", "b"], ["y"], ["c", "c", "a", "b", "a"]], index, max_sentence_length=3)
    assert enc.ids.tolist() == [0, 1, 2, 2, 0, 1, 0]
    assert enc.ends.tolist() == [2, 5, 7]  # the empty sentence is gone, the long one cut
    assert enc.raw_words == 9
    with pytest.raises(TypeError, match=r"sentences\[1\] must be a list of tokens, got a str"):
        encode([["a"], "a b"], index)


def test_job_bounds():
    ends = np.array([3, 5, 12, 13, 20])
    assert job_bounds(ends, 4) == [(0, 2), (2, 3), (3, 5)]
    assert job_bounds(ends, 100) == [(0, 5)]
    assert job_bounds(np.array([], dtype=np.int64), 4) == []
