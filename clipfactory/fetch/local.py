"""Local paths and ``file://`` URLs: nothing to download, the user's file is used in place."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from clipfactory.fetch.base import FetchError, FetchResult

__all__ = ["LocalFetcher", "local_path"]


def local_path(url: str) -> str:
    """The file system path of a local path or ``file://`` URL (``file:///x``,
    ``file://localhost/x``; the scheme in any case)."""
    if url[:7].lower() == "file://":
        return unquote(urlsplit(url).path)
    return url


class LocalFetcher:
    """Return the file itself (``owned=False``: it is never deleted). The checksum is computed
    by the worker, which reads the file anyway."""

    def fetch(self, url: str, dest_dir: Path, max_bytes: int,
              expected_sha256: str | None = None) -> FetchResult:
        """Check that the file exists; raises :class:`FetchError` (``missing_file``)."""
        path = Path(local_path(url))
        if not path.exists():
            raise FetchError("missing_file", str(path))
        size = path.stat().st_size if path.is_file() else 0
        return FetchResult(str(path), size, "", None, {"fetcher": "local"}, owned=False)
