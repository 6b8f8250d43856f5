"""Object-store URLs through fsspec (its built-in memory:// filesystem stands in for s3/gs/hf)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import FetchError
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
    f = FsspecFetcher(FetchConfig())
    for url, reason, limit in [("memory://bucket/none.mp4", "not_found", 10**9),
                               ("memory://bucket/page.mp4", "html_instead_of_video", 10**9),
                               ("memory://bucket/big.mp4", "too_large", 1000)]:
        with pytest.raises(FetchError) as e:
            f.fetch(url, tmp_path, limit)
        assert e.value.reason == reason
    assert not list(tmp_path.glob("*.mp4"))
