"""Word vectors: the word2vec file formats, pretrained vectors -> ``nn.Embedding``, weight tying.

The lecture's embedding table W (V, E) "can be learned or pre-trained". This module moves W in
and out of the two word2vec formats (what ``gensim``'s ``KeyedVectors.load_word2vec_format``
reads and ``save_word2vec_format`` writes, and the original C tool's), maps pretrained vectors
onto a :class:`rnnkit.text.Vocab`, and ties an input embedding to an output layer.

Formats (both start with a header line ``"<V> <E>\\n"``):

* text: one line per word, ``word v_1 v_2 ... v_E``, values in decimal;
* binary: per word, ``word`` + one space + E little-endian float32 (4E bytes) + ``"\\n"``.

Words are UTF-8 and may not contain whitespace (the formats cannot represent it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

from .datasets._cache import atomic_write
from .text.vocab import Vocab

log = logging.getLogger(__name__)

MISSING_POLICIES = ("random", "zero", "mean", "error")
_ERRORS = ("strict", "replace", "ignore")
_FLOAT32_LE = np.dtype("<f4")


class WordVectors:
    """A table of words and their vectors.

    Args:
        words: the V words, row order of ``vectors``; unique, non-empty, no whitespace.
        vectors: (V, E), stored as float32.

    ``len(wv)``; ``word in wv``; ``wv[word]`` is the word's vector (E,); ``wv.index(word)``
    its row; ``iter(wv)`` yields the words in row order.
    """

    def __init__(self, words: Sequence[str], vectors: ArrayLike) -> None:
        if isinstance(words, str):
            raise TypeError("words must be a sequence of str, got a single str")
        self.words = tuple(words)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.words):
            raise ValueError(
                f"vectors must have shape (V={len(self.words)}, E), got {tuple(self.vectors.shape)}"
            )
        self._index: dict[str, int] = {}
        for i, w in enumerate(self.words):
            if not isinstance(w, str) or not w or any(c.isspace() for c in w):
                raise ValueError(
                    f"words[{i}] must be a non-empty str without whitespace, got {w!r}"
                )
            if w in self._index:
                raise ValueError(
                    f"words must be unique, got {w!r} at rows {self._index[w]} and {i}"
                )
            self._index[w] = i
        self._unit: np.ndarray | None = None

    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self.words)

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self.index(word)]

    def index(self, word: str) -> int:
        """The row of ``word``; ``KeyError`` naming it when it has no vector."""
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(f"word {word!r} is not in these {len(self)} word vectors") from None

    def __repr__(self) -> str:
        return f"WordVectors(V={len(self)}, E={self.vector_size})"

    def unit_vectors(self) -> np.ndarray:
        """(V, E) rows scaled to length 1 (zero rows stay zero); computed once."""
        if self._unit is None:
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = self.vectors / np.where(norms > 0, norms, 1)
        return self._unit

    # -- word2vec formats ----------------------------------------------------------------------
    def save_word2vec_format(self, path: str | os.PathLike, *, binary: bool = False) -> None:
        """Write the word2vec text (default) or binary format; see the module docstring."""
        V, E = self.vectors.shape
        with atomic_write(path, "wb") as f:
            f.write(f"{V} {E}\n".encode())
            if binary:
                for word, row in zip(self.words, self.vectors):
                    f.write(word.encode("utf-8") + b" " + row.astype(_FLOAT32_LE).tobytes() + b"\n")
            else:
                # %.9g: nine significant digits give back every float32 exactly
                fmt = " ".join(["%.9g"] * E)
                for word, row in zip(self.words, self.vectors.tolist()):
                    f.write(f"{word} {fmt % tuple(row)}\n".encode())

    @classmethod
    def load_word2vec_format(
        cls,
        path: str | os.PathLike,
        *,
        binary: bool = False,
        errors: str = "strict",
        limit: int | None = None,
    ) -> WordVectors:
        """Read a word2vec text or binary file (the first ``limit`` words, if given).

        ``errors`` is the policy for words that are not valid UTF-8: "strict" raises
        ``ValueError`` naming the file and byte offset; "replace" and "ignore" are Python's.
        A word repeated in the file keeps its first vector (as gensim does).
        """
        if errors not in _ERRORS:
            raise ValueError(f"errors must be one of {_ERRORS}, got {errors!r}")
        path = Path(path)
        data = path.read_bytes()
        end = data.find(b"\n")
        try:
            V, E = (int(v) for v in data[: max(end, 0)].split())
        except ValueError:
            raise ValueError(
                f"{path} does not start with a word2vec header '<V> <E>', "
                f"got {data[: min(max(end, 0), 40)]!r}"
            ) from None
        if limit is not None:
            V = min(V, int(limit))
        read = _read_binary if binary else _read_text
        words, vectors = read(path, data, end + 1, V, E, errors)
        seen: dict[str, int] = {}
        for i, w in enumerate(words):
            seen.setdefault(w, i)
        if len(seen) < len(words):
            log.info("%s: %d repeated words keep their first vector", path, len(words) - len(seen))
            rows = sorted(seen.values())
            words, vectors = [words[i] for i in rows], vectors[rows]
        return cls(words, vectors)


def _decode_word(raw: bytes, path: Path, offset: int, errors: str) -> str:
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path} is not valid UTF-8: byte offset {offset + e.start} holds "
            f"{raw[e.start : e.start + 4]!r}; pass errors='replace' or errors='ignore'"
        ) from None


def _read_text(
    path: Path, data: bytes, pos: int, V: int, E: int, errors: str
) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    vectors = np.empty((V, E), dtype=np.float32)
    for i in range(V):
        end = data.find(b"\n", pos)
        if end == -1:
            end = len(data)
        line = data[pos:end].rstrip()
        if not line:
            raise ValueError(f"{path}: expected {V} words after the header, got {i}")
        parts = line.split(b" ")
        if len(parts) != E + 1:
            raise ValueError(
                f"{path}: line {i + 2} must hold a word and {E} values, got {len(parts) - 1} values"
            )
        words.append(_decode_word(parts[0], path, pos, errors))
        try:
            vectors[i] = np.array(parts[1:], dtype=np.float32)
        except ValueError:
            raise ValueError(f"{path}: line {i + 2} holds a value that is not a number") from None
        pos = end + 1
    return words, vectors


def _read_binary(
    path: Path, data: bytes, pos: int, V: int, E: int, errors: str
) -> tuple[list[str], np.ndarray]:
    words: list[str] = []
    vectors = np.empty((V, E), dtype=np.float32)
    width = 4 * E
    for i in range(V):
        while pos < len(data) and data[pos : pos + 1] in (b"\n", b"\r"):
            pos += 1  # the C tool ends each vector with a newline; gensim does not
        space = data.find(b" ", pos)
        if space == -1 or space + 1 + width > len(data):
            raise ValueError(f"{path}: expected {V} words after the header, got {i} (file ends)")
        words.append(_decode_word(data[pos:space], path, pos, errors))
        vectors[i] = np.frombuffer(data, dtype=_FLOAT32_LE, count=E, offset=space + 1)
        pos = space + 1 + width
    return words, vectors


# -- pretrained vectors -> nn.Embedding ----------------------------------------------------------
class Pretrained(NamedTuple):
    """``embedding`` (V, E) for a vocabulary, and the ordinary tokens the vectors lacked."""

    embedding: nn.Embedding
    missing: list[str]


def pretrained_embedding(
    vocab: Vocab,
    vectors: WordVectors,
    *,
    missing: str = "random",
    freeze: bool = False,
    seed: int = 0,
) -> Pretrained:
    """An ``nn.Embedding`` whose row ``vocab[w]`` is ``vectors[w]`` for every word they share.

    Rows for tokens the vectors lack follow ``missing``:

    * "random": N(0, s^2) with s the standard deviation of all pretrained values (so new rows
      look like the others), drawn from ``seed``;
    * "zero": zeros; "mean": the mean pretrained vector;
    * "error": raise ``ValueError`` listing the missing words.

    The ``<pad>`` row is zero and is the ``padding_idx`` (it gets no gradient); the other
    specials follow ``missing`` but never count as missing words.
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    if not isinstance(vocab, Vocab):
        raise TypeError(f"vocab must be a rnnkit.text.Vocab, got {type(vocab).__name__}")
    if not isinstance(vectors, WordVectors):
        raise TypeError(f"vectors must be WordVectors, got {type(vectors).__name__}")
    V, E = len(vocab), vectors.vector_size
    n_specials = len(vocab.specials)
    absent = [t for t in vocab.itos[n_specials:] if t not in vectors]
    if missing == "error" and absent:
        raise ValueError(
            f"missing='error' and {len(absent)} of {V - n_specials} vocabulary words have no "
            f"vector, e.g. {absent[:10]}"
        )
    table = np.empty((V, E), dtype=np.float32)
    fill_rows = [i for i, t in enumerate(vocab.itos) if t not in vectors]
    if missing == "random":
        rng = np.random.default_rng(seed)
        std = float(vectors.vectors.std()) if len(vectors) else 1.0
        table[fill_rows] = rng.normal(0.0, std, size=(len(fill_rows), E))
    elif missing == "mean":
        table[fill_rows] = vectors.vectors.mean(axis=0)
    else:
        table[fill_rows] = 0.0
    for i, t in enumerate(vocab.itos):
        if t in vectors:
            table[i] = vectors[t]
    pad = vocab.role("pad")
    padding_idx = vocab.pad_id if pad is not None else None
    if padding_idx is not None:
        table[padding_idx] = 0.0
    embedding = nn.Embedding.from_pretrained(
        torch.from_numpy(table), freeze=freeze, padding_idx=padding_idx
    )
    return Pretrained(embedding, absent)


