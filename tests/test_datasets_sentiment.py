"""VADER's movie-review sentences from the vaderSentiment sdist: counts, exact rows, split."""

from __future__ import annotations

from rnnkit.datasets.sentiment import load_sentiment, load_snippets


def test_the_file_holds_10605_scored_sentences_in_order():
    snippets = load_snippets()
    assert len(snippets) == 10_605
    first, last = snippets[0], snippets[-1]
    assert (first.id, first.score) == (1, 2.26666666667)
    assert first.text.startswith("The Rock is destined to be the 21st Century's new ''Conan''")
    assert (last.id, last.score) == (10_605, -1.8125)
    assert [s.id for s in snippets] == list(range(1, 10_606))
    signs = [(s.score > 0) - (s.score < 0) for s in snippets]
    assert (signs.count(1), signs.count(-1), signs.count(0)) == (5_242, 5_326, 37)


def test_splits_partition_the_nonzero_sentences_with_labels_from_the_sign():
    kept = [s for s in load_snippets() if s.score != 0]
    labels_of: dict[str, set[int]] = {}
    for s in kept:  # a few sentences occur twice in the file
        labels_of.setdefault(s.text, set()).add(int(s.score > 0))
    seen = []
    for split, size in (("train", 8_454), ("valid", 1_056), ("test", 1_058)):
        texts, labels = load_sentiment(split)
        assert len(texts) == len(labels) == size
        assert all(y in labels_of[t] for t, y in zip(texts, labels))
        seen += texts
    assert sorted(seen) == sorted(s.text for s in kept)  # each of the 10,568 exactly once
    assert load_sentiment("test") == load_sentiment("test")  # a fixed split
