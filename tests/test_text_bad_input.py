"""Bad input gets a clear error naming the argument, what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest

from rnnkit.text import Vocab, one_hot, read_text


def test_empty_corpus():
    with pytest.raises(ValueError, match="corpus is empty: .* got 2 sequence\\(s\\) and no tokens"):
        Vocab.build([[], []])
    with pytest.raises(ValueError, match="corpus is empty"):
        Vocab.build([])


def test_unknown_special_token():
    with pytest.raises(ValueError, match=r"unk='<UNK>' is not a special token; expected one of"):
        Vocab(["a"], unk="<UNK>")


def test_ids_out_of_range():
    v = Vocab(["a", "b"])  # 4 specials + 2 words: ids 0..5
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\], got 6 at position 1"):
        v.decode([4, 6])
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\], got -1 at position 0"):
        v.decode([-1])
    with pytest.raises(TypeError, match="ids must be integers, got 1.5 at position 0"):
        v.decode([1.5])
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 2\], got 3"):
        one_hot(np.array([0, 3]), 3)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 2\], got -1"):
        one_hot([-1], 3)
    with pytest.raises(TypeError, match="ids must hold integers, got dtype float64"):
        one_hot([0.0], 3)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("abc\nnaïve".encode("latin-1"))
    with pytest.raises(
        ValueError, match=r"latin1.txt is not valid utf-8: byte offset 6 \(line 2\)"
    ):
        read_text(path)


def test_max_size_below_number_of_specials():
    with pytest.raises(
        ValueError,
        match=r"max_size must be >= the number of specials \(4: .*\), got 3",
    ):
        Vocab.build([["a"]], max_size=3)


def test_other_argument_errors():
    with pytest.raises(TypeError, match="min_freq must be an int, got float"):
        Vocab.build([["a"]], min_freq=1.5)
    with pytest.raises(ValueError, match="min_freq must be >= 1, got 0"):
        Vocab.build([["a"]], min_freq=0)
    with pytest.raises(
        ValueError, match=r"specials must not repeat a token, got duplicates \['x'\]"
    ):
        Vocab(["a"], specials=("x", "x"))
    with pytest.raises(
        ValueError, match=r"tokens must not repeat a special token, got \['<pad>'\]"
    ):
        Vocab(["<pad>"])
    with pytest.raises(
        TypeError, match="corpus must be an iterable of token lists, got a single str"
    ):
        Vocab.build("abc")
    with pytest.raises(TypeError, match="num_classes must be an int"):
        one_hot([0], 2.0)
