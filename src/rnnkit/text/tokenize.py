"""Tokenisers (text -> tokens) and a text reader with a clear policy for undecodable bytes.

Two granularities, as in the lecture:

* characters: :func:`char_tokens`, with the printable-ASCII vocabulary of
  :func:`ascii_char_vocab` or a full Unicode one built from a corpus by :func:`char_vocab`;
* words: :func:`word_tokens`, a documented regular expression (:data:`WORD_PATTERN`).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from .vocab import DEFAULT_SPECIALS, Vocab

#: The printable ASCII characters, in code-point order: space to ``~`` (95 characters), plus
#: tab and newline so that line structure survives (97 in all).
PRINTABLE_ASCII: str = "\t\n" + "".join(chr(c) for c in range(0x20, 0x7F))

#: A word is a run of letters/digits/underscore (``\w``, Unicode-aware) that may continue
#: through internal apostrophes or hyphens ("don't", "o'er", "well-known"); every other
#: non-space character is a token of its own ("!", ",", "--" gives two "-").
WORD_PATTERN: str = r"\w+(?:['\u2019-]\w+)*|[^\w\s]"

#: Words only, punctuation dropped (for word2vec corpora).
WORD_ONLY_PATTERN: str = r"\w+(?:['\u2019-]\w+)*"

_ERRORS = ("strict", "replace", "ignore")


def char_tokens(text: str, *, ascii_only: bool = False, normalize: str | None = "NFC") -> list[str]:
    """Split ``text`` into characters (Unicode code points).

    Args:
        text: the text.
        ascii_only: map letters with accents to their base letter ("é" -> "e", by NFKD
            decomposition without combining marks) and CR LF / CR line ends to LF, for the
            printable-ASCII vocabulary; characters still outside it stay as they are (the
            vocabulary maps them to ``<unk>``).
        normalize: Unicode normal form applied first ("NFC", "NFKC", ...), or None.
    """
    _check_str("text", text)
    if normalize is not None:
        text = unicodedata.normalize(normalize, text)
    if ascii_only:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = "".join(
            c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
        )
    return list(text)


def word_tokens(
    text: str, *, lower: bool = False, punctuation: bool = True, pattern: str | None = None
) -> list[str]:
    """Split ``text`` into words with :data:`WORD_PATTERN`.

    Args:
        text: the text.
        lower: lower-case first (``str.casefold`` is not used so that "ß" stays one letter).
        punctuation: keep punctuation marks as tokens (:data:`WORD_PATTERN`) or drop them
            (:data:`WORD_ONLY_PATTERN`).
        pattern: a regular expression of your own to use instead; every match is a token.
    """
    _check_str("text", text)
    if pattern is None:
        pattern = WORD_PATTERN if punctuation else WORD_ONLY_PATTERN
    if lower:
        text = text.lower()
    return re.findall(pattern, text)


def ascii_char_vocab(specials: Sequence[str] = DEFAULT_SPECIALS) -> Vocab:
    """The lecture's character vocabulary: :data:`PRINTABLE_ASCII` after ``specials``."""
    return Vocab(list(PRINTABLE_ASCII), specials=specials)


def char_vocab(
    texts: Iterable[str],
    *,
    min_freq: int = 1,
    max_size: int | None = None,
    specials: Sequence[str] = DEFAULT_SPECIALS,
    normalize: str | None = "NFC",
) -> Vocab:
    """A full Unicode character vocabulary: every character of ``texts`` seen ``min_freq`` times."""
    return Vocab.build(
        (char_tokens(t, normalize=normalize) for t in texts),
        min_freq=min_freq,
        max_size=max_size,
        specials=specials,
    )


def read_text(path: str | os.PathLike, *, encoding: str = "utf-8", errors: str = "strict") -> str:
    """Read a text file.

    ``errors`` says what to do with bytes that are not valid ``encoding``:

    * ``"strict"`` (default): raise ``ValueError`` naming the file, the byte offset and the bytes;
    * ``"replace"``: put U+FFFD in their place;
    * ``"ignore"``: drop them.
    """
    if errors not in _ERRORS:
        raise ValueError(f"errors must be one of {_ERRORS}, got {errors!r}")
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode(encoding, errors=errors)
    except UnicodeDecodeError as e:
        bad = data[e.start : min(e.end, e.start + 8)]
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(
            f"{path} is not valid {encoding}: byte offset {e.start} (line {line}) holds {bad!r} "
            f"({e.reason}); pass errors='replace' or errors='ignore', or the right encoding "
            "(e.g. encoding='latin-1')"
        ) from None


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
