"""Vocab: construction order, specials and roles, encode/decode, JSON, every dunder method."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from rnnkit.text import DEFAULT_SPECIALS, PRINTABLE_ASCII, Vocab, ascii_char_vocab, char_vocab

CORPUS = [["b", "a", "c", "a"], ["c", "a", "d"], ["e"]]  # a:3 c:2 b:1 d:1 e:1


def test_build_orders_by_frequency_then_token():
    v = Vocab.build(CORPUS)
    assert v.itos == ("<pad>", "<unk>", "<bos>", "<eos>", "a", "c", "b", "d", "e")
    assert v.counts == {"a": 3, "c": 2, "b": 1, "d": 1, "e": 1}
    assert (v.pad_id, v.unk_id, v.bos_id, v.eos_id) == (0, 1, 2, 3)


def test_min_freq_and_max_size():
    assert Vocab.build(CORPUS, min_freq=2).itos[4:] == ("a", "c")
    # max_size counts the specials: 4 specials + 3 words; ties (b, d, e) broken by token
    assert Vocab.build(CORPUS, max_size=7).itos[4:] == ("a", "c", "b")
    assert len(Vocab.build(CORPUS, max_size=4)) == 4


def test_corpus_tokens_equal_to_a_special_are_not_added_twice():
    v = Vocab.build([["<unk>", "x", "<pad>", "x"]])
    assert v.itos == ("<pad>", "<unk>", "<bos>", "<eos>", "x")


def test_order_does_not_depend_on_corpus_order():
    shuffled = [list(s) for s in CORPUS]
    random.Random(3).shuffle(shuffled)
    for s in shuffled:
        random.Random(4).shuffle(s)
    assert Vocab.build(shuffled) == Vocab.build(CORPUS)


def test_determinism_across_processes_with_different_hash_seeds():
    code = (
        "from rnnkit.text import Vocab, word_tokens;"
        "t = 'the cat and the hat and a bat sat on the mat with a rat and a gnat';"
        "print(Vocab.build([word_tokens(t)]).itos)"
    )
    outs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr
        outs.add(run.stdout)
    expected = (
        "('<pad>', '<unk>', '<bos>', '<eos>', 'a', 'and', 'the', 'bat', 'cat', 'gnat', "
        "'hat', 'mat', 'on', 'rat', 'sat', 'with')\n"
    )
    assert outs == {expected}


def test_encode_decode_with_unknowns_and_bos_eos():
    v = Vocab.build(CORPUS)
    assert v.encode(["a", "zzz", "e"]) == [4, 1, 8]
    assert v.encode(["c"], add_bos=True, add_eos=True) == [2, 5, 3]
    assert v.decode([2, 5, 1, 3, 0]) == ["<bos>", "c", "<unk>", "<eos>", "<pad>"]
    assert v.decode([2, 5, 1, 3, 0], skip_specials=True) == ["c"]
    assert v.decode(np.array([4, 6], dtype=np.int32)) == ["a", "b"]


def test_round_trip_of_known_tokens():
    v = Vocab.build(CORPUS)
    for sentence in CORPUS:
        assert v.decode(v.encode(sentence)) == sentence


def test_encode_rejects_a_sentence_string_for_a_word_vocab():
    v = Vocab(["cat", "dog"])
    with pytest.raises(TypeError, match="tokenise it first"):
        v.encode("cat dog")


def test_custom_specials_and_roles():
    v = Vocab(["x", "y"], specials=("[PAD]", "[UNK]"), pad="[PAD]", unk="[UNK]")
    assert v.itos == ("[PAD]", "[UNK]", "x", "y")
    assert (v.pad_id, v.unk_id) == (0, 1)
    assert v.role("bos") is None
    with pytest.raises(ValueError, match="no bos token"):
        _ = v.bos_id
    # a conventional name that is among the specials takes its role by default
    w = Vocab(["x"], specials=("<pad>", "<eos>"))
    assert (w.pad_id, w.eos_id, w.role("unk")) == (0, 1, None)


def test_no_specials_vocabulary_raises_key_error_for_unknown_tokens():
    v = Vocab(["x", "y"], specials=())
    assert v["y"] == 1
    with pytest.raises(KeyError, match="'z' is not in the vocabulary"):
        v["z"]
    with pytest.raises(KeyError):
        v.encode(["x", "z"])


def test_pad_must_be_first_special():
    with pytest.raises(ValueError, match="must be the first special"):
        Vocab(["x"], specials=("<unk>", "<pad>"))


def test_dunder_methods():
    v = Vocab.build(CORPUS)
    assert len(v) == 9
    assert "a" in v and "<pad>" in v
    assert "zzz" not in v and 4 not in v and None not in v
    assert v["c"] == 5
    assert v["zzz"] == 1
    with pytest.raises(TypeError, match="takes a token"):
        v[4]
    assert list(v) == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "c", "b", "d", "e"]
    assert v == Vocab.build(CORPUS)
    assert v != Vocab.build(CORPUS, min_freq=2)
    assert v != Vocab.build(CORPUS, specials=("<pad>", "<unk>"))
    assert (v == "not a vocab") is False
    assert repr(v) == (
        "Vocab(size=9, specials=('<pad>', '<unk>', '<bos>', '<eos>'), "
        "tokens=['<pad>', '<unk>', '<bos>', '<eos>', 'a', 'c', 'b', 'd', ...])"
    )


def test_json_save_load(tmp_path):
    v = Vocab.build(CORPUS + [["é", "日本"]], specials=("<pad>", "<unk>", "<sep>"))
    path = tmp_path / "vocab.json"
    v.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data == {
        "format": "rnnkit.vocab",
        "version": 1,
        "specials": ["<pad>", "<unk>", "<sep>"],
        "roles": {"pad": "<pad>", "unk": "<unk>", "bos": None, "eos": None},
        "tokens": ["a", "c", "b", "d", "e", "é", "日本"],
        "counts": [3, 2, 1, 1, 1, 1, 1],
    }
    w = Vocab.load(path)
    assert w == v
    assert w.encode(["日本", "?"]) == [9, 1]
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temporary file left


def test_load_rejects_other_json(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="format 'rnnkit.vocab'"):
        Vocab.load(path)
    path.write_text("not json")
    with pytest.raises(ValueError, match="is not a JSON vocabulary file"):
        Vocab.load(path)


def test_printable_ascii_character_vocabulary():
    v = ascii_char_vocab()
    assert len(PRINTABLE_ASCII) == 97
    assert len(v) == len(DEFAULT_SPECIALS) + 97
    # ids: 4 specials, then "\t", "\n", then code points 32..126 in order
    assert v.encode("Hi!\n") == [4 + 2 + 72 - 32, 4 + 2 + 105 - 32, 4 + 2 + 33 - 32, 5]
    assert v.encode("é") == [v.unk_id]
    assert "".join(v.decode(v.encode("Hello, world!"))) == "Hello, world!"


def test_unicode_character_vocabulary():
    v = char_vocab(["héllo", "wörld"])
    # l:3, then the characters seen once by code point: d h o r w é ö
    assert v.itos[4:] == ("l", "d", "h", "o", "r", "w", "é", "ö")
    assert v.decode(v.encode("wörld")) == list("wörld")
