"""word2vec file formats against gensim, pretrained vectors on a Vocab, weight tying."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from rnnkit.embeddings import (
    WordVectors,
    embedding_word_vectors,
    pretrained_embedding,
    tie_weights,
)
from rnnkit.text import Vocab
from rnnkit.word2vec import gensim_test_file


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5, 7)) * 10.0 ** rng.integers(-6, 6, size=(5, 7))
    return WordVectors(["the", "ß", "日本", "naïve", "x_y"], values)


@pytest.mark.parametrize("binary", [False, True])
def test_rnnkit_file_read_by_gensim(tmp_path, vectors, binary):
    path = tmp_path / "v.w2v"
    vectors.save_word2vec_format(path, binary=binary)
    kv = KeyedVectors.load_word2vec_format(str(path), binary=binary)
    assert kv.index_to_key == list(vectors.words)
    np.testing.assert_array_equal(kv.vectors, vectors.vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_file_read_by_rnnkit(tmp_path, vectors, binary):
    kv = KeyedVectors(vector_size=7)
    kv.add_vectors(list(vectors.words), vectors.vectors)
    path = tmp_path / "g.w2v"
    kv.save_word2vec_format(str(path), binary=binary)
    got = WordVectors.load_word2vec_format(path, binary=binary)
    assert got.words == vectors.words
    np.testing.assert_array_equal(got.vectors, vectors.vectors)


def test_third_party_text_file_matches_gensim():
    path = gensim_test_file("lee_fasttext.vec")
    ours = WordVectors.load_word2vec_format(path)
    theirs = KeyedVectors.load_word2vec_format(str(path))
    assert list(ours.words) == theirs.index_to_key
    np.testing.assert_array_equal(ours.vectors, theirs.vectors)
    limited = WordVectors.load_word2vec_format(path, limit=3)
    assert limited.words == ("the", "to", "of")


def test_binary_layout_is_the_c_tools(tmp_path):
    wv = WordVectors(["ab", "c"], [[1.0, -2.0], [0.5, 0.0]])
    path = tmp_path / "v.bin"
    wv.save_word2vec_format(path, binary=True)
    f32 = np.array([1.0, -2.0], "<f4").tobytes(), np.array([0.5, 0.0], "<f4").tobytes()
    assert path.read_bytes() == b"2 2\nab " + f32[0] + b"\nc " + f32[1] + b"\n"
    wv.save_word2vec_format(path)
    assert path.read_text() == "2 2\nab 1 -2\nc 0.5 0\n"


def test_container_dunders(vectors):
    assert len(vectors) == 5
    assert "ß" in vectors and "zz" not in vectors
    np.testing.assert_array_equal(vectors["日本"], vectors.vectors[2])
    assert vectors.index("naïve") == 3
    assert list(vectors) == list(vectors.words)
    assert repr(vectors) == "WordVectors(V=5, E=7)"
    with pytest.raises(KeyError, match="word 'zz' is not in these 5 word vectors"):
        vectors["zz"]


def test_bad_files(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"hello world\n")
    with pytest.raises(ValueError, match="does not start with a word2vec header"):
        WordVectors.load_word2vec_format(path)
    path.write_bytes(b"2 3\na 1 2 3\nb 1 2\n")
    with pytest.raises(ValueError, match="line 3 must hold a word and 3 values, got 2 values"):
        WordVectors.load_word2vec_format(path)
    path.write_bytes(b"3 1\na 1\nb 2\n")
    with pytest.raises(ValueError, match="expected 3 words after the header, got 2"):
        WordVectors.load_word2vec_format(path)
    path.write_bytes(b"1 2\ncaf\xe9 1 2\n")  # a Latin-1 word
    with pytest.raises(ValueError, match=r"bad.txt is not valid UTF-8: byte offset 7"):
        WordVectors.load_word2vec_format(path)
    assert WordVectors.load_word2vec_format(path, errors="replace").words == ("caf\ufffd",)
    with pytest.raises(ValueError, match="must be a non-empty str without whitespace"):
        WordVectors(["a b"], [[1.0]])
    with pytest.raises(ValueError, match=r"vectors must have shape \(V=2, E\), got \(3, 1\)"):
        WordVectors(["a", "b"], np.zeros((3, 1)))


def test_repeated_word_keeps_its_first_vector(tmp_path):
    path = tmp_path / "dup.txt"
    path.write_text("3 1\na 1\nb 2\na 3\n")
    wv = WordVectors.load_word2vec_format(path)
    assert wv.words == ("a", "b")
    np.testing.assert_array_equal(wv.vectors, [[1.0], [2.0]])


VOCAB = Vocab(["the", "ß", "absent"], specials=("<pad>", "<unk>"))


@pytest.mark.parametrize("missing", ["zero", "mean", "random"])
def test_pretrained_embedding_rows(vectors, missing):
    emb, absent = pretrained_embedding(VOCAB, vectors, missing=missing, seed=3)
    W = emb.weight.detach().numpy()
    assert absent == ["absent"]
    assert emb.padding_idx == 0
    np.testing.assert_array_equal(W[0], np.zeros(7))
    np.testing.assert_array_equal(W[2], vectors["the"])
    np.testing.assert_array_equal(W[3], vectors["ß"])
    fill = {
        "zero": np.zeros((2, 7)),
        "mean": np.tile(vectors.vectors.mean(axis=0), (2, 1)),
        # rows 1 (<unk>) and 4 (absent) in order, from N(0, std of all pretrained values)
        "random": np.random.default_rng(3).normal(0.0, vectors.vectors.std(), size=(3, 7))[1:],
    }[missing]
    np.testing.assert_allclose(W[[1, 4]], fill.astype(np.float32), rtol=1e-6)
    assert emb.weight.requires_grad


def test_pretrained_embedding_error_policy_and_freeze(vectors):
    with pytest.raises(ValueError, match=r"missing='error' and 1 of 3 vocabulary words .*'absent'"):
        pretrained_embedding(VOCAB, vectors, missing="error")
    emb, absent = pretrained_embedding(Vocab(["the"]), vectors, missing="error", freeze=True)
    assert absent == [] and not emb.weight.requires_grad
    with pytest.raises(ValueError, match="missing must be one of"):
        pretrained_embedding(VOCAB, vectors, missing="skip")


def test_embedding_back_to_word_vectors(tmp_path, vectors):
    emb, _ = pretrained_embedding(VOCAB, vectors, missing="zero")
    wv = embedding_word_vectors(emb, VOCAB)
    assert wv.words == ("the", "ß", "absent")
    np.testing.assert_array_equal(wv["ß"], vectors["ß"])
    path = tmp_path / "emb.txt"
    wv.save_word2vec_format(path)
    np.testing.assert_array_equal(
        KeyedVectors.load_word2vec_format(str(path))["the"], vectors["the"]
    )


def test_tie_weights_shares_one_table_and_adds_both_gradients():
    torch.manual_seed(0)
    V, E = 6, 4
    emb, out = torch.nn.Embedding(V, E), torch.nn.Linear(E, V)
    # the oracle: gradient of the table from the embedding use plus from the output use
    table = emb.weight.detach().clone().requires_grad_(True)
    ids = torch.tensor([1, 3, 3, 5])
    loss_ref = (torch.nn.functional.linear(table[ids], table, out.bias) ** 2).sum()
    loss_ref.backward()
    tied = tie_weights(emb, out)
    assert tied is out and out.weight is emb.weight
    assert len(list(torch.nn.ModuleList([emb, out]).parameters())) == 2  # table + bias
    (out(emb(ids)) ** 2).sum().backward()
    torch.testing.assert_close(emb.weight.grad, table.grad)
    with pytest.raises(
        ValueError, match=r"output must be nn.Linear\(4, 6\) .* got weight of shape \(6, 5\)"
    ):
        tie_weights(emb, torch.nn.Linear(5, 6))
