"""Object stores and other fsspec URLs (``s3://``, ``gs://``, ``hf://``, ``memory://``, ...).

Behind the ``cloud`` extra: fsspec itself plus the user's own filesystem package (s3fs, gcsfs,
huggingface_hub). Credentials come from where those packages look for them (the user's
environment and config files) or from ``fetch.storage_options``; nothing else is tried. A
partial copy is resumed by seeking to its end.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlsplit

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import FetchError, FetchResult, url_key
from clipfactory.fetch.sniff import SNIFF_BYTES, sniff, video_extension

__all__ = ["FsspecFetcher"]

_CHUNK = 1 << 20


class FsspecFetcher:
    """Copy an fsspec URL to a local file (one attempt)."""

    def __init__(self, cfg: FetchConfig | None = None) -> None:
        self.cfg = cfg or FetchConfig()

    def fetch(self, url: str, dest_dir: Path, max_bytes: int,
              expected_sha256: str | None = None) -> FetchResult:
        """Copy ``url`` into ``dest_dir``; raises :class:`FetchError`."""
        try:
            import fsspec
        except ImportError:
            raise FetchError("fsspec_missing", "pip install 'clipfactory[cloud]' to fetch "
                             f"{urlsplit(url).scheme}:// URLs") from None
        dest_dir = Path(dest_dir)
        part = dest_dir / ".partial" / f"{url_key(url)}.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        try:
            fs, path = fsspec.core.url_to_fs(url, **self.cfg.storage_options)
            size = fs.size(path)
        except ImportError as e:
            raise FetchError("fsspec_missing", f"{e}; install the filesystem package for "
                             f"{urlsplit(url).scheme}://") from None
        except FileNotFoundError:
            raise FetchError("not_found", url) from None
        except PermissionError as e:
            raise FetchError("access_denied", str(e)) from None
        except (OSError, ValueError) as e:
            raise FetchError("storage_error", f"{type(e).__name__}: {e}", retryable=True) from None
        if size is not None and size > max_bytes:
            raise FetchError("too_large", f"{size} bytes, limit {max_bytes}")
        offset = part.stat().st_size if part.exists() else 0
        if size is not None and offset > size:
            part.unlink()
            offset = 0
        got = 0
        try:
            with fs.open(path, "rb") as src, part.open("ab") as dst:
                if offset:
                    src.seek(offset)
                while block := src.read(_CHUNK):
                    if offset + got == 0:
                        kind = sniff(block[:SNIFF_BYTES])
                        if kind is None or kind == "html":
                            raise FetchError("html_instead_of_video" if kind == "html"
                                             else "not_video_content",
                                             f"first bytes {block[:16]!r} are not a video")
                    if offset + got + len(block) > max_bytes:
                        raise FetchError("too_large", f"over the limit of {max_bytes} bytes")
                    dst.write(block)
                    got += len(block)
        except FetchError:
            part.unlink(missing_ok=True)
            raise
        except (OSError, ValueError) as e:
            raise FetchError("storage_error", f"{type(e).__name__}: {e}", retryable=True,
                             progress=got) from None
        h = hashlib.sha256()
        with part.open("rb") as fh:
            head = fh.read(SNIFF_BYTES)
            h.update(head)
            while block := fh.read(_CHUNK):
                h.update(block)
        digest = h.hexdigest()
        if expected_sha256 and digest != expected_sha256.lower():
            part.unlink(missing_ok=True)
            raise FetchError("checksum_mismatch", f"sha256 {digest} != {expected_sha256}")
        final = dest_dir / f"{url_key(url)}{video_extension(sniff(head), urlsplit(url).path)}"
        os.replace(part, final)
        nbytes = final.stat().st_size
        return FetchResult(str(final), nbytes, digest, None,
                           {"fetcher": "fsspec", "url": url, "bytes": nbytes})