def embedding_word_vectors(
    embedding: nn.Embedding | torch.Tensor, vocab: Vocab, *, skip_specials: bool = True
) -> WordVectors:
    """The rows of ``embedding`` (V, E) as :class:`WordVectors` keyed by ``vocab``'s tokens."""
    weight = embedding.weight if isinstance(embedding, nn.Embedding) else embedding
    if weight.dim() != 2 or weight.shape[0] != len(vocab):
        raise ValueError(
            f"embedding must have shape (V={len(vocab)}, E), got {tuple(weight.shape)}"
        )
    start = len(vocab.specials) if skip_specials else 0
    array = weight.detach().to("cpu", torch.float32).numpy()
    return WordVectors(vocab.itos[start:], array[start:])


# -- weight tying ---------------------------------------------------------------------------------
def tie_weights(embedding: nn.Embedding, output: nn.Linear) -> nn.Linear:
    """Make ``output.weight`` the very same Parameter as ``embedding.weight``.

    A language model's output layer maps E features to V logits, so its weight is (V, E), the
    shape of the input embedding table; sharing one table (Press & Wolf 2017; Inan et al.
    2017) halves those parameters and often lowers perplexity. ``output.bias`` stays its own.
    Gradients from both uses add up in the shared table. Returns ``output``.
    """
    if not isinstance(embedding, nn.Embedding):
        raise TypeError(f"embedding must be nn.Embedding, got {type(embedding).__name__}")
    if not isinstance(output, nn.Linear):
        raise TypeError(f"output must be nn.Linear, got {type(output).__name__}")
    if output.weight.shape != embedding.weight.shape:
        V, E = embedding.weight.shape
        raise ValueError(
            f"output must be nn.Linear({E}, {V}) to share the (V={V}, E={E}) embedding table, "
            f"got weight of shape {tuple(output.weight.shape)}"
        )
    output.weight = embedding.weight
    return output
