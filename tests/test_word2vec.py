"""Skip-gram training: the loss and the pair/noise/sub-sampling counts against their formulas,
both engines; learning on a small real corpus; engine fallback; bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnkit.word2vec import Word2Vec, Word2VecConfig, _cengine, gensim_test_file
from rnnkit.word2vec.corpus import encode

ENGINES = [
    pytest.param("c", marks=pytest.mark.skipif(not _cengine.available(), reason="no compiler")),
    "torch",
]
FROZEN = dict(alpha=1e-30, min_alpha=1e-30)  # updates vanish in float32: the vectors stay put


@pytest.fixture(scope="module")
def lee():
    lines = gensim_test_file("lee_background.cor").read_text(encoding="utf-8").splitlines()
    return [line.lower().split() for line in lines]


def softplus(x):
    return np.logaddexp(0.0, x)


def adjacent_pairs(model, sentences):
    """(centre, context) ids of every pair a window of 1 gives, without sub-sampling."""
    enc = encode(sentences, {w: i for i, w in enumerate(model.vocab.itos)})
    pairs = []
    for start, stop in zip(np.r_[0, enc.ends[:-1]], enc.ends):
        s = enc.ids[start:stop]
        pairs += list(zip(s[:-1], s[1:])) + list(zip(s[1:], s[:-1]))
    return np.array(pairs)


@pytest.mark.parametrize("engine", ENGINES)
def test_positive_loss_equals_its_formula(lee, engine):
    """negative=0, window=1, no sub-sampling: the loss is the mean of -log sigma(u_o . v_c)
    over every adjacent pair, which we recompute from the vectors."""
    sentences = lee[:40]
    cfg = Word2VecConfig(min_count=2, window=1, negative=0, sample=0, epochs=1, engine=engine,
                         workers=2, vector_size=16, **FROZEN)  # fmt: skip
    model = Word2Vec(cfg)
    model.build_vocab(sentences)
    g = torch.Generator().manual_seed(0)
    model.syn0.copy_(torch.randn(model.syn0.shape, generator=g) * 0.3)
    model.syn1.copy_(torch.randn(model.syn1.shape, generator=g) * 0.3)
    v, u = model.syn0.double().numpy().copy(), model.syn1.double().numpy().copy()
    pairs = adjacent_pairs(model, sentences)
    (loss,) = model.train(sentences)
    expected = softplus(-(u[pairs[:, 0]] * v[pairs[:, 1]]).sum(1)).mean()
    stats = model.history[-1]
    assert stats.pairs == len(pairs)
    assert stats.noise_words == 0
    assert loss == pytest.approx(expected, rel=1e-5)
    np.testing.assert_array_equal(model.syn0.double().numpy(), v)  # nothing moved


@pytest.mark.parametrize("engine", ENGINES)
def test_noise_loss_and_collision_skipping(lee, engine):
    """With every v_w = v and every u_w = u, each positive term is softplus(-u.v) and each noise
    term softplus(u.v); noise draws equal to the centre are skipped, so the expected number of
    noise words is K * sum over pairs of (1 - P_n(o))."""
    sentences = lee[:60]
    K = 5
    cfg = Word2VecConfig(min_count=2, window=1, negative=K, sample=0, epochs=1, engine=engine,
                         workers=2, vector_size=8, **FROZEN)  # fmt: skip
    model = Word2Vec(cfg)
    model.build_vocab(sentences)
    v, u = torch.linspace(-0.3, 0.4, 8), torch.linspace(0.5, -0.2, 8)
    model.syn0.copy_(v.expand_as(model.syn0))
    model.syn1.copy_(u.expand_as(model.syn1))
    c = float((u.double() * v.double()).sum())
    model.train(sentences)
    stats = model.history[-1]
    expected = (stats.pairs * softplus(-c) + stats.noise_words * softplus(c)) / stats.pairs
    assert stats.loss == pytest.approx(expected, rel=1e-5)
    p_centre = model.noise[adjacent_pairs(model, sentences)[:, 0]]
    mean, var = K * (1 - p_centre).sum(), K * (p_centre * (1 - p_centre)).sum()
    assert abs(stats.noise_words - mean) < 5 * np.sqrt(var)


@pytest.mark.parametrize("engine", ENGINES)
def test_dynamic_window_and_subsampling_counts(lee, engine):
    """E[pairs] = sum over kept sentences of sum_d (W - d + 1) / W * 2 max(n - d, 0) with no
    sub-sampling; E[kept words] = sum_w count_w keep(w) with it."""
    W = 4
    sentences = lee[:150] if engine == "c" else lee[:50]
    cfg = Word2VecConfig(min_count=1, window=W, negative=1, sample=0, epochs=2, engine=engine,
                         vector_size=8, **FROZEN)  # fmt: skip
    model = Word2Vec(cfg)
    model.build_vocab(sentences)
    model.train(sentences)
    lengths = [len(s) for s in sentences]
    expected = sum((W - d + 1) / W * 2 * max(n - d, 0) for n in lengths for d in range(1, W + 1))
    for stats in model.history:
        assert stats.pairs == pytest.approx(expected, rel=0.02)
        assert stats.kept_words == sum(lengths)

    cfg = Word2VecConfig(min_count=1, sample=1e-3, negative=1, epochs=2, engine=engine,
                         vector_size=8, **FROZEN)  # fmt: skip
    model = Word2Vec(cfg)
    model.build_vocab(sentences)
    model.train(sentences)
    keep = model.keep.astype(np.float64)
    mean = (model.counts * keep).sum()
    sd = np.sqrt((model.counts * keep * (1 - keep)).sum())
    for stats in model.history:
        assert abs(stats.kept_words - mean) < 5 * sd
        assert stats.kept_words < 0.8 * sum(lengths)  # frequent words really are dropped


def rank_of(model, word, other):
    ranked = [w for w, _ in model.most_similar(word, topn=len(model.vocab) - 1)]
    return ranked.index(other) + 1


def test_learns_on_a_small_real_corpus(lee):
    """The loss falls, and known related pairs of the Lee news corpus end up near each other:
    a random word reaches the top 10 of ~2,900 with probability ~0.3%."""
    cfg = Word2VecConfig(vector_size=50, min_count=3, epochs=10, workers=2, seed=3)
    model = Word2Vec(cfg).fit(lee)
    losses = [h.loss for h in model.history]
    assert losses[0] > 1.2 * losses[-1]
    assert losses[1] > losses[-1]
    assert rank_of(model, "bin", "laden") <= 10
    assert rank_of(model, "hamas", "jihad") <= 10
    assert rank_of(model, "qantas", "workers") <= 10
    # while random pairs rank anywhere
    words = model.vocab.itos
    rng = np.random.default_rng(0)
    ranks = [rank_of(model, words[i], words[j]) for i, j in rng.integers(0, len(words), (40, 2))
             if i != j]  # fmt: skip
    assert np.median(ranks) > len(words) / 10


def test_torch_engine_learns_like_the_c_engine(lee):
    sentences = lee[:120]
    losses = {}
    for engine in ("torch", "c") if _cengine.available() else ("torch",):
        cfg = Word2VecConfig(vector_size=32, min_count=2, epochs=4, engine=engine, seed=2)
        losses[engine] = Word2Vec(cfg).fit(sentences).history
    t = [h.loss for h in losses["torch"]]
    assert t[0] > t[-1]
    if "c" in losses:
        c = [h.loss for h in losses["c"]]
        np.testing.assert_allclose(t, c, rtol=0.05)


@pytest.mark.skipif(not _cengine.available(), reason="no C compiler")
def test_one_worker_is_deterministic(lee):
    cfg = Word2VecConfig(vector_size=16, min_count=3, epochs=2, workers=1, seed=7)
    a = Word2Vec(cfg).fit(lee[:100])
    b = Word2Vec(cfg).fit(lee[:100])
    assert torch.equal(a.syn0, b.syn0)
    assert [h.loss for h in a.history] == [h.loss for h in b.history]


def test_falls_back_to_torch_without_a_compiler(tmp_path, monkeypatch, lee):
    monkeypatch.setenv("RNNKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(_cengine, "_compiler", lambda: None)
    _cengine.load.cache_clear()
    try:
        model = Word2Vec(Word2VecConfig(engine="auto", vector_size=8, epochs=1, min_count=2))
        assert model.engine == "torch"
        model.fit(lee[:10])
        assert model.history[0].pairs > 0
        with pytest.raises(RuntimeError, match="engine='c' needs a C compiler"):
            Word2Vec(Word2VecConfig(engine="c"))
    finally:
        _cengine.load.cache_clear()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_gpu(lee):
    cfg = Word2VecConfig(vector_size=32, min_count=3, epochs=3, engine="torch", device="cuda")
    model = Word2Vec(cfg).fit(lee)
    assert model.syn0.is_cuda
    assert model.history[0].loss > model.history[-1].loss


def test_bad_input(lee):
    with pytest.raises(ValueError, match=r"sentences must hold at least one word, got 2 sentence"):
        Word2Vec().build_vocab([[], []])
    with pytest.raises(ValueError, match=r"no word occurs min_count=50 times: .* seen 2 times"):
        Word2Vec(Word2VecConfig(min_count=50)).build_vocab([["a", "b", "a"]])
    with pytest.raises(TypeError, match=r"sentences\[0\] must be a list of tokens, got a str"):
        Word2Vec().build_vocab(["the cat sat"])
    with pytest.raises(RuntimeError, match="call build_vocab"):
        Word2Vec().train(lee)
    model = Word2Vec(Word2VecConfig(min_count=1))
    model.build_vocab([["a", "b"]])
    with pytest.raises(ValueError, match="hold no word of the vocabulary"):
        model.train([["c", "d"]])
    with pytest.raises(ValueError, match=r"sample must lie in \[0, 1\), got 2"):
        Word2VecConfig(sample=2)
    with pytest.raises(ValueError, match="window must be >= 1, got 0"):
        Word2VecConfig(window=0)
    with pytest.raises(ValueError, match="engine must be one of"):
        Word2VecConfig(engine="numba")
    with pytest.raises(ValueError, match="engine='c' runs on the CPU only"):
        Word2VecConfig(engine="c", device="cuda")
    with pytest.raises(KeyError, match="'zebra' is not in these"):
        Word2Vec(Word2VecConfig(min_count=1)).fit([["a", "b"]]).similarity("a", "zebra")
