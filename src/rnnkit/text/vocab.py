"""A vocabulary: the lecture's table from tokens (words or characters) to integer ids.

Ids are laid out as ``[specials..., tokens by descending frequency, ties by token]``, so the
same corpus always gives the same vocabulary, whatever order it was read in. The padding token
``<pad>`` has id 0, the value :func:`rnnkit.data.pad_batch` pads with.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

DEFAULT_SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
_ROLES = ("pad", "unk", "bos", "eos")
_FORMAT = "rnnkit.vocab"
_FORMAT_VERSION = 1


class _Default:
    """Marks a role argument that was not given (see :class:`Vocab`)."""

    def __repr__(self) -> str:
        return "<default>"


DEFAULT = _Default()


class Vocab:
    """Token <-> id table with special tokens.

    Args:
        tokens: the ordinary tokens in id order (they follow the specials). Build one from a
            corpus with :meth:`build` or :meth:`from_counts` instead of listing tokens by hand.
        specials: the special tokens, in id order, placed before ``tokens``. ``()`` for none.
        pad, unk, bos, eos: which special plays each role, or ``None`` for no such role.
            Left out, a role takes its conventional name (``"<pad>"``, ``"<unk>"``, ...) when
            ``specials`` holds it and ``None`` otherwise. A name given explicitly must be one of
            ``specials``; the padding token must be the first special, so that its id is 0.
        counts: optional corpus frequency of each token (kept for inspection and saving).

    ``len(vocab)`` counts specials too; ``token in vocab``; ``vocab[token]`` is the token's id
    (the ``<unk>`` id for an unknown token, or ``KeyError`` when there is no ``unk`` role);
    ``iter(vocab)`` yields the tokens in id order; ``vocab.itos[i]`` is the token of id ``i``.
    """

    def __init__(
        self,
        tokens: Iterable[str] = (),
        *,
        specials: Sequence[str] = DEFAULT_SPECIALS,
        pad: str | None | _Default = DEFAULT,
        unk: str | None | _Default = DEFAULT,
        bos: str | None | _Default = DEFAULT,
        eos: str | None | _Default = DEFAULT,
        counts: Mapping[str, int] | None = None,
    ) -> None:
        specials = _check_token_list("specials", specials)
        tokens = _check_token_list("tokens", tokens)
        clash = sorted(set(specials) & set(tokens))
        if clash:
            raise ValueError(f"tokens must not repeat a special token, got {clash[:5]}")
        self._specials = specials
        self._itos = specials + tokens
        self._stoi = {t: i for i, t in enumerate(self._itos)}
        given = {"pad": pad, "unk": unk, "bos": bos, "eos": eos}
        self._roles: dict[str, str | None] = {}
        for role, name in given.items():
            if isinstance(name, _Default):
                conventional = f"<{role}>"
                name = conventional if conventional in specials else None
            elif name is not None and name not in specials:
                raise ValueError(
                    f"{role}={name!r} is not a special token; expected one of {specials} or None"
                )
            self._roles[role] = name
        if self._roles["pad"] is not None and self._stoi[self._roles["pad"]] != 0:
            raise ValueError(
                f"pad={self._roles['pad']!r} must be the first special (id 0), "
                f"got id {self._stoi[self._roles['pad']]}"
            )
        self._counts = {} if counts is None else {t: int(c) for t, c in counts.items()}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, int],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = DEFAULT_SPECIALS,
        pad: str | None | _Default = DEFAULT,
        unk: str | None | _Default = DEFAULT,
        bos: str | None | _Default = DEFAULT,
        eos: str | None | _Default = DEFAULT,
    ) -> Vocab:
        """Keep tokens seen at least ``min_freq`` times, most frequent first (ties by token).

        ``max_size`` caps ``len(vocab)``, specials included (the lecture's 10K-30K words).
        Counts of tokens that are themselves specials are ignored.
        """
        min_freq = _check_int("min_freq", min_freq, lowest=1)
        specials = _check_token_list("specials", specials)
        if max_size is not None:
            max_size = _check_int("max_size", max_size, lowest=0)
            if max_size < len(specials):
                raise ValueError(
                    f"max_size must be >= the number of specials ({len(specials)}: {specials}), "
                    f"got {max_size}"
                )
        reserved = set(specials)
        kept = [(t, c) for t, c in counts.items() if c >= min_freq and t not in reserved]
        kept.sort(key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            kept = kept[: max_size - len(specials)]
        return cls(
            [t for t, _ in kept],
            specials=specials,
            pad=pad,
            unk=unk,
            bos=bos,
            eos=eos,
            counts=dict(kept),
        )

    @classmethod
    def build(
        cls,
        corpus: Iterable[Iterable[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = DEFAULT_SPECIALS,
        pad: str | None | _Default = DEFAULT,
        unk: str | None | _Default = DEFAULT,
        bos: str | None | _Default = DEFAULT,
        eos: str | None | _Default = DEFAULT,
    ) -> Vocab:
        """Count the tokens of ``corpus`` (an iterable of token lists) and keep the frequent ones.

        For a character vocabulary pass strings (or lists of characters) as the token lists.
        See :meth:`from_counts` for ``min_freq`` and ``max_size``.
        """
        if isinstance(corpus, str):
            raise TypeError("corpus must be an iterable of token lists, got a single str")
        counts: Counter[str] = Counter()
        n_sequences = 0
        for sequence in corpus:
            counts.update(sequence)
            n_sequences += 1
        if not counts:
            raise ValueError(
                f"corpus is empty: expected at least one token, got {n_sequences} sequence(s) "
                "and no tokens"
            )
        return cls.from_counts(
            counts,
            min_freq=min_freq,
            max_size=max_size,
            specials=specials,
            pad=pad,
            unk=unk,
            bos=bos,
            eos=eos,
        )

    # -- roles -------------------------------------------------------------------------------
    @property
    def specials(self) -> tuple[str, ...]:
        return self._specials

    @property
    def itos(self) -> tuple[str, ...]:
        """Every token, id order (``itos[i]`` is the token of id ``i``)."""
        return self._itos

    @property
    def counts(self) -> dict[str, int]:
        """Corpus frequency of each ordinary token (empty if the vocabulary was not counted)."""
        return dict(self._counts)

    def role(self, name: str) -> str | None:
        """The special token that plays role ``name`` ("pad", "unk", "bos" or "eos")."""
        if name not in _ROLES:
            raise ValueError(f"name must be one of {_ROLES}, got {name!r}")
        return self._roles[name]

    def _role_id(self, name: str) -> int:
        token = self._roles[name]
        if token is None:
            raise ValueError(f"this vocabulary has no {name} token (specials: {self._specials})")
        return self._stoi[token]

    @property
    def pad_id(self) -> int:
        return self._role_id("pad")

    @property
    def unk_id(self) -> int:
        return self._role_id("unk")

    @property
    def bos_id(self) -> int:
        return self._role_id("bos")

    @property
    def eos_id(self) -> int:
        return self._role_id("eos")

    # -- lookup ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._itos)

    def __contains__(self, token: object) -> bool:
        return isinstance(token, str) and token in self._stoi

    def __iter__(self) -> Iterator[str]:
        return iter(self._itos)

    def __getitem__(self, token: str) -> int:
        if not isinstance(token, str):
            raise TypeError(
                f"vocab[...] takes a token (str), got {type(token).__name__}; "
                "use vocab.itos[i] or vocab.decode([i]) for the token of an id"
            )
        i = self._stoi.get(token)
        if i is not None:
            return i
        if self._roles["unk"] is None:
            raise KeyError(f"token {token!r} is not in the vocabulary, which has no unk token")
        return self._stoi[self._roles["unk"]]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return (
            self._itos == other._itos
            and self._specials == other._specials
            and self._roles == other._roles
            and self._counts == other._counts
        )

    def __repr__(self) -> str:
        head = ", ".join(repr(t) for t in self._itos[:8])
        more = ", ..." if len(self) > 8 else ""
        return f"Vocab(size={len(self)}, specials={self._specials}, tokens=[{head}{more}])"

    # -- encoding ----------------------------------------------------------------------------
    def encode(
        self, tokens: Iterable[str], *, add_bos: bool = False, add_eos: bool = False
    ) -> list[int]:
        """Tokens -> ids; unknown tokens map to ``<unk>``; optional ``<bos>`` / ``<eos>``.

        A ``str`` is taken as its characters, which is only meaningful for a character
        vocabulary: for a vocabulary with longer tokens it is an error (tokenise it first).
        """
        if isinstance(tokens, str) and len(tokens) > 1 and not self._is_char_vocab():
            raise TypeError(
                f"tokens must be a list of tokens, got a str ({tokens[:30]!r}); tokenise it first"
            )
        ids = [self[t] for t in tokens]
        if add_bos:
            ids.insert(0, self.bos_id)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def decode(self, ids: Iterable[int], *, skip_specials: bool = False) -> list[str]:
        """Ids -> tokens; ``skip_specials`` drops ``<pad>``, ``<bos>`` and the like."""
        values = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        if not isinstance(values, list):  # a 0-d array
            raise TypeError(f"ids must be a 1-D sequence of integers, got {ids!r}")
        out = []
        n = len(self._itos)
        for k, i in enumerate(values):
            if isinstance(i, np.integer):
                i = int(i)
            if isinstance(i, bool) or not isinstance(i, int):
                raise TypeError(f"ids must be integers, got {i!r} at position {k}")
            if not 0 <= i < n:
                raise ValueError(f"ids must lie in [0, {n - 1}], got {i} at position {k}")
            if skip_specials and i < len(self._specials):
                continue
            out.append(self._itos[i])
        return out

    def _is_char_vocab(self) -> bool:
        return all(len(t) == 1 for t in self._itos[len(self._specials) :])

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready description (the format :meth:`save` writes)."""
        return {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "specials": list(self._specials),
            "roles": dict(self._roles),
            "tokens": list(self._itos[len(self._specials) :]),
            "counts": [self._counts.get(t, 0) for t in self._itos[len(self._specials) :]]
            if self._counts
            else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Vocab:
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise ValueError(
                f"data must be a vocabulary written by Vocab.save (format {_FORMAT!r})"
            )
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(
                f"vocabulary format version {data.get('version')!r} is not supported "
                f"(expected {_FORMAT_VERSION})"
            )
        tokens = data["tokens"]
        counts = data.get("counts")
        return cls(
            tokens,
            specials=data["specials"],
            counts=None if counts is None else dict(zip(tokens, counts)),
            **{role: data["roles"].get(role) for role in _ROLES},
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as UTF-8 JSON (atomically: a reader never sees half a file)."""
        path = Path(path)
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        """Read a vocabulary written by :meth:`save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not a JSON vocabulary file: {e}") from None
        return cls.from_dict(data)


def _check_token_list(name: str, tokens: Iterable[str]) -> tuple[str, ...]:
    if isinstance(tokens, str):
        raise TypeError(f"{name} must be a sequence of str, got a single str {tokens!r}")
    out = tuple(tokens)
    for t in out:
        if not isinstance(t, str) or t == "":
            raise TypeError(f"{name} must hold non-empty str tokens, got {t!r}")
    if len(set(out)) != len(out):
        dupes = sorted(t for t, c in Counter(out).items() if c > 1)
        raise ValueError(f"{name} must not repeat a token, got duplicates {dupes[:5]}")
    return out


def _check_int(name: str, value: object, *, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < lowest:
        raise ValueError(f"{name} must be >= {lowest}, got {value}")
    return int(value)
