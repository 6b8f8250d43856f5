"""Object-store URLs through fsspec (its built-in memory:// filesystem stands in for s3/gs/hf)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import FetchError, url_key
from clipfactory.fetch.fsspec_fetch import FsspecFetcher
from clipfactory.fetch.router import Router

fsspec = pytest.importorskip("fsspec")


def test_memory_url_is_copied_with_checksum(video_bytes, tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/a/walk.mp4", video_bytes)
    url = "memory://bucket/a/walk.mp4"
    assert isinstance(Router().for_url(url), FsspecFetcher)
    res = FsspecFetcher(FetchConfig()).fetch(url, tmp_path, 10**9)
    assert Path(res.path).read_bytes() == video_bytes and res.path.endswith(".mp4")
    assert res.sha256 == hashlib.sha256(video_bytes).hexdigest()


def test_missing_large_and_non_video_objects(video_bytes, tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/page.mp4", b"<html><body>denied</body></html>")
    fs.pipe("/bucket/big.mp4", video_bytes)
    fs.pipe("/bucket/empty.mp4", b"")  # was saved as a 0-byte file (then probe/empty_file)
    f = FsspecFetcher(FetchConfig())
    for url, reason, limit in [("memory://bucket/none.mp4", "not_found", 10**9),
                               ("memory://bucket/page.mp4", "html_instead_of_video", 10**9),
                               ("memory://bucket/big.mp4", "too_large", 1000),
                               ("memory://bucket/empty.mp4", "not_video_content", 10**9)]:
        with pytest.raises(FetchError) as e:
            f.fetch(url, tmp_path, limit)
        assert e.value.reason == reason
    assert not list(tmp_path.glob("*.mp4")) and not list((tmp_path / ".partial").iterdir())


def _replaced(old: bytes) -> bytes:
    """``old`` with ten bytes changed before its middle: same size, still an MP4."""
    return old[:1000] + b"0123456789" + old[1010:]


def _killed_before_the_rename(url: str, dest: Path) -> Path:
    """A real attempt that copies the whole object and stops before the rename to its final
    name (a folder holds that name), as a kill at that point leaves it; its partial file."""
    final = dest / f"{url_key(url)}.mp4"
    final.mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        FsspecFetcher(FetchConfig()).fetch(url, dest, 10**9)
    final.rmdir()
    return dest / ".partial" / f"{url_key(url)}.part"


def test_a_partial_copy_without_its_version_is_started_over(video_bytes, tmp_path):
    """A ``.part`` with nothing to say which version of the object it holds (as attempts
    before the version was kept left it) was resumed by seeking: the old object's head
    joined to the new object's tail."""
    fs = fsspec.filesystem("memory")
    url, new = "memory://bucket/unversioned.mp4", _replaced(video_bytes)
    part = tmp_path / ".partial" / f"{url_key(url)}.part"
    part.parent.mkdir()
    part.write_bytes(video_bytes[:len(video_bytes) // 2])
    fs.pipe("/bucket/unversioned.mp4", new)  # replaced since that attempt
    res = FsspecFetcher(FetchConfig()).fetch(url, tmp_path, 10**9)
    assert Path(res.path).read_bytes() == new
    assert res.sha256 == hashlib.sha256(new).hexdigest()
    assert not list(part.parent.iterdir())


def test_a_partial_copy_of_a_replaced_object_is_started_over(video_bytes, tmp_path):
    """The object was replaced (same size, a later mtime) after an attempt was killed: the
    copy starts over instead of keeping the old bytes, and its version file goes too."""
    src = tmp_path / "bucket" / "clip.mp4"
    src.parent.mkdir()
    src.write_bytes(video_bytes)
    url, dest, new = src.as_uri(), tmp_path / "sources", _replaced(video_bytes)
    part = _killed_before_the_rename(url, dest)
    part.write_bytes(part.read_bytes()[:len(video_bytes) // 2])  # killed half way
    mtime = src.stat().st_mtime_ns
    src.write_bytes(new)
    os.utime(src, ns=(mtime + 10**9, mtime + 10**9))
    res = FsspecFetcher(FetchConfig()).fetch(url, dest, 10**9)
    assert Path(res.path).read_bytes() == new
    assert not list(part.parent.iterdir())


def test_a_partial_copy_of_the_same_object_is_resumed(video_bytes, tmp_path):
    """An unchanged object is not fetched again: the copy continues from the partial file's
    end (bytes marked in the partial head show that nothing before it was read again)."""
    src = tmp_path / "clip.mp4"
    src.write_bytes(video_bytes)
    url, dest = src.as_uri(), tmp_path / "sources"
    part = _killed_before_the_rename(url, dest)
    part.write_bytes(_replaced(video_bytes[:len(video_bytes) // 2]))
    res = FsspecFetcher(FetchConfig()).fetch(url, dest, 10**9)
    assert Path(res.path).read_bytes() == _replaced(video_bytes)
    assert not list(part.parent.iterdir())
