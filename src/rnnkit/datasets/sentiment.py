"""Movie-review sentences scored by people, from the ``vaderSentiment==3.3.2`` sdist.

The source distribution of VADER (Hutto & Gilbert, ICWSM 2014) ships its evaluation data in
``additional_resources/hutto_ICWSM_2014.tar.gz``. Its ``movieReviewSnippets_GroundTruth.txt``
holds 10,605 sentences from Pang & Lee's movie reviews, one per line as
``id<TAB>score<TAB>text``, the score being the mean of 20 people's ratings on [-4, 4].

Binary labels come from the score's sign (1 positive, 0 negative); the 37 sentences scored
exactly 0 are dropped, leaving 10,568 (5,242 positive). The split is a fixed permutation of
the remaining sentences (``numpy.random.default_rng(20140601)``): 80 % train, 10 % validation,
10 % test.

The text file is extracted once into ``<cache>/vader/`` and its sha256 checked on every load.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass

import numpy as np

from ._cache import (
    atomic_write_bytes,
    cache_dir,
    fetch_sdist,
    read_archive_members,
    sha256_file,
    verify_sha256,
)

NAME = "vaderSentiment"
VERSION = "3.3.2"
SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
MEMBER_SHA256 = "c8293b0d942e90e223ea2c0955d969040d1a1be514a978b9af0698940bd13350"
SPLIT_SEED = 20140601
SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Snippet:
    """One scored sentence: its id in the file, the mean human score in [-4, 4], the text."""

    id: int
    score: float
    text: str


def snippets_path() -> str:
    """The cached ``movieReviewSnippets_GroundTruth.txt``, extracted from the sdist if needed."""
    target = cache_dir("vader") / "movieReviewSnippets_GroundTruth.txt"
    if target.exists() and sha256_file(target) == MEMBER_SHA256:
        return str(target)
    archive = fetch_sdist(NAME, VERSION, SHA256)
    inner = read_archive_members(archive, INNER_ARCHIVE)[INNER_ARCHIVE]
    with tarfile.open(fileobj=io.BytesIO(inner), mode="r:gz") as t:
        f = t.extractfile(MEMBER)
        if f is None:
            raise FileNotFoundError(f"{INNER_ARCHIVE} has no file {MEMBER}")
        data = f.read()
    atomic_write_bytes(target, data)
    verify_sha256(target, MEMBER_SHA256)
    return str(target)


def load_snippets() -> list[Snippet]:
    """All 10,605 scored sentences in file order."""
    with open(snippets_path(), encoding="utf-8", newline="") as f:
        lines = f.read().splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise ValueError(f"line {number}: expected 'id<TAB>score<TAB>text', got {line!r:.80}")
        out.append(Snippet(int(parts[0]), float(parts[1]), parts[2].strip()))
    return out


def load_sentiment(split: str) -> tuple[list[str], list[int]]:
    """``(texts, labels)`` of one split; label 1 = positive score, 0 = negative."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    kept = [s for s in load_snippets() if s.score != 0.0]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(kept))
    n_train, n_valid = int(0.8 * len(kept)), int(0.1 * len(kept))
    bounds = {
        "train": (0, n_train),
        "valid": (n_train, n_train + n_valid),
        "test": (n_train + n_valid, len(kept)),
    }
    lo, hi = bounds[split]
    chosen = [kept[i] for i in order[lo:hi]]
    return [s.text for s in chosen], [int(s.score > 0) for s in chosen]
