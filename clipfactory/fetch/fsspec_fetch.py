"""Object stores and other fsspec URLs (``s3://``, ``gs://``, ``hf://``, ``memory://``, ...).

Behind the ``cloud`` extra: fsspec itself plus the user's own filesystem package (s3fs, gcsfs,
huggingface_hub). Credentials come from where those packages look for them (the user's
environment and config files) or from ``fetch.storage_options``; nothing else is tried. A
partial copy is resumed by seeking to its end, but only while ``fs.info()`` still describes the
version it was started from (kept in a JSON beside it, as the http fetcher keeps its ETag): an
object replaced since is copied again from the start, never joined to the old one's head.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from clipfactory.config import FetchConfig
from clipfactory.fetch.base import (
    FetchError,
    FetchResult,
    discard_partial,
    partial_paths,
    read_partial_meta,
    url_key,
    write_partial_meta,
)
from clipfactory.fetch.sniff import SNIFF_BYTES, sniff, video_extension

__all__ = ["FsspecFetcher"]

_CHUNK = 1 << 20
# what fs.info() may say of an object's version, as the filesystems name it (s3: ETag and
# VersionId; gcs: etag and generation; hf: blob_id; local: mtime and inode; memory: created)
_VERSION_KEYS = ("ETag", "etag", "VersionId", "version_id", "generation", "md5Hash", "blob_id",
                 "LastModified", "last_modified", "updated", "mtime", "ino", "created", "size")


def _version(info: dict[str, Any]) -> dict[str, str]:
    """The fields of ``info`` that change when the object is replaced, as JSON-safe text."""
    return {k: str(info[k]) for k in _VERSION_KEYS if info.get(k) is not None}


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
        part, meta_path = partial_paths(dest_dir, url)
        try:
            fs, path = fsspec.core.url_to_fs(url, **self.cfg.storage_options)
            info = fs.info(path)
        except ImportError as e:
            raise FetchError("fsspec_missing", f"{e}; install the filesystem package for "
                             f"{urlsplit(url).scheme}://") from None
        except FileNotFoundError:
            raise FetchError("not_found", url) from None
        except PermissionError as e:
            raise FetchError("access_denied", str(e)) from None
        except (OSError, ValueError) as e:
            raise FetchError("storage_error", f"{type(e).__name__}: {e}", retryable=True) from None
        size, version = info.get("size"), _version(info)
        if size is not None and size > max_bytes:
            discard_partial(part, meta_path)
            raise FetchError("too_large", f"{size} bytes, limit {max_bytes}")
        offset = part.stat().st_size if part.exists() else 0
        if offset and (not version or read_partial_meta(meta_path).get("version") != version
                       or (size is not None and offset > size)):
            offset = 0  # not a copy of this version of the object, or none can tell
        if not offset:
            part.unlink(missing_ok=True)
            write_partial_meta(meta_path, {"version": version})
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
            if offset + got == 0:  # no first bytes to check: an empty object is no video
                raise FetchError("not_video_content", f"{url} is an empty object (0 bytes)")
        except FetchError:
            discard_partial(part, meta_path)
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
            discard_partial(part, meta_path)
            raise FetchError("checksum_mismatch", f"sha256 {digest} != {expected_sha256}")
        final = dest_dir / f"{url_key(url)}{video_extension(sniff(head), urlsplit(url).path)}"
        os.replace(part, final)
        meta_path.unlink(missing_ok=True)
        nbytes = final.stat().st_size
        return FetchResult(str(final), nbytes, digest, None,
                           {"fetcher": "fsspec", "url": url, "bytes": nbytes})
