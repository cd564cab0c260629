"""Tokenisers, the text reader, one-hot encoding, and that rnnkit.text never imports torch."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rnnkit.text import char_tokens, one_hot, read_text, to_index, word_tokens


def test_word_tokens_pattern():
    text = "Don't stop--here, O'er the well-known Café! 3.5"
    assert word_tokens(text) == [
        "Don't", "stop", "-", "-", "here", ",", "O'er", "the", "well-known", "Café", "!",
        "3", ".", "5",
    ]  # fmt: skip
    assert word_tokens(text, lower=True, punctuation=False) == [
        "don't", "stop", "here", "o'er", "the", "well-known", "café", "3", "5",
    ]  # fmt: skip
    assert word_tokens("a1 b22 c", pattern=r"[a-z]\d*") == ["a1", "b22", "c"]
    assert word_tokens("") == []


def test_char_tokens_unicode_and_ascii():
    decomposed = "Cafe\u0301\r\nnai\u0308ve"
    assert char_tokens(decomposed) == list("Café\r\nnaïve")  # NFC joins e + U+0301
    assert char_tokens(decomposed, normalize=None) == list(decomposed)
    assert char_tokens(decomposed, ascii_only=True) == list("Cafe\nnaive")
    assert char_tokens("日本", ascii_only=True) == ["日", "本"]  # left for the vocab's <unk>


def test_tokenisers_reject_non_strings():
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        word_tokens(b"abc")
    with pytest.raises(TypeError, match="text must be a str, got list"):
        char_tokens(["a"])


def test_read_text_policies(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"caf\xc3\xa9\nna\xefve\n")  # valid UTF-8, then a Latin-1 byte
    with pytest.raises(ValueError) as err:
        read_text(path)
    message = str(err.value)
    assert str(path) in message
    assert "byte offset 8 (line 2)" in message
    assert "errors='replace'" in message
    assert read_text(path, errors="replace") == "café\nna\ufffdve\n"
    assert read_text(path, errors="ignore") == "café\nnave\n"
    assert read_text(path, encoding="latin-1") == "cafÃ©\nnaïve\n"
    with pytest.raises(ValueError, match="errors must be one of"):
        read_text(path, errors="bogus")


def test_one_hot_exact_values():
    ids = np.array([[2, 0], [1, 2]])
    expected = np.array(
        [[[0, 0, 1, 0], [1, 0, 0, 0]], [[0, 1, 0, 0], [0, 0, 1, 0]]], dtype=np.float32
    )
    got = one_hot(ids, 4)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(to_index(got), ids)
    np.testing.assert_array_equal(one_hot([3], 4, dtype=np.int8), np.array([[0, 0, 0, 1]]))
    assert one_hot(np.zeros((0,), dtype=np.int64), 3).shape == (0, 3)


def test_one_hot_matches_the_identity_rows():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=(5, 3))
    np.testing.assert_array_equal(one_hot(ids, 7), np.eye(7, dtype=np.float32)[ids])


def test_to_index_rejects_non_one_hot():
    with pytest.raises(ValueError, match=r"exactly one 1 .* got \[1, 1, 0\] at index \(1,\)"):
        to_index(np.array([[0, 1, 0], [1, 1, 0]]))
    with pytest.raises(ValueError, match="exactly one 1"):
        to_index(np.array([[0.5, 0.5]]))


def test_text_package_does_not_import_torch():
    code = (
        "import sys, rnnkit.text;"
        "from rnnkit.text import Vocab, word_tokens;"
        "Vocab.build([word_tokens('a b a')]);"
        "print('torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
